"""Pure: the order `GET /v1/totals` pages through every word in, and its cursors.

A page's cursor is the word it ended on, and a client sends it back in the URL, which holds
~8 KB, where a word may be 65,000 characters (a chunk's worth) or more. So words are in
word order by their first CURSOR_CHARS characters; those longer than that which share them
follow the one that is exactly them, in the order of a digest of the whole word. A cursor
is then the word itself, or for a longer word its first CURSOR_CHARS characters and the
digest: at most CURSOR_CHARS + DIGEST_CHARS characters, and every instance can tell from it
alone which of its own words come after (every instance orders its words the same way).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence

CURSOR_CHARS = 256
DIGEST_CHARS = 32
_DIGEST = re.compile(f"[0-9a-f]{{{DIGEST_CHARS}}}")


def digest(word: str) -> str:
    return hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=DIGEST_CHARS // 2).hexdigest()


def key(word: str) -> tuple[str, str]:
    """Where a word pages: (its first CURSOR_CHARS characters, "" or the whole word's digest)."""
    return (word, "") if len(word) <= CURSOR_CHARS else (word[:CURSOR_CHARS], digest(word))


def cursor(word: str) -> str:
    """The cursor of a page that ended on `word`."""
    head, tail = key(word)
    return head + tail


def ordered(words: Iterable[str]) -> list[str]:
    """`words` in paging order: sorted, then each run of long words that share their first
    CURSOR_CHARS characters (contiguous once sorted) put in digest order."""
    out = sorted(words)
    long = itertools.compress(itertools.count(), map(CURSOR_CHARS.__lt__, map(len, out)))
    for _, run in itertools.groupby(long, lambda i: out[i][:CURSOR_CHARS]):
        at = list(run)  # contiguous: every word between two that share a prefix shares it
        out[at[0] : at[-1] + 1] = sorted(out[at[0] : at[-1] + 1], key=digest)
    return out


def position(words: Sequence[str], after: str) -> int:
    """The index of the first of `words` (in paging order) that pages after the cursor or
    word `after`."""
    head, tail = _cursor_key(after)
    start = bisect.bisect_right(words, head)  # past every word that pages before `head`'s run
    if not tail:
        return start
    # The run of words longer than `head` that start with it follows at once; bisected, as a
    # hostile upload can make it as long as it likes.
    end = bisect.bisect_left(words, True, start, key=lambda word: not word.startswith(head))
    return bisect.bisect_right(words, tail, start, end, key=digest)


def _cursor_key(after: str) -> tuple[str, str]:
    if len(after) == CURSOR_CHARS + DIGEST_CHARS and _DIGEST.fullmatch(after, CURSOR_CHARS):
        return after[:CURSOR_CHARS], after[CURSOR_CHARS:]
    return key(after)  # a word, as a client may start anywhere
