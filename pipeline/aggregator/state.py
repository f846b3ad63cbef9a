"""Pure aggregation state of one shard: apply each window's partial at most once, and
write what changed as batches of a redo log whose replay rebuilds exactly this state.

A shard (one partials partition) holds every total of its words, the windows (input
-> offset ranges) whose partials those totals reflect, the ledger of held documents and
their parked counts, and the tumbling windows of event time. `take_batch` returns what
changed since the last batch, with *absolute* values (a word's total, not what was
added) and the whole of the applied windows and the ledger: so replaying a log of
batches in order, each whole or not at all (pipeline/codec.py: Batches), rebuilds a
state that is exactly the one some batch was taken from. A crash between batches loses
only what no batch holds, and the partials it came from are replayed (unacknowledged)
and recognised by the applied windows. A checkpoint (`take_batch(checkpoint=True)`) is
the whole state: the log can start over from it (pipeline/aggregator/changelog.py).

Held documents (uploads) are parked until a verdict: the shard keeps a ledger of open
documents (input, first offset, chunks seen) and decides, once per window and the same
way on every shard, whether a document commits: its end marker says commit, every chunk
arrived, and the marker lies less than `max_span` offsets after its first chunk. A
document still open `max_span` offsets after its first chunk is abandoned (its producer
died), so parked counts never grow without bound. Ingest applies the same rule before
it answers 202.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import add

import msgpack

from pipeline.codec import PartialMessage
from pipeline.errors import UnavailableError, UsageError
from pipeline.offsets import OffsetRanges
from pipeline.source_topics import Input

STATE_VERSION = 3
CHECKPOINT, DELTA = "checkpoint", "delta"

Sources = dict[Input, OffsetRanges]  # chunks partition or source topic partition -> offsets


class OverlapError(UsageError):
    """A window that overlaps applied ones without matching them: never produced by
    workers that share one `window_chunks`; applying it would count twice or lose."""


class ChangelogError(UnavailableError):
    """A batch of a shard's changelog that cannot be replayed (another version, a bad shape)."""


def _seen(sources: Sources, partition: Input, start: int, end: int) -> bool:
    """True if [start, end) is applied, False if none of it is; OverlapError otherwise."""
    ranges = sources.get(partition)
    if ranges is None:
        return False
    window = OffsetRanges([(start, end)])
    if ranges.covers(window):
        return True
    if len(ranges.intersection(window)):
        raise OverlapError(
            f"window {partition}:{start}..{end} partly overlaps applied offsets {ranges.intersection(window)}"
        )
    return False


def _topic(name: Input) -> str:
    return name.rpartition(":")[0] if isinstance(name, str) else ""


def _encode_sources(sources: Sources) -> dict[Input, list[list[int]]]:
    return {p: r.to_list() for p, r in sources.items()}


def _decode_sources(raw: dict) -> Sources:
    return {p if isinstance(p, str) else int(p): OffsetRanges.from_list(r) for p, r in raw.items()}


@dataclass
class OpenDocument:
    partition: Input
    first: int  # offset of its first chunk
    chunks: int  # chunks seen so far


@dataclass
class Documents:
    """The shard's ledger of held documents; every batch carries it whole."""

    open: dict[str, OpenDocument] = field(default_factory=dict)
    committed: int = 0
    committed_chunks: int = 0
    aborted: int = 0

    def decide(self, partial: PartialMessage, max_span: int) -> dict[str, bool]:
        """Fold in a window's held documents and ends; returns the verdicts it brings."""
        partition, _, end = partial.source
        for doc, held in partial.held.items():
            entry = self.open.get(doc)
            if entry is None:
                self.open[doc] = OpenDocument(partition, held.first, held.chunks)
            else:
                entry.chunks += held.chunks
        verdicts: dict[str, bool] = {}
        for doc, (offset, chunks, commit, _) in sorted(partial.ends.items(), key=lambda item: item[1][0]):
            entry = self.open.pop(doc, None)
            if entry is None:  # no chunk of it is open: an empty document, or one already decided
                if commit and chunks == 0:
                    self.committed += 1
                continue
            verdicts[doc] = commit and entry.chunks == chunks and offset - entry.first < max_span
        for doc, entry in list(self.open.items()):
            if entry.partition == partition and end - 1 - entry.first >= max_span:
                del self.open[doc]
                verdicts[doc] = False
        for doc, commit in verdicts.items():
            if commit:
                self.committed += 1
                self.committed_chunks += partial.ends[doc][1]
            else:
                self.aborted += 1
        return verdicts

    def to_record(self) -> dict:
        return {
            "open": {d: [e.partition, e.first, e.chunks] for d, e in self.open.items()},
            "counted": [self.committed, self.committed_chunks, self.aborted],
        }

    @classmethod
    def from_record(cls, obj: dict) -> Documents:
        committed, chunks, aborted = obj["counted"]
        return cls({d: OpenDocument(*e) for d, e in obj["open"].items()}, committed, chunks, aborted)


