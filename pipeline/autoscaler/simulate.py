"""Try a policy against a model of workers, second by second, with no broker at all.

    result = simulate(policy, scenario("step"), WorkerModel())

The model: each worker processes `rate` records/s once `startup_seconds` after its
launch; every change in the set of running workers pauses them all for
`rebalance_seconds`; n workers over P partitions go only as fast as the busiest, which
owns ceil(P/n) partitions. Every `interval` seconds the controller reads lag, rates
(trends over `rate_window` seconds, as the live monitor's) and the busy workers' true rate, and the policy
decides, exactly as it does live. `keda_decide` is a KEDA-style policy on the same
model: ceil(total lag / lagThreshold) with the HPA's defaults.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.autoscaler.policy import (
    Decision,
    Policy,
    State,
    capacity,
    decide,
    fewest_workers_for,
    round_down_to_useful,
)
from pipeline.errors import UsageError
from pipeline.observe.metrics import Metrics

REVERSAL_WINDOW = 300.0  # an up then a down (or a down then an up) within this is a reversal
SCENARIOS = ("step", "ramp", "spike", "noisy")


class ScenarioError(UsageError):
    pass


@dataclass(frozen=True)
class WorkerModel:
    rate: float = 100.0  # records/s of one busy worker
    startup_seconds: float = 5.0
    rebalance_seconds: float = 3.0


@dataclass(frozen=True)
class Scenario:
    name: str
    duration: int  # seconds
    arrival: Callable[[int], float]  # records/s during second t
    partitions: int = 12
    nominal_rate: float | None = None  # the load without its noise, if it is noisy: sizes the start and the expectation


def scenario(name: str, seed: int = 0) -> Scenario:
    """A named load shape, or a CSV trace of `seconds,records_per_second` rows (stepwise)."""
    if name == "step":  # steady, then three times the load for good
        return Scenario("step", 3600, lambda t: 150.0 if t < 600 else 400.0)
    if name == "ramp":  # up from 50/s to 900/s over 40 minutes, then flat
        return Scenario("ramp", 3600, lambda t: 50.0 + 850.0 * min(t, 2400) / 2400)
    if name == "spike":  # a 70-second burst of 12x, more than the partitions can take, then back
        return Scenario("spike", 2400, lambda t: 2500.0 if 600 <= t < 670 else 200.0)
    if name == "noisy":  # 450/s +-30%, redrawn every 10 s, for 90 minutes
        rng = random.Random(seed)
        levels = [450.0 * rng.uniform(0.7, 1.3) for _ in range(5400 // 10 + 1)]
        return Scenario("noisy", 5400, lambda t: levels[t // 10], nominal_rate=450.0)
    path = Path(name)
    if path.suffix == ".csv":
        return trace_scenario(path)
    raise ScenarioError(f"scenario: {name!r} is not one of {', '.join(SCENARIOS)} nor a .csv trace")


def trace_scenario(path: Path) -> Scenario:
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as exc:
        raise ScenarioError(f"scenario: cannot read {path}: {exc.strerror}") from None
    points: list[tuple[float, float]] = []
    for i, row in enumerate(rows, 1):
        if not row or row[0].strip().startswith("#") or (i == 1 and not _is_number(row[0])):
            continue  # blank, comment or header
        if len(row) != 2 or not _is_number(row[0]) or not _is_number(row[1]) or float(row[1]) < 0:
            raise ScenarioError(
                f"scenario: {path} line {i}: expected 'seconds,records_per_second' (rate >= 0), got {','.join(row)!r}"
            )
        points.append((float(row[0]), float(row[1])))
    if not points:
        raise ScenarioError(f"scenario: {path} has no rows")
    points.sort()

    def arrival(t: int) -> float:
        rate = points[0][1]
        for at, r in points:
            if at > t:
                break
            rate = r
        return rate

    return Scenario(path.stem, int(points[-1][0]) + 600, arrival)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Result:
    scenario: str
    policy: str
    decisions: list[Decision]
    timeline: list[tuple[float, float, float, int]]  # (second, arrival/s, lag, workers)
    expected_workers: int
    catch_up_seconds: float

    @property
    def actions(self) -> list[Decision]:
        return [d for d in self.decisions if d.action != "hold"]

    @property
    def final_workers(self) -> int:
        return self.timeline[-1][3]

    @property
    def reversals(self) -> int:
        acts = self.actions
        return sum(
            1 for a, b in zip(acts, acts[1:], strict=False) if a.action != b.action and b.at - a.at < REVERSAL_WINDOW
        )

    @property
    def drain_seconds(self) -> float | None:
        """From the highest lag to the first second the lag is below one second of arrivals."""
        peak = max(range(len(self.timeline)), key=lambda i: self.timeline[i][2])
        if self.timeline[peak][2] <= self.timeline[peak][1]:
            return 0.0  # never a backlog
        for t, arrival, lag, _ in self.timeline[peak:]:
            if lag <= arrival:
                return float(t - self.timeline[peak][0])
        return None

    @property
    def worker_seconds(self) -> int:
        return sum(w for _, _, _, w in self.timeline)

    def summary(self) -> dict:
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "decisions": [
                {"at": d.at, "from": d.current, "to": d.desired, "reason": d.reason, "message": d.message}
                for d in self.actions
            ],
            "final_workers": self.final_workers,
            "expected_workers": self.expected_workers,
            "reversals": self.reversals,
            "drain_seconds": self.drain_seconds,
            "catch_up_seconds": self.catch_up_seconds,
            "max_lag": max(lag for _, _, lag, _ in self.timeline),
            "worker_seconds": self.worker_seconds,
        }


def expected_workers(policy: Policy, model: WorkerModel, partitions: int, arrival: float) -> int:
    """The analytically right count for a steady `arrival`: enough at the target utilization."""
    ceiling = min(policy.max_workers, partitions)
    floor = 0 if policy.scale_to_zero and arrival == 0 else max(policy.min_workers, 1 if arrival > 0 else 0)
    n = fewest_workers_for(partitions, arrival / (model.rate * policy.target_utilization))
    return round_down_to_useful(partitions, min(max(n, floor), ceiling), floor)


Decide = Callable[[Policy, State, Metrics], tuple[Decision, State]]


@dataclass
class _Cluster:
    partitions: int
    model: WorkerModel
    launched: list[float] = field(default_factory=list)  # launch times, oldest first
    paused_until: float = -1.0
    ready_before: int = 0

    def capacity(self, t: int) -> float:
        ready = sum(1 for at in self.launched if t >= at + self.model.startup_seconds)
        if ready != self.ready_before:  # membership changed: everyone rebalances
            self.paused_until = t + self.model.rebalance_seconds
            self.ready_before = ready
        return 0.0 if t < self.paused_until else capacity(self.partitions, ready) * self.model.rate

    def scale(self, t: int, desired: int) -> None:
        if desired > len(self.launched):
            self.launched += [float(t)] * (desired - len(self.launched))
        else:
            del self.launched[desired:]  # the newest go first


def simulate(
    policy: Policy,
    sc: Scenario,
    model: WorkerModel = WorkerModel(),
    interval: int = 10,
    rate_window: int = 120,
    decide_fn: Decide = decide,
    name: str = "wordpipe",
) -> Result:
    initial = expected_workers(
        policy, model, sc.partitions, sc.nominal_rate if sc.nominal_rate is not None else sc.arrival(0)
    )
    cluster = _Cluster(sc.partitions, model, [-1e9] * initial, ready_before=initial)
    lag = 0.0
    arrivals: list[float] = []
    processed: list[float] = []
    lags: list[float] = []
    timeline: list[tuple[float, float, float, int]] = []
    decisions = []
    state = State()
    measured_rate: float | None = None
    for t in range(sc.duration):
        arrival = sc.arrival(t)
        cap = cluster.capacity(t)
        lag += arrival
        done = min(lag, cap)
        lag -= done
        if done > 0:  # workers report records / busy seconds: their true rate (DS2), busy or not
            measured_rate = model.rate
        arrivals.append(arrival)
        processed.append(done)
        lags.append(lag)
        if t > 0 and t % interval == 0:
            window = slice(max(0, t + 1 - rate_window), t + 1)
            span = len(arrivals[window])
            m = Metrics(
                at=float(t),
                workers=len(cluster.launched),
                partitions=sc.partitions,
                lag=lag,
                arrival_rate=sum(arrivals[t + 1 - interval : t + 1]) / interval,
                arrival_trend=sum(arrivals[window]) / span if t + 1 >= rate_window else None,
                processing_rate=sum(processed[window]) / span,
                worker_rate=measured_rate,
                lag_growth=(lag - lags[t - interval]) / interval,
            )
            decision, state = decide_fn(policy, state, m)
            decisions.append(decision)
            cluster.scale(t, decision.desired)
        timeline.append((t, arrival, lag, len(cluster.launched)))
    final_arrival = (
        sc.nominal_rate if sc.nominal_rate is not None else sum(arrivals[-rate_window:]) / len(arrivals[-rate_window:])
    )
    expected = expected_workers(policy, model, sc.partitions, final_arrival)
    return Result(sc.name, name, decisions, timeline, expected, policy.catch_up_seconds)


# -- the KEDA-style comparison -----------------------------------------------------


@dataclass(frozen=True)
class KedaStyle:
    """KEDA's Kafka scaler feeding the HPA, with their defaults where they have one."""

    lag_threshold: float  # target lag per replica (KEDA `lagThreshold`)
    activation_lag: float = 0.0  # KEDA `activationLagThreshold`
    tolerance: float = 0.1  # HPA: no change within 10% of the target
    scale_down_stabilization: float = 300.0  # HPA default
    sync_period: float = 15.0  # HPA default

    def decide(self, policy: Policy, state: State, m: Metrics) -> tuple[Decision, State]:
        ceiling = min(policy.max_workers, m.partitions)  # KEDA: allowIdleConsumers=false caps at partitions
        floor = policy.min_workers
        lag = m.lag or 0.0
        current = max(m.workers, 1)
        ratio = lag / (self.lag_threshold * current)
        if m.workers > 0 and abs(ratio - 1) <= self.tolerance:
            raw = m.workers
        else:
            raw = math.ceil(lag / self.lag_threshold) if lag > self.activation_lag else 0
        raw = min(max(raw, floor), ceiling)
        window = tuple((at, n) for at, n in state.recommendations if m.at - at < self.scale_down_stabilization) + (
            (m.at, raw),
        )
        desired = raw
        if raw < m.workers:
            desired = max(n for _, n in window)
        elif raw > m.workers:  # HPA scale-up policy: at most double, or +4, per period
            desired = min(raw, max(2 * m.workers, m.workers + 4))
        desired = min(desired, ceiling)
        reason = "up" if desired > m.workers else "down" if desired < m.workers else "steady"
        message = f"KEDA-style: ceil(lag {lag:.0f} / {self.lag_threshold:.0f}) = {raw}"
        decision = Decision(m.at, m.workers, desired, raw, reason, message, {"lag": lag})
        return decision, State(window, m.at if desired != m.workers else state.last_action_at)


