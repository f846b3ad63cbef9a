"""The policy in the simulator: the issue's convergence, calm and drain targets, and the CLI."""

import json
import subprocess
import sys

import pytest

from pipeline.autoscaler.policy import Policy
from pipeline.autoscaler.simulate import ScenarioError, compare, scenario, simulate


def test_a_step_converges_in_two_decisions_without_reversals():
    r = simulate(Policy(), scenario("step"))
    after_step = [d for d in r.actions if d.at >= 600]
    assert r.final_workers == r.expected_workers == 6
    assert len(after_step) <= 2 and len(r.actions) == len(after_step)
    assert r.reversals == 0


@pytest.mark.parametrize("seed", range(5))
def test_noise_of_30_percent_moves_at_most_once_per_half_hour(seed):
    r = simulate(Policy(), scenario("noisy", seed=seed))
    assert len(r.actions) <= r.timeline[-1][0] // 1800
    assert r.final_workers == r.expected_workers


def test_a_spike_drains_within_the_catch_up_target():
    policy = Policy()
    r = simulate(policy, scenario("spike"))
    assert 0.8 * policy.catch_up_seconds <= r.drain_seconds <= 1.2 * policy.catch_up_seconds
    assert r.final_workers == r.expected_workers and r.reversals == 0


def test_a_ramp_ends_at_the_expected_count_and_never_reverses():
    r = simulate(Policy(), scenario("ramp"))
    assert r.final_workers == r.expected_workers == 12 and r.reversals == 0
    assert all(d.action == "up" for d in r.actions)


def test_the_keda_style_policy_flaps_where_ours_does_not():
    ours, keda = compare(Policy(), scenario("noisy"))
    assert len(ours.actions) == 0 and keda.reversals > 5


def test_traces_and_their_errors(tmp_path):
    trace = tmp_path / "load.csv"
    trace.write_text("seconds,records_per_second\n0,100\n600,300\n")
    r = simulate(Policy(), scenario(str(trace)))
    assert r.expected_workers == 4 and r.final_workers == 4
    trace.write_text("0,100\n60,fast\n")
    with pytest.raises(ScenarioError, match="line 2: expected 'seconds,records_per_second'"):
        scenario(str(trace))
    with pytest.raises(ScenarioError, match="'wave' is not one of step, ramp, spike, noisy"):
        scenario("wave")


def test_the_cli_prints_json_and_plots(tmp_path):
    png = tmp_path / "step.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "autoscale",
            "simulate",
            "--scenario",
            "step",
            "--json",
            "--compare",
            "keda",
            "--plot",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"decisions", "final_workers", "expected_workers", "reversals", "drain_seconds"} <= out.keys()
    assert out["final_workers"] == out["expected_workers"] and out["compare"]["keda-style"]["decisions"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
