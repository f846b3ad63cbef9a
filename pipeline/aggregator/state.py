"""Pure aggregation state: apply each partial at most once, snapshot consistently.

A shard (one partials partition) holds buckets of totals. Every bucket snapshot
carries, beside its counts, the source windows (chunks partition -> offset ranges)
whose partials it already reflects, so a snapshot is self-consistent: recovering any
snapshot and replaying partials never double-counts, whatever crashed when.

A bucket may claim more sources than touched it (the shard's `live` set is merged
in at snapshot time): a partial that did not touch a bucket has no effect on it, so
skipping its replay there is harmless, and the ranges stay contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from pipeline.codec import PartialMessage
from pipeline.offsets import OffsetRanges

STATE_VERSION = 1
PROGRESS = "progress"

Sources = dict[int, OffsetRanges]  # chunks partition -> offsets


class OverlapError(ValueError):
    """A window that overlaps applied ones without matching them: never produced by
    workers that share one `window_chunks`; applying it would count twice or lose."""


def _seen(sources: Sources, partition: int, start: int, end: int) -> bool:
    """True if [start, end) is applied, False if none of it is; OverlapError otherwise."""
    ranges = sources.get(partition)
    if ranges is None:
        return False
    window = OffsetRanges([(start, end)])
    if ranges.covers(window):
        return True
    if len(ranges.intersection(window)):
        raise OverlapError(f"window {partition}:{start}..{end} partly overlaps applied offsets {ranges.intersection(window)}")
    return False


def _union(*parts: Sources) -> Sources:
    out: Sources = {}
    for part in parts:
        for partition, ranges in part.items():
            out.setdefault(partition, OffsetRanges()).update(ranges)
    return out


def _encode_sources(sources: Sources) -> dict[int, list[list[int]]]:
    return {p: r.to_list() for p, r in sources.items()}


def _decode_sources(raw: dict) -> Sources:
    return {int(p): OffsetRanges.from_list(r) for p, r in raw.items()}


def bucket_key(shard: int, bucket: int) -> str:
    return f"{shard}/{bucket}"


def progress_key(shard: int) -> str:
    return f"{shard}/{PROGRESS}"


@dataclass
class Bucket:
    counts: dict[str, int] = field(default_factory=dict)
    applied: Sources = field(default_factory=dict)  # as recovered; `live` is added on snapshot


@dataclass
class ShardState:
    shard: int
    buckets: dict[int, Bucket] = field(default_factory=dict)
    recovered_progress: Sources = field(default_factory=dict)
    live: Sources = field(default_factory=dict)  # sources applied since this state was loaded
    dirty: set[int] = field(default_factory=set)
    dirty_words: set[str] = field(default_factory=set)

    def apply(self, partial: PartialMessage) -> bool:
        """Fold a partial in; False if it was already applied (a replay).

        Raises OverlapError, changing nothing, for a window that partly overlaps.
        """
        partition, start, end = partial.source
        if _seen(self.live, partition, start, end):
            return False
        skip = {b for b in partial.buckets if b in self.buckets and _seen(self.buckets[b].applied, partition, start, end)}
        applied_any = False
        for bucket_id, words in partial.buckets.items():
            if bucket_id in skip:
                continue
            bucket = self.buckets.get(bucket_id)
            if bucket is None:
                bucket = self.buckets[bucket_id] = Bucket()
            counts = bucket.counts
            get = counts.get
            for word, n in words.items():
                counts[word] = get(word, 0) + n
            self.dirty.add(bucket_id)
            self.dirty_words.update(words)
            applied_any = True
        self.live.setdefault(partition, OffsetRanges()).add_range(start, end)
        return applied_any or not partial.buckets

    def progress(self) -> Sources:
        """Source offsets whose partial for this shard is counted."""
        return _union(self.recovered_progress, self.live)

    def snapshot(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """(dirty bucket records, progress record); afterwards nothing is dirty.

        Write the bucket records durably before the progress record: progress must
        never claim a chunk whose counts could still be lost.
        """
        records = {}
        for bucket_id in sorted(self.dirty):
            bucket = self.buckets[bucket_id]
            bucket.applied = _union(bucket.applied, self.live)
            records[bucket_key(self.shard, bucket_id)] = msgpack.packb(
                {"v": STATE_VERSION, "counts": bucket.counts, "applied": _encode_sources(bucket.applied)},
                use_bin_type=True,
            )
        self.dirty.clear()
        progress = {progress_key(self.shard): msgpack.packb({"v": STATE_VERSION, "progress": _encode_sources(self.progress())})}
        return records, progress

    def take_dirty_words(self) -> dict[str, int]:
        """Current totals of the words changed since the last call."""
        words, self.dirty_words = self.dirty_words, set()
        out = {}
        for bucket in self.buckets.values():
            counts = bucket.counts
            for word in words.intersection(counts):
                out[word] = counts[word]
        return out

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for bucket in self.buckets.values():
            out.update(bucket.counts)
        return out

    @classmethod
    def load(cls, shard: int, records: dict[str, bytes]) -> ShardState:
        """Rebuild from the latest snapshot records of this shard (key -> value)."""
        state = cls(shard)
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
            else:
                state.buckets[int(name)] = Bucket(obj["counts"], _decode_sources(obj["applied"]))
        return state
