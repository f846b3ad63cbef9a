"""Crash reports: each role's crashes under the one rule (pipeline/supervisor.py), shown
wherever someone looks.

Whoever relaunches a role (`wordpipe up`'s and `wordpipe run`'s supervisors, the autoscaler's
controller) runs in a process of its own, maybe on another machine, so it reports on the
status topic, keyed `crashes:<role>` (schemas/crashes.v1.json): a handful of small records,
the last one per role wins. The roster reads them back for the results API (`/v1/status`,
the dashboard, metrics) and the autoscaler (its status and metrics).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pipeline import codec, generations, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.supervisor import CrashLoop

KEY_PREFIX = "crashes:"


def report_of(role: str, loop: CrashLoop) -> codec.CrashReport:
    """`loop` as a record; its times (monotonic) turned into Unix times."""
    now = time.time()
    offset = now - time.monotonic()
    held = min(loop.held, default=None)
    return codec.CrashReport(
        role=role,
        crashes=loop.crashes,
        in_a_row=loop.in_a_row,
        restarts=loop.restarts,
        looping=loop.looping,
        backoff_seconds=loop.delay if loop.held else 0.0,
        restart_at=None if held is None else held + offset,
        last_exit=loop.last_exit[: codec.CRASH_TEXT_LIMIT],
        last_crash_at=None if loop.last_crash_at is None else loop.last_crash_at + offset,
        at=now,
    )


def view(reports: Mapping[str, codec.CrashReport]) -> dict[str, dict]:
    """The reports as status endpoints show them: by role, roles in order."""
    return {
        role: {k: v for k, v in dataclasses.asdict(report).items() if k != "role"}
        for role, report in sorted(reports.items())
    }


class CrashReporter:
    """Publishes a supervisor's crash reports (a `Report` of pipeline/supervisor.py)."""

    def __init__(self, connection: Connection, topics: TopicSettings) -> None:
        self.base = topics.status
        self.topic = generations.status_current((), topics.status)
        self.admin = kafka.admin(connection)
        self.producer = kafka.producer(connection)

    def publish(self, role: str, loop: CrashLoop) -> None:
        value = codec.encode_crashes(report_of(role, loop))
        try:  # a crash is rare: look for the newest status generation now
            self.topic = generations.status_current(kafka.topic_names(self.admin, timeout=2.0), self.base)
        except kafka.KafkaUnavailable:
            pass  # queued for the last one seen; the assigner copies crash reports into each new one
        kafka.produce(self.producer, self.topic, value, 0, key=(KEY_PREFIX + role).encode())
        self.producer.poll(0)  # serve delivery callbacks; the record goes out within linger.ms

    def close(self, timeout: float = 5.0) -> None:
        self.producer.flush(timeout)  # the last reports: a role's final state outlives its supervisor


class CrashMetrics:
    """A Prometheus collector of the crash reports `reports` returns, by role."""

    def __init__(self, reports: Callable[[], Mapping[str, codec.CrashReport]]) -> None:
        self.reports = reports

    def collect(self) -> Iterator[Metric]:
        crashes = CounterMetricFamily(
            "wordpipe_service_crashes", "Crashes of a role since its supervisor started", labels=["role"]
        )
        restarts = CounterMetricFamily(
            "wordpipe_service_restarts", "Exits of a role relaunched, crashes or not", labels=["role"]
        )
        in_a_row = GaugeMetricFamily(
            "wordpipe_service_crashes_in_a_row", "A role's crashes in a row: 2 or more is a crash loop", labels=["role"]
        )
        held = GaugeMetricFamily(
            "wordpipe_service_backoff_seconds", "How long a role's relaunch is held back now (0: none)", labels=["role"]
        )
        for role, report in sorted(self.reports().items()):
            crashes.add_metric([role], report.crashes)
            restarts.add_metric([role], report.restarts)
            in_a_row.add_metric([role], report.in_a_row)
            held.add_metric([role], report.backoff_seconds)
        yield from (crashes, restarts, in_a_row, held)
