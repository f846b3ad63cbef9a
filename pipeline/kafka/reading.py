"""Reading Kafka without joining a group: a partition to its end, every partition's extent,
and the newest record of a one-partition topic."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from pipeline.config import Connection
from pipeline.kafka.clients import KafkaUnavailable, admin, consumer
from pipeline.kafka.topics import describe_partitions
from pipeline.source_topics import input_of


def read_partition(
    connection: Connection, topic: str, partition: int = 0, timeout: float = 30.0, limit: int | None = None
) -> list[Any]:
    """The records of one partition, oldest first, up to its end now or the first `limit` (blocking)."""
    reader = consumer(connection, "wordpipe-reader", **{"enable.partition.eof": True})
    try:
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
    ends. Raises KafkaUnavailable naming a topic that does not exist."""
    partitions = describe_partitions(admin(connection), timeout)
    missing = [t for t in topics if t not in partitions]
    if missing:
        raise KafkaUnavailable(f"no topic {', '.join(map(repr, missing))} on {connection.bootstrap}")
    reader = consumer(connection, "wordpipe-reader", **{"enable.partition.eof": True})
    try:
        extents: dict[str, tuple[int, int]] = {}
        tail = []
        for topic in topics:
            for p in range(partitions[topic]):
                low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                extents[input_of(topic, p)] = (low, high)
                if high > low:
                    tail.append(TopicPartition(topic, p, high - 1))
        reader.assign(tail)
        waiting = {input_of(tp.topic, tp.partition) for tp in tail}
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read the ends of {sorted(waiting)} within {timeout:.0f} s")
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
            low, end = extents[name]
            extents[name] = (low, max(end, (msg.offset() or 0) + 1))
        return extents
    finally:
        reader.close()


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
