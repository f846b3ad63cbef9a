"""Named fault points for chaos tests: WORDPIPE_FAULTS="worker.before_commit=3,worker.draining=hang"

At the Nth time a process passes a named point it dies at once (os._exit), as a
SIGKILL would leave it, at the instant that matters; with "hang" it stops there for
good, as a stuck process would. Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import threading

_armed: dict[str, int | str] = {}
for item in filter(None, os.environ.get("WORDPIPE_FAULTS", "").split(",")):
    name, _, action = item.partition("=")
    _armed[name.strip()] = "hang" if action.strip() == "hang" else int(action or 1)


def point(name: str) -> None:
    left = _armed.get(name)
    if left is None:
        return
    if isinstance(left, str):  # "hang"
        threading.Event().wait()  # never set: stops here for good
        return
    if left <= 1:
        os._exit(137)
    _armed[name] = left - 1
