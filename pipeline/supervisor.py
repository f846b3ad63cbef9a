"""Child processes kept running: spawned with their log files, polled, restarted when they
exit, held back when they crash again and again, given up on in a crash loop. One Supervisor
serves `wordpipe run` (the aggregator; the workers, which their backend relaunches, under the
same rule) and `wordpipe up` (aggregator, ingest service, autoscaler). The autoscaler's
controller applies the same rule (`CrashLoop`) to the workers it relaunches.

The crash-loop rule, for every role alike (workers, aggregator, ingest, autoscaler):

* What counts. A crash is an exit the process chose (any status, 0 too: a service runs until
  it is stopped), a signal it raised on itself (SIGSEGV, SIGABRT, ...), or an out-of-memory
  kill where the backend can tell (Docker's OOMKilled, Mesos' memory limitation): a process
  that outgrew its memory on some input will again. A SIGKILL, SIGTERM, SIGINT or SIGHUP from
  outside (an operator, a chaos test) is restarted at once and not counted. The kernel's OOM
  killer sends a bare SIGKILL too, which nothing tells apart from an operator's on a local
  process: not counted either, but every exit counts as a restart, and restarts are shown.
* Back-off. The first crash in a row is restarted at once (one crash is an accident: a quick
  repair is what matters), the next ones after 1, 2, 4 ... s, at most BACKOFF_CAP (60 s: a
  loop then costs one start a minute, and a cause that went away is noticed within one).
  A role that stays up HEALTHY_AFTER (300 s) after a restart ends the row: more than a start
  (seconds) plus the time a service takes to meet the record it dies on again (the measured
  loops: a worker every ~10 s, the aggregator every ~25 s).
* Showing it. Two crashes in a row (LOOP_AFTER) are a crash loop. Every crash is logged, a
  loop with the role's last log lines; supervisors report each role's crashes on the status
  topic (pipeline/observe/crash_reports.py), read by the results API (`/v1/status`: pipeline.crashes,
  the dashboard, `wordpipe_service_*` metrics) and the autoscaler (its status and metrics).
* Giving up (CRASH_LOOP_CRASHES, 5). `wordpipe run` fails at a role's 5th crash in the run,
  however far apart: a one-shot run has no time to wait a loop out, and a slow loop is still
  one (the measured aggregator crashed 24 times in 10 minutes, never 5 times in a minute).
  `wordpipe up` stops at one of its services' 5th crash in a row (one that cannot start, or
  that dies on the same record each time: within a minute or two, 7 s of it back-off), and
  keeps going when crashes are spread out, each one shown. The autoscaler never gives up on
  its workers, since nothing else would relaunch them: it keeps relaunching them at most
  once a minute, and shows the loop.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import processes
from pipeline.errors import UnavailableError

log = logging.getLogger("wordpipe.supervisor")

CRASH_LOOP_CRASHES = 5
LOOP_AFTER = 2
BACKOFF_CAP = 60.0
HEALTHY_AFTER = 300.0
SENT_FROM_OUTSIDE = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def crashed(code: int | None, out_of_memory: bool = False) -> bool:
    """Whether an exit counts (`code` negative: killed by that signal; None: unknown, as a
    backend that cannot tell reports it)."""
    return out_of_memory or (code is not None and not (code < 0 and -code in SENT_FROM_OUTSIDE))


def backoff(in_a_row: int) -> float:
    """Seconds a relaunch waits after the `in_a_row`-th crash in a row."""
    return 0.0 if in_a_row <= 1 else min(BACKOFF_CAP, 2.0 ** (in_a_row - 2))


def describe(code: int | None, out_of_memory: bool = False) -> str:
    if out_of_memory:
        return "killed out of memory"
    if code is None:
        return "exit status unknown"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        return f"killed by {name}" + (" (from outside: not counted)" if -code in SENT_FROM_OUTSIDE else "")
    return f"exit status {code}"


@dataclass
class CrashLoop:
    """One role's exits under the rule; pure: fed with exits and the time (any one clock)."""

    crashes: int = 0  # counted since the supervisor started
    in_a_row: int = 0  # crashes without HEALTHY_AFTER seconds up after a restart between them
    restarts: int = 0  # every exit, each relaunched (or held back to be), counted or not
    last_exit: str = ""
    last_crash_at: float | None = None
    delay: float = 0.0  # how long the last exit's relaunch is held back
    started_at: float = 0.0  # the last relaunch
    held: list[float] = field(default_factory=list)  # relaunches held back: when each is due

    @property
    def looping(self) -> bool:
        return self.in_a_row >= LOOP_AFTER

    def exited(self, code: int | None, now: float, out_of_memory: bool = False) -> bool:
        """Count one exit and hold its relaunch back as long as the rule says; True for a crash."""
        self.settle(now)
        self.restarts += 1
        self.last_exit = describe(code, out_of_memory)
        crash = crashed(code, out_of_memory)
        if crash:
            self.crashes += 1
            self.in_a_row += 1
            self.last_crash_at = now
        self.delay = backoff(self.in_a_row) if crash else 0.0
        self.held.append(now + self.delay)
        return crash

    def settle(self, now: float) -> bool:
        """End the row once the role has stayed up HEALTHY_AFTER; True if it ends now."""
        if self.in_a_row and not self.held and now - self.started_at >= HEALTHY_AFTER:
            self.in_a_row = 0
            return True
        return False

    def due(self, now: float) -> int:
        """Take the relaunches whose delay has passed: how many to start now."""
        ready = [t for t in self.held if t <= now]
        if ready:
            self.held = [t for t in self.held if t > now]
            self.started_at = now
        return len(ready)

    def drop(self, count: int) -> None:
        """Cancel up to `count` held-back relaunches (a scale-down), the last due first."""
        self.held = sorted(self.held)[: max(0, len(self.held) - count)]

    def gives_up(self, one_shot: bool) -> bool:
        return (self.crashes if one_shot else self.in_a_row) >= CRASH_LOOP_CRASHES


