"""`wordpipe up --state-dir`: acknowledged means kept (issue 30).

A stack keeps its totals, receipts and idempotency keys across a clean stop and across a
SIGKILL of its whole process group right after a 202; a second stack is refused the
directory; restarts neither grow it nor slow the stop; damage is refused before anything
starts, naming the file, with nothing changed; records larger than our own limit come
back; a directory that cannot be written at run time is reported while the stack serves on.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import requests

from pipeline import config, kafka
from pipeline.aggregator.changelog import generations, topics_prefix
from pipeline.client import Client
from pipeline.kafka.broker import free_port
from pipeline.stack import Stack
from pipeline.statedir.directory import Directory
from tests.helpers import SAMPLE, wait_for, wordpipe
from tests.services import TOKEN

pytestmark = pytest.mark.e2e


def stack_settings(state, **overrides) -> config.Settings:
    return config.Settings(
        tokens=TOKEN,
        state_dir=str(state) if state else None,
        ingest_port=free_port(),
        aggregator_port=free_port(),
        autoscaler_port=free_port(),
        **overrides,
    )


def stack_in(log_dir, settings: config.Settings) -> Stack:
    log_dir.mkdir()
    return Stack(settings, log_dir).start()


def client_of(stack: Stack) -> Client:
    return Client(stack.urls["ingest"], stack.urls["results"], token=TOKEN)


class Up:
    """`wordpipe up --state-dir DIR` as a user runs it, in a process group of its own."""

    def __init__(self, tmp_path: Path, state: Path, *args: str, generate_token: bool = False) -> None:
        self.ports = {"ingest": free_port(), "results": free_port(), "autoscaler": free_port()}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "up", "--state-dir", str(state), *args]
            + [f"--{name}-port={port}" for name, port in self.ports.items()]
            + ["--log-dir", str(tmp_path / f"logs-{time.monotonic_ns()}")],
            env={
                **{k: v for k, v in os.environ.items() if k != "WORDPIPE_TOKENS"},
                "XDG_STATE_HOME": str(tmp_path / "xdg"),
                **({} if generate_token else {"WORDPIPE_TOKENS": TOKEN}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.banner = ""
        while "Ctrl-C" not in self.banner:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            assert line, f"wordpipe up exited early:\n{self.banner}"
            self.banner += line
        token = (state / "token").read_text().strip() if generate_token else TOKEN
        self.client = Client(
            f"http://127.0.0.1:{self.ports['ingest']}", f"http://127.0.0.1:{self.ports['results']}", token=token
        )

    def kill(self) -> None:
        """SIGKILL of the whole process group: the services die with `up` (PR_SET_PDEATHSIG)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.client.close()

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=120)
        self.client.close()
        return time.monotonic() - started


@pytest.fixture(scope="module")
def counted_dir(tmp_path_factory) -> Path:
    """A state directory of a stack that counted the sample, stopped cleanly."""
    base = tmp_path_factory.mktemp("counted")
    stack = stack_in(base / "logs", stack_settings(base / "state"))
    try:
        for n in range(3):  # enough records that a restart re-appending them could not pass for its own writes
            client_of(stack).ingest(SAMPLE.read_bytes(), name=f"sample{n}", key=f"sample-{n}")
        client_of(stack).wait_counted(timeout=120)
    finally:
        stack.stop()
    return base / "state"


