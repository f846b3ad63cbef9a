"""What test files share: the repository's paths, waiting, the CLI as a user runs it, Debian's
tools, Docker leftovers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.leaks import labelled_containers

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
SAMPLE = REPO / "samples" / "sample.txt"  # 60 KB of Shakespeare, shipped with the repo


def wait_for(condition, timeout: float = 60, what="condition"):
    """Poll `condition` until it returns something true, and return that; fail after `timeout`
    seconds saying what never happened (`what` may be a callable, read only on failure)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.1)
    return value


def logged_errors(logs: Path, most: int = 60) -> str:
    """A stack's logged errors and their tracebacks, from every log under `logs` (its services
    log what a 500 or a refused connection hides)."""
    lines: list[str] = []
    for log in sorted(logs.rglob("*.log")):
        taking = False
        for line in log.read_text(errors="replace").splitlines():
            if re.match(r"\[?\d{4}-\d\d-\d\d ", line):  # a record starts; others continue it (tracebacks)
                taking = " ERROR " in line or "[ERROR]" in line or " CRITICAL " in line
            if taking:
                lines.append(f"{log.relative_to(logs)}: {line}")
    return "\n".join(lines[-most:]) or f"no errors in the logs under {logs}"


def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create topics as another producer's tooling would (kafka-python), and close the client:
    one left open reconnects to its broker's port for the rest of the session, long after
    the broker is gone."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
    finally:
        admin.close()


def debian_tool(command: str, package: str) -> str:
    """A Debian package's program (chromium, prometheus), installed when missing: CI starts
    from a bare machine."""
    path = shutil.which(command)
    if path is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            timeout=900,
        )
        path = shutil.which(command)
    assert path, f"{package} could not be installed"
    return path


def wordpipe(
    *args: str, timeout: float = 300, input: bytes | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The installed CLI, as a user runs it."""
    exe = shutil.which("wordpipe", path=os.path.dirname(sys.executable)) or "wordpipe"
    return subprocess.run(
        [exe, *args], capture_output=True, timeout=timeout, input=input, env={**os.environ, **(env or {})}
    )


def docker_leftovers() -> list[str]:
    """Containers of any wordpipe pipeline or of the Mesos double, and networks beyond the
    engine's own: on the whole engine (a chaos scenario's own: tests/leaks.py)."""
    containers = list(labelled_containers("wordpipe.pipeline", "wordpipe.mesos-double"))
    networks = subprocess.run(
        ["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return containers + [f"network {n}" for n in networks if n not in ("host", "none", "bridge")]
