"""One shard's state on Kafka: a redo log of batches, in generations.

    <aggregator id>.state.<shard>.g<generation>     one partition each

A generation starts with a checkpoint of the whole shard and goes on with deltas
(pipeline/aggregator/state.py), each batch cut into fragments under the record limit
(pipeline/codec.py: encode_batch). Recovery replays the newest generation whose
checkpoint is whole, up to its first batch that is not.

Its writer creates a generation (CreateTopics succeeds once: a generation has one
writer) and, once the checkpoint is acknowledged, deletes the older ones. So the broker
holds at most the shard's state, its deltas since, and one superseded generation while
the next checkpoint is written: bounded by what the shard keeps, not by what it has seen,
on Kafka and on the embedded broker alike (which honours no retention, but frees a
deleted topic). A new owner of the shard starts a generation of its own at once; a former
owner that missed the handover writes on into a generation nobody reads, and stops at its
next checkpoint, when it finds a newer generation than its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from pipeline import codec, faults, kafka
from pipeline import generations as topic_generations
from pipeline.aggregator.state import CHECKPOINT, unpack
from pipeline.config import Connection
from pipeline.kafka import AdminClient, KafkaError, KafkaException, Producer

log = logging.getLogger("wordpipe.aggregator")
RETIRE_AFTER = 10.0  # seconds a superseded generation stays, for its readers to let go of it


class Superseded(kafka.KafkaUnavailable):
    """A newer generation exists: another instance owns the shard now."""


def topics_prefix(aggregator_id: str) -> str:
    """What every changelog topic of an aggregator group's name starts with."""
    return f"{aggregator_id}.state."


def topic_of(prefix: str, shard: int, generation: int) -> str:
    return topic_generations.topic(f"{topics_prefix(prefix)}{shard}", generation)


def generations(names: Iterable[str], prefix: str, shard: int) -> list[int]:
    """The generations of `shard` among topic names, oldest first."""
    return topic_generations.numbers(names, f"{topics_prefix(prefix)}{shard}")


def replay(records: Iterable[bytes | None]) -> tuple[list[dict], int]:
    """The whole batches of a generation's records, in order, up to the first that is not
    whole (nothing after it was acknowledged); and how many records follow the last of them."""
    assembler = codec.Fragments()
    batches: list[dict] = []
    records = list(records)
    used = 0  # records up to the end of the last whole batch
    for i, value in enumerate(records):
        try:
            fragment = codec.decode_batch_fragment(value)
        except codec.CodecError:
            break
        if fragment.piece == 0 and assembler.open:  # the batch before was cut short
            break
        blob = assembler.add(fragment)
        if assembler.broken:
            break
        if blob is not None:
            batches.append(unpack(blob))
            used = i + 1
    return batches, len(records) - used


class Changelog:
    def __init__(
        self,
        connection: Connection,
        admin: AdminClient,
        prefix: str,
        shard: int,
        replication_factor: int,
        producer: Producer,
        checkpoint_min_bytes: int,
    ) -> None:
        self.connection = connection
        self.prefix = prefix
        self.shard = shard
        self.replication_factor = replication_factor
        self.producer = producer
        self.admin = admin  # the aggregator's one: a fresh client's first request waits ~50 ms to connect
        self.generation = 0  # the one written now (0: none yet)
        self.batch = 0  # the next batch's id in it
        # A checkpoint once the deltas since the last one hold as many bytes as it did (or
        # checkpoint_min_bytes while the state is small): the log stays under about twice
        # the state, and writing checkpoints costs at most as much as writing deltas.
        self.checkpoint_min_bytes = checkpoint_min_bytes
        self.checkpoint_bytes = 0
        self.since_checkpoint = 0  # bytes of deltas written after it
        self.retire_at: float | None = None  # when the generations before ours may go (monotonic)

    @property
    def topic(self) -> str:
        return topic_of(self.prefix, self.shard, self.generation)

    def _generations(self) -> list[int]:
        return generations(kafka.describe_partitions(self.admin, 30), self.prefix, self.shard)

    def is_newest(self) -> bool:
        """No one started a newer generation than ours (blocking): the shard was not owned
        elsewhere since."""
        existing = self._generations()
        return bool(existing) and existing[-1] == self.generation

    def recover(self) -> list[dict]:
        """The batches to replay: the newest generation with a whole checkpoint (blocking)."""
        for generation in reversed(self._generations()):
            topic = topic_of(self.prefix, self.shard, generation)
            batches, unread = replay(m.value() for m in kafka.read_partition(self.connection, topic, 0, timeout=120))
            if unread:
                log.warning("%s: its last %d record(s) are a batch cut short, not replayed", topic, unread)
            if batches and batches[0].get("kind") == CHECKPOINT:
                return batches
            log.warning("%s holds no whole checkpoint (its writer died writing it); trying the one before", topic)
        return []

    def wants_checkpoint(self) -> bool:
        return self.generation == 0 or self.since_checkpoint >= max(self.checkpoint_min_bytes, self.checkpoint_bytes)

    def start_generation(self, checkpoint: bytes, on_delivery: kafka.DeliveryTracker) -> None:
        """Create the next generation and write `checkpoint` as its first batch (blocking;
        acknowledged with the other records). Raises Superseded if another writer took over."""
        existing = self._generations()
        if existing and existing[-1] > self.generation and self.generation:
            raise Superseded(f"shard {self.shard}: generation {existing[-1]} is newer than ours, {self.generation}")
        generation = max(existing, default=0) + 1
        topic = topic_of(self.prefix, self.shard, generation)
        future = self.admin.create_topics([kafka.new_topic(topic, 1, self.replication_factor)], request_timeout=30)[
            topic
        ]
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                raise Superseded(f"shard {self.shard}: another writer created generation {generation}") from None
            raise kafka.KafkaUnavailable(f"cannot create {topic}: {exc}") from None
        kafka.wait_for_topics(self.admin, {topic: 1})
        faults.point("aggregator.mid_checkpoint")  # a generation without its checkpoint
        self.generation, self.batch = generation, 0
        self.checkpoint_bytes, self.since_checkpoint = len(checkpoint), 0
        self.retire_at = time.monotonic() + RETIRE_AFTER
        self._write(checkpoint, on_delivery)

    def append(self, delta: bytes, on_delivery: kafka.DeliveryTracker) -> None:
        self.since_checkpoint += len(delta)
        self._write(delta, on_delivery)

    def _write(self, blob: bytes, on_delivery: kafka.DeliveryTracker) -> None:
        for record in codec.encode_batch(self.batch, blob):
            kafka.produce(self.producer, self.topic, record, partition=0, on_delivery=on_delivery)
        self.batch += 1

    def retire(self) -> None:
        """Delete the generations before ours (blocking), once its checkpoint is acknowledged
        and RETIRE_AFTER has passed since it began: librdkafka (from 2.5) crashes in a consumer
        whose topic is deleted, so readers (a state directory's journal) let go of a superseded
        generation first, and are given the time to."""
        if self.retire_at is None or time.monotonic() < self.retire_at:
            return
        self.retire_at = None
        old = [topic_of(self.prefix, self.shard, g) for g in self._generations() if g < self.generation]
        if not old:
            return
        for topic, future in self.admin.delete_topics(old, operation_timeout=30).items():
            try:
                future.result()
            except KafkaException as exc:  # the next checkpoint tries again
                log.warning("could not delete %s: %s", topic, exc)
