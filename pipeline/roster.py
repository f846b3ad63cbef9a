"""The roster: every worker's latest status report, read from the status topic.

Workers report their assignment, progress and peak memory to a compacted topic keyed by
worker id (schemas/status.v1.json). Whatever the backend (process, container, Mesos
task), this is how a controller learns that a worker is consuming, which partitions it
owns, and how fast it works while busy. A clean stop leaves a tombstone.
"""

from __future__ import annotations

import logging

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline import codec, kafka
from pipeline.config import Connection, TopicSettings

log = logging.getLogger(__name__)


class Roster:
    def __init__(self, connection: Connection, topics: TopicSettings) -> None:
        # A group id that is never joined nor committed: partitions are assigned.
        self.consumer = Consumer(kafka.consumer_config(connection, "wordpipe-roster"))
        self.consumer.assign([TopicPartition(topics.status, 0, OFFSET_BEGINNING)])
        self.statuses: dict[str, codec.WorkerStatus] = {}

    def refresh(self, timeout: float = 0.0) -> dict[str, codec.WorkerStatus]:
        """Read every report that arrived since the last call; returns the latest per worker."""
        while True:
            batch = self.consumer.consume(num_messages=500, timeout=timeout)
            timeout = 0.0
            if not batch:
                return self.statuses
            for msg in batch:
                key = msg.key()
                if msg.error() or key is None:
                    continue
                worker = key.decode(errors="replace")
                if msg.value() is None:
                    self.statuses.pop(worker, None)
                    continue
                try:
                    self.statuses[worker] = codec.decode_status(msg.value())
                except codec.CodecError as exc:
                    log.warning("ignoring a bad status report of %s: %s", worker, exc)

    def assignments(self, workers: list[str]) -> dict[str, tuple[int, ...]]:
        """Chunks partitions each of `workers` last reported owning (none if it has not reported)."""
        return {w: self.statuses[w].partitions if w in self.statuses else () for w in workers}

    def close(self) -> None:
        self.consumer.close()


class RosterMetrics:
    """A Prometheus collector of every worker's last report: workers have no HTTP port of
    their own (there may be hundreds, on any host), so a service that reads the roster
    exports them."""

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
