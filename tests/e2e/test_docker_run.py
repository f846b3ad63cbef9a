"""`wordpipe run --backend docker`: worker containers count exactly and leave no container,
process or network behind (`docker kill` mid-run: tests/chaos/test_container_kills.py)."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.chinese import USER_WORDS, user_dict_case, user_dict_reference
from tests.helpers import CORPORA, SAMPLE, docker_leftovers, wordpipe

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def processes_marked(mark: str) -> list[int]:
    """Live processes whose environment carries `mark` (inherited from a test's command)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if mark.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def test_two_worker_containers_count_a_corpus_exactly(docker_image):
    path = str(CORPORA / "shakespeare.txt" if CORPORA.is_dir() else SAMPLE)  # never skipped: the sample will do
    mark = f"WORDPIPE_TEST_MARK={uuid.uuid4().hex}"
    done = wordpipe("run", "--backend", "docker", "--workers", "2", "--json", "-q", path, env=dict([mark.split("=")]))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert json.loads(done.stdout) == json.loads(wordpipe("reference", "--json", path).stdout)
    assert docker_leftovers() == []
    assert processes_marked(mark) == []


def test_a_user_dictionary_reaches_the_worker_containers(docker_image, tmp_path):
    text, dictionary = user_dict_case(tmp_path)  # the file is on the host only: containers get it in their environment
    expected = user_dict_reference(text, dictionary)  # every USER_WORDS counted, none without the dictionary
    mark = f"WORDPIPE_TEST_MARK={uuid.uuid4().hex}"
    done = wordpipe(
        "run",
        "--backend",
        "docker",
        "--workers",
        "2",
        "--chunk-size",
        "16384",
        "--json",
        "-q",
        "--tokenizer-user-dict",
        str(dictionary),
        str(text),
        env=dict([mark.split("=")]),
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    body = json.loads(done.stdout)
    assert body == expected  # a container without the dictionary would have refused every chunk
    assert all(body["counts"][w] > 0 for w in USER_WORDS)
    assert docker_leftovers() == []
    assert processes_marked(mark) == []


def test_a_sigkilled_run_leaves_containers_the_next_run_removes(docker_image, tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * 2_000_000)
    exe = os.path.join(os.path.dirname(sys.executable), "wordpipe")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [exe, "run", "--backend", "docker", str(big), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 60
    while len(docker_leftovers()) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the run never launched its containers"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(docker_leftovers()) == 2  # nothing of ours can stop them now...
    done = wordpipe("run", "--backend", "docker", str(SAMPLE), "-q", env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr.decode()
    assert "the run that launched it is gone" in done.stderr.decode()  # ...but the next run does
    assert docker_leftovers() == []


def test_a_missing_image_is_named(docker_image, tmp_path):
    done = wordpipe(
        "run", "--backend", "docker", "--image", "wordpipe:no-such-tag", str(SAMPLE), env={"TMPDIR": str(tmp_path)}
    )
    assert done.returncode == 1
    assert (
        "image 'wordpipe:no-such-tag' does not exist here; build it with deploy/build-image.sh" in done.stderr.decode()
    )
    assert docker_leftovers() == []
    assert list(tmp_path.iterdir()) == [], "a run that failed to start left files behind"
