"""What POST /v1/words computes before it reads any total, as pure functions: the words a
body asks for, and what the tokenizer makes of each. The results API runs them on its event
loop when they are cheap and in a child process (lookup_process.py) when they are not, so
both must be picklable: their arguments, results and BadBody.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from pipeline.errors import UsageError
from pipeline.tokenize import Tokenizer

MAX_LOOKUP = 1000  # words in one POST /v1/words


class BadBody(UsageError):
    """A body that is not `{"words": [...]}`: the API answers it with a 400 of this code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)  # both in args: pickled across the process boundary
        self.code, self.detail = code, detail


def words_in(body: bytes) -> list[str]:
    """The words of a POST /v1/words body; BadBody for anything else, whatever its shape."""
    try:
        parsed = json.loads(body)
    except RecursionError:  # json gives up at the recursion limit (1,000 levels); words nest two
        raise BadBody("bad_json", "the body nests arrays or objects too deep to read") from None
    except ValueError as exc:  # UnicodeDecodeError included, and integers of more than 4,300 digits
        raise BadBody("bad_json", f"the body is not JSON that can be read ({exc})") from None
    words = parsed.get("words") if isinstance(parsed, dict) else None
    if not (isinstance(words, list) and 1 <= len(words) <= MAX_LOOKUP and all(isinstance(w, str) for w in words)):
        raise BadBody(
            "bad_words", f'expected {{"words": [...]}}: a list of 1 to {MAX_LOOKUP} strings, the words to look up'
        )
    return words


class Tokenized(NamedTuple):
    """What the tokenizer makes of a string asked for."""

    tokens: int  # how many words it finds in it
    word: str | None  # the one word, when it finds exactly one
    run: str | None  # when it finds another number: the string normalized, if one run of a segmented script


def tokenized(tokenizer: Tokenizer, raw: str) -> Tokenized:
    found = tokenizer.tokens(raw)
    if len(found) == 1:
        return Tokenized(1, found[0], None)
    return Tokenized(len(found), None, tokenizer.run_of(raw))
