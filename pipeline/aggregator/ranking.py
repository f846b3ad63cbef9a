"""Pure: the most frequent words, kept current as totals grow, without sorting them all.

Totals only grow, so a word outside the kept set can only enter it by being updated,
and the kept set plus `floor` (the highest count ever dropped) decides top-K exactly:
when the K-th kept count is above the floor, no dropped word can tie or beat it.
Otherwise `top` falls back to the full totals it is given.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from itertools import compress


def rank(items: Mapping[str, int], k: int) -> list[tuple[str, int]]:
    """The k most frequent, most frequent first, ties in word order (as `wordpipe run` prints)."""
    return heapq.nsmallest(k, items.items(), key=lambda kv: (-kv[1], kv[0]))


class Ranking:
    def __init__(self, keep: int = 2000) -> None:
        self.keep = keep
        self.kept: dict[str, int] = {}
        self.floor = 0

    def update(self, changed: Mapping[str, int]) -> None:
        """Fold in the new totals of changed words (idempotent: absolute values)."""
        # A kept word's total is at least the floor and only grows: a word whose total changed
        # is kept iff its total is now above the floor (C loops pick them: a million a flush).
        rising = list(compress(changed, map(self.floor.__lt__, changed.values())))
        kept = self.kept
        kept.update(zip(rising, map(changed.__getitem__, rising), strict=True))
        if len(kept) > 2 * self.keep:
            ranked = rank(kept, self.keep + 1)  # not a sort of them all: a million, at first
            self.floor = max(self.floor, ranked[self.keep][1])
            self.kept = dict(ranked[: self.keep])

    def top(self, k: int, everything: Callable[[], Mapping[str, int]]) -> list[tuple[str, int]]:
        ranked = rank(self.kept, k)
        if len(ranked) == k and ranked[-1][1] > self.floor:
            return ranked
        if self.floor == 0 and len(ranked) < k:  # nothing was ever dropped: the kept words are all there is
            return ranked
        return rank(everything(), k)
