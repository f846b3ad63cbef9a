"""The autoscaler's controller relaunches crashed workers under the one crash-loop rule
(pipeline/supervisor.py): backed off, between ticks, never launched around by the policy,
and shown in its status and on the status topic. A backend and a monitor of plain data."""

import threading
import time
from dataclasses import replace
from types import SimpleNamespace

from pipeline.autoscaler.controller import Controller
from pipeline.autoscaler.policy import Policy
from pipeline.cluster.backend import Resources, WorkerInfo
from pipeline.observe.crash_reports import report_of
from pipeline.observe.metrics import Metrics
from pipeline.supervisor import CrashLoop
from tests.helpers import wait_for


class Backend:
    def __init__(self, running: int) -> None:
        self.workers: dict[str, WorkerInfo] = {}
        self.launches: list[tuple[float, int]] = []  # (when, how many)
        self.launch(running)

    def launch(self, count: int, resources: Resources = Resources()) -> list[str]:
        launched = sum(n for _, n in self.launches)
        ids = [f"worker-{launched + i}" for i in range(count)]
        self.launches.append((time.monotonic(), count))
        self.workers |= {i: WorkerInfo(i, "running") for i in ids}
        return ids

    def kill(self, ids: list[str], grace: float = 10.0) -> None:
        for i in ids:
            self.workers.pop(i, None)

    def list(self) -> list[WorkerInfo]:
        return list(self.workers.values())

    def crash_all(self, code: int = 1) -> None:
        self.workers = {i: replace(w, state="exited", exit_code=code) for i, w in self.workers.items()}

    def running(self) -> int:
        return sum(w.state == "running" for w in self.workers.values())


class Monitor:
    roster = SimpleNamespace(crashes={})
    lag_by_topic: dict = {}

    def read(self, workers: list[str]) -> Metrics:
        return Metrics(
            at=time.time(), workers=len(workers), partitions=12, lag=0.0, arrival_rate=0.0, processing_rate=0.0
        )


TWO = Policy(min_workers=2, max_workers=2)


def test_crashed_workers_are_held_back_shown_and_not_launched_around_by_the_policy():
    backend, published = Backend(2), []
    policy = [TWO]
    controller = Controller(
        backend, Monitor(), lambda: policy[0], Resources(), report=lambda role, loop: published.append(loop.looping)
    )
    backend.crash_all()  # both at once: the first in a row relaunched now, the second held back 1 s
    decision = controller.tick()
    assert backend.running() == 1, "the held-back worker was launched anyway"
    assert decision.action == "hold", decision.message  # the held-back one counts as a worker
    workers = controller.status()["crashes"]["workers"]
    assert (workers["crashes"], workers["in_a_row"], workers["restarts"], workers["looping"]) == (2, 2, 2, True)
    assert workers["backoff_seconds"] == 1.0 and workers["restart_at"] > workers["last_crash_at"]
    assert workers["last_exit"] == "exit status 1"
    assert published[-1] is True, "the loop was not reported on the status topic"
    controller.repair()
    assert backend.running() == 1, "relaunched before its back-off passed"

    policy[0] = Policy(min_workers=1, max_workers=1)
    controller.tick()  # a scale-down cancels the held-back relaunch rather than kill a running worker
    assert backend.running() == 1 and not controller.crashes.held
    assert controller.status()["crashes"]["workers"]["restart_at"] is None


def test_a_held_back_worker_is_relaunched_once_its_back_off_passes_not_at_the_next_tick():
    backend = Backend(2)
    controller = Controller(backend, Monitor(), lambda: TWO, Resources(), interval=600)
    backend.crash_all()
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: backend.running() == 2, 30, "the held-back worker's relaunch")
    finally:
        stop.set()
        thread.join(10)
    (_, started), (first, one), (second, other) = backend.launches  # two workers, then one relaunch at a time
    assert (started, one, other) == (2, 1, 1) and second - first >= 0.9, "the second crash was not held back 1 s"
    assert controller.crashes.crashes == 2


def test_the_status_shows_every_role_the_workers_as_relaunched_here_the_others_as_reported():
    looping, earlier = CrashLoop(), CrashLoop()
    for at in (0.0, 10.0):
        looping.exited(1, at)
    earlier.exited(1, 0.0)
    monitor = Monitor()
    monitor.roster = SimpleNamespace(
        crashes={"aggregator": report_of("aggregator", looping), "workers": report_of("workers", earlier)}
    )
    shown = Controller(Backend(1), monitor, lambda: TWO, Resources()).status()["crashes"]
    assert list(shown) == ["aggregator", "workers"]
    assert shown["aggregator"]["looping"] and shown["aggregator"]["crashes"] == 2
    assert shown["workers"]["crashes"] == 0, "an earlier controller's report hides this one's"
