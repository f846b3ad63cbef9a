"""The autoscaler as a service: the backend, the lag monitor, the controller, the assigner
and its HTTP API put together, run until SIGTERM or Ctrl-C (`wordpipe autoscale run`)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from pipeline.assigner import Assigner
from pipeline.autoscaler import policy_file
from pipeline.autoscaler.api import serve_status
from pipeline.autoscaler.controller import Controller
from pipeline.autoscaler.policy import Policy
from pipeline.cluster import Resources, open_backend
from pipeline.config import Connection, Settings
from pipeline.health import Heartbeat
from pipeline.observe.crash_reports import CrashMetrics, CrashReporter
from pipeline.observe.lag import LagMonitor
from pipeline.web.app import tokens_of
from pipeline.web.server import ServerLimits


def run(s: Settings, policy: str | None, log_dir: Path, stop_workers: bool = False) -> None:
    """Scale `s.worker.group` by `policy` (a TOML file, reloaded when it changes; None: the
    built-in one). `stop_workers`: stop them on exit; otherwise containers and tasks stay,
    for the next autoscaler to adopt."""
    tokens = tokens_of(s.service)  # no token configured and auth on: refuse before launching anything
    connection = Connection.to(s.kafka, why="the autoscaler watches an existing cluster")
    current = policy_file.PolicyFile(policy).current if policy else Policy
    log_dir.mkdir(parents=True, exist_ok=True)
    backend = open_backend(s.cluster, s.mesos, s.worker_env(connection), s.worker.group, log_dir)
    monitor = LagMonitor(connection, s.topics, s.worker.group, offset_reset=current().offset_reset)
    assigner = Assigner(connection, s.topics, s.worker)  # who reads what: workers never rebalance
    reporter = CrashReporter(connection, s.topics)
    controller = Controller(
        backend,
        monitor,
        current,
        Resources(s.cluster.worker_cpus, s.cluster.worker_mem_mb),
        interval=s.autoscaler.interval,
        heartbeat=Heartbeat(s.service.health_file),
        report=reporter.publish,
        log_dir=log_dir,
        launched=assigner.expect,
    )
    controller.registry.register(CrashMetrics(controller.crash_reports))  # every role's, as in its status
    server = serve_status(
        controller,
        s.autoscaler.host,
        s.autoscaler.port,
        tokens=tokens,
        limits=ServerLimits(s.service.http_idle_seconds),
    )
    print(f"wordpipe autoscaler: status on http://{s.autoscaler.host}:{s.autoscaler.port}/v1/status", file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        controller.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        assigner.close()
        monitor.close()
        reporter.close()
        if stop_workers:
            backend.kill([w.id for w in backend.list()], grace=controller.grace)
        backend.close()  # local workers stop with us; containers and tasks stay, for the next controller to adopt
