"""The chaos scenarios' fixtures: the record of their figures for docs/reliability.md, and
the check that each leaked nothing (their size and shared steps: tests/chaos/helpers.py).

    WORDPIPE_CHAOS=long WORDPIPE_CHAOS_REPORT=docs/reliability.md pytest tests/chaos   # make chaos
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.helpers import LONG
from tests.chaos.report import Trial, render, write_json
from tests.helpers import REPO
from tests.leaks import MESOS_TASK, OwnContainers, OwnProcesses, adopt_orphans

REPORT = Path(os.environ.get("WORDPIPE_CHAOS_REPORT") or REPO / "bench" / "out" / "reliability.md")
_trials: list[Trial] = []


@pytest.fixture
def trial(request) -> Trial:
    """The scenario's figures, filled in by the test and reported whether it passed or not."""
    doc = (request.node.function.__doc__ or request.node.name).strip().splitlines()[0]
    t = Trial(scenario=request.node.name, title=doc, suite="long" if LONG else "short")
    started = time.monotonic()
    yield t
    t.seconds = round(time.monotonic() - started, 1)
    t.passed = not getattr(request.node, "chaos_failed", False)
    _trials.append(t)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.chaos_failed = True


@pytest.fixture(scope="package", autouse=True)
def own_temp_dir(tmp_path_factory):
    """A temp directory for the scenarios and everything they start, so the leak check
    sees only their files, not those of whatever else runs on the machine."""
    tmp_path_factory.getbasetemp()  # pytest's own goes where it would: it outlives this directory
    path = tempfile.mkdtemp(prefix="wordpipe-chaos-")
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"], tempfile.tempdir = path, None  # gettempdir() reads TMPDIR again
    yield Path(path)
    if saved is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = saved
    tempfile.tempdir = None
    for logs in Path(path).glob("wordpipe-run-*"):  # only a failed run keeps its logs: kept with pytest's
        shutil.copytree(logs, tmp_path_factory.getbasetemp() / "failed-runs" / logs.name, dirs_exist_ok=True)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="package", autouse=True)
def orphans_stay_ours():
    """A process a scenario starts and orphans (its parent SIGKILLed) stays in this process's
    tree, where the leak check looks for it (tests/leaks.py)."""
    adopt_orphans()


@pytest.fixture(autouse=True)
def no_leaks(request, own_temp_dir, orphans_stay_ours) -> Iterator[OwnContainers]:
    """After each scenario: no process of its own tree or of the groups and sessions it
    started, no container of its runs, no new temporary file. Not what else runs on the
    machine: another checkout's benchmark runs the same programs. A scenario whose stack
    runs containers declares the stack's worker group: `no_leaks.own(PIPELINE, [group])`."""
    temp = Path(tempfile.gettempdir())
    before_files = set(os.listdir(temp))
    processes, containers = OwnProcesses(), OwnContainers()
    yield containers
    if (master := request.node.funcargs.get("mesos_master")) is not None:
        containers.own(MESOS_TASK, master.launched)
    deadline = time.monotonic() + 15  # processes told to stop may take a moment to go
    while True:
        pids = processes.new()
        files = sorted(set(os.listdir(temp)) - before_files)
        leaks = (
            [f"process {p}: {c[:120]}" for p, c in pids.items()]
            + [f"docker: {c}" for c in containers.new({processes.root, *pids})]
            + [f"file {temp / f}" for f in files]
        )
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    trial = request.node.funcargs.get("trial")
    if trial is not None:
        trial.leaks = leaks
        trial.passed = trial.passed and not leaks
    if getattr(request.node, "chaos_failed", False):
        return  # a failed run keeps its logs on purpose (the failure names them)
    assert not leaks, f"the scenario left behind: {leaks}"


def pytest_sessionfinish(session, exitstatus):
    if _trials:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(render(_trials))
        write_json(_trials, REPORT.with_suffix(".json"))
