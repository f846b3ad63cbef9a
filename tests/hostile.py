"""Deterministic hostile text: everything that breaks naive tokenizers and chunkers."""

from __future__ import annotations

import random
import zlib

PIECES = [
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",  # NFD accents
    "\uff37\uff4f\uff52\uff44\uff50\uff49\uff50\uff45 \uff11\uff12\uff13",  # fullwidth letters and digits
    "\ufb01nance \ufb02ow \ufb00ort",  # ligatures fi fl ff
    "\u039f\u0394\u039f\u03a3 \u03bf\u03b4\u03bf\u03c2 \u03a3\u039f\u03a6\u039f\u03a3",  # final sigma, upper and lower
    "don\u2019t won't rock\u2019n\u2019roll \u2018quoted\u2019 O\u2019Brien",  # curly apostrophes
    "\u6570\u636e\u5904\u7406 \u5bb9\u5668\u5316 Mesos\u548cDocker\u7b80\u4ecb",  # CJK mixed with Latin
    "\U0001f600 emoji\U0001f680rocket \U0001f44d\U0001f3fd thumbs",  # emoji (not word characters)
    "non\u00a0breaking\u00a0space",  # NBSP
    "zero\u200bwidth\u200bspace",  # ZWSP
    "line one\r\nline two\r\n",  # CRLF
    "Stra\u00dfe STRASSE stra\u00dfe",  # casefold sharp s
    "\u0131stanbul \u0130stanbul",  # dotless and dotted i
    "x\u0308\u0301\u0323y combining\u0301\u0302\u0303marks",  # stacked marks
    "tab\tseparated\x0bvertical\x0cformfeed",
    "\u2163 \u2460 \u00bd \u33a1",  # roman numeral, circled digit, vulgar fraction, squared unit
    "under_score snake_case_word __dunder__",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea",  # RTL scripts
]


def hostile_bytes(seed: int = 7, size: int = 300_000) -> bytes:
    """About `size` bytes of hostile text, with invalid UTF-8 and multi-KB runs mixed in."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        roll = rng.random()
        if roll < 0.05:
            out += b" \xff\xfe broken \xc3 \xe2\x82 \xed\xa0\x80 "  # invalid and truncated sequences, a surrogate
        elif roll < 0.08:
            out += b" " + ("a" * rng.randint(2000, 9000)).encode() + b" "  # a run of several KB
        elif roll < 0.10:
            out += (" " + "\u00e9" * rng.randint(1000, 3000) + "\u2019s ").encode()  # a multi-KB run of 2-byte chars
        else:
            out += rng.choice(PIECES).encode() + rng.choice([b" ", b"\n", b"\r\n", b"\t", "\u00a0".encode()])
    return bytes(out)


def gzip_bomb(piece: bytes, size: int) -> bytes:
    """A valid gzip body of `piece` repeated to about `size` bytes, made in a second however
    large: one MiB block compressed once after a full flush (which resets the compressor,
    so every copy compresses the same), repeated."""
    block = piece * ((1 << 20) // len(piece))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    copies = max(1, size // len(block))
    crc = 0
    for _ in range(copies):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    last = b"\x03\x00"  # an empty final block
    return (
        header
        + compressed * copies
        + last
        + crc.to_bytes(4, "little")
        + (copies * len(block) % 2**32).to_bytes(4, "little")
    )
