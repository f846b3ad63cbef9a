from collections import Counter

import pytest

from pipeline import tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The cat, the CAT!", ["the", "cat", "the", "cat"]),
        ("cafe\u0301", ["caf\u00e9"]),  # NFD accent composes under NFKC
        ("\ufb01nance", ["finance"]),  # ligature decomposes
        ("\uff37\uff4f\uff52\uff44 \uff11\uff12", ["word", "12"]),  # fullwidth -> ASCII
        ("\u039f\u0394\u039f\u03a3 \u03bf\u03b4\u03bf\u03c2", ["\u03bf\u03b4\u03bf\u03c3"] * 2),  # final sigma casefolds to sigma
        ("Stra\u00dfe STRASSE", ["strasse", "strasse"]),  # casefold, not lower()
        ("don\u2019t won't", ["don't", "won't"]),  # curly apostrophe normalised inside tokens
        ("\u2018quoted\u2019", ["quoted"]),  # ...but quotes around a word are not part of it
        ("rock\u2019n\u2019roll", ["rock'n'roll"]),
        ("it's' 'tis", ["it's", "tis"]),  # an apostrophe must be followed by word characters
        ("x\u0308\u0301y", ["\u1e8d\u0301y"]),  # marks compose where NFKC can, the rest stay in the word
        ("\u6570\u636e\u5904\u7406", ["\u6570\u636e\u5904\u7406"]),  # a CJK run is one token
        ("\U0001f600 go\U0001f680now", ["go", "now"]),  # emoji separate, never count
        ("non\u00a0breaking", ["non", "breaking"]),  # NBSP separates
        ("zero\u200bwidth", ["zero", "width"]),  # ZWSP is not a word character
        ("snake_case __x__", ["snake_case", "__x__"]),  # underscore is a word character
        ("\u2163 \u00bd", ["iv", "1", "2"]),  # compatibility forms of numbers
        ("", []),
    ],
)
def test_contract(text, expected):
    assert tokenize.tokens(text) == expected


def test_invalid_bytes_are_replaced_and_counted():
    decoded = tokenize.decode(b"ok \xff\xfe mid\xc3 end \xef\xbf\xbd")
    assert decoded.invalid_bytes == 3  # \xff, \xfe, truncated \xc3; the literal U+FFFD is not counted
    assert decoded.text == "ok \ufffd\ufffd mid\ufffd end \ufffd"
    assert tokenize.tokens(decoded.text) == ["ok", "mid", "end"]


def test_count_matches_tokens():
    assert tokenize.count("a b a") == Counter({"a": 2, "b": 1})
