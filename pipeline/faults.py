"""Named fault points for chaos tests: WORDPIPE_FAULTS="worker.before_commit=3,..."

At the Nth time a process passes a named point it dies at once (os._exit), as a
SIGKILL would leave it, at the instant that matters. Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os

_armed: dict[str, int] = {}
for item in filter(None, os.environ.get("WORDPIPE_FAULTS", "").split(",")):
    name, _, nth = item.partition("=")
    _armed[name.strip()] = int(nth or 1)


def point(name: str) -> None:
    left = _armed.get(name)
    if left is None:
        return
    if left <= 1:
        os._exit(137)
    _armed[name] = left - 1
