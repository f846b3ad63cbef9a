import random
import unicodedata
from collections import Counter

import pytest
import regex
import rjieba
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from icu4py.breakers import WordBreaker

from pipeline import tokenize
from tests.chinese import OTHER_SCRIPTS, chinese_bytes, mixed_bytes, sentences
from tests.hostile import PIECES


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The cat, the CAT!", ["the", "cat", "the", "cat"]),
        ("cafe\u0301", ["caf\u00e9"]),  # NFD accent composes under NFKC
        ("\ufb01nance", ["finance"]),  # ligature decomposes
        ("\uff37\uff4f\uff52\uff44 \uff11\uff12", ["word", "12"]),  # fullwidth -> ASCII
        (
            "\u039f\u0394\u039f\u03a3 \u03bf\u03b4\u03bf\u03c2",
            ["\u03bf\u03b4\u03bf\u03c3"] * 2,
        ),  # final sigma casefolds to sigma
        ("Stra\u00dfe STRASSE", ["strasse", "strasse"]),  # casefold, not lower()
        ("don\u2019t won't", ["don't", "won't"]),  # curly apostrophe normalised inside tokens
        ("\u2018quoted\u2019", ["quoted"]),  # ...but quotes around a word are not part of it
        ("rock\u2019n\u2019roll", ["rock'n'roll"]),
        ("it's' 'tis", ["it's", "tis"]),  # an apostrophe must be followed by word characters
        ("x\u0308\u0301y", ["\u1e8d\u0301y"]),  # marks compose where NFKC can, the rest stay in the word
        ("\U0001f600 go\U0001f680now", ["go", "now"]),  # emoji separate, never count
        ("non\u00a0breaking", ["non", "breaking"]),  # NBSP separates
        ("zero\u200bwidth", ["zero", "width"]),  # ZWSP is not a word character
        ("snake_case __x__", ["snake_case", "__x__"]),  # underscore is a word character
        ("\u2163 \u00bd", ["iv", "1", "2"]),  # compatibility forms of numbers
        ("", []),
    ],
)
def test_contract_outside_segmented_scripts(text, expected):
    assert tokenize.tokens(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Mesos和Docker简介及其在数据处理中的应用",
            "mesos 和 docker 简介 及其 在 数据处理 中 的 应用",
        ),  # the seed's title
        ("数据处理", "数据处理"),
        ("他来到了网易杭研大厦", "他 来到 了 网易 杭研 大厦"),  # 杭研: not in the dictionary, found by the HMM
        ("ab'和'cd", "ab cd 和"),  # what is left around a run is matched again: the apostrophes go
        ("\u3400\u3401数据", "\u3400 \u3401 数据"),  # Han outside jieba's block: a word each, as jieba yields them
        ("々時々", "々 時 々"),
        ("これはペンです", "これ は ペン です"),  # kana: ICU's dictionary
        ("私は学生です", "私 学生 は です"),  # kanji follow the Han rule, kana ICU's
        ("สวัสดีครับ", "สวัสดี ครับ"),  # Thai: ICU's dictionary
        ("Ｍｅｓｏｓ和ＤＯＣＫＥＲ", "mesos docker 和"),  # fullwidth letters normalised before the cut
    ],
)
def test_contract_segments_scripts_without_spaces(text, expected):
    assert sorted(tokenize.tokens(text)) == sorted(expected.split())


# -- the contract as it is written, slowly: every token, its runs cut out -------------------

_HAN_RUN = regex.compile(r"[\p{Han}&&\w]+", regex.V1)
_ICU_RUN = regex.compile(r"[[\p{Hiragana}\p{Katakana}\u30fc\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]&&\w]+", regex.V1)


def jieba_on_run(run: str, cut=rjieba.cut) -> list[str]:
    """jieba on one Han run: its basic block segmented, any other Han character a word of its own."""
    return [
        w
        for piece in regex.findall(r"[\u4e00-\u9fd5]+|.", run)
        for w in (cut(piece) if "\u4e00" <= piece[0] <= "\u9fd5" else [piece])
    ]


