"""Health for containers: a service touches a file while its main loop turns, writing
into it what is wrong, if anything (Kafka unreachable). The image's HEALTHCHECK
(`wordpipe health`) fails once the file is older than allowed or names a problem."""

from __future__ import annotations

import os
import time
from pathlib import Path


class Heartbeat:
    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None

    def beat(self, problem: str | None = None) -> None:
        if self.path is not None:
            self.path.write_text(problem or "")


def check(path: str | None, max_age: float) -> str | None:
    """None when healthy, else why not."""
    if not path:
        return "no health file configured (health_file / $WORDPIPE_HEALTH_FILE)"
    try:
        age = time.time() - os.stat(path).st_mtime
        problem = Path(path).read_text().strip()
    except FileNotFoundError:
        return f"{path} does not exist yet: the service has not started its main loop"
    if age > max_age:
        return f"{path} is {age:.0f} s old (more than {max_age:.0f} s): the service's main loop is stuck"
    return problem or None
