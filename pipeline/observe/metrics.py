"""Pure: what the lag watch measured (lag.py), as the autoscaler's policy decides on it and
the results API shows it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metrics:
    """What the monitor measured, at time `at` (seconds)."""

    at: float
    workers: int  # running now, as the backend lists them, or held back by the crash-loop back-off
    partitions: int  # of the chunks topic
    lag: float | None  # records not yet processed, summed over partitions
    arrival_rate: float | None  # records/s into the topic, over the last tick
    processing_rate: float | None  # records/s committed by the group
    worker_rate: float | None = None  # records/s of one busy worker (DS2's true rate); None until measured
    lag_growth: float | None = None  # records/s: how fast the lag changed lately
    age: float = 0.0  # seconds since the newest of these was read
    arrival_trend: float | None = None  # records/s into the topic over a longer window; None until measured
