"""The broker cut off for 20 s while uploads go on: the broker process is frozen
(SIGSTOP), so every connection hangs, as in a network partition on loopback. The ingest
service reports itself unhealthy and answers 503 meanwhile; afterwards everything
resumes, and the totals are exact: no upload lost, none counted twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
import requests

from pipeline import config, tokenize
from pipeline.client import Client
from pipeline.run import Pipeline
from tests.conftest import SAMPLE, wait_for
from tests.services import TOKEN, IngestThread

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
CUT_SECONDS = 20


def test_uploads_survive_the_broker_cut_off_and_count_once():
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
        broker = pipeline.broker.proc.pid
        os.kill(broker, signal.SIGSTOP)
        cut_at = time.monotonic()
        try:
            health = wait_for(lambda: (r := requests.get(ingest.url + "/health", timeout=10)).status_code == 503 and r.json(),
                              CUT_SECONDS - 5, "the ingest service to report the broker unreachable")
            assert health["ok"] is False
            refused = requests.post(ingest.url + "/v1/documents", data=b"during the cut", timeout=10,
                                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
            assert refused.status_code == 503 and refused.headers["Retry-After"]
            time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
        finally:
            os.kill(broker, signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_for(lambda: requests.get(ingest.url + "/health", timeout=10).status_code == 200, 60, "health to come back")
        uploader.join(300)
        assert not uploader.is_alive() and len(receipts) == len(documents)
        client.wait_counted(300)
        recovery = time.monotonic() - resumed_at
        after = Counter(dict(client.totals()))
        expected = sum((tokenize.count(tokenize.decode(body).text) for body in documents), Counter())
        assert after - before == expected
        assert all(after[f"cutdoc{i}"] == 1 for i in range(len(documents)))  # each exactly once
        print(f"broker cut {CUT_SECONDS} s; all {len(documents)} uploads counted once, {recovery:.1f} s after it returned")