def test_a_stack_keeps_its_counts_receipts_and_keys_across_a_clean_stop(tmp_path):
    state = tmp_path / "state"
    stack = stack_in(tmp_path / "first", stack_settings(state))
    try:
        client = client_of(stack)
        receipt = client.ingest(SAMPLE.read_bytes(), name="sample", key="sample-once")
        client.wait_counted(timeout=120)
        before = Counter(dict(client.totals()))
        windows = client._get("/v1/windows", k=10_000)
    finally:
        stack.stop()
    cut = Directory(state).last_cut()
    assert cut is not None and cut.clean and cut.groups[config.Settings().worker.group]

    stack = stack_in(tmp_path / "second", stack_settings(state))
    try:
        assert stack.restored > 0 and "the last stop was clean" in stack.state_line()
        client = client_of(stack)
        status = client.wait_counted(timeout=120)
        assert status["documents_counted"] == status["documents_ingested"] == 1
        assert Counter(dict(client.totals())) == before
        assert client._get("/v1/windows", k=10_000) == windows  # the event-time windows too
        # The idempotency key outlived the stack: a retry is answered, not counted again.
        assert client.ingest(SAMPLE.read_bytes(), name="sample", key="sample-once") == receipt
        client.ingest(b"Moby whale whale", name="more")
        status = client.wait_counted(timeout=120)
        assert status["documents_counted"] == 2
        assert Counter(dict(client.totals())) == before + Counter({"moby": 1, "whale": 2})
    finally:
        stack.stop()


def test_an_upload_acknowledged_just_before_a_sigkill_of_the_whole_stack_is_kept(tmp_path):
    state = tmp_path / "state"
    up = Up(tmp_path, state)
    text = SAMPLE.read_bytes()
    up.client.ingest(text, name="first", key="first")
    up.client.ingest("数据处理 counted whole".encode(), name="second", key="second")
    up.kill()  # at once: no clean stop, no save to wait for

    up = Up(tmp_path, state)
    try:
        assert "the last stop was not clean" in up.banner, up.banner
        status = up.client.wait_counted(timeout=120)
        assert status["documents_counted"] == status["documents_ingested"] == 2
        totals = Counter(dict(up.client.totals()))
        reference = Counter(dict(wordpipe_reference(text + " 数据处理 counted whole".encode())))
        assert totals == reference
        up.client.ingest("数据处理 counted whole".encode(), name="second", key="second")  # a retry: not again
        assert up.client.wait_counted(timeout=120)["documents_counted"] == 2
        assert Counter(dict(up.client.totals())) == reference
    finally:
        up.stop()


def wordpipe_reference(text: bytes) -> dict[str, int]:
    import json

    done = wordpipe("reference", "-", "--json", input=text)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["counts"]


def test_a_second_stack_is_refused_the_directory_and_the_first_keeps_its_token(tmp_path):
    state = tmp_path / "state"
    first = Up(tmp_path, state, generate_token=True)
    try:
        token_file = state / "token"
        before = token_file.read_bytes()
        second = wordpipe(
            "up",
            "--state-dir",
            str(state),
            *(f"--{n}-port={free_port()}" for n in ("ingest", "results", "autoscaler")),
            timeout=60,  # a refusal is at once: a stack that came up instead fails here, not in 5 minutes
            env={"XDG_STATE_HOME": str(tmp_path / "xdg-second")},
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"pid {first.proc.pid}" in second.stderr.decode(), second.stderr
        assert token_file.read_bytes() == before, "the refused stack wrote over the first one's token"
        first.client.ingest(b"still mine", name="after")
        assert first.client.wait_counted(timeout=60)["documents_counted"] == 1
    finally:
        first.stop()


def test_restarts_do_not_grow_the_directory_and_a_stop_costs_no_more_than_a_second(tmp_path, counted_dir):
    state = tmp_path / "state"
    shutil.copytree(counted_dir, state)
    restored, stops = [], []
    for n in range(3):
        stack = stack_in(tmp_path / f"logs{n}", stack_settings(state))
        restored.append(stack.restored)
        # The aggregator's superseded changelog generations retire (changelog.RETIRE_AFTER, from
        # each shard's new checkpoint): waited for, since a loaded machine starts shards late.
        # (The admin client goes with the call: one left open holds the broker's stop.)
        settled = partial(changelogs_settled, stack, kafka.admin(stack.connection))
        wait_for(settled, timeout=90, what="superseded changelogs retired")
        del settled
        started = time.monotonic()
        stack.stop()
        stops.append(time.monotonic() - started)
    bare = stack_in(tmp_path / "bare", stack_settings(None))
    started = time.monotonic()
    bare.stop()
    without = time.monotonic() - started
    # Before: every restart appended what it restored (3,291, then 6,447, then 9,552 records).
    # Now each start adds only what it writes itself: a flush marker per chunks partition, an
    # empty partial per shard for each window those close (more where workers join one by one
    # on a slow machine), the assignments of its new workers (status reports are not kept);
    # and once a newer chunks generation is counted, the old one goes whole.
    added = [after - before for before, after in zip(restored, restored[1:], strict=False)]
    assert all(n < restored[0] / 2 for n in added), restored
    assert max(stops) < without + 1.5, (stops, without)


def changelogs_settled(stack: Stack, admin) -> bool:
    """Every shard's changelog is in one generation, none of them restored: the superseded ones retired."""
    assert stack.contents is not None
    names = set(admin.list_topics(timeout=10).topics)
    prefix, shards = stack.settings.aggregator.id, stack.settings.topics.partial_partitions
    current = [generations(names, prefix, shard) for shard in range(shards)]
    restored = {t for t in stack.contents.records if t.startswith(topics_prefix(prefix))}
    return all(len(g) == 1 for g in current) and not names & restored


def snapshot(path: Path) -> dict[str, str]:
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def damage_record(state: Path) -> str:
    """7 bytes changed in the middle of the largest journal file (inside a record)."""
    path = max((state / "journal").glob("*.log"), key=lambda f: f.stat().st_size)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 7] = b"XXXXXXX"
    path.write_bytes(bytes(data))
    return path.name


