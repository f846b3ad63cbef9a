"""The broker cut off for 20 s while a `wordpipe up` stack runs and uploads go on: the
broker process is frozen (SIGSTOP), so every connection hangs, as in a network partition
on loopback. The ingest service, the aggregator, the autoscaler and the workers report
themselves unhealthy meanwhile (the ingest service answers 503, the autoscaler holds);
afterwards everything resumes, and the totals are exact: no upload lost, none counted twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from pipeline import config, health, tokenize
from pipeline.client import Client
from pipeline.kafka.broker import free_port
from pipeline.stack import Stack
from tests.chaos.helpers import grown
from tests.helpers import SAMPLE, wait_for
from tests.services import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
CUT_SECONDS = 20
WORKERS = 2


def health_of(url: str) -> tuple[int, dict]:
    r = requests.get(url, timeout=10)
    return r.status_code, r.json()


def workers_health(directory: Path) -> dict[str, str | None]:
    """Each live local worker's health (None: healthy) as `wordpipe health` reads its file.
    Files untouched for 5 s belong to workers that are gone."""
    files = [f for f in directory.glob("*.health") if time.time() - f.stat().st_mtime < 5]
    return {f.stem: health.check(str(f), 30) for f in files}


def test_uploads_survive_the_broker_cut_off_and_count_once(tmp_path, trial):
    """The broker cut off for 20 s while the stack runs and uploads go on"""
    (policy := tmp_path / "policy.toml").write_text(f"min_workers = {WORKERS}\nmax_workers = {WORKERS}\n")
    s = config.Settings(
        tokens=TOKEN,
        autoscale_interval=0.5,
        ingest_port=free_port(),
        aggregator_port=free_port(),
        autoscaler_port=free_port(),
    )
    (logs := tmp_path / "logs").mkdir()
    stack = Stack(s, logs, policy=str(policy))
    try:
        stack.start()
        urls = {name: url.replace("/v1/status", "") for name, url in stack.urls.items()}
        client = Client(urls["ingest"], urls["results"], token=TOKEN)
        wait_for(
            lambda: list(workers_health(logs / "workers").values()) == [None] * WORKERS, 60, "the workers to start"
        )
        before = Counter(dict(client.totals()))
        documents = [SAMPLE.read_bytes() + f" cutdoc{i}".encode() for i in range(12)]
        receipts: list[dict] = []

        def upload_all():  # keeps uploading through the cut, retrying as the service asks
            for i, body in enumerate(documents):
                receipts.append(client.ingest(body, name=f"doc{i}", attempts=40))
                time.sleep(1.0)

        uploader = threading.Thread(target=upload_all)
        uploader.start()
        wait_for(lambda: len(receipts) >= 2, 60, "the first uploads")
        broker = stack.broker.proc.pid
        os.kill(broker, signal.SIGSTOP)
        cut_at = time.monotonic()
        trial.fault(f"SIGSTOP the broker (pid {broker}) for {CUT_SECONDS} s, during 12 uploads")
        try:
            for url in (urls["ingest"], urls["results"], urls["autoscaler"]):
                _, body = wait_for(
                    lambda u=url: (got := health_of(u + "/health"))[0] == 503 and got,
                    CUT_SECONDS - 8,
                    f"{url} to report itself unhealthy",
                )
                assert body["ok"] is False
            refused = requests.post(
                urls["ingest"] + "/v1/documents",
                data=b"during the cut",
                timeout=10,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
            )
            assert refused.status_code == 503 and refused.headers["Retry-After"]
            unhealthy = wait_for(
                lambda: len(h := workers_health(logs / "workers")) == WORKERS and all(h.values()) and h,
                5,
                "every worker to report the broker unreachable",
            )
            assert all("no Kafka broker answers" in problem for problem in unhealthy.values()), unhealthy
            assert time.monotonic() - cut_at < CUT_SECONDS, "the services took too long to notice"
            time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
        finally:
            os.kill(broker, signal.SIGCONT)
        resumed_at = time.monotonic()
        trial.fault("SIGCONT the broker")
        for url in (urls["ingest"], urls["results"], urls["autoscaler"]):
            wait_for(lambda u=url: health_of(u + "/health")[0] == 200, 60, f"{url} to be healthy again")
        wait_for(
            lambda: list(workers_health(logs / "workers").values()) == [None] * WORKERS,
            60,
            lambda: f"the workers' health: {workers_health(logs / 'workers')}",
        )
        uploader.join(300)
        assert not uploader.is_alive() and len(receipts) == len(documents)
        client.wait_counted(300)
        trial.recovered(resumed_at)
        trial.recovery_from = "the broker's return"
        trial.input_bytes = sum(map(len, documents))
        trial.expected = sum((tokenize.count(tokenize.decode(body).text) for body in documents), Counter())
        trial.counted = grown(Counter(dict(client.totals())), before)
        assert trial.counted == trial.expected
        assert all(trial.counted[f"cutdoc{i}"] == 1 for i in range(len(documents)))  # each exactly once
        trial.notes.append(
            "during the cut: ingest, results API and autoscaler `/health` 503, every worker's health file "
            "named the broker; an upload got 503 with Retry-After, and the client retried"
        )
        trial.notes.append(
            "the cut is a frozen broker (SIGSTOP), not a firewall rule: this machine has loopback only and no "
            "iptables for tests; to its peers a frozen process looks like a partition, connections hang "
            "without a reset"
        )
    finally:
        stack.stop()
