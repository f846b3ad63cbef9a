"""Named fault points for chaos tests: WORDPIPE_FAULTS="worker.before_commit=3,worker.draining=hang"

At the Nth time a process passes a named point it dies at once (os._exit), as a
SIGKILL would leave it, at the instant that matters; with "hang" it stops there for
good, as a stuck process would. A tripwire, "reading=~POISON", aborts (SIGABRT, as a
native crash would) whatever reads a record holding those bytes, every time. Unset, a
point costs one dict lookup.
"""

from __future__ import annotations

import os
import threading

_armed: dict[str, int | str | bytes] = {}
for item in filter(None, os.environ.get("WORDPIPE_FAULTS", "").split(",")):
    name, _, action = item.partition("=")
    action = action.strip()
    if action.startswith("~"):
        _armed[name.strip()] = action[1:].encode()
    else:
        _armed[name.strip()] = "hang" if action == "hang" else int(action or 1)


def point(name: str) -> None:
    left = _armed.get(name)
    if left is None or isinstance(left, bytes):
        return
    if isinstance(left, str):  # "hang"
        threading.Event().wait()  # never set: stops here for good
        return
    if left <= 1:
        os._exit(137)
    _armed[name] = left - 1


def trip(name: str, data: bytes | None) -> None:
    wire = _armed.get(name)
    if isinstance(wire, bytes) and data is not None and wire in data:
        os.abort()
