"""Pure: a closed window -> its partial for every shard. No I/O."""

from __future__ import annotations

from collections import Counter

from pipeline.codec import Buckets, HeldPart, PartialMessage
from pipeline.sharding import Router
from workers.windows import Window


def split_by_shard(counts: Counter[str], router: Router) -> list[Buckets]:
    """{bucket: {word: count}} per shard; every shard present, possibly empty."""
    return router.split(counts)


def partials_of(window: Window, router: Router) -> list[PartialMessage]:
    """One part per shard, even an empty one: every shard must see every window, its
    held documents and their ends, to know what is counted and to decide alike."""
    source = (window.partition, window.start, window.end)
    counted = split_by_shard(window.counts, router)
    held = {doc: split_by_shard(h.counts, router) for doc, h in window.held.items()}
    return [
        PartialMessage(
            source,
            shard,
            counted[shard],
            {doc: HeldPart(h.first, h.chunks, held[doc][shard]) for doc, h in window.held.items()},
            window.ends,
            window.at,
        )
        for shard in range(router.shards)
    ]
