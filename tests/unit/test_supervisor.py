"""The one crash-loop rule of `wordpipe run`, `wordpipe up` and the autoscaler (pipeline/supervisor.py):
pure, fed with exits and times, and one supervisor of real processes."""

import signal
import sys
import time

import pytest

from pipeline import supervisor
from pipeline.errors import UnavailableError
from pipeline.supervisor import BACKOFF_CAP, CRASH_LOOP_CRASHES, HEALTHY_AFTER, CrashLoop, Supervisor, backoff


class Looping(UnavailableError):
    pass


class Clock:
    """The supervisor's time, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(supervisor, "time", fake)
    return fake


def crash_and_relaunch(loop: CrashLoop, now: float, code: int = 1) -> float:
    """One crash at `now`, relaunched once its delay has passed; returns the delay."""
    loop.exited(code, now)
    (due,) = loop.held
    assert loop.due(due - 0.001) == 0, "relaunched before its back-off passed"
    assert loop.due(due) == 1
    return due - now


def test_crashes_in_a_row_are_relaunched_after_a_growing_capped_delay():
    loop, now, delays = CrashLoop(), 0.0, []
    for _ in range(10):
        delays.append(crash_and_relaunch(loop, now))
        now += delays[-1] + 5  # each relaunch crashes 5 s later
    assert delays == [0, 1, 2, 4, 8, 16, 32, BACKOFF_CAP, BACKOFF_CAP, BACKOFF_CAP]
    assert [backoff(n) for n in range(1, 10)] == delays[:9]
    assert loop.crashes == loop.in_a_row == loop.restarts == 10 and loop.looping


def test_a_role_that_stays_up_a_while_ends_its_row_and_is_relaunched_at_once_again():
    loop = CrashLoop()
    for at in (0.0, 10.0, 20.0):
        crash_and_relaunch(loop, at)
    up_since = loop.started_at
    assert not loop.settle(up_since + HEALTHY_AFTER - 1) and loop.looping
    assert loop.settle(up_since + HEALTHY_AFTER) and not loop.looping and loop.in_a_row == 0
    assert crash_and_relaunch(loop, up_since + HEALTHY_AFTER + 1) == 0
    assert (loop.in_a_row, loop.crashes) == (1, 4)


def test_a_crash_after_a_long_run_ends_the_row_even_if_nobody_settled_it():
    loop = CrashLoop()
    crash_and_relaunch(loop, 0.0)
    crash_and_relaunch(loop, 10.0)
    assert crash_and_relaunch(loop, loop.started_at + HEALTHY_AFTER) == 0 and loop.in_a_row == 1


def test_signals_from_outside_restart_at_once_and_are_not_counted_but_crashes_and_out_of_memory_kills_are():
    loop = CrashLoop()
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert crash_and_relaunch(loop, 0.0, -sig) == 0
    loop.exited(None, 0.0)  # a backend that cannot tell how it ended
    assert loop.due(0.0) == 1
    assert (loop.crashes, loop.in_a_row, loop.restarts) == (0, 0, 5)
    assert loop.last_exit == "exit status unknown"
    for code in (-signal.SIGSEGV, -signal.SIGABRT, 0, 3):
        assert loop.exited(code, 0.0) and loop.due(100.0)
    assert loop.exited(-signal.SIGKILL, 0.0, out_of_memory=True) and loop.last_exit == "killed out of memory"
    assert (loop.crashes, loop.restarts) == (5, 10)


def test_a_signal_from_outside_between_crashes_neither_ends_nor_lengthens_the_row():
    loop = CrashLoop()
    crash_and_relaunch(loop, 0.0)
    crash_and_relaunch(loop, 10.0)
    assert crash_and_relaunch(loop, 20.0, -signal.SIGKILL) == 0
    assert loop.in_a_row == 2 and "SIGKILL (from outside: not counted)" in loop.last_exit
    assert crash_and_relaunch(loop, 30.0) == 2


def test_a_scale_down_cancels_held_back_relaunches_the_last_due_first():
    loop = CrashLoop()
    for at in (0.0, 0.0, 0.0):
        loop.exited(1, at)  # three workers crash together: held back 0, 1 and 2 s
    loop.drop(2)
    assert loop.held == [0.0]
    loop.drop(5)
    assert loop.held == [] and loop.due(100.0) == 0


def test_wordpipe_run_gives_up_at_the_fifth_crash_however_slowly_they_come(tmp_path, clock):
    sup = Supervisor(tmp_path, Looping, one_shot=True)
    (tmp_path / "worker-1.log").write_text("Traceback...\nValueError: a poison record\n")
    for _ in range(CRASH_LOOP_CRASHES - 1):
        sup.exited("workers", 1, tmp_path / "worker-1.log")
        clock.now += 3600  # an hour apart: up long enough to end any row
        assert sup.due("workers") == 1
    with pytest.raises(Looping) as raised:
        sup.exited("workers", 1, tmp_path / "worker-1.log")
    message = str(raised.value)
    assert message.startswith("workers crashed 5 times in this run (the last: exit status 1); giving up.")
    assert f"({tmp_path / 'worker-1.log'}):\nTraceback...\nValueError: a poison record\n" in message


def test_wordpipe_up_gives_up_on_a_slow_loop_the_measured_aggregator_crashing_every_25_seconds(tmp_path, clock):
    sup = Supervisor(tmp_path, Looping)
    log_file = tmp_path / "aggregator.log"
    with pytest.raises(Looping, match=r"aggregator crashed 5 times in a row \(the last: exit status 1\); giving up"):
        for _ in range(24):  # what it did in 10 minutes, never 5 times in 60 s
            sup.exited("aggregator", 1, log_file)
            clock.now += 25.0
    assert sup.roles["aggregator"].crashes == CRASH_LOOP_CRASHES


def test_wordpipe_up_keeps_going_when_crashes_are_spread_out_and_counts_every_one(tmp_path, clock):
    sup = Supervisor(tmp_path, Looping)
    shown = []
    sup.report = lambda role, loop: shown.append((role, loop.crashes, loop.in_a_row))
    for _ in range(3 * CRASH_LOOP_CRASHES):
        sup.exited("ingest", 1, tmp_path / "ingest.log")
        assert sup.due("ingest") == 1
        clock.now += HEALTHY_AFTER + 1
        sup.poll()  # ends the row: reported
    assert sup.roles["ingest"].crashes == 3 * CRASH_LOOP_CRASHES
    assert shown[-3:] == [("ingest", 15, 1), ("ingest", 15, 1), ("ingest", 15, 0)]


def test_a_child_that_keeps_crashing_is_held_back_without_blocking_then_given_up_on_with_its_log(tmp_path):
    sup = Supervisor(tmp_path, Looping)
    sup.spawn("svc", [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"], {})
    held_back = 0  # polls that found it waiting out its back-off: poll returned instead of sleeping
    deadline = time.monotonic() + 120
    with pytest.raises(
        Looping, match=r"svc crashed 5 times in a row \(the last: exit status 3\); giving up\. .*:\n(boom\n)+"
    ):
        while time.monotonic() < deadline:
            sup.poll()
            held_back += sup.children["svc"].proc is None
            time.sleep(0.05)
    assert held_back > 0
    assert sup.restarts["svc"] == CRASH_LOOP_CRASHES
    sup.stop(grace=1.0)
    assert sup.children["svc"].proc is None


def test_deaths_by_a_signal_from_outside_are_counted_as_restarts_but_never_as_a_crash_loop(tmp_path):
    sup = Supervisor(tmp_path, Looping, one_shot=True)
    for sig in [signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP] * 5:
        sup.exited("workers", -sig, tmp_path / "w.log")
    sup.exited("workers", None, tmp_path / "w.log")  # the backend does not know how it ended
    assert sup.restarts["workers"] == 21 and sup.due("workers") == 21


def test_a_signal_a_process_raises_on_itself_is_a_crash(tmp_path):
    sup = Supervisor(tmp_path, Looping, one_shot=True)
    for _ in range(CRASH_LOOP_CRASHES - 1):
        sup.exited("workers", -signal.SIGSEGV, tmp_path / "w.log")
    with pytest.raises(Looping, match=r"workers crashed 5 times .*killed by SIGABRT.*\n\(no log\)"):
        sup.exited("workers", -signal.SIGABRT, tmp_path / "w.log")
