"""The controller: every `interval` seconds, read metrics, ask the policy, act through
the backend.

    controller = Controller(backend, monitor, policy_source, resources)
    controller.run(stop)              # or controller.tick() from a loop of your own

Actions are synchronous, so at most one launch or kill batch is ever in flight. On
start it adopts the workers the backend lists (a restarted controller launches no
duplicates). Workers that exited are forgotten and relaunched under the one crash-loop
rule (pipeline/supervisor.py): at once, or once their back-off has passed, between ticks
too; that is repair, not scaling, so relaunches held back count as workers to the policy.
It never gives up on them (nothing else would relaunch them) and reports their crashes
on the status topic. Its metrics and status are served by pipeline/autoscaler/api.py.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline import codec
from pipeline.autoscaler.policy import Decision, Policy, State, decide
from pipeline.cluster.backend import Backend, Resources, forget_exited
from pipeline.health import Heartbeat
from pipeline.observe import crash_reports
from pipeline.observe.lag import LagMonitor
from pipeline.observe.metrics import Metrics
from pipeline.supervisor import CrashLoop, Report, log_tail

log = logging.getLogger(__name__)


class Controller:
    def __init__(
        self,
        backend: Backend,
        monitor: LagMonitor,
        policy: Callable[[], Policy],
        resources: Resources,
        interval: float = 10.0,
        grace: float = 30.0,
        heartbeat: Heartbeat | None = None,
        report: Report | None = None,
        log_dir: Path | None = None,  # where the backend keeps workers' logs, if on this machine
        launched: Callable[[list[str]], None] | None = None,  # told the workers each launch started
    ) -> None:
        self.backend = backend
        self.monitor = monitor
        self.policy = policy
        self.resources = resources
        self.interval = interval
        self.grace = grace
        self.heartbeat = heartbeat or Heartbeat(None)
        self.log_dir = log_dir
        self.launched = launched or (lambda workers: None)  # the assigner gives them inputs at once
        self.report = report or (lambda role, loop: None)  # no broker to report to: status and metrics only
        self.crashes = CrashLoop(started_at=time.monotonic())  # the workers' (this thread's alone)
        self.crash_report = crash_reports.report_of("workers", self.crashes)  # what the API threads read
        self.problem: str | None = None  # why the last tick could not see or act, for /health
        self.state = State()
        self.last_metrics: Metrics | None = None
        self.last_decision: Decision | None = None
        self.actions: deque[Decision] = deque(maxlen=100)  # decisions that changed the count
        self.lock = threading.Lock()  # the status endpoint reads what tick() writes
        self.registry = CollectorRegistry()
        self._gauges = {
            name: Gauge(f"wordpipe_autoscaler_{name}", text, registry=self.registry)
            for name, text in [
                ("lag_records", "records the workers have yet to process"),
                ("arrival_rate", "records/s into the chunks topic"),
                ("processing_rate", "records/s committed by the workers"),
                ("worker_rate", "records per busy second of one worker"),
                ("desired_workers", "workers the last decision asked for"),
                ("actual_workers", "workers the backend lists as running"),
            ]
        }
        self._decisions = Counter(
            "wordpipe_autoscaler_decisions", "decisions by reason", ["reason"], registry=self.registry
        )
        self._replaced = Counter(
            "wordpipe_autoscaler_replaced_workers", "workers that exited and were replaced", registry=self.registry
        )
        adopted = self.running()
        log.info("controller starts with %d running worker(s) adopted from the backend", len(adopted))
        self._reported()  # replaces what an earlier controller reported

    def running(self) -> list[str]:
        return [w.id for w in self.backend.list() if w.state == "running"]

    def repair(self) -> None:
        """Relaunch the workers that exited, as the crash-loop rule says: at once, or once
        their back-off has passed."""
        now = time.monotonic()
        changed = self.crashes.settle(now)
        for w in forget_exited(self.backend):
            changed = True
            if self.crashes.exited(w.exit_code, now, w.out_of_memory) and self.crashes.looping:
                log.warning(
                    "workers are in a crash loop: %d crashes in a row (%d in all), the last %s; relaunching one in "
                    "%.0f s. %s's last log lines:\n%s",
                    self.crashes.in_a_row,
                    self.crashes.crashes,
                    self.crashes.last_exit,
                    self.crashes.delay,
                    w.id,
                    log_tail(self.log_dir / f"{w.id}.log") if self.log_dir else "(no log on this machine)",
                )
        due = self.crashes.due(now)
        if due:
            self.launched(self.backend.launch(due, self.resources))
            self._replaced.inc(due)
        if changed or due:
            self._reported()

    def _reported(self) -> None:
        self.crash_report = crash_reports.report_of("workers", self.crashes)
        try:
            self.report("workers", self.crashes)
        except Exception as exc:  # a view: never worth a relaunch
            log.warning("could not report the workers' crashes: %s", exc)

    def crash_reports(self) -> dict[str, codec.CrashReport]:
        """Every role's crashes: the workers' from here, the others' as their supervisors report them."""
        return {**self.monitor.roster.crashes, "workers": self.crash_report}

    def tick(self) -> Decision:
        self.repair()
        live = self.running()
        metrics = self.monitor.read(live)
        # Relaunches held back are workers to the policy: it must not launch around the back-off.
        metrics = dataclasses.replace(metrics, workers=len(live) + len(self.crashes.held))
        self.problem = (
            None
            if metrics.lag is not None
            else (
                f"no lag read for {metrics.age:.0f} s (Kafka does not answer, or the chunks topic is missing): holding"
            )
        )
        decision, state = decide(self.policy(), self.state, metrics)
        with self.lock:  # recorded before acting: a kill may take its whole grace period
            self.state = state
            self.last_metrics = metrics
            self.last_decision = decision
            if decision.action != "hold":
                self.actions.append(decision)
        self._observe(metrics, decision, len(live))
        if decision.action != "hold":
            log.info("%s", decision.message)
        self._scale(decision.desired, live)
        return decision

    def _scale(self, desired: int, live: list[str]) -> None:
        held = len(self.crashes.held)  # relaunches held back: workers already, to the policy
        if desired > len(live) + held:
            self.launched(self.backend.launch(desired - len(live) - held, self.resources))
        elif desired < len(live) + held:
            if held:  # they go first
                self.crashes.drop(len(live) + held - desired)
                self._reported()
            if desired < len(live):
                self.backend.kill(live[desired:], grace=self.grace)  # the newest go first

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # one bad tick (engine hiccup, broker away) must not end the controller
                log.exception("autoscaler tick failed; trying again next tick")
                self.problem = f"the last tick failed: {exc}"
            self.heartbeat.beat(self.problem)
            self._repair_until(stop, started + self.interval)

    def _repair_until(self, stop: threading.Event, tick: float) -> None:
        """Wait for the next tick, relaunching held-back workers as soon as their back-off passes."""
        while not stop.wait(max(0.0, min([tick, *self.crashes.held]) - time.monotonic())):
            if time.monotonic() >= tick:
                return
            try:
                self.repair()
            except Exception:  # as a tick's: the next tick tries again
                log.exception("relaunching workers failed; trying again next tick")
                stop.wait(max(0.0, tick - time.monotonic()))
                return

    def _observe(self, m: Metrics, d: Decision, running: int) -> None:
        values = {
            "lag_records": m.lag,
            "arrival_rate": m.arrival_rate,
            "processing_rate": m.processing_rate,
            "worker_rate": m.worker_rate,
            "desired_workers": d.desired,
            "actual_workers": running,
        }
        for name, value in values.items():
            if value is not None:
                self._gauges[name].set(value)
        self._decisions.labels(d.reason).inc()

    def status(self) -> dict:
        """Lag, rates, workers, the last decision and actions, and what the policy would do now, and why."""
        with self.lock:
            metrics, state, last, actions = self.last_metrics, self.state, self.last_decision, list(self.actions)
        next_decision = decide(self.policy(), state, dataclasses.replace(metrics, at=time.time())) if metrics else None
        return {
            "metrics": dataclasses.asdict(metrics) if metrics else None,
            "lag_by_topic": dict(self.monitor.lag_by_topic),
            "workers": [dataclasses.asdict(w) for w in self.backend.list()],
            "policy": dataclasses.asdict(self.policy()),
            "last_decision": _decision_json(last) if last else None,
            "next_decision": _decision_json(next_decision[0]) if next_decision else None,
            "actions": [_decision_json(d) for d in actions][-20:],
            "crashes": crash_reports.view(self.crash_reports()),
        }


def _decision_json(d: Decision) -> dict:
    return {
        "at": d.at,
        "action": d.action,
        "from": d.current,
        "to": d.desired,
        "reason": d.reason,
        "message": d.message,
    }
