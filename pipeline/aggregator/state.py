"""Pure aggregation state: apply each partial at most once, snapshot consistently.

A shard (one partials partition) holds buckets of totals. Every bucket snapshot
carries, beside its counts, the source windows (chunks partition -> offset ranges)
whose partials it already reflects, so a snapshot is self-consistent: recovering any
snapshot and replaying partials never double-counts, whatever crashed when.

A bucket may claim more sources than touched it (the shard's `live` set is merged
in at snapshot time): a partial that did not touch a bucket has no effect on it, so
skipping its replay there is harmless, and the ranges stay contiguous.

Held documents (uploads) are parked per bucket until a verdict: the shard keeps a
ledger of open documents (partition, first offset, chunks seen) in its progress
record and decides, once per window and the same way on every shard, whether a
document commits: its end marker says commit, every chunk arrived, and the marker
lies less than `max_span` offsets after its first chunk. A document still open
`max_span` offsets after its first chunk is abandoned (its producer died), so parked
counts never grow without bound. Ingest applies the same rule before it answers 202.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from pipeline.codec import PartialMessage
from pipeline.errors import UsageError
from pipeline.offsets import OffsetRanges
from pipeline.source_topics import Input

STATE_VERSION = 2
PROGRESS = "progress"

Sources = dict[Input, OffsetRanges]  # chunks partition or source topic partition -> offsets


class OverlapError(UsageError):
    """A window that overlaps applied ones without matching them: never produced by
    workers that share one `window_chunks`; applying it would count twice or lose."""


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


def _union(*parts: Sources) -> Sources:
    out: Sources = {}
    for part in parts:
        for partition, ranges in part.items():
            out.setdefault(partition, OffsetRanges()).update(ranges)
    return out


def _encode_sources(sources: Sources) -> dict[Input, list[list[int]]]:
    return {p: r.to_list() for p, r in sources.items()}


def _decode_sources(raw: dict) -> Sources:
    return {p if isinstance(p, str) else int(p): OffsetRanges.from_list(r) for p, r in raw.items()}


def bucket_key(shard: int, bucket: int) -> str:
    return f"{shard}/{bucket}"


def progress_key(shard: int) -> str:
    return f"{shard}/{PROGRESS}"


@dataclass
class Bucket:
    counts: dict[str, int] = field(default_factory=dict)
    applied: Sources = field(default_factory=dict)  # as recovered; `live` is added on snapshot
    pending: dict[str, dict[str, int]] = field(default_factory=dict)  # held document -> parked counts
    windows: dict[int, dict[str, int]] = field(default_factory=dict)  # tumbling window start (s) -> counts in it
    packed_windows: dict[int, bytes] = field(default_factory=dict)  # start -> its counts' msgpack, while unchanged


@dataclass
class OpenDocument:
    partition: Input
    first: int  # offset of its first chunk
    chunks: int  # chunks seen so far


@dataclass
class Documents:
    """The shard's ledger of held documents; snapshotted with (and deduplicated by) progress."""

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
    max_span: int = 1_000_000  # Settings.document_max_span
    window_seconds: int = 60  # Settings.window_seconds: tumbling windows of event time
    windows_kept: int = 60
    buckets: dict[int, Bucket] = field(default_factory=dict)
    recovered_progress: Sources = field(default_factory=dict)
    live: Sources = field(default_factory=dict)  # sources applied since this state was loaded
    documents: Documents = field(default_factory=Documents)
    parked_in: dict[str, set[int]] = field(default_factory=dict)  # held document -> buckets parking it
    dirty: set[int] = field(default_factory=set)
    # Changed since last taken, by bucket (and window), so taking them looks in one bucket each.
    dirty_words: dict[int, set[str]] = field(default_factory=dict)
    total_words: int = 0  # sum of the counted totals
    distinct_words: int = 0
    newest_window: int = 0
    dirty_windowed: dict[tuple[int, int], set[str]] = field(default_factory=dict)  # (bucket, window start) -> words

    def apply(self, partial: PartialMessage) -> bool:
        """Fold a partial in; False if it was already applied (a replay).

        Raises OverlapError, changing nothing, for a window that partly overlaps.
        """
        partition, start, end = partial.source
        if _seen(self.live, partition, start, end) or _seen(self.recovered_progress, partition, start, end):
            return False
        # Every check that may raise comes before the first change.
        replayed = {b for b, bucket in self.buckets.items() if _seen(bucket.applied, partition, start, end)}
        verdicts = self.documents.decide(partial, self.max_span)
        touched = set(partial.buckets)
        for held in partial.held.values():
            touched.update(held.buckets)
        for doc in verdicts:
            touched.update(self.parked_in.get(doc, ()))
        applied_any = False
        for bucket_id in sorted(touched - replayed):
            bucket = self.buckets.get(bucket_id)
            if bucket is None:
                bucket = self.buckets[bucket_id] = Bucket()
            self._apply_to_bucket(bucket_id, bucket, partial, verdicts)
            applied_any = True
        for doc in verdicts:  # a bucket skipped as replayed may park a later incarnation of the id
            still = {b for b in self.parked_in.pop(doc, ()) if doc in self.buckets[b].pending}
            if still:
                self.parked_in[doc] = still
        self.live.setdefault(partition, OffsetRanges()).add_range(start, end)
        return applied_any or not touched

    def _apply_to_bucket(
        self, bucket_id: int, bucket: Bucket, partial: PartialMessage, verdicts: dict[str, bool]
    ) -> None:
        words = partial.buckets.get(bucket_id)
        if words:
            self._count(bucket_id, bucket, words, partial.at)
        for doc, held in partial.held.items():
            words = held.buckets.get(bucket_id)
            if words:
                _add(bucket.pending.setdefault(doc, {}), words)
                self.parked_in.setdefault(doc, set()).add(bucket_id)
        for doc, commit in verdicts.items():
            parked = bucket.pending.pop(doc, None)
            if parked and commit:
                self._count(bucket_id, bucket, parked, partial.ends[doc][3])  # a document's time is its commit's
        self.dirty.add(bucket_id)

    def _count(self, bucket_id: int, bucket: Bucket, words: dict[str, int], at_ms: int) -> None:
        before = len(bucket.counts)
        _add(bucket.counts, words)
        self.distinct_words += len(bucket.counts) - before
        self.total_words += sum(words.values())
        self.dirty_words.setdefault(bucket_id, set()).update(words)
        start = self.window_of(at_ms)
        _add(bucket.windows.setdefault(start, {}), words)
        bucket.packed_windows.pop(start, None)
        self.newest_window = max(self.newest_window, start)
        self.dirty_windowed.setdefault((bucket_id, start), set()).update(words)

    def window_of(self, at_ms: int) -> int:
        return at_ms // 1000 // self.window_seconds * self.window_seconds

    def windowed(self, start: int) -> dict[str, int]:
        """Totals counted in the tumbling window starting at `start` (Unix seconds)."""
        out: dict[str, int] = {}
        for bucket in self.buckets.values():
            out.update(bucket.windows.get(start, ()))
        return out

    def window_starts(self) -> set[int]:
        return {start for bucket in self.buckets.values() for start in bucket.windows}

    def take_dirty_windowed(self) -> dict[int, dict[str, int]]:
        """Window start -> {word: its count in that window}, for those changed since the last call."""
        changed, self.dirty_windowed = self.dirty_windowed, {}
        out: dict[int, dict[str, int]] = {}
        for (bucket_id, start), words in changed.items():
            counts = self.buckets[bucket_id].windows.get(start)
            if counts:  # None once the window fell out of retention
                out.setdefault(start, {}).update(zip(words, map(counts.__getitem__, words), strict=True))
        return out

    def progress(self) -> Sources:
        """Source offsets whose partial for this shard is counted."""
        return _union(self.recovered_progress, self.live)

    def snapshot(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """(dirty bucket records, progress record); afterwards nothing is dirty.

        Write the bucket records durably before the progress record: progress must
        never claim a chunk whose counts could still be lost.
        """
        records = {}
        oldest = self.newest_window - (self.windows_kept - 1) * self.window_seconds
        for bucket_id in sorted(self.dirty):
            bucket = self.buckets[bucket_id]
            bucket.applied = _union(bucket.applied, self.live)
            for start in [w for w in bucket.windows if w < oldest]:  # retention: only recent windows are kept
                del bucket.windows[start]
                bucket.packed_windows.pop(start, None)
            records[bucket_key(self.shard, bucket_id)] = _pack_bucket(bucket)
        self.dirty.clear()
        progress = {
            progress_key(self.shard): msgpack.packb(
                {
                    "v": STATE_VERSION,
                    "progress": _encode_sources(self.progress()),
                    "documents": self.documents.to_record(),
                },
                use_bin_type=True,
            )
        }
        return records, progress

    def take_dirty_words(self) -> dict[str, int]:
        """Current totals of the words changed since the last call."""
        changed, self.dirty_words = self.dirty_words, {}
        out: dict[str, int] = {}
        for bucket_id, words in changed.items():
            out.update(zip(words, map(self.buckets[bucket_id].counts.__getitem__, words), strict=True))
        return out

    def count(self, word: str, bucket_id: int) -> int:
        bucket = self.buckets.get(bucket_id)
        return bucket.counts.get(word, 0) if bucket else 0

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for bucket in self.buckets.values():
            out.update(bucket.counts)
        return out

    @classmethod
    def load(
        cls,
        shard: int,
        records: dict[str, bytes],
        max_span: int = 1_000_000,
        window_seconds: int = 60,
        windows_kept: int = 60,
    ) -> ShardState:
        """Rebuild from the latest snapshot records of this shard (key -> value)."""
        state = cls(shard, max_span, window_seconds, windows_kept)
        prefix = f"{shard}/"
        for key, value in records.items():
            if not key.startswith(prefix):
                continue
            obj = msgpack.unpackb(value, raw=False, strict_map_key=False)
            if obj.get("v") != STATE_VERSION:
                raise ValueError(f"state record {key!r}: unsupported version {obj.get('v')!r}")
            name = key[len(prefix) :]
            if name == PROGRESS:
                state.recovered_progress = _decode_sources(obj["progress"])
                state.documents = Documents.from_record(obj["documents"])
            else:
                bucket_id = int(name)
                state.buckets[bucket_id] = Bucket(
                    obj["counts"], _decode_sources(obj["applied"]), obj["pending"], obj["windows"]
                )
                state.newest_window = max([state.newest_window, *obj["windows"]])
                state.total_words += sum(obj["counts"].values())
                state.distinct_words += len(obj["counts"])
                for doc in obj["pending"]:
                    state.parked_in.setdefault(doc, set()).add(bucket_id)
                # Everything loaded counts as changed: what was published from it (totals topic,
                # windowed mirror) before a crash may lag the durable state, and is rewritten.
                state.dirty_words[bucket_id] = set(obj["counts"])
                for start, counts in obj["windows"].items():
                    state.dirty_windowed[bucket_id, start] = set(counts)
        return state


def _pack_bucket(bucket: Bucket) -> bytes:
    """msgpack.packb of {v, counts, pending, windows, applied}, byte for byte, with each
    window's counts packed once while it does not change: a snapshot re-encoded every
    kept window (up to windows_kept, 60) where usually only the newest has changed."""
    packer = msgpack.Packer(use_bin_type=True)
    pack = packer.pack
    windows = []
    for start, counts in bucket.windows.items():
        packed = bucket.packed_windows.get(start)
        if packed is None:
            packed = bucket.packed_windows[start] = pack(counts)
        windows += [pack(start), packed]
    return b"".join(
        [
            packer.pack_map_header(5),
            pack("v"),
            pack(STATE_VERSION),
            pack("counts"),
            pack(bucket.counts),
            pack("pending"),
            pack(bucket.pending),
            pack("windows"),
            packer.pack_map_header(len(bucket.windows)),
            *windows,
            pack("applied"),
            pack(_encode_sources(bucket.applied)),
        ]
    )


def _add(counts: dict[str, int], words: dict[str, int]) -> None:
    get = counts.get
    for word, n in words.items():
        counts[word] = get(word, 0) + n
