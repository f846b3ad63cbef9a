"""The one interface every cluster backend implements: launch, kill, list.

A backend only runs workers; it does not decide how many (the autoscaler does) nor
know what they do. Workers report their own progress on the status topic
(pipeline/observe/roster.py), so nothing here depends on where a worker runs.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pipeline.errors import UnavailableError

log = logging.getLogger(__name__)


class BackendError(UnavailableError):
    """The backend cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    state: str  # "running" or "exited"
    detail: str = ""  # pid, container id, task id
    exit_code: int | None = None  # negative: killed by that signal
    out_of_memory: bool = False  # killed for outgrowing its memory limit, where the backend can tell


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    mem_mb: int = 256


class Backend(Protocol):
    def launch(self, count: int, resources: Resources) -> list[str]:
        """Start `count` workers; returns their ids."""

    def kill(self, ids: list[str], grace: float = 10.0) -> None:
        """SIGTERM the workers (they drain and leave the group), SIGKILL after `grace` seconds.

        Also how an exited worker is forgotten (its logs are kept where the backend keeps logs).
        """

    def list(self) -> list[WorkerInfo]:
        """This pipeline's workers as the cluster reports them now, exited ones included
        until killed: a new controller adopts what an old one launched."""

    def close(self) -> None:
        """Release the backend's own resources. Workers that outlive their controller
        (containers, tasks) keep running, to be adopted by the next one."""


def new_worker_id() -> str:
    """Unique across controllers and restarts: status reports and labels are keyed by it."""
    return f"worker-{uuid.uuid4().hex[:8]}"


def forget_exited(backend: Backend) -> list[WorkerInfo]:
    """Forget the workers that exited (keeping their logs) and return them, for the caller to
    relaunch under the crash-loop rule (pipeline/supervisor.py)."""
    gone = [w for w in backend.list() if w.state == "exited"]
    if gone:
        backend.kill([w.id for w in gone])
        for w in gone:
            log.warning("%s (%s) exited with status %s", w.id, w.detail, w.exit_code)
    return gone


# A worker's environment is built from allow-lists: the settings it reads (Settings.worker_env)
# and, for a local process, what any process needs from its parent's. Whatever else the
# launcher's shell held stays put.
INHERITED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "WORDPIPE_FAULTS",
)  # and LC_*; WORDPIPE_FAULTS: chaos tests' fault points


def inherited(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What a local worker takes from its parent's environment."""
    return {k: v for k, v in environ.items() if k in INHERITED or k.startswith("LC_")}
