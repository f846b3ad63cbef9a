"""Durable before 202: with a state directory (`wordpipe up --state-dir`), ingest answers an
upload only once the receipt it wrote lies inside a durable cut of the journal
(pipeline/statedir/journal.py), which publishes the receipts topic's durable end after each
cut. Many uploads wait on one cut: one fdatasync a round, however many they are.

A keyed upload waits twice: its `open` receipt must be durable before its end marker is
written (the end depends on it: a retry learns from it that an attempt may have counted),
and its `committed` receipt before the 202.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pipeline.errors import UnavailableError

POLL = 0.002  # seconds between looks at the journal's durable end, while an upload waits


class NotDurable(UnavailableError):
    """The state directory did not take the upload in time, or cannot be written."""


class Durability:
    def __init__(self, durable_file: Path, timeout: float = 30.0) -> None:
        self.path = durable_file
        self.timeout = timeout
        self.end = 0  # the receipts topic's durable end
        self.problem: str | None = None
        self._seen: tuple[int, int] | None = None  # the file's (mtime, size) when last read

    async def wait(self, receipt_offset: int) -> None:
        """Until the receipt at `receipt_offset` is durable; NotDurable if it is not in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            self.look()
            if self.end > receipt_offset:
                return
            if self.problem is not None:
                raise NotDurable(self.problem)
            if loop.time() > deadline:
                raise NotDurable(f"the state directory did not take the upload within {self.timeout:.0f} s")
            await asyncio.sleep(POLL)

    def look(self) -> None:
        """Read the journal's durable end again, if it changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return  # no cut yet
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        try:
            state = json.loads(self.path.read_bytes())
        except ValueError:
            return  # replaced while read: the next look sees it whole
        self._seen = seen
        self.end, self.problem = state["documents"], state["problem"]
