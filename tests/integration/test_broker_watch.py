"""The broker watch (pipeline/kafka/topics.py) asks Kafka every second through one client of
its own: a client made per check would open a connection a second in every service."""

from __future__ import annotations

import subprocess
import time

from pipeline import kafka


def connections_to(port: int) -> set[str]:
    """The local ends of the connections established to `port` now."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", "dst", f"127.0.0.1:{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[2] for line in out.splitlines()}


def test_the_broker_watch_asks_through_one_client(broker):
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    watch = kafka.BrokerWatch(broker.connection(), interval=0.05)
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 2.0  # ~40 checks
        while time.monotonic() < deadline:
            seen |= connections_to(port)
            time.sleep(0.02)
    finally:
        watch.close()
    assert watch.problem is None
    assert 1 <= len(seen) <= 3, f"{len(seen)} connections in 2 s of checks"
