"""What a user sees when things go wrong, and what a run leaves behind."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import wordpipe

pytestmark = pytest.mark.e2e


def test_missing_file_fails_before_starting_anything(tmp_path):
    ok = tmp_path / "ok.txt"
    ok.write_text("words")
    done = wordpipe("run", str(ok), str(tmp_path / "nope.txt"), "--json")
    assert done.returncode == 2
    assert f"{tmp_path / 'nope.txt'}: no such file or directory" in done.stderr.decode()
    assert done.stdout == b""


def test_unreachable_broker_is_named():
    done = wordpipe("run", __file__, "--bootstrap", "127.0.0.1:1", "--json", timeout=60)
    assert done.returncode == 1
    assert "no Kafka broker answers at 127.0.0.1:1" in done.stderr.decode()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "x", "--workers", "0"], "expected a positive integer, got 0"),
        (["run", "x", "--top", "many"], "expected a positive integer, got 'many'"),
        (["reference"], "the following arguments are required: PATH"),
    ],
)
def test_bad_flags(argv, message):
    done = wordpipe(*argv)
    assert done.returncode == 2 and message in done.stderr.decode()


def test_bad_environment_setting_is_named():
    done = wordpipe("run", __file__, env={"WORDPIPE_CHUNK_PARTITIONS": "lots"})
    assert done.returncode == 2
    assert "chunk_partitions: expected int, got 'lots' (from $WORDPIPE_CHUNK_PARTITIONS)" in done.stderr.decode()


def descendants(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out |= {int(entry)} | descendants(int(entry))
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_orphans_whatever_stops_the_run(tmp_path, sig):
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * 4_000_000)
    exe = os.path.join(os.path.dirname(sys.executable), "wordpipe")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # a SIGKILLed run cannot remove its log directory
    proc = subprocess.Popen(
        [exe, "run", str(big), "--json", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 60
    while len(children := descendants(proc.pid)) < 4:  # broker, aggregator, two workers
        assert time.monotonic() < deadline and proc.poll() is None, (
            proc.stderr.read().decode() if proc.poll() is not None else "no children"
        )
        time.sleep(0.1)
    proc.send_signal(sig)
    code = proc.wait(60)
    assert code != 0
    deadline = time.monotonic() + 20
    while any(
        os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z" for pid in children
    ):
        assert time.monotonic() < deadline, "a child outlived wordpipe"
        time.sleep(0.2)
    if sig != signal.SIGKILL:  # an interrupted run cleans up after itself
        assert not list(tmp_path.glob("wordpipe-run-*"))
