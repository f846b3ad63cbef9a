"""What a test left running: the processes of its own tree, and the containers of its own
runs. Never what runs by name machine-wide: another checkout's benchmark beside CI runs the
same programs, and its processes and containers are not the test's leaks."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_PR_SET_CHILD_SUBREAPER = 36
OWNER_PID = "wordpipe.owner-pid"  # pipeline/cluster/docker.py: the one-shot run that launched a worker
PIPELINE = "wordpipe.pipeline"  # pipeline/cluster/docker.py: the run's id, or the stack's worker group
MESOS_TASK = "wordpipe.mesos-task"  # tests/mesos_double/agent.py: the task a container runs


def adopt_orphans() -> None:
    """Make this process a child subreaper (Linux): a process the test started whose parent
    is then killed (a `wordpipe up` SIGKILLed) is reparented here instead of to PID 1, so it
    stays among the test's descendants. Orphans that exit stay zombies until this process
    ends: a leak check ignores zombies (they hold nothing)."""
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    started: int  # clock ticks after boot: with the pid, names one process even when pids are reused
    zombie: bool
    cmdline: str


def _read(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None  # gone meanwhile
    state, ppid, pgid, sid, started = fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    return Proc(pid, ppid, pgid, sid, started, state == "Z", cmdline)


def process_table() -> dict[int, Proc]:
    return {p.pid: p for pid in os.listdir("/proc") if pid.isdigit() and (p := _read(int(pid))) is not None}


class OwnProcesses:
    """The live processes of `root`'s tree (it should adopt orphans), and the members of
    the process groups and sessions the tree's processes started, even outside the tree.
    `root` itself and its own group and session (the shell that ran it, CI) are not its own."""

    def __init__(self, root: int | None = None) -> None:
        self.root = os.getpid() if root is None else root
        me = _read(self.root)
        assert me is not None, f"no process {self.root}"
        self.inherited = {me.pgid, me.sid}
        self.groups: set[int] = set()  # remembered across scans: a group outlives its leader
        self.before = set(self.scan())

    def scan(self) -> dict[tuple[int, int], str]:
        """(pid, start time) -> command line of every live process of the test's now."""
        table = process_table()
        tree = _descendants(self.root, table)
        self.groups |= {i for p in tree for i in (p.pgid, p.sid)} - self.inherited
        members = [p for p in table.values() if p.pgid in self.groups or p.sid in self.groups]
        return {(p.pid, p.started): p.cmdline for p in [*tree, *members] if not p.zombie and p.pid != self.root}

    def new(self) -> dict[int, str]:
        """The test's processes that were not there when this object was made: pid -> command line."""
        return {pid: cmdline for (pid, started), cmdline in self.scan().items() if (pid, started) not in self.before}


def _descendants(root: int, table: dict[int, Proc]) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def labelled_containers(*labels: str) -> dict[str, dict[str, str]]:
    """Containers in any state that carry any of `labels` (a key, or key=value): name -> labels."""
    found = {}
    for label in labels:
        listing = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}\t{{.Labels}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in listing.splitlines():
            name, _, pairs = line.partition("\t")
            found[name] = dict(pair.partition("=")[::2] for pair in pairs.split(",") if pair)
    return found


def _engine_containers() -> dict[str, dict[str, str]]:
    try:
        return labelled_containers(PIPELINE, MESOS_TASK)
    except (OSError, subprocess.CalledProcessError):
        return {}  # no engine here: no container either


class OwnContainers:
    """The containers a test's runs started, told apart by their labels from those of any
    other run on the engine: a one-shot run's workers name its process (`wordpipe.owner-pid`),
    a stack's name the worker group the test gave it, the Mesos double's the tasks it ran."""

    def __init__(self, listing: Callable[[], dict[str, dict[str, str]]] = _engine_containers) -> None:
        self.listing = listing
        self.before = set(listing())
        self.owned: set[tuple[str, str]] = set()  # (label, value) pairs the test declared its own

    def own(self, label: str, values: Iterable[str]) -> None:
        self.owned |= {(label, v) for v in values}

    def new(self, owner_pids: Iterable[int]) -> list[str]:
        """The names of the test's containers that were not there when this object was made;
        `owner_pids`: the processes whose one-shot runs are the test's (it, its tree)."""
        owned = self.owned | {(OWNER_PID, str(pid)) for pid in owner_pids}
        return sorted(
            name
            for name, labels in self.listing().items()
            if name not in self.before and not owned.isdisjoint(labels.items())
        )
