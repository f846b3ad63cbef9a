"""`wordpipe reference`: the same count in one process, the baseline benchmarks compare against."""

from __future__ import annotations

from collections import Counter
from typing import BinaryIO

from pipeline import tokenize
from pipeline.chunking import safe_cut
from pipeline.ingest.sources import Source


def count_stream(
    stream: BinaryIO, tokenizer: tokenize.Tokenizer = tokenize.DEFAULT, block_size: int = 256 << 10
) -> Counter[str]:
    """Counts of a whole stream, read in blocks cut only where no word continues.

    Blocks of a few hundred KiB keep every copy of the text (decoded, translated, split)
    in the CPU's caches: 4 MiB blocks cost this baseline ~20% more CPU on shakespeare."""
    counts: Counter[str] = Counter()
    tail = b""
    while True:
        block = stream.read(block_size)
        data = tail + block
        if not block:
            counts.update(tokenizer.tokens(tokenize.decode(data).text))
            return counts
        cut = safe_cut(data, 0, len(data))
        if cut < 0:  # no safe cut yet: the word continues into the next block
            tail = data
            continue
        counts.update(tokenizer.tokens(tokenize.decode(data[:cut]).text))
        tail = data[cut:]


def count_sources(sources: list[Source], tokenizer: tokenize.Tokenizer = tokenize.DEFAULT) -> Counter[str]:
    total: Counter[str] = Counter()
    for source in sources:
        with source.open() as stream:
            total.update(count_stream(stream, tokenizer))
    return total
