"""Ingest's receipts: the compacted `documents` topic (schemas/receipt.v1.json).

Receipts make retries safe. An upload with an Idempotency-Key is recorded `open`
before its end marker is sent, and `committed` before its 202. A retry finding its
key `committed` gets the first answer again. A retry finding it `open` (the service
died between the two) settles the first attempt from the log itself: it appends an
abort for that document, then reads the document's partition from its first chunk
to that abort. The first verdict found there is the one every aggregator shard
applies, so the retry knows for certain whether the first attempt counted.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pipeline import codec, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.kafka import TopicPartition

log = logging.getLogger("wordpipe.ingest")


def receipt_key(receipt: codec.Receipt) -> bytes:
    return (f"key:{receipt.key}" if receipt.key is not None else f"doc:{receipt.document}").encode()


def read_all(connection: Connection, topics: TopicSettings, timeout: float = 30.0) -> list[tuple[codec.Receipt, int]]:
    """Every receipt in the topic and its offset, oldest first (blocking: run it in a thread)."""
    out: list[tuple[codec.Receipt, int]] = []
    for msg in kafka.read_partition(connection, topics.documents, 0, timeout):
        try:
            out.append((codec.decode_receipt(msg.value()), msg.offset() or 0))
        except codec.CodecError as exc:
            log.warning("ignoring a bad receipt at %s@%d: %s", msg.topic(), msg.offset(), exc)
    return out


def find_verdict(connection: Connection, receipt: codec.Receipt, upto: int, max_span: int) -> bool:
    """Whether the log commits `receipt`'s document: its first end in [first, upto], judged
    as the aggregator judges it, spanning fewer than `max_span` offsets (blocking: run it in a thread)."""
    consumer = kafka.consumer(connection, "wordpipe-receipts")
    try:
        consumer.assign([TopicPartition(receipt.topic, receipt.partition, receipt.first)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    continue
                offset = msg.offset() or 0  # set on every consumed record
                if offset > upto:
                    return False
                if msg.key() != receipt.document.encode():
                    continue
                try:
                    record = codec.decode_chunk(msg.value())
                except codec.CodecError:
                    continue
                if isinstance(record, codec.DocumentEnd) and record.doc == receipt.document:
                    return record.commit and record.chunks == receipt.chunks and offset - receipt.first < max_span
        raise kafka.KafkaUnavailable(f"could not read {receipt.topic}[{receipt.partition}] up to {upto}")
    finally:
        consumer.close()


class Receipts:
    """The receipts of keyed uploads, in memory, and writes to the topic."""

    def __init__(
        self, connection: Connection, topics: TopicSettings, max_span: int, producer: kafka.AsyncProducer
    ) -> None:
        self.connection = connection
        self.topics = topics
        self.max_span = max_span  # a document's offsets at most (ingest.document_max_span)
        self.producer = producer
        self.by_key: dict[str, codec.Receipt] = {}
        self.offsets: dict[str, int] = {}  # key -> its receipt's offset (a 202 waits for it to be durable)

    async def load(self) -> None:
        for receipt, offset in await asyncio.to_thread(read_all, self.connection, self.topics):
            if receipt.key is not None:
                self.by_key[receipt.key], self.offsets[receipt.key] = receipt, offset

    async def write(self, receipt: codec.Receipt) -> int:
        """Write a receipt; returns its offset."""
        topic = self.topics.documents
        offset = await self.producer.send(topic, codec.encode_receipt(receipt), receipt_key(receipt), 0)
        if receipt.key is not None:
            self.by_key[receipt.key], self.offsets[receipt.key] = receipt, offset
        return offset

    async def settle(self, receipt: codec.Receipt) -> codec.Receipt:
        """Decide an `open` receipt once and for all; returns it `committed` or `aborted`."""
        end = codec.encode_end(codec.DocumentEnd(receipt.document, receipt.chunks, commit=False))
        upto = await self.producer.send(receipt.topic, end, receipt.document.encode(), receipt.partition)
        committed = await asyncio.to_thread(find_verdict, self.connection, receipt, upto, self.max_span)
        settled = codec.Receipt(
            receipt.document,
            receipt.key,
            "committed" if committed else "aborted",
            receipt.partition,
            receipt.first,
            receipt.chunks,
            receipt.bytes,
            time.time(),
            receipt.topic,
        )
        await self.write(settled)
        log.info("settled an earlier attempt of key %r: document %s %s", receipt.key, receipt.document, settled.state)
        return settled
