"""The one interface every cluster backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    state: str  # "running" or "exited"
    detail: str = ""  # pid, container id, task id
    exit_code: int | None = None  # negative: killed by that signal


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    mem_mb: int = 256


class Backend(Protocol):
    def launch(self, count: int, resources: Resources = Resources()) -> list[str]:
        """Start `count` workers; returns their ids."""

    def kill(self, ids: list[str], grace: float = 10.0) -> None:
        """SIGTERM the workers (they drain and leave the group), SIGKILL after `grace` seconds."""

    def list(self) -> list[WorkerInfo]:
        """Live workers, as the backend itself reports them."""

    def close(self) -> None:
        """Stop every worker this backend launched."""
