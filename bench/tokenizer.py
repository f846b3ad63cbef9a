"""Tokenizer throughput in MB/s per core: contract version 1 (before) against version 2 (after).

    python bench/tokenizer.py [--mb 10] [--repeat 5]

Each text is cut into 64 KiB chunks by pipeline.chunking.iter_chunks, as ingest cuts it,
and each chunk is decoded and tokenized, as a worker does. The time is the process's CPU
time (`time.process_time`), so the figure is per core and a busy machine disturbs it
less; the best of --repeat passes is reported. Texts: Chinese (tests/chinese.py, --mb MB),
Japanese (kanji and kana sentences, 0.3 x --mb), mixed scripts (tests/chinese.py,
0.5 x --mb), English (shakespeare.txt repeated to --mb MB), and two texts with no run to
segment that are not ASCII: English with emoji and Russian (0.3 x --mb each). Both versions
are timed in the same run; the last three must give identical tokens under both. Writes
bench/out/tokenizer.json.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import regex  # noqa: E402
from e2e_throughput import corpus_text  # noqa: E402

from pipeline import tokenize  # noqa: E402
from pipeline.chunking import iter_chunks  # noqa: E402
from tests.chinese import OTHER_SCRIPTS, chinese_bytes, mixed_bytes, paragraphs  # noqa: E402

# Contract version 1, exactly (git show 7cb4413^:pipeline/tokenize.py): the "before".
V1_TOKEN = regex.compile(r"\w+(?:['\u2019]\w+)*")


def tokens_v1(text: str) -> list[str]:
    return V1_TOKEN.findall(unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'"))


JAPANESE = OTHER_SCRIPTS[:2] + [  # its two Japanese sentences, and these
    "単語の数を数えるためには、まず文章を正しく分割しなければなりません。",
    "昨日の夜、友達と一緒に新しいレストランでラーメンを食べました。",
    "このシステムはカフカのトピックからチャンクを読み込み、ワーカーが並列に処理します。",
    "日本語には空白がないので、辞書を使って言葉の境界を見つけます。",
    "ソフトウェアのテストは、バグを早く見つけるためにとても大切です。",
]


RUSSIAN = "в начале было слово и слово было у бога это большой город «москва» река идёт — тире".split()
UNSEGMENTED = ("english", "english+emoji", "russian")  # no run to segment: v2 must give v1's tokens


def texts(mb: float) -> dict[str, bytes]:
    english = corpus_text()
    rng = random.Random(1)
    emoji = b"\n".join(
        line + (" \U0001f600\U0001f44d".encode() if rng.random() < 0.3 else b"") for line in english.split(b"\n")
    )
    russian = " ".join(rng.choice(RUSSIAN) for _ in range(int(0.3 * mb * 1e6 / 11))).encode()
    return {
        "chinese": chinese_bytes(3, int(mb * 1e6)),
        "japanese": paragraphs(random.Random(7), int(0.3 * mb * 1e6), lambda rng: rng.choice(JAPANESE)),
        "mixed": mixed_bytes(5, int(0.5 * mb * 1e6)),
        "english": english * (int(mb * 1e6 // len(english)) + 1),
        "english+emoji": emoji * (int(0.3 * mb * 1e6 // len(emoji)) + 1),
        "russian": russian,
    }


def decoded(chunk: bytes) -> str:
    return tokenize.decode(chunk).text


def cpu_seconds(chunks: list[bytes], tokens) -> float:
    """CPU time to decode and tokenize every chunk, as a worker does."""
    started = time.process_time()
    for chunk in chunks:
        tokens(decoded(chunk))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--mb", type=float, default=10.0, help="MB of Chinese and of English (Japanese 0.3x, mixed 0.5x)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()
    versions = {"v1": tokens_v1, "v2": tokenize.DEFAULT.tokens}
    print(f"tokenizer {tokenize.DEFAULT.id}; CPU seconds per pass, best of {args.repeat}")
    print(f"{'text':<13} {'MB':>6} {'v1 MB/s':>8} {'v2 MB/s':>8} {'v2/v1':>6}")
    rows = {}
    for name, data in texts(args.mb).items():
        chunks = [c.data for c in iter_chunks(io.BytesIO(data))]
        for tokens in versions.values():  # warm up: jieba's dictionary, ICU's break data
            tokens(decoded(chunks[0]))
        seconds: dict[str, list[float]] = {v: [] for v in versions}
        for _ in range(args.repeat):  # versions interleaved, so both see the same machine
            for v, tokens in versions.items():
                seconds[v].append(cpu_seconds(chunks, tokens))
        if name in UNSEGMENTED and any(tokens_v1(text) != tokenize.tokens(text) for text in map(decoded, chunks)):
            sys.exit(f"{name}: v2 tokens differ from v1's, which the contract forbids")
        mb = len(data) / 1e6
        row = {"mb": mb, "chunks": len(chunks), "cpu_seconds": seconds}
        row.update({f"{v}_mb_s": mb / min(s) for v, s in seconds.items()})
        row.update({f"{v}_mb_s_median": mb / statistics.median(s) for v, s in seconds.items()})
        row["ratio"] = row["v2_mb_s"] / row["v1_mb_s"]
        rows[name] = row
        print(f"{name:<13} {mb:>6.1f} {row['v1_mb_s']:>8.2f} {row['v2_mb_s']:>8.2f} {row['ratio']:>5.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"tokenizer": tokenize.DEFAULT.id, "repeat": args.repeat, "texts": rows}
    (args.out / "tokenizer.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
