"""The tokenizer contract (`unicode`, version 2), shared by workers, ingest, the results API
and `wordpipe reference`.

1. decode UTF-8, invalid bytes replaced by U+FFFD (counted, so callers can warn);
2. NFKC-normalize, then casefold; U+2019 becomes U+0027;
3. every match of ``\\w+(?:['\\u2019]\\w+)*`` (the `regex` module: Unicode word characters,
   combining marks included) is a token, except that scripts written without spaces
   are cut out of it and segmented by a dictionary:

   * every maximal run of Han characters (``[\\p{Han}&&\\w]``) is segmented with jieba's
     precise mode (HMM on, its bundled dictionary plus the user dictionary), exactly as
     ``jieba.lcut`` segments that run alone: its basic CJK block (U+4E00-U+9FD5) through
     rjieba (jieba-rs), any other Han character as a word of its own, as jieba does;
   * every maximal run of kana (word characters of the Hiragana or Katakana script, and
     ``ー``) and of Thai, Lao, Khmer or Myanmar is segmented with ICU's dictionary word
     break iterator;
   * what is left of the token around those runs is matched again by the pattern, so
     ``mesos和docker简介`` gives the words ``mesos``, ``和``, ``docker`` and ``简介`` (in no
     particular order: only counts are kept).

Text without those scripts counts exactly as version 1 did. Every boundary between a
segmented run and other text is a boundary between words, so a chunk may be cut there
(pipeline/chunking.py).

A `Tokenizer` names itself (`id`): the contract's name and version and a digest of what
decides a word besides this code (the Unicode versions of NFKC and of `regex`, the
segmenters' versions, whose dictionaries are bundled, and the user dictionary). Chunks carry the id of the
tokenizer that must count them, and a worker with another refuses them.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
import unicodedata
import zlib
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import regex

from pipeline.errors import ConfigError

NAME = "unicode"
VERSION = 2

TOKEN = regex.compile(r"\w+(?:['\u2019]\w+)*")
# The runs a dictionary segments; the rest of the text is matched by TOKEN as it always was.
_HAN = r"\p{Han}&&\w"
_KANA = r"[\p{Hiragana}\p{Katakana}\u30fc]&&\w"  # ー is of no script, and of kana words only
_SOUTHEAST = r"[\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]&&\w"
_SEGMENTED = regex.compile(rf"[[{_HAN}][{_KANA}][{_SOUTHEAST}]]", regex.V1)
# One pass over a text that has runs: each match is a run for jieba (its basic block), a Han
# character outside it (a word of its own, as jieba yields it), a run for ICU, or a word
# of the rest, which stops where a run starts.
_PIECE = regex.compile(
    rf"(?P<jieba>[\u4e00-\u9fd5]+)|(?P<han>[{_HAN}])|(?P<icu>[[{_KANA}][{_SOUTHEAST}]]+)"
    rf"|(?P<rest>[\w--{_SEGMENTED.pattern}]+(?:'[\w--{_SEGMENTED.pattern}]+)*)",
    regex.V1,
)
# Blocks that hold every character of the runs above that NFKC leaves as it is (halfwidth
# kana it does not), and few else: a quick test that a text has none of them (the standard
# library's re scans a plain class several times as fast as regex scans properties).
# tests/unit/test_tokenize.py checks that it covers them.
_MAYBE_SEGMENTED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b"
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua9e0-\ua9ff\uaa60-\uaa7f\uf900-\ufaff"
    "\U000116d0-\U000116ff\U00016fe0-\U00016fff\U0001aff0-\U0001b16f\U00020000-\U0003ffff]"
)
# Quicker still, and coarser, on the text's UTF-16 code units: the high bytes of those blocks
# in the BMP, and the high surrogates of those above it (U+116D0, U+16FE0, U+1AFF0-U+1B16F,
# planes 2 and 3; emoji are elsewhere). Text without one, Cyrillic, Greek, Arabic or emoji
# say, is known to need no segmenter after ~1 ns a character.
_NOT_SEGMENTED_HIGH = bytes(
    sorted(
        set(range(256)) - {0x0E, 0x10, 0x17, 0x19, 0x2E, 0x2F, 0x30, 0x31, *range(0x34, 0xA0), 0xA9, 0xAA, 0xF9, 0xFA}
    )
)
_SEGMENTED_SURROGATE = re.compile(rb"\xd8[\x05\x1b\x2b\x2c\x40-\xbf]")  # unaligned matches only cost a closer look
# ASCII text is most text. NFKC leaves it as it is and casefolding it is lowercasing, so its
# words are the runs of [a-z0-9_] joined by single apostrophes: a table lowercases it and
# blanks every other character, a substitution blanks the apostrophes that join nothing
# ("'tis", "o'er'", "a''b"), and `split` cuts the rest, all at C speed.
_ASCII_WORDS = str.maketrans({c: c.lower() if c.isalnum() or c in "_'" else " " for c in map(chr, range(128))})
_STRAY_APOSTROPHE = re.compile(r"'(?<![a-z0-9_]')|'(?![a-z0-9_])")
_REPLACEMENT_UTF8 = "\ufffd".encode()
_ICU_LOCALE = "root"  # ICU picks the dictionary by script; the locale changes nothing here


# The user dictionary travels to workers inside their environment, in every backend.
_DATA_URI = "data:application/gzip;base64,"
MAX_DATA_URI = 96 * 1024  # Linux refuses one environment string over 128 KiB


class TokenizerError(ConfigError):
    """A user dictionary that cannot be used; the message names the file and line."""


class Decoded(NamedTuple):
    text: str
    invalid_bytes: int  # how many U+FFFD the decoder inserted (not ones already in the input)


def decode(data: bytes) -> Decoded:
    if data.isascii():  # most text: valid as it is, so nothing to count (two scans of the chunk saved)
        return Decoded(data.decode("ascii"), 0)
    text = data.decode("utf-8", "replace")
    inserted = text.count("\ufffd") - data.count(_REPLACEMENT_UTF8)
    return Decoded(text, inserted)


def normalize(text: str) -> str:
    # Replacing U+2019 before matching is equivalent to replacing it inside tokens:
    # the pattern treats both apostrophes alike and text outside tokens is dropped.
    return unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")


class UserWord(NamedTuple):
    word: str
    freq: int | None
    tag: str | None


def parse_user_dict(text: str, origin: str = "tokenizer_user_dict") -> tuple[UserWord, ...]:
    """jieba's user dictionary format: one `word [freq] [tag]` a line; words normalized as text is."""
    words = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        match = regex.fullmatch(r"(.+?)(?: ([0-9]+))?(?: ([a-z]+))?", line)
        assert match is not None  # `.+?` matches any non-empty line
        word = normalize(match[1])
        if not regex.fullmatch(r"[\u4e00-\u9fd5]+", word):
            raise TokenizerError(
                f"{origin} line {number}: {match[1]!r} is not a word of Chinese characters (U+4E00-U+9FD5); "
                "the dictionary only segments runs of them, so it could never match"
            )
        if match[2] is not None and int(match[2]) == 0:  # jieba then keeps the word apart; rjieba cannot
            raise TokenizerError(
                f"{origin} line {number}: {match[1]!r} has frequency 0, which is not supported; "
                "leave the word out, or give it a frequency of at least 1"
            )
        words.append(UserWord(word, int(match[2]) if match[2] else None, match[3]))
    return tuple(words)


