"""The autoscaling policy's invariants, for arbitrary metric sequences (hypothesis)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.autoscaler import policy_file
from pipeline.autoscaler.policy import (
    DECISION_REASONS,
    Policy,
    PolicyError,
    State,
    adds_capacity,
    capacity,
    decide,
    fewest_workers_for,
    round_up_to_useful,
)
from pipeline.observe.metrics import Metrics


@st.composite
def policies(draw):
    scale_to_zero = draw(st.booleans())
    min_workers = draw(st.integers(0 if scale_to_zero else 1, 6))
    return Policy(
        min_workers=min_workers,
        max_workers=draw(st.integers(max(1, min_workers), 40)),
        target_utilization=draw(st.floats(0.3, 1.0)),
        catch_up_seconds=draw(st.floats(10, 600)),
        stabilization_seconds=draw(st.floats(0, 600)),
        cooldown_seconds=draw(st.floats(0, 120)),
        max_step_up=draw(st.integers(1, 10)),
        max_step_down=draw(st.integers(1, 10)),
        scale_to_zero=scale_to_zero,
        activation_lag=draw(st.integers(0, 1000)),
        tolerance=draw(st.floats(0, 0.5)),
    )


maybe_rate = st.one_of(st.none(), st.floats(0, 5000))
tick = st.fixed_dictionaries(
    {
        "dt": st.floats(1, 120),
        "lag": st.one_of(st.none(), st.floats(0, 1e6)),
        "arrival_rate": maybe_rate,
        "arrival_trend": maybe_rate,
        "processing_rate": maybe_rate,
        "worker_rate": st.one_of(st.none(), st.floats(0.1, 1000)),
        "lag_growth": st.one_of(st.none(), st.floats(-1e4, 1e4)),
        "age": st.one_of(st.just(0.0), st.floats(0, 300)),
        "follow": st.booleans(),  # the backend did what was decided, or reports something else
        "workers": st.integers(0, 50),
    }
)


@settings(max_examples=300, deadline=None)
@given(policies(), st.integers(1, 48), st.lists(tick, min_size=1, max_size=40))
def test_invariants_hold_for_any_metric_sequence(policy, partitions, ticks):
    state, at, workers = State(), 0.0, policy.min_workers
    last_action_at = None
    window: list[tuple[float, int]] = []
    ceiling = min(policy.max_workers, partitions)
    floor = 0 if policy.scale_to_zero else min(policy.min_workers, ceiling)
    for t in ticks:
        at += t["dt"]
        if not t["follow"]:
            workers = t["workers"]
        m = Metrics(
            at,
            workers,
            partitions,
            t["lag"],
            t["arrival_rate"],
            t["processing_rate"],
            t["worker_rate"],
            t["lag_growth"],
            t["age"],
            t["arrival_trend"],
        )
        d, state = decide(policy, state, m)
        assert d.reason in DECISION_REASONS and d.message and d.current == workers
        assert d.inputs["lag"] == m.lag  # every decision carries its inputs
        acting = {"up": "up", "activate": "up", "down": "down", "idle": "down"}
        assert d.action == acting.get(d.reason, "hold") or d.reason == "bounds", f"{d.reason} but {d.action}"
        if d.recommendation is not None:
            window = [(a, n) for a, n in window if at - a < policy.stabilization_seconds] + [(at, d.recommendation)]
        if m.lag is None or m.arrival_rate is None or m.age > policy.stale_after_seconds:
            assert d.action == "hold" or (d.reason == "bounds" and workers < floor), "acted on stale or missing metrics"
        if d.action != "hold":
            assert floor <= d.desired <= ceiling
            assert d.desired in (floor, 0) or adds_capacity(partitions, d.desired), (
                f"{d.desired} adds nothing over {d.desired - 1}"
            )
            assert last_action_at is None or at - last_action_at >= policy.cooldown_seconds, "acted during the cooldown"
            last_action_at = at
        if d.action == "up" and d.reason == "up":
            assert d.desired <= round_up_to_useful(partitions, workers + policy.max_step_up)
        if d.action == "down" and d.reason != "bounds":
            lag = m.lag
            assert d.desired >= max(n for _, n in window), "scaled down below the stabilization window's highest"
            assert workers - d.desired <= policy.max_step_down or not any(
                adds_capacity(partitions, n) for n in range(d.desired + 1, workers - policy.max_step_down + 1)
            )
            growing = lag > 0 and (
                (m.lag_growth or 0) > 0 or (m.processing_rate is not None and m.arrival_rate > m.processing_rate)
            )
            assert not growing, "scaled down while the lag grows"
            rate = m.worker_rate if m.worker_rate else policy.assumed_worker_rate
            drain = capacity(partitions, d.desired) * rate - m.arrival_rate
            assert lag == 0 or (drain > 0 and lag / drain <= policy.catch_up_seconds), (
                "scaled down below what drains the backlog"
            )
        if t["follow"]:
            workers = d.desired


@given(st.integers(1, 64), st.floats(0, 80))
def test_fewest_workers_is_the_smallest_that_reaches_the_need(partitions, needed):
    n = fewest_workers_for(partitions, needed)
    if needed <= 0:
        assert n == 0
        return
    assert n == partitions or capacity(partitions, n) >= needed - 1e-9
    assert n == 1 or capacity(partitions, n - 1) < needed
    assert adds_capacity(partitions, n)


def test_counts_that_add_nothing_are_skipped():
    assert [n for n in range(1, 13) if adds_capacity(12, n)] == [1, 2, 3, 4, 6, 12]
    assert fewest_workers_for(12, 4.5) == 6  # 5 workers are no faster than 4 on 12 partitions


def metrics(**kw):
    base = dict(
        at=1000.0,
        workers=4,
        partitions=12,
        lag=0.0,
        arrival_rate=300.0,
        processing_rate=300.0,
        worker_rate=100.0,
        lag_growth=0.0,
        age=0.0,
        arrival_trend=300.0,
    )
    return Metrics(**{**base, **kw})


def test_the_formula_and_a_readable_reason():
    d, _ = decide(Policy(catch_up_seconds=100), State(), metrics(lag=20_000, lag_growth=50.0, arrival_rate=400.0))
    assert d.inputs["needed_workers"] == pytest.approx((400 + 20_000 / 100) / (100 * 0.8))
    assert d.desired == 12 and d.reason == "up"  # 6 are too few for 7.5, and 7..11 are no faster than 6
    assert "demand 600.0/s (arrival 400.0/s + lag 20000 over 100 s) needs 7.50 workers" in d.message


def test_lag_from_a_group_without_commits_counts_and_stale_metrics_hold():
    d, _ = decide(Policy(), State(), metrics(age=500.0, lag=1e6))
    assert d.action == "hold" and d.reason == "stale"
    d, _ = decide(Policy(), State(), metrics(lag=None))
    assert d.action == "hold" and d.reason == "stale"


def test_the_floor_is_kept_before_any_metrics():
    d, _ = decide(Policy(min_workers=2), State(), metrics(workers=0, lag=None, arrival_rate=None))
    assert (d.action, d.desired, d.reason) == ("up", 2, "bounds")
    d, _ = decide(Policy(max_workers=2), State(), metrics(workers=5, lag=None, arrival_rate=None))
    assert d.action == "hold" and d.reason == "stale", "a ceiling read from stale partitions must not scale down"


def test_scale_to_zero_and_activation():
    p = Policy(min_workers=0, scale_to_zero=True, activation_lag=100, stabilization_seconds=0, cooldown_seconds=0)
    d, _ = decide(p, State(), metrics(workers=2, lag=0.0, arrival_rate=0.0, arrival_trend=0.0, processing_rate=0.0))
    assert (d.desired, d.reason) == (0, "idle")
    d, _ = decide(
        p,
        State(),
        metrics(workers=0, lag=50.0, arrival_rate=0.0, arrival_trend=0.0, processing_rate=0.0, lag_growth=0.0),
    )
    assert d.desired == 0, "woke below the activation threshold"
    d, _ = decide(
        p,
        State(),
        metrics(workers=0, lag=500.0, arrival_rate=10.0, arrival_trend=10.0, processing_rate=0.0, lag_growth=10.0),
    )
    assert (d.desired, d.reason) == (1, "activate")


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_workers = 'lots'", "max_workers: expected int, got 'lots'"),
        ("target_utilization = 1.5", "target_utilization: must be in (0, 1]"),
        ("min_workers = 0", "min_workers: 0 needs scale_to_zero = true"),
        ("cooldown = 3", "cooldown: unknown policy setting"),
        ("max_step_up = 0", "max_step_up: must be >= 1"),
        ("offset_reset = 'middle'", "offset_reset: must be 'earliest' or 'latest'"),
        ("min_workers = [", "policy file"),
    ],
)
def test_bad_policy_files_name_the_field(tmp_path, text, message):
    f = tmp_path / "policy.toml"
    f.write_text(text + "\n")
    with pytest.raises(PolicyError) as info:
        policy_file.load(f)
    assert message in str(info.value)


def test_policy_file_reloads_and_keeps_the_last_good_one(tmp_path):
    f = tmp_path / "policy.toml"
    f.write_text("max_workers = 4\n")
    watched = policy_file.PolicyFile(f)
    assert watched.current().max_workers == 4
    f.write_text("max_workers = 6\n")
    bump = f.stat().st_mtime_ns + 1_000_000
    import os

    os.utime(f, ns=(bump, bump))
    assert watched.current().max_workers == 6
    f.write_text("max_workers = -1\n")
    os.utime(f, ns=(bump + 1_000_000, bump + 1_000_000))
    assert watched.current().max_workers == 6 and "max_workers" in watched.error
    assert math.isfinite(watched.current().catch_up_seconds)


def test_scale_down_waits_for_the_stabilization_window_and_a_draining_lag():
    p = Policy(stabilization_seconds=300, cooldown_seconds=0)
    busy = dict(workers=6, arrival_rate=450.0, arrival_trend=450.0, processing_rate=450.0)
    quiet = dict(workers=6, arrival_rate=150.0, arrival_trend=150.0, processing_rate=150.0)
    d, state = decide(p, State(), metrics(at=0.0, **busy))
    assert (d.action, d.recommendation) == ("hold", 6)
    d, state = decide(p, state, metrics(at=60.0, **quiet))
    assert (d.action, d.reason) == ("hold", "stabilizing") and d.recommendation == 2
    d, state = decide(p, state, metrics(at=400.0, **{**quiet, "lag": 5000.0, "lag_growth": 20.0}))
    assert (d.action, d.reason) == ("hold", "lag-growing")
    # The trend says 3 workers will do, but at the current arrival rate 3 would drain this lag in 1000 s.
    d, state = decide(
        p,
        state,
        metrics(
            at=410.0, **{**quiet, "lag": 10_000.0, "lag_growth": -5.0, "arrival_rate": 290.0, "processing_rate": 300.0}
        ),
    )
    assert (d.action, d.reason, d.recommendation) == ("hold", "backlog", 3)
    d, state = decide(p, state, metrics(at=420.0, **quiet))
    assert (d.action, d.desired) == ("down", 3) and "scaling down 6 -> 3" in d.message  # 3: recommended at 410 s