def cut_short(state: Path) -> str:
    path = max((state / "journal").glob("*.log"), key=lambda f: f.stat().st_size)
    os.truncate(path, path.stat().st_size // 2)
    return path.name


def manifest_missing(state: Path) -> str:
    (state / "manifest.json").unlink()
    return "manifest.json"


def manifest_says(text: bytes):
    def harm(state: Path) -> str:
        (state / "manifest.json").write_bytes(text)
        return "manifest.json"

    return harm


def cuts_garbage(state: Path) -> str:
    cuts = state / "cuts.log"
    data = cuts.read_bytes()
    cuts.write_bytes(data[:-40] + os.urandom(40))  # the last cut's bytes, changed
    return "cuts.log"


DAMAGE = {
    "manifest missing": (manifest_missing, "missing beside the journal"),
    "manifest garbage": (manifest_says(b"\x00garbage"), "not a manifest"),
    "another version": (manifest_says(b'{"version": 1}'), "version 1"),
    "a record changed": (damage_record, "checksum does not match"),
    "a file cut short": (cut_short, "cut short"),
    "cuts.log garbage": (cuts_garbage, "cuts.log"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_refused_before_anything_starts_naming_the_file_and_changing_nothing(tmp_path, counted_dir, damage):
    state = tmp_path / "state"
    shutil.copytree(counted_dir, state)
    harm, says = DAMAGE[damage]
    named = harm(state)
    before = snapshot(state)
    done = wordpipe(
        "up",
        "--state-dir",
        str(state),
        *(f"--{n}-port={free_port()}" for n in ("ingest", "results", "autoscaler")),
        timeout=60,
    )
    lines = [line for line in done.stderr.decode().splitlines() if line.startswith("wordpipe: error")]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(lines) == 1 and named in lines[0] and says in lines[0], done.stderr
    assert b"wordpipe is up" not in done.stdout
    assert snapshot(state) == before, "a refused directory was changed"
    check = wordpipe("state", "check", str(state))
    assert check.returncode == 1 and named in check.stderr.decode()


def test_an_unwritable_directory_is_refused_before_anything_starts(tmp_path, counted_dir):
    state = tmp_path / "state"
    shutil.copytree(counted_dir, state)
    subprocess.run(["chattr", "+i", str(state)], check=True)  # not even root writes there
    try:
        done = wordpipe(
            "up",
            "--state-dir",
            str(state),
            *(f"--{n}-port={free_port()}" for n in ("ingest", "results", "autoscaler")),
            timeout=60,
        )
        assert done.returncode == 1 and "cannot be written" in done.stderr.decode(), done.stderr
    finally:
        subprocess.run(["chattr", "-i", str(state)], check=True)


def test_salvage_restores_the_newest_cut_that_verifies(tmp_path, counted_dir):
    state, new = tmp_path / "state", tmp_path / "new"
    shutil.copytree(counted_dir, state)
    documents = state / "journal" / "documents.log"
    data = bytearray(documents.read_bytes())
    data[-3] ^= 0xFF  # the last receipt, which only the newest cuts hold
    documents.write_bytes(bytes(data))
    assert wordpipe("state", "check", str(state)).returncode == 1
    done = wordpipe("state", "salvage", str(state), str(new))
    assert done.returncode == 0, done.stderr
    assert wordpipe("state", "check", str(new)).returncode == 0


def test_records_larger_than_our_own_limit_are_kept(tmp_path):
    from kafka import KafkaConsumer, KafkaProducer

    state = tmp_path / "state"
    up = Up(tmp_path, state, "--source", "feed")
    try:
        bootstrap = re.search(r"\(topic feed at (\S+)\)", up.banner).group(1)  # type: ignore[union-attr]
        producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20)
        producer.send("feed", b"whale " * 1_000_000).get(30)  # 6 MB
        producer.close()
        deadline = time.monotonic() + 60
        while up.client.count("whale") != 1_000_000:
            assert time.monotonic() < deadline, "the 6 MB record was not counted"
            time.sleep(0.5)
    finally:
        up.stop()
    up = Up(tmp_path, state, "--source", "feed")
    try:
        assert up.client.count("whale") == 1_000_000
        bootstrap = re.search(r"\(topic feed at (\S+)\)", up.banner).group(1)  # type: ignore[union-attr]
        consumer = KafkaConsumer(
            "feed",
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
            fetch_max_bytes=16 << 20,
            max_partition_fetch_bytes=16 << 20,
        )
        sizes = [len(record.value) for record in consumer]
        consumer.close()
        assert sizes == [6_000_000], sizes  # the record itself came back, not only its count
    finally:
        up.stop()


def test_a_save_that_fails_keeps_the_last_cut_serves_on_and_says_so(tmp_path):
    state = tmp_path / "state"
    stack = stack_in(tmp_path / "logs", stack_settings(state))
    client = client_of(stack)
    try:
        client.ingest(b"before the disk failed", name="before")
        client.wait_counted(timeout=60)
        journal = state / "journal" / "documents.log"
        subprocess.run(["chattr", "+i", str(journal)], check=True)  # the next append fails
        try:
            refused = requests.post(
                stack.urls["ingest"] + "/v1/documents",
                data=b"while it failed",
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain", "Idempotency-Key": "k"},
                timeout=60,
            )
            assert refused.status_code == 503 and refused.json()["error"] == "not_durable", refused.text
            health = requests.get(stack.urls["ingest"] + "/health", timeout=5)
            assert health.status_code == 503 and "not saved to" in health.json()["state_dir"]
            metrics = requests.get(stack.urls["ingest"] + "/metrics", timeout=5).text
            assert "wordpipe_ingest_state_dir_ok 0.0" in metrics
            assert client.top(3)["counts"], "the results API serves on"
        finally:
            subprocess.run(["chattr", "-i", str(journal)], check=True)
        deadline = time.monotonic() + 30
        while requests.get(stack.urls["ingest"] + "/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the journal did not come back"
            time.sleep(0.5)
        client.ingest(b"after it came back", name="after")
        assert client.wait_counted(timeout=60)["documents_counted"] >= 2
    finally:
        client.close()
        stack.stop()
