"""The autoscaling policy: plain functions over plain data, no I/O.

    decision, state = decide(policy, state, metrics)

Every tick the controller (or the simulator) hands in what it measured; the policy
answers how many workers there should be, and why. The rules, in order:

* stale or missing metrics: hold (never scale down blind);
* the count is kept within [min_workers, min(max_workers, partitions)];
* recommendation = ceil((arrival + lag / catch_up) / (worker_rate * target_utilization)),
  rounded to a count that adds capacity: with P partitions, n workers are only as fast
  as their busiest, which owns ceil(P/n) partitions, so a count with the same ceil(P/n)
  as a smaller one is never chosen;
* scale down only to the highest recommendation of the stabilization window, never
  while the lag grows, and never so far that the backlog would not drain within
  catch_up seconds;
* at most max_step_up / max_step_down workers per action (rounded to the next count that
  adds capacity), then a cooldown;
* optionally down to zero when idle, and back up once the lag passes activation_lag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from pipeline.errors import UsageError
from pipeline.observe.metrics import Metrics

DECISION_REASONS = (
    "stale",
    "bounds",
    "cooldown",
    "up",
    "down",
    "stabilizing",
    "lag-growing",
    "backlog",
    "steady",
    "idle",
    "activate",
)


class PolicyError(UsageError):
    """A bad policy setting; the message names it."""


@dataclass(frozen=True)
class Policy:
    min_workers: int = 1
    max_workers: int = 12
    target_utilization: float = 0.8  # of a worker's measured busy rate
    catch_up_seconds: float = 120.0  # a backlog should drain within this
    stabilization_seconds: float = 300.0  # scale down only to the window's highest recommendation
    cooldown_seconds: float = 45.0  # no action for this long after one (covers start-up and rebalance)
    max_step_up: int = 8
    max_step_down: int = 4
    scale_to_zero: bool = False
    activation_lag: int = 0  # at zero workers, start one once the lag exceeds this
    offset_reset: str = "earliest"  # a partition without a committed offset lags by end - start, or 0 if "latest"
    assumed_worker_rate: float = 50.0  # records/s of one worker, until one is measured
    stale_after_seconds: float = 60.0  # older metrics are not acted on
    tolerance: float = 0.1  # while the lag does not grow, scale up only for this much more demand than capacity

    def __post_init__(self) -> None:
        if self.min_workers < 0:
            raise PolicyError(f"min_workers: must be >= 0, got {self.min_workers}")
        if self.max_workers < max(1, self.min_workers):
            raise PolicyError(f"max_workers: must be >= max(1, min_workers), got {self.max_workers}")
        if self.min_workers == 0 and not self.scale_to_zero:
            raise PolicyError("min_workers: 0 needs scale_to_zero = true")
        if not 0 < self.target_utilization <= 1:
            raise PolicyError(f"target_utilization: must be in (0, 1], got {self.target_utilization}")
        for name in ("catch_up_seconds", "assumed_worker_rate", "stale_after_seconds"):
            if not getattr(self, name) > 0:
                raise PolicyError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("stabilization_seconds", "cooldown_seconds", "activation_lag", "tolerance"):
            if getattr(self, name) < 0:
                raise PolicyError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("max_step_up", "max_step_down"):
            if getattr(self, name) < 1:
                raise PolicyError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.offset_reset not in ("earliest", "latest"):
            raise PolicyError(f"offset_reset: must be 'earliest' or 'latest', got {self.offset_reset!r}")

    @classmethod
    def from_mapping(cls, data: dict, origin: str = "policy") -> Policy:
        """A policy from parsed TOML/YAML; unknown keys and wrong types are named."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in known:
                raise PolicyError(f"{key}: unknown policy setting (in {origin}); known: {', '.join(sorted(known))}")
            kind = known[key].type
            assert isinstance(kind, str)  # annotations are strings here (from __future__ import annotations)
            ok = {
                "int": type(raw) is int,
                "float": type(raw) in (int, float),
                "bool": type(raw) is bool,
                "str": type(raw) is str,
            }[kind]
            if not ok:
                raise PolicyError(f"{key}: expected {kind}, got {raw!r} (in {origin})")
            values[key] = float(raw) if kind == "float" else raw
        return cls(**values)


