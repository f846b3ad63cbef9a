"""A stack drops what it has counted (issue 31): chunks and partials generations are
deleted from the broker once every record in them is counted and durable, and the
counts stay exact, with crashes of the processes that drop them in the middle of it
(pipeline/generations.py)."""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
import requests
from confluent_kafka.admin import AdminClient

from pipeline import generations, kafka, tokenize
from pipeline.client import RequestFailed
from pipeline.stack import Stack
from tests.e2e.test_state_dir import TOKEN, client_of, stack_in, stack_settings
from tests.helpers import SAMPLE, wait_for

pytestmark = pytest.mark.e2e

GENERATION = 1 << 20  # the smallest: a generation every upload
UPLOAD = SAMPLE.read_bytes() * 20  # ~1.2 MB


def expected(uploads: int) -> dict[str, int]:
    words = Counter(tokenize.DEFAULT.tokens(SAMPLE.read_text()))
    return {w: n * 20 * uploads for w, n in words.items()}


def topic_names(stack: Stack) -> set[str]:
    return kafka.topic_names(AdminClient(kafka.client_config(stack.connection)))


def dropped_all_but_the_newest(stack: Stack) -> bool:
    names = topic_names(stack)
    newest = generations.newest(names, "chunks")
    chunks = generations.numbers(names, "chunks")
    partials = generations.numbers(names, "partials")
    return chunks == [newest] and min(partials) >= newest and not any(map(generations.is_marker, names))


def answered(ask, timeout: float = 120):
    """`ask()`'s answer, asked again while the aggregator restarts (a kill's successor)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ask()
        except RequestFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Reader(threading.Thread):
    """A consumer asking for the top word every 50 ms: what each answer said."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = stack.urls["results"] + "/v1/top?k=1", {"Authorization": f"Bearer {TOKEN}"}
        self.totals: list[int] = []  # total_words of each 200
        self.refusals: list[requests.Response] = []  # each 503
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            reply = requests.get(self.url, headers=self.headers, timeout=30)
            if reply.status_code == 503:
                self.refusals.append(reply)
            else:
                self.totals.append(reply.json()["total_words"])


def test_counted_generations_are_deleted_and_the_counts_stay_exact(tmp_path):
    """... and every answer of the results API meanwhile is the whole's: each change of
    partials generations is a rebalance of the aggregator, which once answered from none
    of its shards (0 words) while it lasted."""
    stack = stack_in(tmp_path / "logs", stack_settings(None, generation_bytes=GENERATION))
    reader = Reader(stack)
    try:
        client = client_of(stack)
        reader.start()
        for i in range(6):
            client.ingest(UPLOAD, name=f"upload-{i}")
        client.wait_counted(timeout=120)
        assert generations.newest(topic_names(stack), "chunks") >= 5  # it rotated
        wait_for(lambda: dropped_all_but_the_newest(stack), 120, "every generation but the newest deleted")
        assert dict(client.totals()) == expected(6)
        progress = client._get("/v1/progress")["shards"]
        inputs = {name for shard in progress.values() for name in shard}
        newest = f"chunks.g{generations.newest(topic_names(stack), 'chunks')}:"
        assert all(name.startswith(newest) for name in inputs), inputs  # the deleted ones' windows forgotten
        reader.done.set()
        reader.join()
        went_back = [(a, b) for a, b in zip(reader.totals, reader.totals[1:], strict=False) if b < a]
        assert not went_back, f"the total words went back while generations changed: {went_back[:5]}"
        assert reader.totals[-1] == sum(expected(6).values())
        assert all(r.json()["error"] == "rebalancing" and int(r.headers["Retry-After"]) for r in reader.refusals)
    finally:
        reader.done.set()
        stack.stop()


