"""Cut byte streams into chunks where no word can continue, so per-chunk counts add up to the whole.

The safe places to cut are after ASCII whitespace and after CJK punctuation (BREAKS):
none of them is part of a UTF-8 sequence of another character, a word character or an
apostrophe, NFKC neither composes nor reorders across them (what it maps the full-width
forms to is ASCII punctuation that composes with nothing), and no run of Han, kana or
Thai-like script continues across them, so tokenizing the pieces gives exactly the
tokens of the whole (pipeline/tokenize.py). Not after "…": NFKC turns it into "...".
Chinese prose has such punctuation every few sentences. A run without any, longer than
the chunk size, is the one exception: it is cut at a UTF-8 character boundary and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

WHITESPACE = tuple(bytes([b]) for b in b" \t\n\r\x0b\x0c")
BREAKS = tuple(
    c.encode()
    for c in "\u3002\uff0c\uff01\uff1f\u3001\uff1b\uff1a\u300c\u300d\u300e\u300f\uff08\uff09\u300a\u300b\u3010\u3011\u3000"
)
DEFAULT_CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True)
class Chunk:
    offset: int  # byte offset of the chunk in its source
    data: bytes


def safe_cut(buf: bytes | bytearray, start: int, limit: int) -> int:
    """The last position c, start < c <= limit, where cutting `buf` splits no word; -1 if none.

    Whitespace is found near `limit` at once in almost all text, so the punctuation is
    searched only after the last whitespace: in English, a few bytes.
    """
    last_ws = max(buf.rfind(ws, start, limit + 1) for ws in WHITESPACE)
    cut = -1
    if last_ws >= start:  # (callers give limit > start)
        cut = last_ws + 1 if last_ws < limit else last_ws  # before a whitespace at `limit`
    for mark in BREAKS:
        at = buf.rfind(mark, max(start, cut), limit)
        if at >= 0:
            cut = max(cut, at + len(mark))
    return cut


def cut_points(buf: bytes | bytearray, chunk_size: int, *, final: bool) -> Iterator[tuple[int, bool]]:
    """End positions of whole chunks at the front of `buf`, each with `forced` (cut inside a word).

    Cuts are where `safe_cut` finds them. Without `final`, a tail that might still grow
    into a longer chunk is left for the next call.
    """
    start = 0
    while len(buf) - start > chunk_size:
        end = safe_cut(buf, start, start + chunk_size)
        if end > 0:
            yield end, False
        else:
            end = start + chunk_size
            floor = max(start + 1, end - 3)  # a UTF-8 character has at most 3 continuation bytes
            while end > floor and 0x80 <= buf[end] <= 0xBF:
                end -= 1
            yield end, True
        start = end
    if final and len(buf) > start:
        yield len(buf), False


class Chunker:
    """Incremental: feed bytes as they arrive, take the chunks that are whole.

    For sources that push (an HTTP body) rather than pull; `iter_chunks` wraps it for streams.
    `on_forced_cut(offset)` is called with the source byte offset of every cut made
    inside a run with no safe place to cut.
    """

    def __init__(
        self, chunk_size: int = DEFAULT_CHUNK_SIZE, on_forced_cut: Callable[[int], None] | None = None
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 byte, got {chunk_size}")
        self.chunk_size = chunk_size
        self.on_forced_cut = on_forced_cut
        self.buf = bytearray()
        self.base = 0  # source offset of buf[0]

    @property
    def pending(self) -> int:
        """Bytes fed but not yet in a chunk."""
        return len(self.buf)

    def feed(self, block: bytes) -> list[Chunk]:
        self.buf += block
        return self._cut(final=False)

    def finish(self) -> list[Chunk]:
        """The rest, as the last chunk(s)."""
        return self._cut(final=True)

    def take_whole(self) -> list[Chunk]:
        """Everything up to the last safe cut fed so far, keeping only a word still being
        written: what a stream can commit now without changing any count."""
        cut = safe_cut(self.buf, 0, len(self.buf))
        if cut < 0:
            return []
        return self._cut(final=True, upto=cut)

    def _cut(self, final: bool, upto: int | None = None) -> list[Chunk]:
        out, start = [], 0
        view = self.buf if upto is None else self.buf[:upto]
        for end, forced in cut_points(view, self.chunk_size, final=final):
            if forced and self.on_forced_cut:
                self.on_forced_cut(self.base + end)
            out.append(Chunk(self.base + start, bytes(self.buf[start:end])))
            start = end
        del self.buf[:start]
        self.base += start
        return out


def iter_chunks(
    stream: BinaryIO,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_forced_cut: Callable[[int], None] | None = None,
    read_size: int = 1 << 20,
) -> Iterator[Chunk]:
    """Chunks of at most `chunk_size` bytes from a binary stream, cut where no word continues."""
    chunker = Chunker(chunk_size, on_forced_cut)
    while True:
        block = stream.read(max(read_size, chunk_size))
        if not block:
            yield from chunker.finish()
            return
        yield from chunker.feed(block)
