"""The operators' policy file (TOML), validated with errors that name the field, and
reloaded when it changes: a bad edit is reported and the last good policy stays."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.autoscaler.policy import Policy, PolicyError
from pipeline.config import read_toml

log = logging.getLogger(__name__)


def load(path: str | os.PathLike[str]) -> Policy:
    path = Path(path)
    return Policy.from_mapping(read_toml(path, "policy file", PolicyError), str(path))


class PolicyFile:
    """The policy in `path`, re-read whenever its modification time changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mtime = self.path.stat().st_mtime_ns if self.path.exists() else None
        self.policy = load(self.path)  # the first load must succeed
        self.error: str | None = None

    def current(self) -> Policy:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.policy = load(self.path)
                self.error = None
                log.info("reloaded the policy from %s", self.path)
            except PolicyError as exc:
                self.error = str(exc)
                log.error("keeping the previous policy: %s", exc)
        return self.policy
