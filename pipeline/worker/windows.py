"""Pure: group each chunks partition's records into windows with data-defined boundaries.

A window is a run of consecutive offsets of one partition, counted and published as
one unit. It closes at every offset that is a multiple of `size`, right after every
flush marker (written by ingest when it has nothing more to send), and after the
chunk that brings it to `max_words` distinct words (bounding the size of its
partials). All three are properties of the log, not of timing or batching, so a
worker that resumes at a committed window boundary rebuilds exactly the windows its
predecessor did: a replayed window is identical to the original and the aggregator
recognises its offset range. Offsets are committed only at window ends.

A held chunk (an upload over HTTP) is counted apart, per document, and a document's
end marker is recorded with its verdict: the aggregator parks a held document's counts
until the window holding its end commits them (pipeline/aggregator/state.py). Windows
thus keep no state across their boundaries, and a replay stays exact.

A source topic's partition (pipeline/source_topics.py) has no flush markers: nobody
but its own producers writes it. Its worker closes a window that has been idle a while
where it stands, and records that end durably first (pipeline/worker/worker.py); a worker that
resumes the partition before the window's end was committed is told it with `end_at`,
and rebuilds the same window.

Every worker of a group must use the same `size` and `max_words`; change them only
with all workers stopped (a SIGTERM drain commits every published window).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.source_topics import Input


@dataclass
class HeldDocument:
    first: int  # offset of its first chunk in this window
    chunks: int = 0
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class Window:
    partition: Input  # a chunks partition, or a source partition's "topic:partition"
    start: int
    end: int  # exclusive; the window covers [start, end)
    counts: Counter[str] = field(default_factory=Counter)  # chunks that count at once
    held: dict[str, HeldDocument] = field(default_factory=dict)
    ends: dict[str, tuple[int, int, bool, int]] = field(default_factory=dict)  # doc -> (offset, chunks, commit, at)
    words: int = 0  # distinct words over counts and held, as the max_words bound sees them
    at: int = 0  # timestamp (ms) of its last record: event time, a property of the log


class Windows:
    def __init__(self, size: int, max_words: int = 100_000) -> None:
        if size < 1 or max_words < 1:
            raise ValueError(f"window size and max_words must be >= 1, got {size} and {max_words}")
        self.size = size
        self.max_words = max_words
        self.open: dict[Input, Window] = {}
        self.ends: dict[Input, int] = {}  # recorded ends (end_at) the next window must stop at

    def _boundary_after(self, offset: int) -> int:
        return (offset // self.size + 1) * self.size

    def end_at(self, partition: Input, end: int) -> None:
        """The window that starts next on `partition` must end at `end`: an earlier owner
        closed it there (idle) and may have published it."""
        self.ends[partition] = end

    def add(
        self,
        partition: Input,
        offset: int,
        tokens: list[str] | None = None,
        held_by: str | None = None,
        flush: bool = False,
        end: tuple[str, int, bool] | None = None,
        at: int = 0,
    ) -> list[Window]:
        """Fold one record in; returns the windows it closed (in offset order).

        `tokens` are a chunk's, counted at once or, with `held_by`, for that document;
        `flush=True` marks a flush marker; `end` = (document, chunks, commit) a document's
        end marker; a record with none of these (a dead-lettered one) only takes up its offset.
        `at` is the record's timestamp (ms).
        """
        closed = []
        window = self.open.get(partition)
        recorded = self.ends.get(partition)
        if recorded is not None and offset >= recorded:
            del self.ends[partition]
            if window is not None:  # an offset gap ran past the recorded end: the window ended there
                window.end = recorded
                closed.append(self.open.pop(partition))
                window = None
            recorded = None
        if window is not None and offset >= self._boundary_after(window.start):
            # An offset gap ran past the boundary: the window ended there.
            window.end = self._boundary_after(window.start)
            closed.append(self.open.pop(partition))
            window = None
        if window is None:
            window = self.open[partition] = Window(partition, offset, offset)
        if held_by is not None:
            held = window.held.get(held_by)
            if held is None:
                held = window.held[held_by] = HeldDocument(offset)
            held.chunks += 1
            counts = held.counts
        else:
            counts = window.counts
        if tokens:
            before = len(counts)
            counts.update(tokens)
            window.words += len(counts) - before
        if end is not None:
            doc, chunks, commit = end
            window.ends.setdefault(doc, (offset, chunks, commit, at))  # the first verdict is the one that holds
        window.end = offset + 1
        window.at = at
        if window.end == recorded:
            del self.ends[partition]
            flush = True
        if flush or window.end % self.size == 0 or window.words >= self.max_words:
            closed.append(self.open.pop(partition))
        return closed

    def close(self, partitions: list[Input]) -> list[Window]:
        """Close the open windows of `partitions` where they stand (idle sources)."""
        return [self.open.pop(p) for p in partitions if p in self.open]

    def drop(self, partitions: Iterable[Input]) -> None:
        """Forget open windows of partitions we no longer own: their next owner re-reads them."""
        for partition in partitions:
            self.open.pop(partition, None)
            self.ends.pop(partition, None)
