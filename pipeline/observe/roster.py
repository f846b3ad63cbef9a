"""The roster: every worker's latest status report, every role's crash report and every
chunks writer's lease, read from the status topic.

Workers report their assignment, progress and peak memory to a compacted topic, in
generations (pipeline/generations.py: the newest two are read), keyed by worker id (schemas/status.v1.json). Whatever the backend (process, container, Mesos
task), this is how a controller learns that a worker is consuming, which partitions it
owns, and how fast it works while busy. A clean stop leaves a tombstone. Supervisors
report each role's crashes there too, keyed `crashes:<role>` (pipeline/observe/crash_reports.py),
and writers their leases on chunks generations, keyed `writer:<id>` (pipeline/ingest/chunk_topics.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pipeline import codec, generations, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.kafka import TopicPartition
from pipeline.observe.crash_reports import KEY_PREFIX, CrashMetrics

log = logging.getLogger(__name__)
LOOK_SECONDS = 1.0  # how often the status generations are looked for
READER_PREFIX = "reader:"  # a state directory's journal: the chunks generations it still reads


class Roster:
    def __init__(self, connection: Connection, topics: TopicSettings) -> None:
        # A group id that is never joined nor committed: partitions are assigned.
        self.consumer = kafka.consumer(connection, "wordpipe-roster")
        self.admin = kafka.admin(connection)
        self.base = topics.status
        self.reading: list[str] = []  # the status generations read (pipeline/generations.py)
        self.next_look = 0.0
        self.statuses: dict[str, codec.WorkerStatus] = {}
        self.crashes: dict[str, codec.CrashReport] = {}  # by role
        self.leases: dict[str, codec.WriterLease] = {}  # by writer
        self.readers: dict[str, codec.WriterLease] = {}  # chunks generations a reader other than workers holds
        self.seen: dict[str, float] = {}  # worker or writer -> time.monotonic() its last report was read
        self.generation: dict[bytes, int] = {}  # key -> the generation its last report came from
        # A thread lets go of unread generations however seldom `refresh` is called: a
        # librdkafka consumer holding a topic that is deleted crashes (pipeline/generations.py).
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._looker = threading.Thread(target=self._keep_looking, name="roster-look", daemon=True)
        self._looker.start()

    def _keep_looking(self) -> None:
        while not self._stop.wait(LOOK_SECONDS):
            with self.lock:
                self.look()

    def look(self) -> None:
        """Read the newest two status generations, letting go of older ones (they will be deleted)."""
        if time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + LOOK_SECONDS
        try:
            wanted = generations.status_read(kafka.topic_names(self.admin, timeout=2.0), self.base)
        except kafka.KafkaUnavailable:
            return  # read on what we read
        gone = [TopicPartition(t, 0) for t in self.reading if t not in wanted]
        # From offset 0, not the broker's "earliest": on Tansu that can skip a first report that
        # workers wrote at once (README: Tansu, measured), a crash report copied once among them.
        new = [TopicPartition(t, 0, 0) for t in wanted if t not in self.reading]
        if gone:
            self.consumer.incremental_unassign(gone)
            self.forget({generations.number(tp.topic) for tp in gone})
        if new:
            self.consumer.incremental_assign(new)
        self.reading = wanted

    def refresh(self, timeout: float = 0.0) -> dict[str, codec.WorkerStatus]:
        """Read every report that arrived since the last call; returns the latest per worker."""
        with self.lock:
            self.look()
            return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, codec.WorkerStatus]:
        while True:
            batch = self.consumer.consume(num_messages=500, timeout=timeout)
            timeout = 0.0
            if not batch:
                return self.statuses
            for msg in batch:
                key = msg.key()
                if msg.error() or key is None or not self.newest_of(key, msg.topic() or ""):
                    continue
                name = key.decode(errors="replace")
                if name.startswith(KEY_PREFIX):
                    _keep(self.crashes, name.removeprefix(KEY_PREFIX), msg.value(), codec.decode_crashes)
                    continue
                if name.startswith(generations.LEASE_PREFIX):
                    name = name.removeprefix(generations.LEASE_PREFIX)
                    _keep(self.leases, name, msg.value(), codec.decode_lease)
                elif name.startswith(READER_PREFIX):  # seen under its whole key: no worker is called so
                    _keep(self.readers, name.removeprefix(READER_PREFIX), msg.value(), codec.decode_lease)
                else:
                    _keep(self.statuses, name, msg.value(), codec.decode_status)
                self.seen[name] = time.monotonic()

    def forget(self, numbers: set[int]) -> None:
        """Reports last made in generations no longer read: their makers are gone (everyone
        else reports again within seconds, and crash reports are copied forward)."""
        for key in [k for k, n in self.generation.items() if n in numbers]:
            del self.generation[key]
            name = key.decode(errors="replace")
            if name.startswith(KEY_PREFIX):
                self.crashes.pop(name.removeprefix(KEY_PREFIX), None)
            elif name.startswith(generations.LEASE_PREFIX):
                self.leases.pop(name.removeprefix(generations.LEASE_PREFIX), None)
            elif name.startswith(READER_PREFIX):
                self.readers.pop(name.removeprefix(READER_PREFIX), None)
            else:
                self.statuses.pop(name, None)

    def newest_of(self, key: bytes, topic: str) -> bool:
        """Whether a report from `topic` may stand: none of its key came from a newer generation."""
        n = generations.number(topic)
        if n < self.generation.get(key, 0):
            return False
        self.generation[key] = n
        return True

    def assignments(self, workers: list[str]) -> dict[str, tuple[int, ...]]:
        """Chunks partitions each of `workers` last reported owning (none if it has not reported)."""
        return {w: self.statuses[w].partitions if w in self.statuses else () for w in workers}

    def close(self) -> None:
        self._stop.set()
        self._looker.join()
        self.consumer.close()


def _keep(latest: dict, name: str, value: bytes | None, decode: Callable[[bytes], object]) -> None:
    """The last report of `name`: a tombstone removes it, a bad one is skipped."""
    if value is None:
        latest.pop(name, None)
        return
    try:
        latest[name] = decode(value)
    except codec.CodecError as exc:
        log.warning("ignoring a bad report of %s on the status topic: %s", name, exc)


class RosterMetrics:
    """A Prometheus collector of every worker's last report: workers have no HTTP port of
    their own (there may be hundreds, on any host), so a service that reads the roster
    exports them; and of every role's crash report, whose supervisors may have none either."""

    def __init__(self, roster: Roster) -> None:
        self.roster = roster

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        chunks = CounterMetricFamily(
            "wordpipe_worker_chunks", "Chunks a worker counted since it started", labels=["worker"]
        )
        busy = CounterMetricFamily(
            "wordpipe_worker_busy_seconds", "Seconds a worker spent counting and publishing", labels=["worker"]
        )
        rss = GaugeMetricFamily("wordpipe_worker_peak_rss_bytes", "A worker's peak resident memory", labels=["worker"])
        owned = GaugeMetricFamily("wordpipe_worker_partitions", "Chunks partitions a worker owns", labels=["worker"])
        for worker, status in list(self.roster.statuses.items()):
            chunks.add_metric([worker], status.chunks)
            busy.add_metric([worker], status.busy_seconds)
            rss.add_metric([worker], status.peak_rss_kb * 1024)
            owned.add_metric([worker], len(status.partitions))
        yield from (chunks, busy, rss, owned)
        yield from CrashMetrics(lambda: dict(self.roster.crashes)).collect()
