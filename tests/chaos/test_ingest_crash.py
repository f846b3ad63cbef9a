"""The ingest service SIGKILLed at the worst instants of an upload (pipeline/faults.py):
mid-upload, after its `open` receipt, and after its commit but before its answer. A
retry with the same Idempotency-Key, to a restarted service, counts the document exactly
once whichever instant it died at, and nothing of a dead attempt leaks into the totals."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from pipeline import config, tokenize
from pipeline.client import Client, RequestFailed
from pipeline.ingest.receipts import read_all
from pipeline.kafka.broker import free_port
from pipeline.run import Pipeline
from tests.chaos.helpers import grown
from tests.helpers import SAMPLE
from tests.services import IngestProcess

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
TOKEN = "chaos-token"


@pytest.fixture
def pipeline():
    with Pipeline(config.Settings(workers=2, tokens=TOKEN)) as p:
        yield p


@pytest.mark.parametrize(
    ("fault", "first_attempt_counts"),
    [
        ("ingest.mid_upload=3", False),  # chunks in Kafka, no end: abandoned, the retry is a new document
        ("ingest.before_end=1", False),  # open receipt, no end: the retry aborts it, then uploads again
        ("ingest.before_receipt=1", True),  # committed in the log, never answered: the retry learns it counted
    ],
)
def test_a_retry_after_the_ingest_service_died_counts_once(pipeline, fault, first_attempt_counts, trial, tmp_path):
    """The ingest service dies mid-upload; a retry counts the document once"""
    trial.title = f"The ingest service dies at `{fault.split('=')[0]}`"
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", pipeline.results_url, token=TOKEN)
    body = SAMPLE.read_bytes() * 4  # 240 KB: several chunks
    key = uuid.uuid4().hex
    before = Counter(dict(client.totals()))
    counted_before = client.wait_counted(120)["documents_counted"]

    dying = IngestProcess(pipeline, tmp_path / "dying.log", {"WORDPIPE_FAULTS": fault}, port)
    with pytest.raises(RequestFailed) as died:
        client.ingest(body, key=key, attempts=1)
    assert died.value.code == "unreachable"
    assert dying.proc.wait(10) == 137  # it died at the fault point, as SIGKILL would leave it
    died_at = time.monotonic()
    trial.fault(f"{fault}: the ingest service exits 137 there, during a keyed upload of {len(body):,} bytes")
    dead = [
        r.document
        for r, _ in read_all(pipeline.connection, pipeline.settings.topics)
        if r.key == key and r.state == "open"
    ]

    restarted = IngestProcess(pipeline, tmp_path / "restarted.log", port=port)
    try:
        receipt = client.ingest(body, key=key)
        again = client.ingest(body, key=key)  # and once more, for good measure
    finally:
        restarted.stop()
    trial.fault("restarted; the client retried twice with the same Idempotency-Key")
    assert again == receipt
    assert (receipt["document"] in dead) is first_attempt_counts, (dead, receipt)  # whose count the answer is
    status = client.wait_counted(120)
    trial.recovered(died_at)
    trial.recovery_from = "the crash, the restart included"
    trial.input_bytes = len(body)
    trial.expected = tokenize.count(tokenize.decode(body).text)
    trial.counted = grown(Counter(dict(client.totals())), before)
    trial.notes.append(f"the answer is the {'dead' if first_attempt_counts else 'retried'} attempt's document")
    assert status["documents_counted"] == counted_before + 1
    assert trial.counted == trial.expected
