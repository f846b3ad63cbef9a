"""`wordpipe reference`: the same count in one process, the baseline benchmarks compare against."""

from __future__ import annotations

from collections import Counter
from typing import BinaryIO

from pipeline import tokenize
from pipeline.chunking import WHITESPACE
from pipeline.ingest.sources import Source


def count_stream(stream: BinaryIO, block_size: int = 4 << 20) -> Counter[str]:
    """Counts of a whole stream, read in blocks cut only at whitespace (never inside a token)."""
    counts: Counter[str] = Counter()
    tail = b""
    while True:
        block = stream.read(block_size)
        data = tail + block
        if not block:
            counts.update(tokenize.tokens(tokenize.decode(data).text))
            return counts
        cut = max(data.rfind(ws) for ws in WHITESPACE) + 1
        if cut == 0:  # no whitespace yet: the token continues into the next block
            tail = data
            continue
        counts.update(tokenize.tokens(tokenize.decode(data[:cut]).text))
        tail = data[cut:]


def count_sources(sources: list[Source]) -> Counter[str]:
    total: Counter[str] = Counter()
    for source in sources:
        with source.open() as stream:
            total.update(count_stream(stream))
    return total
