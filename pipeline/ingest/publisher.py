"""Publish documents as chunks and remember which offsets the broker acknowledged
(`wordpipe run`'s writer; the ingest service is the stack's)."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline import codec, kafka, tokenize
from pipeline.chunking import iter_chunks
from pipeline.config import Connection, TextSettings, TopicSettings
from pipeline.ingest.chunk_topics import ChunkTopics
from pipeline.ingest.sources import Source
from pipeline.offsets import OffsetRanges
from pipeline.source_topics import input_of

log = logging.getLogger("wordpipe.ingest")


@dataclass
class IngestReport:
    documents: int = 0
    chunks: int = 0
    bytes: int = 0
    first_produced_at: float | None = None  # time.monotonic()
    produced: dict[str, OffsetRanges] = field(default_factory=dict)  # input ("chunks.g1:3") -> acked offsets


class ChunkPublisher:
    def __init__(self, connection: Connection, topics: TopicSettings, text: TextSettings) -> None:
        self.partitions = topics.chunk_partitions
        self.chunk_size = text.chunk_size
        self.producer = kafka.producer(
            connection, **{"linger.ms": 20, "batch.size": 1 << 20, "compression.type": "lz4"}
        )
        self.report = IngestReport()
        self.tokenizer = tokenize.Tokenizer.load(text.tokenizer_user_dict).id  # named in every chunk
        self._failures: list[str] = []
        self._next_partition = 0
        self.topics = ChunkTopics(connection, topics, f"run-{os.getpid()}", self.producer)
        self.written: set[str] = set()  # generations written since the last flush marker
        for n in self.topics.start():  # close any window a crashed predecessor left open
            self.written.add(self.topics.topic(n))
        self.mark_flush()

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
            return
        name = input_of(msg.topic(), msg.partition())
        self.report.produced.setdefault(name, OffsetRanges()).add(msg.offset())

    def publish(self, source: Source, on_bytes: Callable[[int], None] | None = None) -> str:
        """Chunk and send one document; returns its id. Call `flush()` to make it durable."""
        doc = uuid.uuid4().hex
        if self.topics.lapsed:  # idle a while: renewed, and acknowledged, before writing again
            self.topics.tick(force=True)
            self.producer.flush(30)
        if self.topics.due:
            self.topics.rotate()
        topic = self.topics.begin()
        self.written.add(topic)

        def forced_cut(offset: int) -> None:
            log.warning(
                "%s: a run without whitespace or CJK punctuation longer than %d bytes cut at byte %d",
                source.name,
                self.chunk_size,
                offset,
            )

        with source.open() as stream:
            for seq, chunk in enumerate(iter_chunks(stream, self.chunk_size, on_forced_cut=forced_cut)):
                value = codec.encode_chunk(
                    codec.ChunkMessage(doc, seq, source.name, chunk.offset, chunk.data, self.tokenizer)
                )
                partition = self._next_partition
                self._next_partition = (partition + 1) % self.partitions
                self._produce(topic, value, doc.encode(), partition)
                self.topics.wrote(len(chunk.data))
                self.topics.tick()
                if self.report.first_produced_at is None:
                    self.report.first_produced_at = time.monotonic()
                self.report.chunks += 1
                self.report.bytes += len(chunk.data)
                if on_bytes:
                    on_bytes(len(chunk.data))
        self.topics.end(topic)
        self.report.documents += 1
        return doc

    def _produce(self, topic: str, value: bytes, key: bytes | None, partition: int) -> None:
        self.topics.check(topic)
        kafka.produce(self.producer, topic, value, partition, key, self._on_delivery, poll=0.05)
        self.producer.poll(0)

    def mark_flush(self) -> None:
        """A flush marker on every partition of the generations written since the last one:
        workers close their open windows there.

        Sent after a batch of documents, and at start-up to close windows a crashed
        predecessor left open.
        """
        marker = codec.encode_flush()
        for topic in sorted(self.written):
            for partition in range(self.partitions):
                self._produce(topic, marker, None, partition)
        self.written = {self.topics.topic()}

    def flush(self, timeout: float = 60.0) -> IngestReport:
        """Mark the end of what was sent and wait until Kafka has acknowledged all of it;
        returns the report of what was sent since the last flush."""
        self.mark_flush()
        left = self.producer.flush(timeout)
        if left:
            raise kafka.KafkaUnavailable(f"{left} chunk(s) not acknowledged by Kafka within {timeout:.0f} s")
        if self._failures:
            raise kafka.KafkaUnavailable(f"chunk delivery failed: {self._failures[0]}")
        report, self.report = self.report, IngestReport()
        return report
