"""`wordpipe up --state-dir`: a stack on the embedded broker keeps its totals, receipts and
idempotency keys across a clean stop, and across a crash after a periodic save."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from pipeline import config
from pipeline.broker import free_port
from pipeline.client import Client
from pipeline.stack import Stack
from tests.helpers import SAMPLE
from tests.services import TOKEN

pytestmark = pytest.mark.e2e


def stack_settings(state, **overrides) -> config.Settings:
    return config.Settings(
        tokens=TOKEN,
        state_dir=str(state),
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
    manifest = json.loads((state / "manifest.json").read_text())
    assert manifest["saved"] and manifest["groups"][config.Settings().worker.group]

    stack = stack_in(tmp_path / "second", stack_settings(state))
    try:
        assert stack.restored == sum(manifest["saved"].values())
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


def test_a_periodic_save_survives_a_crash_of_the_whole_stack(tmp_path):
    state = tmp_path / "state"
    stack = stack_in(tmp_path / "first", stack_settings(state, state_save_seconds=0.5))
    try:
        client = client_of(stack)
        client.ingest(SAMPLE.read_bytes(), name="sample", key="sample-once")
        client.wait_counted(timeout=120)
        before = Counter(dict(client.totals()))
        for _ in range(2):  # the second save to end after the count began after it
            saved = (state / "manifest.json").stat().st_mtime_ns if (state / "manifest.json").exists() else 0
            while not (state / "manifest.json").exists() or (state / "manifest.json").stat().st_mtime_ns == saved:
                stack.supervise()
                time.sleep(0.05)
    finally:  # no clean stop: every process SIGKILLed, as a power cut would leave it
        stack._stop_saving.set()
        for child in stack.supervisor.children.values():
            if child.proc is not None:
                child.proc.kill()
                child.proc.wait()
                child.proc = None
        assert stack.broker is not None
        stack.broker.proc.kill()
        stack.broker.proc.wait()
        stack.broker = None

    stack = stack_in(tmp_path / "second", stack_settings(state))
    try:
        client = client_of(stack)
        client.wait_counted(timeout=120)
        assert Counter(dict(client.totals())) == before
        client.ingest(SAMPLE.read_bytes(), name="sample", key="sample-once")  # still known: not counted again
        assert client.wait_counted(timeout=120)["documents_counted"] == 1
        assert Counter(dict(client.totals())) == before
    finally:
        stack.stop()
