"""The broker cut off for 20 s while uploads go on: the broker process is frozen
(SIGSTOP), so every connection hangs, as in a network partition on loopback. The ingest
service, the aggregator and the workers report themselves unhealthy meanwhile (the
ingest service answers 503); afterwards everything resumes, and the totals are exact:
no upload lost, none counted twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
import requests

from pipeline import config, health, tokenize
from pipeline.client import Client
from pipeline.run import Pipeline
from tests.chaos.conftest import grown
from tests.conftest import SAMPLE, wait_for
from tests.services import TOKEN, IngestThread

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
CUT_SECONDS = 20


def unhealthy_workers(pipeline: Pipeline) -> dict[str, str]:
    """What each local worker's health file says is wrong (as `wordpipe health` reads it)."""
    live = [w.id for w in pipeline.workers.list() if w.state == "running"]
    return {w: problem for w in live if (problem := health.check(str(pipeline.log_dir / f"{w}.health"), 30))}


def test_uploads_survive_the_broker_cut_off_and_count_once(trial):
    """The broker cut off for 20 s while uploads go on"""
    with Pipeline(config.Settings(workers=2, tokens=TOKEN)) as pipeline, \
            IngestThread(pipeline.settings, pipeline.bootstrap) as ingest:
        ingest.wait_healthy()
        client = Client(ingest.url, pipeline.results_url, token=TOKEN)
        client.wait_counted(120)
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
        assert unhealthy_workers(pipeline) == {}
        broker = pipeline.broker.proc.pid
        os.kill(broker, signal.SIGSTOP)
        cut_at = time.monotonic()
        trial.fault(f"SIGSTOP the broker (pid {broker}) for {CUT_SECONDS} s, during 12 uploads")
        try:
            health = wait_for(lambda: (r := requests.get(ingest.url + "/health", timeout=10)).status_code == 503 and r.json(),
                              CUT_SECONDS - 5, "the ingest service to report the broker unreachable")
            assert health["ok"] is False
            aggregator = wait_for(lambda: (r := requests.get(pipeline.results_url + "/health", timeout=10)).status_code == 503
                                  and r.json(), 5, "the aggregator to report the broker unreachable")
            assert "no Kafka broker answers" in aggregator["broker"]
            workers = wait_for(lambda: len(found := unhealthy_workers(pipeline)) == pipeline.settings.workers and found,
                               5, "every worker to report the broker unreachable")
            assert all("no Kafka broker answers" in problem for problem in workers.values()), workers
            refused = requests.post(ingest.url + "/v1/documents", data=b"during the cut", timeout=10,
                                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
            assert refused.status_code == 503 and refused.headers["Retry-After"]
            time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
        finally:
            os.kill(broker, signal.SIGCONT)
        resumed_at = time.monotonic()
        trial.fault("SIGCONT the broker")
        wait_for(lambda: requests.get(ingest.url + "/health", timeout=10).status_code == 200, 60, "health to come back")
        wait_for(lambda: requests.get(pipeline.results_url + "/health", timeout=10).status_code == 200, 60, "the aggregator's health")
        wait_for(lambda: unhealthy_workers(pipeline) == {}, 60, lambda: f"the workers' health: {unhealthy_workers(pipeline)}")
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
