"""Which partials generations the aggregator consumes, and the deletion of those it is done
with (pipeline/generations.py, step 3).

Changing a faust subscription is a consumer-group rebalance, so generations are
subscribed AHEAD of the writers (created empty: nothing waits for them), and those done
with are dropped in batches, at most one resubscription every RESUBSCRIBE_EVERY seconds.
partials.gN is done with once chunks.gN is deleted (no window of it can come again), a
newer generation has been there for QUIET_SECONDS (source windows go to the newest's
partials, which workers look up every second), and the aggregator's group has committed
it to its end (acks follow durable flushes). It is deleted DELETE_AFTER seconds after it
was dropped from the subscription, once its readers let go of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline import generations, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.kafka import AdminClient, TopicPartition
from pipeline.source_topics import input_of

log = logging.getLogger("wordpipe.aggregator")

AHEAD = 8
RESUBSCRIBE_EVERY = 20.0
QUIET_SECONDS = 10.0
DELETE_AFTER = 10.0


@dataclass
class Change:
    """A new subscription: the generations to consume, and those it no longer has."""

    topics: list[str]
    dropped: list[str] = field(default_factory=list)


class PartialsTopics:
    def __init__(self, connection: Connection, admin: AdminClient, topics: TopicSettings, group: str) -> None:
        self.connection = connection
        self.topics = topics
        self.admin = admin
        self.offsets = kafka.consumer(connection, group)  # committed offsets only
        self.subscribed: set[int] = set()
        self.newer_since: dict[int, float] = {}  # N -> time.monotonic() a generation newer than N was first seen
        self.deletions: dict[str, float] = {}  # dropped topic -> when it may be deleted
        self.resubscribed = time.monotonic()
        self.chunks: set[int] = set()  # the chunks generations there at the last step

    def names(self) -> list[str]:
        return [generations.topic(self.topics.partials, n) for n in sorted(self.subscribed)]

    def start(self) -> list[str]:
        """The generations to consume at start: every one there, and AHEAD more (blocking)."""
        names = kafka.topic_names(self.admin)
        newest = generations.newest(names, self.topics.chunks) or 1
        self.subscribed = set(generations.numbers(names, self.topics.partials)) | self.ahead(newest)
        self.create(names)
        return self.names()

    def ahead(self, newest: int) -> set[int]:
        return set(range(newest, newest + AHEAD + 1))

    def create(self, names: set[str]) -> None:
        missing = [n for n in sorted(self.subscribed) if generations.topic(self.topics.partials, n) not in names]
        partials = [kafka.generation_specs(self.topics, n)[0] for n in missing]  # chunks come with their writers
        kafka.create(self.admin, partials)

    def step(self) -> Change | None:
        """A new subscription if one is due (blocking); deletes the dropped generations due."""
        now = time.monotonic()
        names = kafka.topic_names(self.admin)
        for topic, at in list(self.deletions.items()):
            if now >= at:
                kafka.delete(self.admin, [topic])
                del self.deletions[topic]
        newest = generations.newest(names, self.topics.chunks) or 1
        for n in self.subscribed:
            if n < newest:
                self.newer_since.setdefault(n, now)
        chunks = self.chunks = set(generations.numbers(names, self.topics.chunks))
        done = [
            n
            for n in sorted(self.subscribed)
            if n not in chunks and n < newest and now - self.newer_since.get(n, now) >= QUIET_SECONDS
        ]
        short = max(self.subscribed, default=0) <= newest + 1  # writers are about to need more
        if not short and (not done or now - self.resubscribed < RESUBSCRIBE_EVERY):
            return None
        dropped = [n for n in done if self.acknowledged(generations.topic(self.topics.partials, n))]
        deleting = {generations.number(topic) for topic in self.deletions}
        present = set(generations.numbers(names, self.topics.partials)) - deleting  # a writer may have made some
        wanted = ((self.subscribed | present) - set(dropped)) | self.ahead(newest)
        if wanted == self.subscribed:
            return None
        self.subscribed = wanted
        self.create(names)
        self.resubscribed = now
        for n in dropped:
            self.newer_since.pop(n, None)
        lost = [generations.topic(self.topics.partials, n) for n in dropped]
        for topic in lost:
            self.deletions[topic] = now + DELETE_AFTER
        if lost:
            log.info("done with %s: dropped from the subscription, deleted in %.0f s", ", ".join(lost), DELETE_AFTER)
        return Change(self.names(), lost)

    def finished(self, chunks_topic: str) -> bool:
        """No window of `chunks_topic` can come again: it is deleted, and its partials are no
        longer consumed (their applied offsets can go: ShardState.forget)."""
        found = generations.of(chunks_topic)
        if found is None or found[0] != self.topics.chunks or not self.chunks:
            return False
        n = found[1]
        return n not in self.chunks and n not in self.subscribed and n < max(self.chunks)

    def acknowledged(self, topic: str) -> bool:
        """The aggregator's group committed every record of `topic` (blocking)."""
        if topic not in kafka.topic_names(self.admin):
            return True
        extents = kafka.topic_extents(self.connection, [topic], timeout=10)
        asked = [TopicPartition(topic, p) for p in range(self.topics.partial_partitions)]
        committed = self.offsets.committed(asked, timeout=10)
        return all(
            extents[input_of(topic, at.partition)][1] == 0 or at.offset >= extents[input_of(topic, at.partition)][1]
            for at in committed
        )

    def close(self) -> None:
        self.offsets.close()


def assigned_shards(assigned: Iterable[tuple[str, int]], partials: str) -> list[int]:
    """The shards among assigned (topic, partition)s: the partitions of partials generations.
    faust assigns its own topics too (its leader topic's partition 0 to the group's leader
    alone): read as a shard, the leader claimed shard 0 beside its owner, and with two
    instances every whole answer was a 503 until the leader changed."""
    shards = set()
    for topic, partition in assigned:
        found = generations.of(topic)
        if found is not None and found[0] == partials:
            shards.add(partition)
    return sorted(shards)