@dataclass(frozen=True)
class State:
    """What the policy remembers between ticks."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (at, count) within the stabilization window
    last_action_at: float | None = None


@dataclass(frozen=True)
class Decision:
    at: float
    current: int
    desired: int  # == current when holding
    recommendation: int | None  # the unconstrained count, None when metrics are stale
    reason: str  # one of DECISION_REASONS
    message: str  # for humans
    inputs: dict = field(default_factory=dict)

    @property
    def action(self) -> str:
        return "up" if self.desired > self.current else "down" if self.desired < self.current else "hold"


# -- counts that add capacity ---------------------------------------------------


def per_worker_load(partitions: int, workers: int) -> int:
    """Partitions owned by the busiest of `workers`."""
    return math.ceil(partitions / workers)


def capacity(partitions: int, workers: int) -> float:
    """Throughput of `workers`, in units of one worker's rate: the busiest one limits them all."""
    return 0.0 if workers == 0 else partitions / per_worker_load(partitions, min(workers, partitions))


def adds_capacity(partitions: int, workers: int) -> bool:
    """Whether `workers` is faster than `workers - 1` (the first worker always is)."""
    return workers <= 1 or (
        workers <= partitions and per_worker_load(partitions, workers) < per_worker_load(partitions, workers - 1)
    )


def fewest_workers_for(partitions: int, needed: float) -> int:
    """The smallest count whose capacity reaches `needed` worker-equivalents (all partitions at most)."""
    if needed <= 0:
        return 0
    for n in range(1, partitions + 1):
        if capacity(partitions, n) >= needed - 1e-9:
            return n
    return partitions


def round_down_to_useful(partitions: int, workers: int, floor: int) -> int:
    """The smallest count >= floor that is as fast as `workers`."""
    n = workers
    while n - 1 >= max(floor, 1) and not adds_capacity(partitions, n):
        n -= 1
    return n


def round_up_to_useful(partitions: int, workers: int) -> int:
    """The smallest count >= workers that adds capacity over everything below it."""
    n = workers
    while n < partitions and not adds_capacity(partitions, n):
        n += 1
    return n


# -- the decision ---------------------------------------------------------------


