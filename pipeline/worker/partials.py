"""Pure: a closed window -> its partial for every shard. No I/O."""

from __future__ import annotations

from pipeline.codec import HeldPart, PartialMessage
from pipeline.sharding import Router
from pipeline.worker.windows import Window


def partials_of(window: Window, router: Router) -> list[PartialMessage]:
    """One part per shard, even an empty one: every shard must see every window, its
    held documents and their ends, to know what is counted and to decide alike."""
    source = (window.partition, window.start, window.end)
    counted = router.split(window.counts)
    held = {doc: router.split(h.counts) for doc, h in window.held.items()}
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
