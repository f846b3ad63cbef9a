"""The words a POST /v1/words body asks for, whatever the body holds: a pure function, and
BadBody for every other shape (a 400, never a 500)."""

from __future__ import annotations

import json

MAX_LOOKUP = 1000  # words in one POST /v1/words


class BadBody(Exception):
    """A body that is not `{"words": [...]}`: the API answers it with a 400 of this code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)
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