@dataclass
class ShardState:
    shard: int
    max_span: int = 1_000_000  # IngestSettings.document_max_span
    window_seconds: int = 60  # AggregatorSettings.window_seconds: tumbling windows of event time
    windows_kept: int = 60
    counts: dict[str, int] = field(default_factory=dict)
    applied: Sources = field(default_factory=dict)  # windows whose partial `counts` reflects
    documents: Documents = field(default_factory=Documents)
    pending: dict[str, dict[str, int]] = field(default_factory=dict)  # held document -> parked counts
    windows: dict[int, dict[str, int]] = field(default_factory=dict)  # window start (Unix s) -> counts in it
    total_words: int = 0  # the sum of `counts`
    newest_window: int = 0
    # What changed since the last batch was taken (`take_batch`), with the new values: the
    # delta batch itself, so taking it looks nothing up again.
    changed: dict[str, int] = field(default_factory=dict)
    changed_windows: dict[int, dict[str, int]] = field(default_factory=dict)
    changed_pending: dict[str, dict[str, int]] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)  # documents no longer parked
    dropped_windows: set[int] = field(default_factory=set)
    moved: bool = False  # applied windows or the ledger changed
    # Whether the totals topic held every total when the last batch was replayed (a clean
    # stop's mark): a recovered shard then need not publish them all again.
    published: bool = False

    @property
    def distinct_words(self) -> int:
        return len(self.counts)

    def apply(self, partial: PartialMessage) -> bool:
        """Fold a partial in; False if it was already applied (a replay).

        Raises OverlapError, changing nothing, for a window that partly overlaps.
        """
        partition, start, end = partial.source
        if _seen(self.applied, partition, start, end):
            return False
        verdicts = self.documents.decide(partial, self.max_span)
        for words in partial.buckets.values():
            self._count(words, partial.at)
        for doc, held in partial.held.items():
            parked = self.pending.setdefault(doc, {})
            changed = self.changed_pending.setdefault(doc, {})
            for words in held.buckets.values():
                _fold(parked, changed, words)
        for doc, commit in verdicts.items():
            if doc not in self.pending:
                continue
            parked = self.pending.pop(doc)
            self.changed_pending.pop(doc, None)
            self.settled.add(doc)
            if commit and parked:
                self._count(parked, partial.ends[doc][3])  # a document's time is its commit's
        self.applied.setdefault(partition, OffsetRanges()).add_range(start, end)
        self.moved = True
        return True

    def _count(self, words: dict[str, int], at_ms: int) -> None:
        _fold(self.counts, self.changed, words)
        self.total_words += sum(words.values())
        start = self.window_of(at_ms)
        if start > self.newest_window:
            self.newest_window = start
            self._expire_windows()
        if start < self.oldest_window:
            return  # in the totals; its window is past retention
        _fold(self.windows.setdefault(start, {}), self.changed_windows.setdefault(start, {}), words)

    @property
    def oldest_window(self) -> int:
        """Retention: only the newest `windows_kept` windows are kept."""
        return self.newest_window - (self.windows_kept - 1) * self.window_seconds

    def _expire_windows(self) -> None:
        oldest = self.oldest_window
        for start in [w for w in self.windows if w < oldest]:
            del self.windows[start]
            self.changed_windows.pop(start, None)
            self.dropped_windows.add(start)

    def window_of(self, at_ms: int) -> int:
        return at_ms // 1000 // self.window_seconds * self.window_seconds

    def windowed(self, start: int) -> dict[str, int]:
        """Totals counted in the tumbling window starting at `start` (Unix seconds)."""
        return self.windows.get(start, {})

    def window_starts(self) -> set[int]:
        return set(self.windows)

    def progress(self) -> Sources:
        """Source offsets whose partial for this shard is counted."""
        return self.applied

    def count(self, word: str) -> int:
        return self.counts.get(word, 0)

    def totals(self) -> dict[str, int]:
        return self.counts

    def forget(self, topics: set[str]) -> None:
        """Drop what is kept of windows from `topics` (chunks generations deleted, whose windows
        cannot come again): their applied offsets, and their documents still open, which
        never got an end there and so are abandoned (pipeline/generations.py)."""
        gone = [name for name in self.applied if _topic(name) in topics]
        abandoned = [doc for doc, entry in self.documents.open.items() if _topic(entry.partition) in topics]
        for name in gone:
            del self.applied[name]
        for doc in abandoned:
            del self.documents.open[doc]
            self.documents.aborted += 1
            if self.pending.pop(doc, None) is not None:
                self.changed_pending.pop(doc, None)
                self.settled.add(doc)
        self.moved = self.moved or bool(gone or abandoned)

    @property
    def dirty(self) -> bool:
        """Whether a batch would carry anything."""
        return self.moved or bool(self.changed or self.changed_windows or self.dropped_windows)

    def take_batch(self, checkpoint: bool = False, published: bool = False) -> dict:
        """What changed since the last batch (or, as a checkpoint, everything), with absolute
        values; afterwards nothing has changed. `published`: the totals topic holds every
        total now. Pack it with `pack`."""
        batch: dict[str, object]
        if checkpoint:
            batch = {"kind": CHECKPOINT, "counts": self.counts, "windows": self.windows, "pending": self.pending}
        else:
            batch = {
                "kind": DELTA,
                "counts": self.changed,
                "windows": self.changed_windows,
                "dropped_windows": sorted(self.dropped_windows),
                "pending": self.changed_pending,
                "settled": sorted(self.settled),
            }
        batch.update(
            {
                "v": STATE_VERSION,
                "applied": _encode_sources(self.applied),
                "documents": self.documents.to_record(),
                "published": published,
            }
        )
        self.changed, self.changed_windows, self.changed_pending = {}, {}, {}
        self.settled, self.dropped_windows, self.moved = set(), set(), False
        return batch

    def restore(self, batch: dict) -> None:
        """Replay one batch of the log (a checkpoint starts over)."""
        if batch.get("v") != STATE_VERSION:
            raise ChangelogError(f"shard {self.shard}: a batch of version {batch.get('v')!r}, expected {STATE_VERSION}")
        try:
            if batch["kind"] == CHECKPOINT:
                self.counts, self.windows, self.pending = batch["counts"], batch["windows"], batch["pending"]
            else:
                self.counts.update(batch["counts"])
                for start, counts in batch["windows"].items():
                    self.windows.setdefault(start, {}).update(counts)
                for start in batch["dropped_windows"]:
                    self.windows.pop(start, None)
                for doc, counts in batch["pending"].items():
                    self.pending.setdefault(doc, {}).update(counts)
                for doc in batch["settled"]:
                    self.pending.pop(doc, None)
            self.applied = _decode_sources(batch["applied"])
            self.documents = Documents.from_record(batch["documents"])
            self.published = batch.get("published", False)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ChangelogError(
                f"shard {self.shard}: a batch that does not replay ({type(exc).__name__}: {exc})"
            ) from None
        self.newest_window = max(self.windows, default=0)
        self.total_words = sum(self.counts.values())

    @classmethod
    def load(
        cls,
        shard: int,
        batches: list[dict],
        max_span: int = 1_000_000,
        window_seconds: int = 60,
        windows_kept: int = 60,
    ) -> ShardState:
        """Rebuild from the log's whole batches, oldest first."""
        state = cls(shard, max_span, window_seconds, windows_kept)
        for batch in batches:
            state.restore(batch)
        return state


def pack(batch: dict) -> bytes:
    return msgpack.packb(batch, use_bin_type=True)


def unpack(blob: bytes) -> dict:
    try:
        batch = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ChangelogError(f"a batch that is not msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise ChangelogError(f"a batch is a map, not {type(batch).__name__}")
    return batch


def _fold(counts: dict[str, int], changed: dict[str, int], words: dict[str, int]) -> None:
    """Add `words` into `counts`, and note their new values in `changed` (a delta batch's
    part), by C loops: the aggregator's hot path, a million entries a second with a large
    vocabulary."""
    totals = dict(zip(words, map(add, map(counts.get, words, repeat(0)), words.values()), strict=True))
    counts.update(totals)
    changed.update(totals)
