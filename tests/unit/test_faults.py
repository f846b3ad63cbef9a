"""Fault points (pipeline/faults.py): a timed exit fires once the point is passed, from a timer,
with the status asked for."""

import os
import subprocess
import sys

PASS_AND_WAIT = "from pipeline import faults; faults.point({!r}); import time; time.sleep(60)"


def run(code: str, faults: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORDPIPE_FAULTS": faults}
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=30, capture_output=True)


def test_a_timed_fault_exits_with_its_status_while_the_process_goes_on():
    assert run(PASS_AND_WAIT.format("svc.start"), "svc.start=0.2s:7").returncode == 7
    assert run(PASS_AND_WAIT.format("svc.start"), "svc.start=0.2s").returncode == 1


def test_a_timed_fault_waits_for_its_point():
    passes_another = PASS_AND_WAIT.format("other.start").replace("60", "1")
    assert run(passes_another, "svc.start=0.1s:7").returncode == 0


def test_a_point_its_caller_acts_on_fires_once_at_its_nth_pass():
    passes = "from pipeline import faults; print([faults.fires('svc.skip') for _ in range(4)])"
    assert run(passes, "svc.skip=2").stdout.strip() == b"[False, True, False, False]"
    assert run(passes, "").stdout.strip() == b"[False, False, False, False]"