Report = Callable[[str, CrashLoop], None]  # where a role's crashes are shown (pipeline/observe/crash_reports.py)


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log_file: Path
    own_session: bool  # a terminal's Ctrl-C reaches only the supervisor, which stops children in order
    proc: subprocess.Popen | None = None  # None: stopped, or its relaunch held back

    def start(self) -> None:
        with open(self.log_file, "ab") as out:
            self.proc = processes.spawn(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=self.own_session
            )


def _not_shown(role: str, loop: CrashLoop) -> None:
    pass  # no broker to report to, or stopped: its log says it all


@dataclass
class Supervisor:
    log_dir: Path
    error: type[UnavailableError] = UnavailableError  # what giving up raises
    one_shot: bool = False  # `wordpipe run`: give up at a role's Nth crash, not its Nth in a row
    report: Report = _not_shown
    children: dict[str, Child] = field(default_factory=dict)
    roles: dict[str, CrashLoop] = field(default_factory=dict)  # children's, and workers' (relaunched by others)

    @property
    def restarts(self) -> dict[str, int]:
        """Exits so far by role, whatever ended them."""
        return {role: loop.restarts for role, loop in self.roles.items()}

    def spawn(self, name: str, args: list[str], env: dict[str, str], own_session: bool = False) -> Child:
        child = self.children[name] = Child(name, args, env, self.log_dir / f"{name}.log", own_session)
        loop = self.roles.setdefault(name, CrashLoop(started_at=time.monotonic()))
        child.start()
        self.report(name, loop)  # replaces what an earlier stack reported on the same topic
        return child

    def poll(self) -> None:
        """Restart the children that exited, once their back-off has passed; raise `error`
        when giving up. Never waits: it also looks after the others."""
        for child in self.children.values():
            if child.proc is not None and (code := child.proc.poll()) is not None:
                child.proc = None
                self.exited(child.name, code, child.log_file)
            if child.proc is None and self.due(child.name):
                child.start()
        now = time.monotonic()
        for role, loop in self.roles.items():
            if loop.settle(now):
                log.info("%s stayed up %.0f s: its crashes in a row are over", role, HEALTHY_AFTER)
                self.report(role, loop)

    def exited(self, role: str, code: int | None, log_file: Path, out_of_memory: bool = False) -> None:
        """Count one exit of `role` (`code` negative: killed by that signal); raise `error` when giving up."""
        loop = self.roles.setdefault(role, CrashLoop())
        crash = loop.exited(code, time.monotonic(), out_of_memory)
        self.report(role, loop)
        if not crash:
            log.warning("%s was %s; restarting it", role, loop.last_exit)
            return
        if loop.gives_up(self.one_shot):
            times = f"{loop.crashes} times in this run" if self.one_shot else f"{loop.in_a_row} times in a row"
            raise self.error(
                f"{role} crashed {times} (the last: {loop.last_exit}); giving up. "
                f"Its last log lines ({log_file}):\n{log_tail(log_file)}"
            )
        log.warning(
            "%s crashed (%s): %d in a row, %d in all; restarting it %s (log: %s)%s",
            role,
            loop.last_exit,
            loop.in_a_row,
            loop.crashes,
            f"in {loop.delay:.0f} s" if loop.delay else "now",
            log_file,
            f"\n{role} is in a crash loop; its last log lines:\n{log_tail(log_file)}" if loop.looping else "",
        )

    def due(self, role: str) -> int:
        """How many relaunches of `role` are due now (taken: the caller starts them)."""
        loop = self.roles.setdefault(role, CrashLoop())
        count = loop.due(time.monotonic())
        if count:
            self.report(role, loop)
        return count

    def stop(self, grace: float) -> None:
        """Terminate the children, the last spawned first; nothing held back starts any more,
        and nothing is reported (the reporter may go)."""
        self.report = _not_shown
        for loop in self.roles.values():
            loop.held.clear()
        for child in reversed(self.children.values()):
            if child.proc is not None:
                processes.terminate(child.proc, grace)
                child.proc = None


def log_tail(log_file: Path, chars: int = 2000) -> str:
    """The last whole lines of a log, about `chars` bytes of them; read from the end, since a
    long-running service's log may be large."""
    try:
        with open(log_file, "rb") as f:
            start = max(0, f.seek(0, os.SEEK_END) - chars)
            f.seek(start)
            tail = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return (tail.partition("\n")[2] or tail) if start else tail  # a line cut in two starts nothing
