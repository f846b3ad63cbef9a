"""Which partials partition (shard) and state bucket a word belongs to.

A stable hash (CRC-32 of the UTF-8 word) so every worker, on every machine and
Python version, routes a word to the same shard; Python's own hash() is salted
per process and would not do.
"""

from __future__ import annotations

import zlib


def word_hash(word: str) -> int:
    return zlib.crc32(word.encode("utf-8", "surrogatepass"))


def shard_of(word: str, shards: int) -> int:
    return word_hash(word) % shards


def bucket_of(word: str, shards: int, buckets: int) -> int:
    """The state bucket inside the word's shard (independent bits of the same hash)."""
    return (word_hash(word) // shards) % buckets


class Router:
    """Memoised (shard, bucket) per word: a word's hash is computed once per process."""

    def __init__(self, shards: int, buckets: int, max_cached: int = 1_000_000) -> None:
        if shards < 1 or buckets < 1:
            raise ValueError(f"shards and buckets must be >= 1, got shards={shards} buckets={buckets}")
        self.shards = shards
        self.buckets = buckets
        self._max = max_cached
        self._cache: dict[str, tuple[int, int]] = {}

    def route(self, word: str) -> tuple[int, int]:
        hit = self._cache.get(word)
        if hit is None:
            h = word_hash(word)
            hit = (h % self.shards, (h // self.shards) % self.buckets)
            if len(self._cache) >= self._max:
                self._cache.clear()  # bounded memory for unbounded vocabularies
            self._cache[word] = hit
        return hit
