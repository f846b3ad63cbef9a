"""Which chunks generation a writer writes (pipeline/generations.py), when it starts the
next, and its lease on the older ones it may still write.

A document goes whole into one generation: its chunks and end share a partition. After
`generation_bytes` a writer creates the next generation (partials first, then chunks)
and sends new documents there; an upload in progress finishes where it began. Every
second the writer's lease names its generations on the status topic, and the assigner
retires none a lease named in the last LEASE_SECONDS (pipeline/generations.py). A writer whose lease has not been
acknowledged for FENCE_SECONDS (a partition, a long pause) writes nothing until it is
again, and then drops the documents of any generation retired meanwhile: their uploads
fail and are retried, never written into a deleted topic (which the embedded broker
acknowledges and loses).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from pipeline import codec, generations, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.kafka import Producer

log = logging.getLogger("wordpipe.ingest")

FENCE_SECONDS = 20.0
RENEW_SECONDS = 1.0


class Fenced(kafka.KafkaUnavailable):
    """A write into a generation this writer can no longer vouch for."""


class ChunkTopics:
    def __init__(self, connection: Connection, topics: TopicSettings, writer: str, producer: Producer) -> None:
        self.topics = topics
        self.admin = kafka.admin(connection)
        self.writer = writer
        self.producer = producer  # the writer's own: its lease goes out beside its chunks
        self.current = 0  # N of the generation new documents go to
        self.written = 0  # bytes of chunks this writer sent to it
        self.open: Counter[int] = Counter()  # documents in progress, by generation
        self.lost: set[int] = set()  # generations retired while our lease had lapsed
        self.renewed = time.monotonic()  # when a lease of ours was last acknowledged
        self.next_renewal = 0.0
        self.status_topic = generations.status_current((), topics.status)  # where leases go

    def start(self) -> list[int]:
        """Write to the newest generation, creating the first (blocking); returns the live ones."""
        names = kafka.topic_names(self.admin)
        self.status_topic = generations.status_current(names, self.topics.status)
        live = generations.live(names, self.topics.chunks)
        if not live:
            kafka.create_generation(self.admin, self.topics, 1)
            live = [1]
        self.current = live[-1]
        self.renew()
        return live

    def topic(self, n: int | None = None) -> str:
        return generations.topic(self.topics.chunks, self.current if n is None else n)

    @property
    def due(self) -> bool:
        """This writer filled its generation: the next document should start a new one."""
        return self.written >= self.topics.generation_bytes

    def rotate(self) -> None:
        """Create the next generation and write there (blocking). A tick in another thread
        may follow it there first, and two uploads may rotate at once: both land on it."""
        n = self.current + 1
        kafka.create_generation(self.admin, self.topics, n)
        self.current = max(self.current, n)
        self.written = 0
        log.info("chunks now go to %s", self.topic())
        self.renew()

    def begin(self) -> str:
        """A document starts: the generation it goes to whole."""
        self.open[self.current] += 1
        return self.topic()

    def end(self, topic: str) -> None:
        n = generations.number(topic)
        self.open[n] -= 1
        if self.open[n] <= 0:
            del self.open[n]

    def wrote(self, nbytes: int) -> None:
        self.written += nbytes

    def check(self, topic: str) -> None:
        """Raise Fenced unless this writer may write `topic` now."""
        n = generations.number(topic)
        if n in self.lost:
            raise Fenced(f"{topic} was retired while this writer could not renew its lease; retry the upload")
        if self.lapsed:
            raise Fenced(f"this writer's lease on {topic} is {time.monotonic() - self.renewed:.0f} s old; retry")

    @property
    def lapsed(self) -> bool:
        return time.monotonic() - self.renewed > FENCE_SECONDS

    def tick(self, force: bool = False) -> None:
        """Renew the lease and follow the generations (blocking: one metadata request);
        call it about every second (`force`: now)."""
        if time.monotonic() < self.next_renewal and not force:
            return
        self.next_renewal = time.monotonic() + RENEW_SECONDS
        lapsed = self.lapsed
        names = kafka.topic_names(self.admin)
        self.status_topic = generations.status_current(names, self.topics.status)
        self.follow(names, lapsed)
        self.renew()

    def follow(self, names: set[str], lapsed: bool) -> None:
        """Follow a newer generation another writer started; after a lapse, give up the
        generations retired meanwhile."""
        live = generations.live(names, self.topics.chunks)
        if live and live[-1] > self.current:
            self.current, self.written = live[-1], 0
        if lapsed:
            gone = {n for n in list(self.open) if n not in live}  # list(): at once, as uploads change it
            if gone:
                log.error("generations %s were retired while our lease had lapsed: their uploads fail", sorted(gone))
            self.lost |= gone
            if self.current not in live and live:
                self.current, self.written = live[-1], 0

    def renew(self) -> None:
        """Send the lease: the current generation and every one a document is open in."""
        held = tuple(sorted({self.current, *self.open}))
        sent = time.monotonic()

        def on_delivery(err, msg) -> None:
            if err is None:
                self.renewed = max(self.renewed, sent)

        lease = codec.encode_lease(codec.WriterLease(self.writer, held, time.time()))
        # A full queue: renewed next second; a lapse fences us, which is safe.
        kafka.try_produce(
            self.producer, self.status_topic, lease, 0, (generations.LEASE_PREFIX + self.writer).encode(), on_delivery
        )
