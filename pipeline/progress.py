"""Is the job done? Compares the aggregator's per-shard progress with the offsets ingest produced."""

from __future__ import annotations

from pipeline.offsets import OffsetRanges

Produced = dict[int, OffsetRanges]  # chunks partition -> acknowledged offsets


def _done_per_shard(progress: dict) -> list[dict[str, list]] | None:
    shards = progress.get("shards", {})
    if len(shards) != progress.get("partitions"):
        return None  # some shard is unowned or still recovering
    return list(shards.values())


def chunks_counted(progress: dict, produced: Produced) -> int:
    """How many produced chunks have been counted by every shard."""
    shards = _done_per_shard(progress)
    if shards is None:
        return 0
    total = 0
    for partition, offsets in produced.items():
        done = offsets
        for by_partition in shards:
            done = done.intersection(OffsetRanges.from_list(by_partition.get(str(partition), [])))
        total += len(done)
    return total


def all_counted(progress: dict, produced: Produced) -> bool:
    shards = _done_per_shard(progress)
    return shards is not None and all(
        OffsetRanges.from_list(by_partition.get(str(partition), [])).covers(offsets)
        for by_partition in shards
        for partition, offsets in produced.items()
    )
