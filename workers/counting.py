"""Pure: a window's counts -> one part per shard. No I/O."""

from __future__ import annotations

from collections import Counter

from pipeline.sharding import Router

Buckets = dict[int, dict[str, int]]


def split_by_shard(counts: Counter[str], router: Router) -> list[Buckets]:
    """{bucket: {word: count}} per shard; every shard present, possibly empty."""
    shards: list[Buckets] = [{} for _ in range(router.shards)]
    route = router.route
    for word, n in counts.items():
        shard, bucket = route(word)
        words = shards[shard].get(bucket)
        if words is None:
            words = shards[shard][bucket] = {}
        words[word] = n
    return shards
