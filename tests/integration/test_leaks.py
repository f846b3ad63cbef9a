"""The chaos suite's leak finder (tests/leaks.py) finds what a test orphaned, and nothing
that other programs run beside it, however their command lines read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.leaks import OWNER_PID, PIPELINE, OwnContainers, OwnProcesses, adopt_orphans


def probe(adopt: bool) -> None:
    """A test process of its own (run in a child): once other programs have started beside
    it (a line on stdin), start a process that starts another, SIGKILL the first, and print
    the orphan's pid and what the finder calls new."""
    if adopt:
        adopt_orphans()
    finder = OwnProcesses()
    print("ready", flush=True)
    sys.stdin.readline()
    parent = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    orphan = int(parent.stdout.readline())
    if not adopt:
        finder.scan()  # sees the session while its leader lives: its orphan goes to PID 1
    parent.kill()
    parent.wait()
    print(json.dumps({"orphan": orphan, "found": list(finder.new())}))
    os.kill(orphan, signal.SIGKILL)
    if adopt:
        os.waitpid(orphan, 0)  # our child now: reaped here, or a zombie until this process ends


@pytest.mark.parametrize("adopt", [True, False], ids=["subreaper", "session"])
def test_the_leak_finder_finds_an_orphan_of_the_test_and_not_other_programs(adopt):
    """Other programs: a second checkout's benchmark with `wordpipe` and `tansu` in its
    command line, in a session of its own and in the test's own session (CI's shell's)."""
    test = subprocess.Popen(
        [sys.executable, "-c", f"from tests.integration.test_leaks import probe; probe({adopt})"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    others = []
    try:
        assert test.stdout.readline() == "ready\n"
        others = [
            subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(60)", "wordpipe", "up", "--broker", "tansu"],
                start_new_session=new_session,
            )
            for new_session in (True, False)
        ]
        out, err = test.communicate("go\n", timeout=60)
        report = json.loads(out or "{}")
        assert report.get("found") == [report.get("orphan")], (report, [p.pid for p in others], err)
        assert test.returncode == 0, err
    finally:
        test.kill()
        for process in [test, *others]:
            process.kill()
            process.wait()


def test_containers_of_the_tests_runs_are_found_and_no_others():
    engine = {"old": {OWNER_PID: str(os.getpid()), PIPELINE: "run-1"}}
    containers = OwnContainers(lambda: engine)
    containers.own(PIPELINE, ["mine.workers"])
    engine.update(
        {
            "one-shot": {OWNER_PID: "4242", PIPELINE: "run-2"},  # a run the test started (its pid)
            "stack": {PIPELINE: "mine.workers"},
            "other-run": {OWNER_PID: "99", PIPELINE: "run-3"},  # another checkout's
            "other-stack": {PIPELINE: "wordpipe-workers"},
        }
    )
    assert containers.new([os.getpid(), 4242]) == ["one-shot", "stack"]  # "old" was there before the test
