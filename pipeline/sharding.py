"""Which partials partition (shard) and state bucket a word belongs to.

A stable hash (CRC-32 of the UTF-8 word) so every worker, on every machine and
Python version, routes a word to the same shard; Python's own hash() is salted
per process and would not do.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat


def word_hash(word: str) -> int:
    return zlib.crc32(word.encode("utf-8", "surrogatepass"))


def shard_of(word: str, shards: int) -> int:
    return word_hash(word) % shards


def bucket_of(word: str, shards: int, buckets: int) -> int:
    """The state bucket inside the word's shard (independent bits of the same hash)."""
    return (word_hash(word) // shards) % buckets


class Router:
    """(shard, bucket) per word, for one word or (with C loops) for many at once."""

    def __init__(self, shards: int, buckets: int) -> None:
        if shards < 1 or buckets < 1:
            raise ValueError(f"shards and buckets must be >= 1, got shards={shards} buckets={buckets}")
        self.shards = shards
        self.buckets = buckets

    def split(self, counts: Mapping[str, int]) -> list[dict[int, dict[str, int]]]:
        """{bucket: {word: count}} per shard, every shard present: `route` for many words at
        once. h % (shards * buckets) is bucket * shards + shard, so one slot number names
        both, and the hashes and slots are computed by C loops, not a call per word."""
        shards, slots = self.shards, self.shards * self.buckets
        by_slot: list[dict[str, int]] = [{} for _ in range(slots)]
        for word, slot, n in zip(counts, map(slots.__rmod__, _hashes(counts)), counts.values(), strict=True):
            by_slot[slot][word] = n
        out: list[dict[int, dict[str, int]]] = [{} for _ in range(shards)]
        for slot, words in enumerate(by_slot):
            if words:
                out[slot % shards][slot // shards] = words
        return out

    def shards_of(self, words: Iterable[str]) -> Iterator[int]:
        """Each word's shard, in order: `route(word)[0]` for many words at once."""
        return map(self.shards.__rmod__, _hashes(words))

    def routes(self, words: Iterable[str]) -> Iterator[tuple[int, int]]:
        """Each word's (shard, bucket), in order: `route` for many words at once (the hashes
        and slots by C loops, as in `split`)."""
        shards, slots = self.shards, self.shards * self.buckets
        return ((slot % shards, slot // shards) for slot in map(slots.__rmod__, _hashes(words)))

    def route(self, word: str) -> tuple[int, int]:
        h = word_hash(word)
        return h % self.shards, (h // self.shards) % self.buckets


def _hashes(words: Iterable[str]) -> Iterator[int]:
    """`word_hash` of each word."""
    return map(zlib.crc32, map(str.encode, words, repeat("utf-8"), repeat("surrogatepass")))
