"""Named fault points for chaos tests: WORDPIPE_FAULTS="worker.before_commit=3,worker.draining=hang"

At the Nth time a process passes a named point it dies at once (os._exit), as a
SIGKILL would leave it, at the instant that matters; with "hang" it stops there for
good, as a stuck process would. With "Ts" or "Ts:S" (`aggregator.start=12s:3`) it exits
with status S (default 1) T seconds after it first passed the point, wherever it is then,
as a process that fails on its own does; each service passes `<role>.start` as it starts
(aggregator, worker, ingest, autoscaler). A point asked with `fires` instead
(`aggregator.drop_fetched=3`) is its caller's to act on, at the Nth pass, once: the process
lives on. A tripwire, "reading=~POISON", aborts (SIGABRT,
as a native crash would) whatever reads a record holding those bytes, every time (`trip`).
Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import re
import threading

_TIMED = re.compile(r"(\d+(?:\.\d+)?)s(?::(\d+))?")


def _action(text: str) -> int | str | bytes | tuple[float, int]:
    if text == "hang":
        return text
    if text.startswith("~"):
        return text[1:].encode()
    timed = _TIMED.fullmatch(text)
    if timed:
        return float(timed[1]), int(timed[2] or 1)
    return int(text or 1)


_armed: dict[str, int | str | bytes | tuple[float, int]] = {}
for item in filter(None, os.environ.get("WORDPIPE_FAULTS", "").split(",")):
    name, _, action = item.partition("=")
    _armed[name.strip()] = _action(action.strip())


def point(name: str) -> None:
    left = _armed.get(name)
    if left is None or isinstance(left, bytes):
        return
    if isinstance(left, str):  # "hang"
        threading.Event().wait()  # never set: stops here for good
        return
    if isinstance(left, tuple):  # an exit in T seconds, from a timer: the process goes on meanwhile
        del _armed[name]
        seconds, status = left
        timer = threading.Timer(seconds, os._exit, (status,))
        timer.daemon = True
        timer.start()
        return
    if left <= 1:
        os._exit(137)
    _armed[name] = left - 1


def fires(name: str) -> bool:
    """True at the Nth pass of a point whose caller acts on it, once."""
    left = _armed.get(name)
    if not isinstance(left, int):
        return False
    if left <= 1:
        del _armed[name]
        return True
    _armed[name] = left - 1
    return False


def trip(name: str, data: bytes | None) -> None:
    wire = _armed.get(name)
    if isinstance(wire, bytes) and data is not None and wire in data:
        os.abort()
