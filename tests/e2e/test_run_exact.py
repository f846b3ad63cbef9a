"""`wordpipe run F --json` equals `wordpipe reference F --json`, through the real CLI and broker."""

import json

import pytest

from tests.conftest import wordpipe
from tests.hostile import hostile_bytes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, corpora):
    d = tmp_path_factory.mktemp("inputs")
    (d / "hostile.txt").write_bytes(hostile_bytes(11, 2_500_000))  # ~40 chunks, several windows
    return {
        "shakespeare": corpora / "shakespeare.txt",
        "seed-zh": corpora / "seed-mesos-docker-zh.txt",
        "hostile": d / "hostile.txt",
    }


def reference(path) -> str:
    done = wordpipe("reference", str(path), "--json")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("name", ["shakespeare", "seed-zh", "hostile"])
def test_run_equals_reference(inputs, name, workers):
    expected = reference(inputs[name])
    done = wordpipe("run", str(inputs[name]), "--json", "--workers", str(workers), "--timeout", "240")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert done.stdout.decode() == expected
    body = json.loads(done.stdout)
    assert body["total_words"] == sum(body["counts"].values()) > 0


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
