"""The controller: every `interval` seconds, read metrics, ask the policy, act through
the backend.

    controller = Controller(backend, monitor, policy_source, resources)
    controller.run(stop)              # or controller.tick() from a loop of your own

Actions are synchronous, so at most one launch or kill batch is ever in flight. On
start it adopts the workers the backend lists (a restarted controller launches no
duplicates). Workers that exited are forgotten and replaced at once: that is repair,
not scaling. Its metrics and status are served by pipeline/autoscaler/api.py.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.autoscaler.monitor import LagMonitor
from pipeline.autoscaler.policy import Decision, Metrics, Policy, State, decide
from pipeline.cluster.backend import Backend, Resources, forget_exited
from pipeline.health import Heartbeat

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
    ) -> None:
        self.backend = backend
        self.monitor = monitor
        self.policy = policy
        self.resources = resources
        self.interval = interval
        self.grace = grace
        self.heartbeat = heartbeat or Heartbeat(None)
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

    def running(self) -> list[str]:
        return [w.id for w in self.backend.list() if w.state == "running"]

    def tick(self) -> Decision:
        gone = forget_exited(self.backend)
        if gone:
            self.backend.launch(len(gone), self.resources)
            self._replaced.inc(len(gone))
        live = self.running()
        metrics = self.monitor.read(live)
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
        self._observe(metrics, decision)
        if decision.action != "hold":
            log.info("%s", decision.message)
        if decision.desired > len(live):
            self.backend.launch(decision.desired - len(live), self.resources)
        elif decision.desired < len(live):
            self.backend.kill(live[decision.desired :], grace=self.grace)  # the newest go first
        return decision

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # one bad tick (engine hiccup, broker away) must not end the controller
                log.exception("autoscaler tick failed; trying again next tick")
                self.problem = f"the last tick failed: {exc}"
            self.heartbeat.beat(self.problem)
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _observe(self, m: Metrics, d: Decision) -> None:
        values = {
            "lag_records": m.lag,
            "arrival_rate": m.arrival_rate,
            "processing_rate": m.processing_rate,
            "worker_rate": m.worker_rate,
            "desired_workers": d.desired,
            "actual_workers": m.workers,
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