def test_crashes_while_generations_are_dropped_lose_and_double_nothing(tmp_path):
    """The assigner (in the autoscaler) SIGKILLed whenever a generation is marked retiring,
    before it deletes it; the aggregator SIGKILLed every few seconds, whatever it is doing
    (dropping partials generations from its subscription, deleting them, or counting)."""
    stack = stack_in(tmp_path / "logs", stack_settings(None, generation_bytes=GENERATION))
    stop = threading.Event()
    kills: Counter[str] = Counter()

    def kill(role: str) -> None:
        child = stack.supervisor.children.get(role)
        if child is not None and child.proc.poll() is None:
            os.kill(child.proc.pid, signal.SIGKILL)
            kills[role] += 1

    def killer() -> None:
        """Kills, and the stack's supervision (`up` does it; a Stack in a test does not)."""
        rng = random.Random(31)
        next_aggregator = time.monotonic() + 6
        spared = time.monotonic()
        while not done.wait(0.1):
            stack.supervise()
            if stop.is_set():
                continue
            if time.monotonic() > spared and any(map(generations.is_marker, topic_names(stack))):
                kill("autoscaler")
                spared = time.monotonic() + 4  # its successor finishes what it left
            if time.monotonic() > next_aggregator:
                kill("aggregator")
                next_aggregator = time.monotonic() + rng.uniform(6, 12)

    done = threading.Event()
    thread = threading.Thread(target=killer, daemon=True)
    try:
        client = client_of(stack)
        thread.start()
        for i in range(8):
            client.ingest(UPLOAD, name=f"upload-{i}", attempts=20)  # one key: counted once however often sent
        wait_for(lambda: kills["autoscaler"] >= 2 and kills["aggregator"] >= 3, 180, f"enough kills: {kills}")
        stop.set()
        wait_for(lambda: dropped_all_but_the_newest(stack), 180, "every generation but the newest deleted")
        assert answered(lambda: (client.wait_counted(timeout=120), dict(client.totals()))[1]) == expected(8), kills
    finally:
        done.set()
        thread.join()
        stack.stop()


def test_status_reports_go_by_generations_and_the_unread_ones_are_deleted(monkeypatch, tmp_path):
    """Reports repeat every second: the status topic is rotated by time, and a generation
    older than the newest two deleted; the roster still sees every worker and every crash
    report (copied forward), and the counting does not notice."""
    from pipeline import config
    from pipeline.ingest.sources import Source
    from pipeline.observe.crash_reports import CrashReporter
    from pipeline.run import Pipeline
    from pipeline.supervisor import CrashLoop

    monkeypatch.setattr(generations, "STATUS_ROTATE_SECONDS", 5.0)  # the assigner runs in this process
    monkeypatch.setattr(generations, "STATUS_DELETE_AFTER", 4.0)  # readers look every second
    document = tmp_path / "doc.txt"
    document.write_bytes(UPLOAD)
    with Pipeline(config.Settings(workers=2)) as p:
        admin = AdminClient(kafka.client_config(p.connection))
        reporter = CrashReporter(p.connection, p.settings.topics)
        reporter.publish("aggregator", CrashLoop(crashes=3, in_a_row=1, restarts=3, last_exit="exit status 1"))
        reporter.close()
        report = p.ingest([Source("doc", document)])
        wait_for(
            lambda: (generations.newest(kafka.topic_names(admin), p.settings.topics.status) or 0) >= 5,
            60,
            "five status generations",
        )
        p.wait_counted(report, timeout=120)
        assert p.totals() == expected(1)
        names = kafka.topic_names(admin)
        status = generations.numbers(names, p.settings.topics.status)
        assert status[0] >= 3 and len(status) <= 3, f"the unread generations stay: {status}"
        wait_for(lambda: len(p.roster.refresh(0.2)) == 2, 10, "both workers in the roster")
        assert p.roster.crashes["aggregator"].crashes == 3, "the crash report was not carried forward"
        assert len(p.roster.generation) <= 8, "the roster keeps the keys of deleted generations"


def test_source_windows_partials_go_by_generations_too(monkeypatch):
    """Without uploads no writer starts a new generation: while source topics are counted
    the assigner does, so the partials of source windows are dropped like any others."""
    from confluent_kafka import Producer

    from pipeline import config
    from pipeline.ingest.publisher import IngestReport
    from pipeline.reference import count_stream
    from pipeline.run import Pipeline

    monkeypatch.setattr(generations, "SOURCE_ROTATE_SECONDS", 2.0)  # the assigner runs in this process
    lines = SAMPLE.read_bytes().splitlines()
    lines = [line for line in lines if line.strip()]
    with Pipeline(config.Settings(workers=1, sources="feed", source_idle_seconds=0.2)) as p:
        admin = AdminClient(kafka.client_config(p.connection))
        producer = Producer(kafka.producer_config(p.connection))
        for _ in range(12):  # a round a second, over several generations
            for line in lines:
                producer.produce("feed", line)
            producer.flush(10)
            time.sleep(1.0)
        p.wait_counted(IngestReport(), timeout=120, extents=p.source_extents())
        assert Counter(p.totals()) == count_stream(io.BytesIO(b"\n".join(lines * 12))), "source counts"
        wait_for(
            lambda: generations.numbers(kafka.topic_names(admin), p.settings.topics.partials)[0] >= 3,
            90,
            lambda: f"old partials generations dropped: {sorted(kafka.topic_names(admin))}",
        )
