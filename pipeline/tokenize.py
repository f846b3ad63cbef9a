"""The tokenizer contract (`unicode`), shared by workers and `wordpipe reference`.

1. decode UTF-8, invalid bytes replaced by U+FFFD (counted, so callers can warn);
2. NFKC-normalize, then casefold;
3. every match of ``\\w+(?:['\\u2019]\\w+)*`` (the `regex` module: Unicode word
   characters, combining marks included);
4. U+2019 becomes U+0027 inside each token.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import NamedTuple

import regex

TOKEN = regex.compile(r"\w+(?:['\u2019]\w+)*")
_REPLACEMENT_UTF8 = "\ufffd".encode()


class Decoded(NamedTuple):
    text: str
    invalid_bytes: int  # how many U+FFFD the decoder inserted (not ones already in the input)


def decode(data: bytes) -> Decoded:
    text = data.decode("utf-8", "replace")
    inserted = text.count("\ufffd") - data.count(_REPLACEMENT_UTF8)
    return Decoded(text, inserted)


def normalize(text: str) -> str:
    # Replacing U+2019 before matching is equivalent to replacing it inside tokens:
    # the pattern treats both apostrophes alike and text outside tokens is dropped.
    return unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(normalize(text))


def count(text: str) -> Counter[str]:
    return Counter(tokens(text))
