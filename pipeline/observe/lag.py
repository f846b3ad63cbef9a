"""The lag monitor: reads the workers' group offsets and status reports, and turns them
into the policy's Metrics.

Lag per partition = end offset - committed offset. A partition the group never
committed lags by end - start under `offset_reset = earliest` (where a new worker
would begin), by 0 under `latest`: KEDA reports such partitions wrongly. Arrival rate
comes from end offsets over time, processing rate from committed offsets over time,
and a worker's true rate from its own reports: records per second spent busy (DS2).

On Tansu the high watermark is the base offset of the last record batch + 1, so lag
reads low by at most one batch per partition; rates are unaffected over a window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import generations, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.kafka import KafkaError, KafkaException, OffsetSpec, TopicPartition
from pipeline.observe import crash_reports
from pipeline.observe.metrics import Metrics
from pipeline.observe.roster import Roster

log = logging.getLogger(__name__)


def partition_lag(low: int, high: int, committed: int | None, offset_reset: str) -> int:
    """Records of one partition the group has yet to process."""
    if committed is None or committed < 0:  # never committed: where would a worker start?
        return high - low if offset_reset == "earliest" else 0
    return max(0, high - max(committed, low))


def position(low: int, high: int, committed: int | None, offset_reset: str) -> int:
    """Where the group stands in one partition (for processing rates)."""
    if committed is None or committed < 0:
        return low if offset_reset == "earliest" else high
    return max(committed, low)


@dataclass(frozen=True)
class Sample:
    at: float
    ends: int  # sum of end offsets
    positions: int  # sum of the group's positions
    lag: int


def rates(samples: list[Sample], window: float) -> tuple[float | None, float | None, float | None, float | None]:
    """(arrival over the last interval, arrival over `window`, processing over `window`,
    lag growth over the last interval) from samples oldest first, the first at or beyond
    the window's start; None where they do not reach back far enough."""
    if len(samples) < 2:
        return None, None, None, None
    last, before = samples[-1], samples[-2]
    dt = last.at - before.at
    recent = (last.ends - before.ends) / dt if dt > 0 else None
    growth = (last.lag - before.lag) / dt if dt > 0 else None
    oldest = samples[0]  # the caller keeps one sample at or beyond the window's start
    span = last.at - oldest.at
    trend = (last.ends - oldest.ends) / span if span >= window else None
    processing = (last.positions - oldest.positions) / span if span > 0 else None
    return recent, trend, processing, growth


RATE_WINDOW = 120.0  # seconds of samples behind the arrival trend
# A first offset moves only by retention (never on Tansu): read this often, a stale one
# overstates a partition's lag only by records that retention dropped before they were counted.
FIRST_OFFSETS_EVERY = 60.0


def generations_of(topics: Iterable[str], base: str) -> list[str]:
    return [t for t in topics if (found := generations.of(t)) is not None and found[0] == base]


