"""Is the job done? Compares the aggregator's per-shard progress with the offsets ingest produced."""

from __future__ import annotations

from pipeline import generations
from pipeline.offsets import OffsetRanges
from pipeline.source_topics import split_input

Produced = dict[str, OffsetRanges]  # chunks input ("chunks.g1:3") -> acknowledged offsets


def _done_per_shard(progress: dict) -> list[dict[str, list]] | None:
    shards = progress.get("shards", {})
    if len(shards) != progress.get("partitions"):
        return None  # some shard is unowned or still recovering
    return list(shards.values())


def in_deleted_generations(produced: Produced, topics: set[str], chunks: str, partials: str) -> list[str]:
    """The inputs of `produced` whose chunks generation is deleted, and its partials
    generation too: the aggregator deletes partials.gN only once it acknowledged all of it,
    after chunks.gN went (pipeline/generations.py), so every shard counted them. It forgets
    their windows then: their offsets are never in its progress again."""
    gone = []
    for name in produced:
        topic = split_input(name)[0]
        found = generations.of(topic)
        if found is None or found[0] != chunks or topic in topics:
            continue
        if generations.topic(partials, found[1]) not in topics:
            gone.append(name)
    return gone


def chunks_counted(progress: dict, produced: Produced) -> int:
    """How many produced chunks have been counted by every shard."""
    return _counted(progress, produced)


def _counted(progress: dict, wanted: dict[str, OffsetRanges]) -> int:
    """How many of the offsets `wanted` (by input, as progress names it) every shard has counted."""
    shards = _done_per_shard(progress)
    if shards is None:
        return 0
    total = 0
    for name, offsets in wanted.items():
        done = offsets
        for by_input in shards:
            done = done.intersection(OffsetRanges.from_list(by_input.get(name, [])))
        total += len(done)
    return total


def all_counted(progress: dict, produced: Produced) -> bool:
    shards = _done_per_shard(progress)
    return shards is not None and all(
        OffsetRanges.from_list(by_input.get(name, [])).covers(offsets)
        for by_input in shards
        for name, offsets in produced.items()
    )


Extents = dict[str, tuple[int, int]]  # source input ("topic:partition") -> (first, end) offsets to count


def records_counted(progress: dict, extents: Extents) -> int:
    """How many source records of `extents` have been counted by every shard."""
    return _counted(
        progress, {name: OffsetRanges([(first, end)]) for name, (first, end) in extents.items() if end > first}
    )


def sources_counted(progress: dict, extents: Extents) -> bool:
    """Every shard has counted each source partition up to its end. Up to, not every offset:
    a compacted or transactional topic has offsets no record holds, which no window covers."""
    shards = _done_per_shard(progress)
    return shards is not None and all(
        end <= first or max((r[1] for r in by_input.get(name, [])), default=first) >= end
        for by_input in shards
        for name, (first, end) in extents.items()
    )


def uncounted(progress: dict | None, produced: Produced) -> str:
    """What `all_counted` still waits for, in words (for an error that says where it stopped)."""
    if progress is None or _done_per_shard(progress) is None:
        owned = sorted(progress.get("shards", {}), key=int) if progress is not None else []
        return f"shards answering: {owned or 'none'}"
    missing = []
    for shard, by_input in sorted(progress["shards"].items(), key=lambda item: int(item[0])):
        for name, offsets in sorted(produced.items()):
            lacking = offsets.difference(OffsetRanges.from_list(by_input.get(name, [])))
            if lacking:
                missing.append(f"shard {shard} lacks {name} {list(lacking)[:3]}")
    return "; ".join(missing[:8]) or "nothing"
