"""A 1 GB upload streams through the ingest service with flat memory: the body is never held."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from pipeline import config, kafka
from pipeline.kafka.broker import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

GIB = 1 << 30


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_a_1_gib_upload_keeps_the_ingest_service_memory_flat(broker, tmp_path):
    settings = config.Settings(bootstrap=broker.bootstrap, auth="none", ingest_port=free_port())
    kafka.ensure_topics(broker.connection(), settings.topics)
    env = {**os.environ, **settings.to_env()}
    with open(tmp_path / "ingest.log", "wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "ingest-server"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{settings.ingest.port}"
    try:
        wait_for(lambda: _ok(url + "/health"), 60, "the ingest service")
        warm = requests.post(url + "/v1/documents", data=b"warm up " * 100_000, headers={"Content-Type": "text/plain"})
        assert warm.status_code == 202
        baseline = rss_mb(service.pid)
        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(rss_mb(service.pid))
                time.sleep(0.1)

        block = b"the quick brown fox jumps over the lazy dog\n" * 24_000  # ~1 MiB

        def body():
            sent = 0
            while sent < GIB:
                piece = block[: GIB - sent]
                sent += len(piece)
                yield piece

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            reply = requests.post(
                url + "/v1/documents", data=body(), headers={"Content-Type": "text/plain"}, timeout=600
            )
        finally:
            done.set()
            sampler.join()
        assert reply.status_code == 202, reply.text
        assert reply.json()["bytes"] == GIB and reply.json()["chunks"] >= GIB // settings.text.chunk_size
        peak = max(samples)
        print(f"ingest service RSS: {baseline:.0f} MB before, {peak:.0f} MB peak during a 1 GiB upload")
        assert peak - baseline < 100, f"memory grew by {peak - baseline:.0f} MB during the upload"
    finally:
        service.terminate()
        service.wait(30)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
