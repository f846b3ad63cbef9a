"""Deterministic Chinese and mixed-script text, generated from the seed article's sentences.

The seed (`../shared/corpora/seed-mesos-docker-zh.txt`) is real Chinese prose with English
terms. Where it is absent, a few sentences written for these tests stand in. Some paragraphs
run to ~200 KB without a newline or a space, so many chunks are cut after CJK punctuation.
"""

from __future__ import annotations

import json
import random
from functools import cache

import regex

from tests.helpers import CORPORA, wordpipe
from tests.hostile import PIECES

SEED = CORPORA / "seed-mesos-docker-zh.txt"
STAND_IN = [
    "流处理系统把源源不断的文本切成小块，交给多个工作进程并行统计词频。",
    "每个工作进程只在分区的偏移量被确认之后才提交，所以崩溃只会重放，不会丢失数据。",
    "聚合器把部分计数按词分片汇总，并通过HTTP接口和Kafka主题提供最终结果。",
    "自动扩缩容器观察消费组的积压，在负载上升时启动新的工作进程。",
    "中文没有空格，因此必须先分词，才能正确地统计“数据处理”这样的词语！",
    "在Mesos和Docker之上运行的任务，可以随时被调度到别的节点上；结果依然精确。",
]
# Japanese (kanji and kana) and Thai, Lao, Khmer, Myanmar: the other scripts written without spaces.
OTHER_SCRIPTS = [
    "東京都に住んでいる学生はストリーム処理を勉強しています。",
    "カタカナのコンピューターとひらがなのことばがまざっている文です。",
    "วันนี้อากาศดีมากและเรากำลังนับคำภาษาไทย",
    "ສະບາຍດີ ພາສາລາວ",
    "ភាសាខ្មែរគឺជាភាសាផ្លូវការ",
    "မြန်မာဘာသာစကားကိုရေတွက်သည်",
]


@cache
def sentences() -> list[str]:
    """The seed's sentences, each ending at its full stop, exclamation or question mark."""
    if not SEED.exists():
        return STAND_IN
    text = SEED.read_text(encoding="utf-8")
    found = [s.strip() for s in regex.findall(r"[^。！？\n]+[。！？]", text)]
    return [s for s in found if regex.search(r"\p{Han}", s)]


def chinese_bytes(seed: int = 3, size: int = 1_000_000) -> bytes:
    """About `size` bytes of Chinese prose: the seed's sentences in a random order."""
    return paragraphs(random.Random(seed), size, lambda rng: rng.choice(sentences()))


def mixed_bytes(seed: int = 5, size: int = 1_000_000) -> bytes:
    """Chinese, Japanese, Thai-like scripts, English and hostile pieces, interleaved."""

    def piece(rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.5:
            return rng.choice(sentences())
        if roll < 0.7:
            return rng.choice(OTHER_SCRIPTS)
        if roll < 0.85:
            return rng.choice(PIECES)
        return "To be, or not to be, that is the question: don\u2019t count it twice. "

    return paragraphs(random.Random(seed), size, piece)


def paragraphs(rng: random.Random, size: int, piece) -> bytes:
    out: list[bytes] = []
    length = 0
    while length < size:
        sentences = rng.choice([1, 3, 8, 30, 60, 1500])
        paragraph = "".join(piece(rng) for _ in range(sentences))
        if sentences == 1500:  # as long as several chunks, and without a space: cut after punctuation
            paragraph = paragraph.replace(" ", "")
        paragraph += "\n"
        out.append(paragraph.encode())
        length += len(out[-1])
    return b"".join(out)


# A user dictionary (jieba's format: `word [freq] [tag]`) whose words jieba's own dictionary
# splits: 杭研/大厦, 创新/办, 云/计算 without it; one word each with it.
USER_DICT = "杭研大厦 3 nt\n创新办 3 i\n云计算 5\n"
USER_WORDS = ["杭研大厦", "创新办", "云计算"]
USER_DICT_SENTENCES = ["他来到了网易杭研大厦。", "李小福是创新办主任也是云计算方面的专家。"]


def user_dict_case(directory, seed: int = 7, size: int = 200_000):
    """`(text, dictionary)` files in `directory`: Chinese prose with USER_DICT_SENTENCES
    among it, and USER_DICT. Only a tokenizer holding the dictionary counts USER_WORDS."""
    rng = random.Random(seed)
    text = directory / "user-dict-text.txt"
    piece = lambda r: r.choice(USER_DICT_SENTENCES) if r.random() < 0.2 else r.choice(sentences())  # noqa: E731
    text.write_bytes(paragraphs(rng, size, piece))
    dictionary = directory / "user-dict.txt"
    dictionary.write_text(USER_DICT, encoding="utf-8")
    return text, dictionary


def user_dict_reference(text, dictionary) -> dict:
    """`wordpipe reference --json` of `user_dict_case` with its dictionary, once it is shown
    that the dictionary matters: without it no USER_WORDS is counted, with it every one."""
    without, with_ = (
        wordpipe("reference", str(text), "--json", *extra) for extra in ([], ["--tokenizer-user-dict", str(dictionary)])
    )
    assert without.returncode == 0 and with_.returncode == 0, (without.stderr + with_.stderr).decode()
    without, with_ = json.loads(without.stdout), json.loads(with_.stdout)
    assert not without["counts"].keys() & set(USER_WORDS)
    written = text.read_text(encoding="utf-8")
    assert {w: with_["counts"].get(w) for w in USER_WORDS} == {w: written.count(w) for w in USER_WORDS}
    return with_