def by_the_letter(text: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for token in tokenize.TOKEN.findall(tokenize.normalize(text)):
        for run in _HAN_RUN.findall(token):
            out.update(jieba_on_run(run))
        rest = _HAN_RUN.sub(" ", token)
        for run in _ICU_RUN.findall(rest):
            out.update(WordBreaker(run, "root"))
        out.update(tokenize.TOKEN.findall(_ICU_RUN.sub(" ", rest)))
    return out


scripts = st.sampled_from(
    [
        *sentences()[:40],
        *OTHER_SCRIPTS,
        *PIECES,
        "数据",
        "处理",
        "\u3400",
        "々",
        "ー",
        "'",
        "\u2019",
        " ",
        "。",
        "…",
        "\u0301",
        "ｶﾀｶﾅ",
        "ab",
        "x'y",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(scripts, st.text(max_size=6)), max_size=30))
def test_the_fast_path_is_the_contract_as_written(pieces):
    text = "".join(pieces)
    assert tokenize.count(text) == by_the_letter(text)


def version_1(text: str) -> list[str]:
    """The contract's version 1, as it was."""
    return regex.findall(r"\w+(?:['\u2019]\w+)*", unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'"))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200))
def test_text_without_segmented_scripts_counts_as_version_1(text):
    text = regex.sub(r"[\p{Han}\p{Hiragana}\p{Katakana}\u30fc\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]", " ", text)
    assume(not tokenize._SEGMENTED.search(tokenize.normalize(text)))  # NFKC makes Han of ㊀, kana of ㋐
    assert tokenize.tokens(text) == version_1(text)


ascii_pieces = st.sampled_from(
    ["a", "Zz", "_", "9", "'", "''", "x'y", "'tis", "o'er'", " ", "\t", "\x1c", "\x0b", "-", "\x00"]
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(st.characters(max_codepoint=127), max_size=200), st.lists(ascii_pieces).map("".join)))
def test_ascii_text_counts_as_the_contract_says(text):
    """ASCII text takes a path of its own (no NFKC, lowercasing for casefold, cut by a table)."""
    assert tokenize.count(text) == Counter(version_1(text)) == Counter(tokenize.tokens(text))


def random_han(seed: int, count: int) -> str:
    """`count` random strings of 1-12 common Han characters, each its own line."""
    rng = random.Random(seed)
    return "\n".join("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 12))) for _ in range(count))


def held_to_jieba(text: str, ours: tokenize.Tokenizer, jieba_cut) -> None:
    runs = Counter(_HAN_RUN.findall(tokenize.normalize(text)))
    expected: Counter[str] = Counter()
    for run, n in runs.items():
        for word in jieba_on_run(run, jieba_cut):
            expected[word] += n
    assert Counter({w: n for w, n in ours.count(text).items() if _HAN_RUN.fullmatch(w)}) == expected


@pytest.fixture(scope="module")
def jieba():
    import jieba

    jieba.setLogLevel(60)
    return jieba


def test_han_words_equal_plain_jieba_on_each_run(jieba):
    """On 10.5 MB of Chinese prose (the seed's sentences: a few hundred distinct runs, repeated)
    and on 3,000 random Han strings, the fast segmenter is held to jieba itself."""
    text = chinese_bytes(3, 10_500_000).decode()
    assert len(text.encode()) > 10_000_000
    held_to_jieba(text, tokenize.DEFAULT, jieba.lcut)
    held_to_jieba(random_han(1, 3_000), tokenize.DEFAULT, jieba.lcut)


def test_a_user_dictionary_segments_as_jieba_with_it(jieba, tmp_path):
    path = tmp_path / "user.dict"
    path.write_text("\ufeff杭研大厦 3 nt\n创新办 3 i\n云计算\n数据 2\n处理器 9\n", encoding="utf-8")
    plain = jieba.Tokenizer()
    plain.load_userdict(str(path))
    text = (
        chinese_bytes(5, 300_000).decode()
        + "他来到了网易杭研大厦。创新办主任也是云计算方面的专家。\n"
        + random_han(2, 1_000)
    )
    held_to_jieba(text, tokenize.Tokenizer.load(str(path)), plain.lcut)


def test_mixed_text_runs_joined_segment_as_runs_alone():
    text = mixed_bytes(9, 300_000).decode()
    assert tokenize.count(text) == by_the_letter(text)


def test_invalid_bytes_are_replaced_and_counted():
    decoded = tokenize.decode(b"ok \xff\xfe mid\xc3 end \xef\xbf\xbd")
    assert decoded.invalid_bytes == 3  # \xff, \xfe, truncated \xc3; the literal U+FFFD is not counted
    assert decoded.text == "ok \ufffd\ufffd mid\ufffd end \ufffd"
    assert tokenize.tokens(decoded.text) == ["ok", "mid", "end"]


def test_count_matches_tokens():
    assert tokenize.count("a b a") == Counter({"a": 2, "b": 1})


# -- the user dictionary and the tokenizer's id ----------------------------------------------


def test_a_user_dictionary_changes_words_and_the_id(tmp_path):
    path = tmp_path / "user.dict"
    path.write_text("杭研大厦 5 nz\n\n云原生\n", encoding="utf-8")
    custom = tokenize.Tokenizer.load(str(path))
    assert custom.user_words == (tokenize.UserWord("杭研大厦", 5, "nz"), tokenize.UserWord("云原生", None, None))
    assert "杭研大厦" in custom.tokens("他来到了网易杭研大厦")
    assert "杭研大厦" not in tokenize.tokens("他来到了网易杭研大厦")
    assert custom.id != tokenize.DEFAULT.id
    assert custom.id.startswith("unicode/2/") and tokenize.DEFAULT.id.startswith("unicode/2/")
    # Workers get it as a data URI: the same words, so the same id.
    assert tokenize.Tokenizer.load(tokenize.as_data_uri(str(path))).id == custom.id


@pytest.mark.parametrize(
    "content, message",
    [
        ("数据 3\nmesos 2\n", "line 2: 'mesos' is not a word of Chinese characters"),
        ("数据 处理\n", "line 1: '数据 处理' is not a word of Chinese characters"),
        ("\u3400\u3401\n", "line 1"),  # outside jieba's block: the dictionary never sees it
        ("数据 0\n", "line 1: '数据' has frequency 0, which is not supported"),  # jieba's "keep apart"
    ],
)
def test_a_user_dictionary_that_cannot_match_is_refused(tmp_path, content, message):
    path = tmp_path / "user.dict"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(tokenize.TokenizerError, match=message) as info:
        tokenize.Tokenizer.load(str(path))
    assert str(path) in str(info.value)


def test_a_user_dictionary_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(tokenize.TokenizerError, match="cannot read .*missing.dict"):
        tokenize.Tokenizer.load(str(tmp_path / "missing.dict"))
    (tmp_path / "latin1.dict").write_bytes("数据".encode("gb18030"))
    with pytest.raises(tokenize.TokenizerError, match="latin1.dict"):
        tokenize.Tokenizer.load(str(tmp_path / "latin1.dict"))
    with pytest.raises(tokenize.TokenizerError, match="cannot read the data URI"):
        tokenize.Tokenizer.load("data:application/gzip;base64,bm90IGd6aXA=")


def test_a_user_dictionary_too_large_for_an_environment_is_refused(tmp_path):
    import random

    rng = random.Random(1)
    path = tmp_path / "big.dict"
    path.write_text(
        "".join(
            "".join(chr(rng.randint(0x4E00, 0x9FD5)) for _ in range(4)) + f" {rng.randint(1, 9999)}\n"
            for _ in range(40_000)
        ),
        encoding="utf-8",
    )
    with pytest.raises(tokenize.TokenizerError, match="at most 98,304"):
        tokenize.as_data_uri(str(path))


def test_the_quick_test_for_segmented_scripts_misses_none():
    """Every character a run may hold, as NFKC leaves it, is caught by the quick test (planes 0-3: all of them)."""
    segmented = regex.compile(tokenize._SEGMENTED.pattern, regex.V1)
    missed = [
        hex(cp)
        for cp in range(0x40000)
        if segmented.match(chr(cp))
        and tokenize.normalize(chr(cp)) == chr(cp)
        and not tokenize._maybe_segmented(chr(cp))
    ]
    assert not missed
    assert not tokenize._maybe_segmented("Русский текст, ελληνικά, العربية, emoji \U0001f600, \ufffd, “quotes” — dash")
    assert tokenize._maybe_segmented("x\U00020000") and tokenize._maybe_segmented("\u0e01")


def test_english_counts_are_those_of_version_1():
    from tests.helpers import CORPORA, SAMPLE

    for path in (SAMPLE, CORPORA / "shakespeare.txt"):
        if path.exists():
            text = path.read_text(encoding="utf-8")
            assert tokenize.count(text) == Counter(version_1(text))
