"""Reading Kafka without joining a group: a partition to its end, every partition's extent,
the first record from an offset, and the newest record of a one-partition topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.config import Connection
from pipeline.kafka.clients import KafkaUnavailable, admin, consumer
from pipeline.kafka.topics import describe_partitions
from pipeline.source_topics import input_of, split_input


def read_partition(
    connection: Connection, topic: str, partition: int = 0, timeout: float = 30.0, limit: int | None = None
) -> list[Any]:
    """The records of one partition, oldest first, up to its end now or the first `limit` (blocking)."""
    reader = consumer(connection, "wordpipe-reader", **{"enable.partition.eof": True})
    try:
        # A partition that never held a record ends at 0 on any broker: no fetch to wait out
        # (Tansu holds an empty one for all of fetch.wait.max.ms).
        try:
            if reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1] == 0:
                return []
        except KafkaException as exc:
            raise KafkaUnavailable(f"reading {topic}: {exc}") from None
        reader.assign([TopicPartition(topic, partition, 0)])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = reader.poll(0.2)
            if msg is None:
                continue
            if error := msg.error():
                if error.code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaUnavailable(f"reading {topic}: {error.str()}")
            out.append(msg)
            if len(out) == limit:
                return out
        raise KafkaUnavailable(f"could not read {topic} to its end within {timeout:.0f} s")
    finally:
        reader.close()


def topic_extents(connection: Connection, topics: list[str], timeout: float = 30.0) -> dict[str, tuple[int, int]]:
    """ "topic:partition" -> (first offset, end offset) of every partition of `topics` now.

    The end is read, not asked for: Tansu reports the base offset of a partition's last
    record batch + 1 as its high watermark, so the last batch is fetched to see where it
    ends. Where the broker says a partition starts past offset 0, or holds nothing, its
    first record is read too, from offset 0: Tansu's "earliest" is the batch it stored
    first, which two producers writing at once can put past the lowest offset, and even at
    the end it reports (on a cluster whose retention dropped offset 0, the read starts at
    the first record kept). Raises KafkaUnavailable naming a topic that does not exist."""
    partitions = describe_partitions(admin(connection), timeout)
    missing = [t for t in topics if t not in partitions]
    if missing:
        raise KafkaUnavailable(f"no topic {', '.join(map(repr, missing))} on {connection.bootstrap}")
    reader = consumer(connection, "wordpipe-reader", **{"enable.partition.eof": True})
    try:
        extents: dict[str, tuple[int, int]] = {}
        for topic in topics:
            for p in range(partitions[topic]):
                extents[input_of(topic, p)] = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        doubtful = [
            TopicPartition(*split_input(name), 0) for name, (low, high) in extents.items() if low > 0 or high <= low
        ]
        for name, offset in _first_offsets(reader, doubtful, timeout).items():
            extents[name] = (offset, max(extents[name][1], offset + 1))
        tails = [TopicPartition(*split_input(name), high - 1) for name, (low, high) in extents.items() if high > low]
        for name, offset in _last_offsets(reader, tails, timeout).items():
            extents[name] = (extents[name][0], max(extents[name][1], offset + 1))
        return extents
    finally:
        reader.close()


def first_offset_from(
    connection: Connection, topic: str, partition: int, offset: int, timeout: float = 30.0
) -> int | None:
    """The offset of the first record at or after `offset` in one partition; None if there is
    none now (blocking)."""
    reader = consumer(connection, "wordpipe-reader", **{"enable.partition.eof": True})
    try:
        found = _first_offsets(reader, [TopicPartition(topic, partition, offset)], timeout)
        return found.get(input_of(topic, partition))
    finally:
        reader.close()


def _first_offsets(reader: Consumer, start: list[TopicPartition], timeout: float) -> dict[str, int]:
    """The offset of the first record read from each of `start` (none for an empty partition)."""
    firsts: dict[str, int] = {}
    _read_to_eof(reader, start, timeout, lambda name, offset: firsts.setdefault(name, offset), first_only=True)
    return firsts


def _last_offsets(reader: Consumer, start: list[TopicPartition], timeout: float) -> dict[str, int]:
    """The offset of the last record read from each of `start` to its end."""
    lasts: dict[str, int] = {}
    _read_to_eof(reader, start, timeout, lambda name, offset: lasts.__setitem__(name, max(offset, lasts.get(name, 0))))
    return lasts


def _read_to_eof(
    reader: Consumer,
    start: list[TopicPartition],
    timeout: float,
    on_record: Callable[[str, int], object],
    first_only: bool = False,
) -> None:
    """Read each of `start` to its end (or, `first_only`, to its first record), telling
    `on_record` each record's partition and offset."""
    if not start:
        return
    reader.assign(start)
    waiting = {input_of(tp.topic, tp.partition) for tp in start}
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read {sorted(waiting)} within {timeout:.0f} s")
            msg = reader.poll(0.2)
            if msg is None:
                continue
            at_topic, at_partition = msg.topic(), msg.partition()
            if at_topic is None or at_partition is None:  # an error of the consumer's, not a partition's
                name = "the consumer"
            else:
                name = input_of(at_topic, at_partition)
            if error := msg.error():
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaUnavailable(f"reading {name}: {error.str()}")
                waiting.discard(name)
                continue
            on_record(name, msg.offset() or 0)
            if first_only:
                waiting.discard(name)
    finally:
        reader.unassign()


class Follower:
    """The newest record of a one-partition topic, read from its start (a compacted topic of
    one key: the assignment)."""

    def __init__(self, connection: Connection, topic: str) -> None:
        # A group id that is never joined nor committed: the partition is assigned.
        self.consumer = consumer(connection, "wordpipe-follower")
        self.consumer.assign([TopicPartition(topic, 0, 0)])

    def latest(self) -> bytes | None:
        """The value of the newest record that arrived since the last call; None if none did."""
        newest = None
        while batch := self.consumer.consume(num_messages=100, timeout=0):
            for msg in batch:
                if not msg.error() and msg.value() is not None:
                    newest = msg.value()
        return newest

    def close(self) -> None:
        self.consumer.close()
