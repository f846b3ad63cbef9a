"""`wordpipe up`: the long-running stack, supervised until Ctrl-C.

    broker (embedded unless a bootstrap address is given) -> topics
    aggregator (results API)  ingest service  autoscaler (workers on the chosen backend)

Each service is its own process, as in a deployment; one that exits is restarted, and
a service that keeps crashing stops the stack with its last log lines.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pipeline import broker as broker_mod
from pipeline import kafka, processes
from pipeline.config import Settings
from pipeline.errors import UnavailableError

log = logging.getLogger("wordpipe.up")

CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW = 60.0


class StackError(UnavailableError):
    pass


@dataclass
class Service:
    name: str
    args: list[str]
    health_url: str
    proc: subprocess.Popen | None = None
    exits: list[float] = field(default_factory=list)


class Stack:
    def __init__(self, settings: Settings, log_dir: Path, policy: str | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.policy = policy
        self.broker: broker_mod.EmbeddedBroker | None = None
        self.services: list[Service] = []
        self.env: dict[str, str] = {}

    @property
    def urls(self) -> dict[str, str]:
        s = self.settings
        return {
            "ingest": f"http://{s.ingest_host}:{s.ingest_port}",
            "results": f"http://{s.aggregator_host}:{s.aggregator_port}",
            "dashboard": f"http://{s.aggregator_host}:{s.aggregator_port}/",
            "autoscaler": f"http://{s.autoscaler_host}:{s.autoscaler_port}/v1/status",
        }

    def start(self, timeout: float = 120.0) -> Stack:
        s = self.settings
        try:
            if not s.bootstrap:
                self.broker = broker_mod.EmbeddedBroker(log_file=self.log_dir / "broker.log").start()
                bootstrap = self.broker.bootstrap
                # Services see an address, not "embedded": keep the embedded broker's short group session.
                s = self.settings = s.replace(
                    bootstrap=self.broker.bootstrap, session_timeout_ms=s.worker_session_timeout_ms
                )
            else:
                bootstrap = s.bootstrap
                kafka.check_reachable(bootstrap, s)
            kafka.ensure_topics(bootstrap, s)
            if not s.aggregator_datadir:  # the stack's own files stay together, in its log directory
                s = self.settings = s.replace(aggregator_datadir=str(self.log_dir / "faust"))
            self.env = {**os.environ, **s.to_env()}
            cli = [sys.executable, "-m", "pipeline.cli"]
            # Ctrl-C stops the workers too; a restarted autoscaler adopts them instead.
            autoscale = [*cli, "autoscale", "run", "--stop-workers", "--log-dir", str(self.log_dir / "workers")]
            autoscale += ["--policy", self.policy] if self.policy else []
            urls = self.urls
            self.services = [
                Service("aggregator", [*cli, "aggregator"], urls["results"] + "/health"),
                Service("ingest", [*cli, "ingest-server"], urls["ingest"] + "/health"),
                Service("autoscaler", autoscale, urls["autoscaler"].replace("/v1/status", "/health")),
            ]
            for service in self.services:
                self._spawn(service)
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, service: Service) -> None:
        with open(self.log_dir / f"{service.name}.log", "ab") as out:
            # Own sessions: a terminal's Ctrl-C reaches only `up`, which stops the services in order.
            service.proc = processes.spawn(
                service.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.services)
        while pending:
            self.supervise()
            pending = [svc for svc in pending if not _healthy(svc.health_url)]
            if time.monotonic() > deadline:
                names = ", ".join(svc.name for svc in pending)
                raise StackError(f"{names} did not become healthy within {timeout:.0f} s; logs in {self.log_dir}")
            time.sleep(0.2)

    def supervise(self) -> None:
        """Restart services that exited; give up on one that keeps crashing."""
        for service in self.services:
            if service.proc is None or service.proc.poll() is None:
                continue
            now = time.monotonic()
            service.exits = [t for t in service.exits if now - t < CRASH_LOOP_WINDOW] + [now]
            log_file = self.log_dir / f"{service.name}.log"
            if len(service.exits) > CRASH_LOOP_RESTARTS:
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else "(no log)"
                raise StackError(
                    f"{service.name} keeps crashing ({len(service.exits)} exits in "
                    f"{CRASH_LOOP_WINDOW:.0f} s); last log lines:\n{tail}"
                )
            log.warning(
                "%s exited with status %s; restarting it (log: %s)", service.name, service.proc.returncode, log_file
            )
            self._spawn(service)

    def stop(self) -> None:
        # The autoscaler first, so that no worker is launched while the rest goes.
        for service in reversed(self.services):
            if service.proc is not None:
                processes.terminate(service.proc, grace=45.0)  # the autoscaler drains its workers
                service.proc = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