def decide(policy: Policy, state: State, m: Metrics) -> tuple[Decision, State]:
    ceiling = min(policy.max_workers, m.partitions)
    floor = 0 if policy.scale_to_zero else min(policy.min_workers, ceiling)
    inputs = {
        "workers": m.workers,
        "partitions": m.partitions,
        "lag": m.lag,
        "arrival_rate": m.arrival_rate,
        "processing_rate": m.processing_rate,
        "worker_rate": m.worker_rate,
        "lag_growth": m.lag_growth,
        "age": m.age,
        "floor": floor,
        "ceiling": ceiling,
    }

    def hold(reason: str, message: str, recommendation: int | None = None) -> tuple[Decision, State]:
        return Decision(m.at, m.workers, m.workers, recommendation, reason, message, inputs), new_state

    def act(desired: int, reason: str, message: str, recommendation: int | None) -> tuple[Decision, State]:
        decision = Decision(m.at, m.workers, desired, recommendation, reason, message, inputs)
        return decision, State(new_state.recommendations, m.at)

    new_state = state
    stale = m.lag is None or m.arrival_rate is None or m.age > policy.stale_after_seconds
    # The floor needs no metrics: a fresh stack's first workers start on its first tick, not
    # once two lag samples give a rate.
    if stale and m.workers >= floor:
        why = "missing" if m.lag is None or m.arrival_rate is None else f"{m.age:.0f} s old"
        return hold("stale", f"metrics {why}: holding at {m.workers}")

    cooling = state.last_action_at is not None and m.at - state.last_action_at < policy.cooldown_seconds
    if m.workers > ceiling or m.workers < floor:
        if cooling:
            assert state.last_action_at is not None
            return hold(
                "cooldown",
                f"{m.workers} workers is outside [{floor}, {ceiling}], but an action was taken "
                f"{m.at - state.last_action_at:.0f} s ago (cooldown {policy.cooldown_seconds:.0f} s)",
            )
        target = round_down_to_useful(m.partitions, min(max(m.workers, floor), ceiling), floor)
        return act(target, "bounds", f"{m.workers} workers is outside [{floor}, {ceiling}]: going to {target}", None)
    assert m.lag is not None and m.arrival_rate is not None  # stale metrics held above, within bounds

    rate = m.worker_rate if m.worker_rate and m.worker_rate > 0 else policy.assumed_worker_rate
    # A growing lag is evidence: size for what arrives now. Otherwise size for the trend,
    # so that noise the workers absorb anyway moves nothing.
    growing = m.lag > 0 and (
        (m.lag_growth is not None and m.lag_growth > 0)
        or (m.processing_rate is not None and m.arrival_rate > m.processing_rate)
    )
    arrival = m.arrival_rate if growing else m.arrival_trend
    if arrival is None:
        return hold("stale", f"no arrival trend measured yet: holding at {m.workers}")
    demand = arrival + m.lag / policy.catch_up_seconds
    needed = demand / (rate * policy.target_utilization)
    idle = m.lag <= policy.activation_lag and m.arrival_rate == 0
    if policy.scale_to_zero and idle:
        recommendation = 0
    else:
        wanted = max(fewest_workers_for(m.partitions, needed), floor, 1 if m.lag > policy.activation_lag else 0)
        recommendation = round_down_to_useful(m.partitions, min(wanted, ceiling), floor)
    inputs.update(
        rate_used=rate,
        arrival_used=arrival,
        demand=demand,
        needed_workers=needed,
        recommendation=recommendation,
        lag_growing=growing,
    )
    window = tuple((at, n) for at, n in state.recommendations if m.at - at < policy.stabilization_seconds) + (
        (m.at, recommendation),
    )
    new_state = State(window, state.last_action_at)
    sizing = (
        f"demand {demand:.1f}/s (arrival {arrival:.1f}/s + lag {m.lag:.0f} over {policy.catch_up_seconds:.0f} s) "
        f"needs {needed:.2f} workers at {rate:.1f}/s and {policy.target_utilization:.0%} utilization"
    )

    if recommendation > m.workers:
        if m.workers > 0 and not growing and needed <= capacity(m.partitions, m.workers) * (1 + policy.tolerance):
            return hold(
                "steady",
                f"{sizing}: within {policy.tolerance:.0%} of what {m.workers} handle, and the lag is not growing",
                recommendation,
            )
        if cooling:
            return hold(
                "cooldown", f"{sizing}: {recommendation} wanted, cooling down after the last action", recommendation
            )
        if m.workers == 0:
            target = recommendation
            return act(
                target,
                "activate",
                f"work for no workers (lag {m.lag:.0f}, activation threshold "
                f"{policy.activation_lag}): {sizing}; starting {target}",
                recommendation,
            )
        target = min(recommendation, round_up_to_useful(m.partitions, m.workers + policy.max_step_up))
        step = f" (step limit {policy.max_step_up})" if target < recommendation else ""
        return act(target, "up", f"{sizing}: scaling up {m.workers} -> {target}{step}", recommendation)

    if recommendation < m.workers:
        stabilized = max(n for _, n in window)
        if stabilized >= m.workers:
            return hold(
                "stabilizing",
                f"{sizing}: {recommendation} would do, but {stabilized} was recommended within "
                f"the last {policy.stabilization_seconds:.0f} s",
                recommendation,
            )
        if growing:
            return hold("lag-growing", f"{sizing}: not scaling down while the lag grows", recommendation)
        target = max(stabilized, m.workers - policy.max_step_down, floor)
        target = round_down_to_useful(m.partitions, target, floor) if target > 0 else 0
        drain_rate = capacity(m.partitions, target) * rate - m.arrival_rate
        if m.lag > 0 and (drain_rate <= 0 or m.lag / drain_rate > policy.catch_up_seconds):
            return hold(
                "backlog",
                f"{sizing}: {target} workers could not drain the lag of {m.lag:.0f} within "
                f"{policy.catch_up_seconds:.0f} s",
                recommendation,
            )
        if cooling:
            return hold("cooldown", f"{sizing}: {target} would do, cooling down after the last action", recommendation)
        if target == 0:
            return act(
                0,
                "idle",
                f"no lag and no arrivals for {policy.stabilization_seconds:.0f} s: scaling to zero",
                recommendation,
            )
        return act(target, "down", f"{sizing}: scaling down {m.workers} -> {target}", recommendation)

    return hold("steady", f"{sizing}: {m.workers} is right", recommendation)
