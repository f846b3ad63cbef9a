"""The one crash-loop rule of `wordpipe run` and `wordpipe up` (pipeline/supervisor.py)."""

import signal
import sys
import time

import pytest

from pipeline.errors import UnavailableError
from pipeline.supervisor import CRASH_LOOP_RESTARTS, Supervisor


class Looping(UnavailableError):
    pass


def test_a_child_that_keeps_exiting_is_restarted_until_the_crash_loop_raises_with_its_log(tmp_path):
    sup = Supervisor(tmp_path, Looping)
    sup.spawn("svc", [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"], {})
    deadline = time.monotonic() + 60
    with pytest.raises(Looping, match=r"svc keeps crashing \(6 exits in 60 s\); last log lines:\n(boom\n)+"):
        while time.monotonic() < deadline:
            sup.poll()
            time.sleep(0.05)
    assert sup.restarts["svc"] == CRASH_LOOP_RESTARTS + 1
    sup.stop(grace=1.0)
    assert sup.children["svc"].proc is None


def test_deaths_by_a_signal_from_outside_are_counted_as_restarts_but_never_as_a_crash_loop(tmp_path):
    sup = Supervisor(tmp_path, Looping)
    for sig in [signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP] * 5:
        sup.exited("workers", -sig, tmp_path / "w.log")
    sup.exited("workers", None, tmp_path / "w.log")  # the backend does not know how it ended
    assert sup.restarts["workers"] == 21


def test_a_signal_a_process_raises_on_itself_is_a_crash(tmp_path):
    sup = Supervisor(tmp_path, Looping)
    for _ in range(CRASH_LOOP_RESTARTS):
        sup.exited("workers", -signal.SIGSEGV, tmp_path / "w.log")
    with pytest.raises(Looping, match=r"workers keeps crashing .*\n\(no log\)"):
        sup.exited("workers", -signal.SIGABRT, tmp_path / "w.log")
