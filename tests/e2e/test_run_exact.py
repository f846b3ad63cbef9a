"""`wordpipe run F --json` equals `wordpipe reference F --json`, through the real CLI and broker."""

import json

import pytest

from tests.chinese import USER_WORDS, chinese_bytes, mixed_bytes, user_dict_case, user_dict_reference
from tests.helpers import wordpipe
from tests.hostile import hostile_bytes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, corpora):
    d = tmp_path_factory.mktemp("inputs")
    (d / "hostile.txt").write_bytes(hostile_bytes(11, 2_500_000))  # ~40 chunks, several windows
    (d / "chinese.txt").write_bytes(chinese_bytes(3, 10_500_000))  # the seed's sentences: >= 10 MB of Chinese prose
    (d / "mixed.txt").write_bytes(mixed_bytes(5, 3_000_000))  # Chinese, Japanese, Thai-like, English, hostile
    return {
        "shakespeare": corpora / "shakespeare.txt",
        "seed-zh": corpora / "seed-mesos-docker-zh.txt",
        "hostile": d / "hostile.txt",
        "chinese": d / "chinese.txt",
        "mixed": d / "mixed.txt",
    }


def reference(path) -> str:
    done = wordpipe("reference", str(path), "--json")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("name", ["shakespeare", "seed-zh", "hostile", "chinese", "mixed"])
def test_run_equals_reference(inputs, name, workers):
    expected = reference(inputs[name])
    done = wordpipe("run", str(inputs[name]), "--json", "--workers", str(workers), "--timeout", "240")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert done.stdout.decode() == expected
    body = json.loads(done.stdout)
    assert body["total_words"] == sum(body["counts"].values()) > 0


def test_the_seed_article_counts_chinese_words(inputs):
    """Its top words are words (a jieba count starts 的 230, 和 197, docker 90, mesos 75, 数据处理 52)."""
    done = wordpipe("run", str(inputs["seed-zh"]), "--json", "--top", "8")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    top = json.loads(done.stdout)["counts"]
    assert list(top.items())[:5] == [("的", 230), ("和", 197), ("docker", 90), ("mesos", 75), ("数据处理", 52)]
    assert top["容器"] == 42 and top["资源"] == 39


def test_directories_stdin_and_top(tmp_path, corpora):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(hostile_bytes(1, 20_000))
    (tmp_path / "sub" / "b.txt").write_bytes((corpora / "seed-mesos-docker-zh.txt").read_bytes())
    stdin = hostile_bytes(2, 30_000)
    (tmp_path / "stdin.txt").write_bytes(stdin)
    expected = json.loads(reference_paths(tmp_path / "a.txt", tmp_path / "sub" / "b.txt", tmp_path / "stdin.txt"))
    done = wordpipe("run", str(tmp_path / "a.txt"), str(tmp_path / "sub"), "-", "--json", "--top", "5", input=stdin)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    body = json.loads(done.stdout)
    assert body["total_words"] == expected["total_words"]
    assert body["distinct_words"] == expected["distinct_words"]
    assert body["counts"] == dict(list(expected["counts"].items())[:5])


def reference_paths(*paths) -> str:
    done = wordpipe("reference", *map(str, paths), "--json")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_table_output(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("b a b c b a\n")
    done = wordpipe("run", str(f), "--top", "2", "-q")
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[1].split() == ["1", "b", "3"] and lines[2].split() == ["2", "a", "2"]
    assert lines[-1] == "6 words, 3 distinct"


def test_tables_align_double_width_words(tmp_path):
    from wcwidth import wcswidth

    f = tmp_path / "t.txt"
    f.write_text("数据处理 数据处理 mesos 和 容器 ｶﾀｶﾅ hello\n", encoding="utf-8")
    done = wordpipe("reference", str(f), "--top", "6")
    lines = done.stdout.decode().splitlines()[:-1]
    assert len(lines) == 7 and "数据处理" in lines[1]
    assert len({wcswidth(line) for line in lines}) == 1, lines  # the count column ends where the header's does


def test_a_user_dictionary_reaches_the_worker_processes(tmp_path):
    text, dictionary = user_dict_case(tmp_path)
    expected = user_dict_reference(text, dictionary)  # every USER_WORDS counted, none without the dictionary
    done = wordpipe(
        "run",
        str(text),
        "--json",
        "--workers",
        "2",
        "--chunk-size",
        "16384",
        "--tokenizer-user-dict",
        str(dictionary),
        "--timeout",
        "240",
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    body = json.loads(done.stdout)
    assert body == expected  # a worker without the dictionary would have refused every chunk
    assert all(body["counts"][w] > 0 for w in USER_WORDS)