class Totals:
    """Sums over topics that never fall when a topic goes (a chunks generation is deleted
    once counted): a gone topic's last figure stays in the sum."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, int]] = {}  # figure -> topic -> its last value
        self.gone: dict[str, int] = {}  # figure -> the sum of gone topics' last values

    def add(self, figure: str, values: dict[str, int]) -> int:
        last = self.last.setdefault(figure, {})
        self.gone[figure] = self.gone.get(figure, 0) + sum(v for t, v in last.items() if t not in values)
        self.last[figure] = dict(values)
        return self.gone[figure] + sum(values.values())


class LagMonitor:
    def __init__(
        self,
        connection: Connection,
        topics: TopicSettings,
        group: str,
        offset_reset: str = "earliest",
        window: float = RATE_WINDOW,
    ) -> None:
        """The lag of the workers' `group` over the chunks and source `topics`."""
        self.topics = topics
        self.offset_reset = offset_reset
        self.window = window
        # The workers' group id, to read its commits; never joins, never commits.
        self.consumer = kafka.consumer(connection, group)
        self.admin = kafka.admin(connection)
        self.lows: dict[tuple[str, int], int] = {}  # each partition's first offset, as last asked
        self.lows_due = 0.0
        self.roster = Roster(connection, topics)
        self.samples: deque[Sample] = deque()
        self.last_read_at: float | None = None
        self.lag_by_topic: dict[str, int] = {}  # as of the last read that answered
        self.totals = Totals()

    def read(self, workers: list[str], now: float | None = None) -> Metrics:
        """Metrics now; lag is None (stale: the policy holds) when the broker does not answer.

        The work waiting is the chunks topic's and every source topic's (counted in records
        alike: a worker's rate is records per busy second over both); `lag_by_topic` keeps
        each topic's part, for views."""
        now = time.time() if now is None else now
        base = self.topics.chunks
        resets = {src.topic: self.topics.source_start for src in self.topics.source_list}
        try:
            listed = self.consumer.list_topics(timeout=5).topics
            resets |= {t: self.offset_reset for t in generations_of(listed, base)}
            offsets = self._offsets({topic: sorted(listed[topic].partitions) for topic in resets if topic in listed})
        except KafkaException as exc:
            log.warning("cannot read the group's offsets: %s", exc)
            return self._stale(now, len(workers), self.topics.chunk_partitions)
        known = {topic: parts for topic, parts in offsets.items() if parts is not None}
        sources = [t for t in known if t not in generations_of(known, base)]
        # A worker reads a chunks partition in every generation: capacity counts partitions once.
        partitions = self.topics.chunk_partitions + sum(len(known[t]) for t in sources)
        if not generations_of(offsets, base) or len(known) < len(offsets):
            return self._stale(now, len(workers), partitions)
        by_topic = {
            topic: sum(partition_lag(low, high, committed, resets[topic]) for low, high, committed in parts)
            for topic, parts in known.items()
        }
        self.lag_by_topic = {t: n for t, n in by_topic.items() if t in sources} | {
            base: sum(n for t, n in by_topic.items() if t not in sources)
        }
        lag = sum(self.lag_by_topic.values())
        sample = Sample(
            now,
            self.totals.add("ends", {t: sum(high for _, high, _ in parts) for t, parts in known.items()}),
            self.totals.add(
                "positions",
                {t: sum(position(*offset, resets[t]) for offset in parts) for t, parts in known.items()},
            ),
            lag,
        )
        self.samples.append(sample)
        while len(self.samples) > 2 and now - self.samples[1].at >= self.window:
            self.samples.popleft()  # samples[0] stays the newest at or beyond the window's start
        self.last_read_at = now
        recent, trend, processing, growth = rates(list(self.samples), self.window)
        return Metrics(
            at=now,
            workers=len(workers),
            partitions=partitions,
            lag=float(lag),
            arrival_rate=recent,
            processing_rate=processing,
            worker_rate=self.worker_rate(workers),
            lag_growth=growth,
            age=0.0,
            arrival_trend=trend,
        )

    def _offsets(self, partitions: dict[str, list[int]]) -> dict[str, list[tuple[int, int, int]] | None]:
        """(low, high, the group's committed offset) of each partition of each topic; None for a
        topic whose marks are missing (deleted meanwhile). One request for the commits and one
        for the ends, whatever the partitions: on Tansu each partition asked costs a listing of
        all its batches (a source topic only grows), so the first offsets, which only retention
        moves, are asked again only every FIRST_OFFSETS_EVERY seconds."""
        asked = [TopicPartition(topic, p) for topic, ps in partitions.items() for p in ps]
        if not asked:
            return {}
        committed = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.committed(asked, timeout=5)}
        highs = self._list(asked, OffsetSpec.latest())
        now = time.monotonic()
        if now >= self.lows_due or any((tp.topic, tp.partition) not in self.lows for tp in asked):
            self.lows = {k: v for k, v in self._list(asked, OffsetSpec.earliest()).items() if v is not None}
            self.lows_due = now + FIRST_OFFSETS_EVERY
        out: dict[str, list[tuple[int, int, int]] | None] = {}
        for topic, ps in partitions.items():
            marks = [(self.lows.get((topic, p)), highs.get((topic, p)), committed[topic, p]) for p in ps]
            known = [(low, high, c) for low, high, c in marks if low is not None and high is not None]
            out[topic] = known if len(known) == len(ps) else None
        return out

    def _list(self, asked: list[TopicPartition], spec: OffsetSpec) -> dict[tuple[str, int], int | None]:
        """Each partition's offset by `spec`; None where its topic is gone."""
        found: dict[tuple[str, int], int | None] = {}
        for tp, future in self.admin.list_offsets({tp: spec for tp in asked}, request_timeout=5).items():
            try:
                found[tp.topic, tp.partition] = future.result().offset
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
                found[tp.topic, tp.partition] = None
        return found

    def deadletters(self) -> int | None:
        """Records on the dead-letter topic (None: Kafka did not answer)."""
        try:
            marks = self.consumer.get_watermark_offsets(TopicPartition(self.topics.deadletter, 0), timeout=5)
        except KafkaException:
            return None
        return None if marks is None else marks[1] - marks[0]

    def worker_rate(self, workers: list[str]) -> float | None:
        """Chunks per busy second of the live workers, pooled (DS2's true processing rate)."""
        live = set(workers)
        statuses = [st for w, st in self.roster.refresh().items() if w in live]
        busy = sum(st.busy_seconds for st in statuses)
        return sum(st.chunks for st in statuses) / busy if busy > 0.5 else None

    def _stale(self, now: float, workers: int, partitions: int) -> Metrics:
        age = now - (self.last_read_at if self.last_read_at is not None else 0.0)  # never read: as old as can be
        return Metrics(
            at=now, workers=workers, partitions=partitions, lag=None, arrival_rate=None, processing_rate=None, age=age
        )

    def close(self) -> None:
        self.consumer.close()
        self.roster.close()


class Watch:
    """`LagMonitor.read` every `interval` seconds on a thread, for views that must not block
    on Kafka (the results API's status and dashboard); the crash reports come with it."""

    def __init__(self, connection: Connection, topics: TopicSettings, group: str, interval: float = 2.0) -> None:
        self.monitor = LagMonitor(connection, topics, group)
        self.interval = interval
        self.latest: Metrics | None = None
        self.deadletters: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                workers = list(self.monitor.roster.refresh())
                self.latest = self.monitor.read(workers)
                self.deadletters = self.monitor.deadletters()
            except Exception as exc:  # a view: never worth dying for
                log.warning("lag watch: %s", exc)
            self._stop.wait(self.interval)

    def view(self) -> dict:
        m = self.latest
        read = m is not None and m.lag is not None
        return {
            "lag": int(m.lag) if m is not None and m.lag is not None else None,
            "workers": m.workers if m is not None else 0,
            "arrival_rate": m.arrival_rate if m is not None else None,
            "processing_rate": m.processing_rate if m is not None else None,
            "lag_by_topic": dict(self.monitor.lag_by_topic) if read else {},
            "deadletters": self.deadletters,
            "crashes": crash_reports.view(dict(self.monitor.roster.crashes)),
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.monitor.close()