def _where(location: str) -> str:
    """A location fit for a message: a data URI may be 96 KiB."""
    return "the data URI" if location.startswith("data:") else location


def read_user_dict(location: str) -> str:
    """The text of a user dictionary given as a path or as the data URI of `as_data_uri`."""
    try:
        if location.startswith(_DATA_URI):
            return gzip.decompress(base64.b64decode(location[len(_DATA_URI) :], validate=True)).decode("utf-8")
        return Path(location).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, binascii.Error, EOFError, zlib.error) as exc:
        raise TokenizerError(f"tokenizer_user_dict: cannot read {_where(location)}: {exc}") from None


def as_data_uri(location: str) -> str:
    """The user dictionary at `location` as a data URI, to pass in a worker's environment."""
    text = read_user_dict(location)
    parse_user_dict(text, f"tokenizer_user_dict {_where(location)}")  # refused here, not in every worker
    uri = _DATA_URI + base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    if len(uri) > MAX_DATA_URI:
        raise TokenizerError(
            f"tokenizer_user_dict: {_where(location)} takes {len(uri):,} bytes gzip'ed and base64-encoded; "
            f"workers receive it in their environment, which holds at most {MAX_DATA_URI:,}"
        )
    return uri


class Tokenizer:
    """The contract, with an optional user dictionary (jieba's format, as text)."""

    def __init__(self, user_dict: str | None = None, origin: str = "tokenizer_user_dict") -> None:
        self.user_words = parse_user_dict(user_dict or "", origin)

    @classmethod
    def load(cls, user_dict: str | None) -> Tokenizer:
        """The tokenizer with the `tokenizer_user_dict` setting: a file, or the data URI workers get."""
        if not user_dict:
            return cls()
        return cls(read_user_dict(user_dict), f"tokenizer_user_dict {_where(user_dict)}")

    @cached_property
    def id(self) -> str:
        """`unicode/2/<digest>`: chunks counted by one id are never counted by another."""
        import importlib.metadata  # here, as icu4py: what only the id needs, only the id imports

        import icu4py

        decides = "\n".join(
            [
                f"unicodedata {unicodedata.unidata_version}",
                f"regex {regex.__version__}",  # its own Unicode tables decide \w and the scripts
                f"rjieba {importlib.metadata.version('rjieba')}",
                f"icu {icu4py.icu_version}",
                *(f"user {w.word} {w.freq} {w.tag}" for w in self.user_words),
            ]
        )
        return f"{NAME}/{VERSION}/{hashlib.sha256(decides.encode()).hexdigest()[:16]}"

    @cached_property
    def _jieba(self):  # built on first use: English-only text never pays for the dictionary
        import rjieba

        jieba = rjieba.Jieba()
        for word in self.user_words:
            jieba.add_word(word.word, word.freq, word.tag)
        return jieba

    def tokens(self, text: str) -> list[str]:
        if text.isascii():
            return _ascii_words(text)
        text = normalize(text)
        if text.isascii() or not _maybe_segmented(text):
            return TOKEN.findall(text)  # no run to segment: version 1's words, at its speed
        return self._segmented(text)

    def count(self, text: str) -> Counter[str]:
        return Counter(self.tokens(text))

    @staticmethod
    def run_of(text: str) -> str | None:
        """`text` normalized, when it is one run of a segmented script: a segmenter may cut
        apart, alone, what it found as one word in context (jieba's HMM does)."""
        normal = normalize(text)
        piece = _PIECE.fullmatch(normal)
        return normal if piece is not None and piece.lastgroup in ("jieba", "icu") else None

    def _segmented(self, text: str) -> list[str]:
        out: list[str] = []
        jieba_runs: list[str] = []
        icu_runs: list[str] = []
        for piece in _PIECE.finditer(text):
            kind = piece.lastgroup
            if kind == "rest" or kind == "han":
                out.append(piece[0])
            elif kind == "jieba":
                jieba_runs.append(piece[0])
            else:
                icu_runs.append(piece[0])
        if jieba_runs:
            # One call for the chunk: the newline separates runs exactly as separate calls would.
            out += [w for w in self._jieba.cut("\n".join(jieba_runs)) if w != "\n"]
        if icu_runs:
            out += _icu_words("\n".join(icu_runs))
        return out


def _ascii_words(text: str) -> list[str]:
    kept = text.translate(_ASCII_WORDS)
    if "'" in kept:
        kept = _STRAY_APOSTROPHE.sub(" ", kept)
    return kept.split()


def _maybe_segmented(text: str) -> bool:
    units = text.encode("utf-16-be", "surrogatepass")
    if not units[0::2].translate(None, _NOT_SEGMENTED_HIGH) and not _SEGMENTED_SURROGATE.search(units):
        return False
    return _MAYBE_SEGMENTED.search(text) is not None


def _icu_words(text: str) -> list[str]:
    from icu4py.breakers import WordBreaker

    return [w for w in WordBreaker(text, _ICU_LOCALE) if w != "\n"]


DEFAULT = Tokenizer()


def tokens(text: str) -> list[str]:
    """Tokens by the contract without a user dictionary."""
    return DEFAULT.tokens(text)


def count(text: str) -> Counter[str]:
    return DEFAULT.count(text)
