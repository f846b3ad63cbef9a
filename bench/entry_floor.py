"""The least CPU a partial's entry can cost an aggregator written in Python: decoding it from
msgpack and adding it into a dict of a million words, nothing else (no changelog, window,
broker or event loop).

    python bench/entry_floor.py

40 parts of 130,000 distinct 8-letter words drawn from 1,000,000 (about the 5.26 M entries
of 50 MB of uniform draws, as workers cut them into windows), timed by process CPU time:
decoding alone, then decoding and adding, by a Python loop and by the C loops the
aggregator uses (pipeline/aggregator/state.py: _fold). Best of 3.
"""

from __future__ import annotations

import random
import string
import time
from itertools import repeat
from operator import add

import msgpack

VOCABULARY, PARTS, ENTRIES = 1_000_000, 40, 130_000


def cost(parts: list[bytes], entries: int, fold) -> float:
    """Best of 3 passes, µs of CPU an entry."""
    best = float("inf")
    for _ in range(3):
        counts: dict[str, int] = {}
        started = time.process_time()
        for blob in parts:
            fold(counts, msgpack.unpackb(blob, raw=False, strict_map_key=False)[0])
        best = min(best, time.process_time() - started)
    return best / entries * 1e6


def decode_only(counts: dict[str, int], words: dict[str, int]) -> None:
    pass


def python_loop(counts: dict[str, int], words: dict[str, int]) -> None:
    for word, n in words.items():
        counts[word] = counts.get(word, 0) + n


def c_loops(counts: dict[str, int], words: dict[str, int]) -> None:
    counts.update(zip(words, map(add, map(counts.get, words, repeat(0)), words.values()), strict=True))


def main() -> None:
    rng = random.Random(1)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(VOCABULARY)]
    windows = [dict.fromkeys(rng.choices(vocabulary, k=ENTRIES), 1) for _ in range(PARTS)]
    parts = [msgpack.packb({0: words}) for words in windows]
    entries = sum(map(len, windows))
    print(f"{entries:,} entries in {PARTS} parts, {VOCABULARY:,} words drawn from")
    for name, fold in (("decode only", decode_only), ("decode + add, Python loop", python_loop)):
        print(f"  {name}: {cost(parts, entries, fold):.2f} µs an entry")
    print(f"  decode + add, C loops: {cost(parts, entries, c_loops):.2f} µs an entry")


if __name__ == "__main__":
    main()
