"""The controller: every `interval` seconds, read metrics, ask the policy, act through
the backend.

    controller = Controller(backend, monitor, policy_source, resources)
    controller.run(stop)              # or controller.tick() from a loop of your own

Actions are synchronous, so at most one launch or kill batch is ever in flight. On
start it adopts the workers the backend lists (a restarted controller launches no
duplicates). Workers that exited are forgotten and replaced at once: that is repair,
not scaling. Prometheus metrics and a JSON status are served by `serve_status`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import schemas
from pipeline.autoscaler.monitor import LagMonitor
from pipeline.autoscaler.policy import Decision, Metrics, Policy, State, decide
from pipeline.cluster.backend import Backend, Resources, forget_exited
from pipeline.health import Heartbeat
from pipeline.web import allowed, bearer

log = logging.getLogger(__name__)


class Controller:
    def __init__(
        self, backend: Backend, monitor: LagMonitor, policy: Callable[[], Policy], resources: Resources,
        interval: float = 10.0, grace: float = 30.0, heartbeat: Heartbeat | None = None,
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
        self._decisions = Counter("wordpipe_autoscaler_decisions", "decisions by reason", ["reason"], registry=self.registry)
        self._replaced = Counter("wordpipe_autoscaler_replaced_workers", "workers that exited and were replaced", registry=self.registry)
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
        self.problem = None if metrics.lag is not None else (
            f"no lag read for {metrics.age:.0f} s (Kafka does not answer, or the chunks topic is missing): holding")
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
            self.backend.kill(live[decision.desired:], grace=self.grace)  # the newest go first
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
        values = {"lag_records": m.lag, "arrival_rate": m.arrival_rate, "processing_rate": m.processing_rate,
                  "worker_rate": m.worker_rate, "desired_workers": d.desired, "actual_workers": m.workers}
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
            "workers": [dataclasses.asdict(w) for w in self.backend.list()],
            "policy": dataclasses.asdict(self.policy()),
            "last_decision": _decision_json(last) if last else None,
            "next_decision": _decision_json(next_decision[0]) if next_decision else None,
            "actions": [_decision_json(d) for d in actions][-20:],
        }


def _decision_json(d: Decision) -> dict:
    return {"at": d.at, "action": d.action, "from": d.current, "to": d.desired, "reason": d.reason, "message": d.message}


def serve_status(controller: Controller, host: str, port: int, *, tokens: list[str] | None) -> ThreadingHTTPServer:
    """`GET /v1/status` (JSON; a bearer token from `tokens` unless None), `GET /metrics`
    (Prometheus), `GET /health` (503 while the controller cannot see or act) and
    `GET /openapi.json` (schemas/autoscaler.openapi.json), the last three open like every
    service's, on a daemon thread. Errors are JSON like the other APIs' (pipeline/web.py)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if self.path == "/metrics":
                self._send(200, generate_latest(controller.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/openapi.json":
                self._send(200, json.dumps(schemas.load("autoscaler.openapi.json")).encode(), "application/json")
            elif self.path == "/health":
                problem = controller.problem
                body = {"ok": problem is None, "problem": problem}
                self._send(200 if problem is None else 503, json.dumps(body).encode(), "application/json")
            elif self.path == "/v1/status":
                if tokens is not None and not allowed(bearer(self.headers.get("Authorization")), tokens):
                    self._error(401, "unauthorized", "missing or unknown bearer token (Authorization: Bearer <token>)",
                                {"WWW-Authenticate": 'Bearer realm="wordpipe"'})
                    return
                self._send(200, json.dumps(controller.status()).encode(), "application/json")
            else:
                self._error(404, "not_found", f"no such path: {self.path}; try /v1/status, /health, /metrics or /openapi.json")

        def _error(self, code: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
            self._send(code, json.dumps({"error": error, "detail": detail}).encode(), "application/json", headers)

        def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass  # scrapes every few seconds would drown the log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="autoscaler-status", daemon=True).start()
    return server