def keda_for(model: WorkerModel) -> KedaStyle:
    """A lagThreshold a KEDA user would pick: ten seconds of one worker's work."""
    return KedaStyle(lag_threshold=10 * model.rate)


def compare(policy: Policy, sc: Scenario, model: WorkerModel = WorkerModel()) -> tuple[Result, Result]:
    ours = simulate(policy, sc, model)
    keda = simulate(
        policy,
        sc,
        model,
        interval=int(keda_for(model).sync_period),
        decide_fn=keda_for(model).decide,
        name="keda-style",
    )
    return ours, keda


def plot(results: list[Result], path: Path) -> None:
    """Arrival rate, lag and workers over time, one line per policy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ScenarioError("--plot needs matplotlib: pip install 'wordpipe[plot]'") from None
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(9, 7))
    first = results[0]
    axes[0].plot([t / 60 for t, *_ in first.timeline], [a for _, a, _, _ in first.timeline], color="gray")
    axes[0].set_ylabel("arrival (records/s)")
    for r in results:  # each on its own clock: a live run is sampled, not simulated second by second
        minutes = [t / 60 for t, *_ in r.timeline]
        axes[1].plot(minutes, [lag for _, _, lag, _ in r.timeline], label=r.policy)
        axes[2].step(minutes, [w for *_, w in r.timeline], where="post", label=r.policy)
    axes[1].set_ylabel("lag (records)")
    axes[2].set_ylabel("workers")
    axes[2].axhline(first.expected_workers, color="gray", linestyle=":", label="expected")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper left")
    axes[0].set_title(f"scenario: {first.scenario}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
