"""Child processes kept running: spawned with their log files, polled, restarted when they
exit, given up on when they crash in a loop. One Supervisor serves `wordpipe run` (the
aggregator; the workers, which their backend restarts, are counted here too) and
`wordpipe up` (aggregator, ingest service, autoscaler).

The crash-loop rule, for every role alike: more than CRASH_LOOP_RESTARTS exits within
CRASH_LOOP_WINDOW seconds raise the caller's error with the role's last log lines.
5 in 60 s: a service that fails at start-up takes seconds per attempt (imports, Kafka),
so a shorter window can miss its loop, while six crashes a minute is no transient fault.
A death by a signal others send (SIGKILL, SIGTERM, SIGINT, SIGHUP: an operator, a chaos
test, the OOM killer) is restarted but not counted: the process did not fail by itself.
A signal a process raises on itself (SIGSEGV, SIGABRT, ...) is a crash and counts.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import processes
from pipeline.errors import UnavailableError

log = logging.getLogger("wordpipe.supervisor")

CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW = 60.0
SENT_FROM_OUTSIDE = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log_file: Path
    own_session: bool  # a terminal's Ctrl-C reaches only the supervisor, which stops children in order
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_file, "ab") as out:
            self.proc = processes.spawn(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=self.own_session
            )


@dataclass
class Supervisor:
    log_dir: Path
    error: type[UnavailableError] = UnavailableError  # what a crash loop raises
    children: dict[str, Child] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)  # by role, whatever killed them
    _exits: dict[str, list[float]] = field(default_factory=dict)  # by role: counted exits in the window

    def spawn(self, name: str, args: list[str], env: dict[str, str], own_session: bool = False) -> Child:
        child = self.children[name] = Child(name, args, env, self.log_dir / f"{name}.log", own_session)
        self.restarts.setdefault(name, 0)
        child.start()
        return child

    def poll(self) -> None:
        """Restart the children that exited; raise `error` on a crash loop."""
        for child in self.children.values():
            if child.proc is None or (code := child.proc.poll()) is None:
                continue
            self.exited(child.name, code, child.log_file)
            log.warning("%s exited with status %s; restarting it (log: %s)", child.name, code, child.log_file)
            child.start()

    def exited(self, role: str, code: int | None, log_file: Path) -> None:
        """Count one exit of `role` (`code` negative: killed by that signal); raise `error` on a crash loop."""
        self.restarts[role] = self.restarts.get(role, 0) + 1
        if code is None or (code < 0 and -code in SENT_FROM_OUTSIDE):
            return
        now = time.monotonic()
        recent = self._exits[role] = [t for t in self._exits.get(role, []) if now - t < CRASH_LOOP_WINDOW] + [now]
        if len(recent) > CRASH_LOOP_RESTARTS:
            raise self.error(
                f"{role} keeps crashing ({len(recent)} exits in {CRASH_LOOP_WINDOW:.0f} s); "
                f"last log lines:\n{log_tail(log_file)}"
            )

    def stop(self, grace: float) -> None:
        """Terminate the children, the last spawned first."""
        for child in reversed(self.children.values()):
            if child.proc is not None:
                processes.terminate(child.proc, grace)
                child.proc = None


def log_tail(log_file: Path, chars: int = 2000) -> str:
    return log_file.read_text(errors="replace")[-chars:] if log_file.exists() else "(no log)"
