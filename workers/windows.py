"""Pure: group each chunks partition's records into windows with data-defined boundaries.

A window is a run of consecutive offsets of one partition, counted and published as
one unit. It closes at every offset that is a multiple of `size`, right after every
flush marker (written by ingest when it has nothing more to send), and after the
chunk that brings it to `max_words` distinct words (bounding the size of its
partials). All three are properties of the log, not of timing or batching, so a
worker that resumes at a committed window boundary rebuilds exactly the windows its
predecessor did: a replayed window is identical to the original and the aggregator
recognises its offset range. Offsets are committed only at window ends.

Every worker of a group must use the same `size` and `max_words`; change them only
with all workers stopped (a SIGTERM drain commits every published window).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Window:
    partition: int
    start: int
    end: int  # exclusive; the window covers [start, end)
    counts: Counter[str] = field(default_factory=Counter)
    docs: Counter[str] = field(default_factory=Counter)  # document id -> chunks in this window


class Windows:
    def __init__(self, size: int, max_words: int = 100_000) -> None:
        if size < 1 or max_words < 1:
            raise ValueError(f"window size and max_words must be >= 1, got {size} and {max_words}")
        self.size = size
        self.max_words = max_words
        self.open: dict[int, Window] = {}

    def _boundary_after(self, offset: int) -> int:
        return (offset // self.size + 1) * self.size

    def add(
        self, partition: int, offset: int, tokens: list[str] | None = None, doc: str | None = None, flush: bool = False
    ) -> list[Window]:
        """Fold one record in; returns the windows it closed (in offset order).

        `tokens` and `doc` describe a chunk; `flush=True` marks a flush marker; a record
        with neither (a dead-lettered one) only takes up its offset.
        """
        closed = []
        window = self.open.get(partition)
        if window is not None and offset >= self._boundary_after(window.start):
            # An offset gap ran past the boundary: the window ended there.
            window.end = self._boundary_after(window.start)
            closed.append(self.open.pop(partition))
            window = None
        if window is None:
            window = self.open[partition] = Window(partition, offset, offset)
        if tokens:
            window.counts.update(tokens)
        if doc is not None:
            window.docs[doc] += 1
        window.end = offset + 1
        if flush or window.end % self.size == 0 or len(window.counts) >= self.max_words:
            closed.append(self.open.pop(partition))
        return closed

    def drop(self, partitions: list[int]) -> None:
        """Forget open windows of partitions we no longer own: their next owner re-reads them."""
        for partition in partitions:
            self.open.pop(partition, None)
