"""The ingest API on a real broker with workers and the aggregator: what is accepted counts
exactly once, what fails or is cut off counts nothing, and every error says what was wrong."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import uuid
from collections import Counter

import pytest
import requests

from pipeline import codec, config, tokenize
from pipeline.kafka.broker import free_port
from tests.helpers import SAMPLE, wait_for
from tests.services import TOKEN, IngestThread

pytestmark = pytest.mark.e2e


def totals(services) -> Counter:
    services.client.wait_counted(timeout=120)
    return Counter(dict(services.client.totals(page=50_000)))


def words(text: bytes) -> Counter:
    return tokenize.count(tokenize.decode(text).text)


def post(services, body, headers=None, **params):
    return requests.post(
        services.ingest_url + "/v1/documents",
        data=body,
        params=params,
        timeout=60,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain", **(headers or {})},
    )


def test_plain_gzip_and_chunked_uploads_count_exactly_once(services):
    before = totals(services)
    sample = SAMPLE.read_bytes()
    extra = b"gzipped words arrive whole\n" * 5000

    def chunked():
        for i in range(0, len(sample), 7777):
            yield sample[i : i + 7777]

    replies = [
        post(services, sample, name="sample.txt"),
        post(services, gzip.compress(extra), {"Content-Encoding": "gzip"}),
        post(services, chunked(), {"Content-Type": "application/octet-stream"}),
    ]
    assert [r.status_code for r in replies] == [202, 202, 202], [r.text for r in replies]
    assert [r.json()["bytes"] for r in replies] == [len(sample), len(extra), len(sample)]
    assert replies[0].json()["chunks"] == 1 and replies[1].json()["chunks"] == 3  # 135 KB in 64 KiB chunks
    assert totals(services) - before == words(sample) + words(extra) + words(sample)


def test_a_retry_with_the_same_idempotency_key_counts_once(services):
    before = totals(services)
    key = uuid.uuid4().hex
    body = b"idempotent retry counted once " * 100
    first, again = post(services, body, {"Idempotency-Key": key}), post(services, body, {"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert totals(services) - before == words(body)


def _cut_off(url: str, headers: str, body: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(headers.encode() + body)
        time.sleep(0.5)  # let the service read and send what it got


def test_a_cut_off_upload_counts_nothing(services):
    before = totals(services)
    status_before = services.client.status()
    part = b"cutoffword " * 200_000  # 2.2 MB: several chunks are durable before the cut
    auth = f"Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\n"
    _cut_off(
        services.ingest_url,
        f"POST /v1/documents HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(part) * 2}\r\n\r\n",
        part,
    )
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(part[i : i + 65536]), part[i : i + 65536]) for i in range(0, len(part), 65536)
    )
    _cut_off(
        services.ingest_url,
        f"POST /v1/documents HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n",
        chunked,
    )
    assert post(services, b"after the cut").status_code == 202
    wait_for(
        lambda: services.client.status()["documents_aborted"] >= status_before["documents_aborted"] + 2,
        60,
        "both cut-off uploads aborted",
    )
    after = totals(services)
    assert after["cutoffword"] == 0
    assert after - before == words(b"after the cut")
    assert services.client.status()["documents_open"] == 0


def test_errors_say_what_was_wrong(services):
    def error(response, status, code, fragment):
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["error"] == code and fragment in body["detail"], body

    url = services.ingest_url + "/v1/documents"
    error(requests.post(url, data=b"x", headers={"Content-Type": "text/plain"}), 401, "unauthorized", "bearer token")
    error(
        requests.post(url, data=b"x", headers={"Content-Type": "text/plain", "Authorization": "Bearer nope"}),
        401,
        "unauthorized",
        "bearer token",
    )
    error(
        post(services, b"{}", {"Content-Type": "application/json"}), 415, "unsupported_media_type", "application/json"
    )
    error(post(services, b"x", {"Content-Encoding": "br"}), 415, "unsupported_encoding", "'br'")
    error(post(services, b"not gzip at all", {"Content-Encoding": "gzip"}), 400, "bad_gzip", "not valid gzip")
    error(
        post(services, gzip.compress(b"cut short " * 1000)[:-20], {"Content-Encoding": "gzip"}),
        400,
        "bad_gzip",
        "truncated",
    )
    error(post(services, b"x", {"Idempotency-Key": "has space"}), 400, "bad_idempotency_key", "visible ASCII")
    error(requests.get(services.ingest_url + "/v1/nothing", headers=services.auth()), 404, "not_found", "/v1/nothing")
    error(requests.get(url, headers=services.auth()), 405, "method_not_allowed", "GET is not allowed")


def test_size_limit_and_saturation(services):
    small = services.settings.replace(max_document_bytes=100_000, max_uploads=1)
    with IngestThread(services.connection, small) as ingest:
        ingest.wait_healthy()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}
        url = ingest.url + "/v1/documents"
        too_big = requests.post(url, data=b"word " * 30_000, headers=headers)
        assert too_big.status_code == 413 and "100000" in too_big.json()["detail"]
        bomb = requests.post(
            url, data=gzip.compress(b" " * 50_000_000), headers={**headers, "Content-Encoding": "gzip"}
        )
        assert bomb.status_code == 413 and bomb.json()["error"] == "too_large"

        release = threading.Event()

        def slow():  # holds the only upload slot until released
            yield b"slow "
            release.wait(30)
            yield b"upload"

        holder = threading.Thread(target=lambda: requests.post(url, data=slow(), headers=headers))
        holder.start()
        try:
            wait_for(lambda: ingest.service.uploads == 1, 10, "the slow upload to start")
            busy = requests.post(url, data=b"x", headers=headers)
            assert busy.status_code == 429 and busy.json()["error"] == "saturated"
            assert int(busy.headers["Retry-After"]) >= 1
        finally:
            release.set()
            holder.join()


def test_broker_unreachable_is_503_with_retry_after():
    settings = config.Settings(bootstrap=f"127.0.0.1:{free_port()}", tokens=TOKEN)
    with IngestThread(config.Connection.to(settings.kafka), settings) as ingest:
        health = wait_for(
            lambda: (r := requests.get(ingest.url + "/health")).status_code == 503 and r.json(), 10, "health 503"
        )
        assert health["ok"] is False and "127.0.0.1" in health["broker"]
        reply = requests.post(
            ingest.url + "/v1/documents",
            data=b"x",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
        )
        assert reply.status_code == 503 and reply.json()["error"] == "broker_unavailable"
        assert reply.headers["Retry-After"] == "5"


@pytest.mark.parametrize("first_attempt_committed", [True, False])
def test_a_retry_settles_an_attempt_that_died_before_its_receipt(services, first_attempt_committed):
    """The service died after sending a document's chunks (and maybe its commit) but before
    answering: the retry finds the open receipt and counts the document exactly once."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from pipeline import generations, kafka

    s = services.settings
    before = totals(services)
    names = kafka.topic_names(AdminClient(kafka.client_config(services.connection)))
    topic = generations.topic(s.topics.chunks, generations.newest(names, s.topics.chunks) or 1)  # the live one
    key, doc, body = uuid.uuid4().hex, uuid.uuid4().hex, b"crashed attempt words " * 50
    producer = Producer(kafka.producer_config(services.connection))
    offsets = []
    chunk = codec.encode_chunk(codec.ChunkMessage(doc, 0, "crash", 0, body, tokenize.DEFAULT.id, held=True))
    producer.produce(topic, chunk, key=doc.encode(), partition=5, on_delivery=lambda e, m: offsets.append(m.offset()))
    producer.flush(10)
    assert offsets, f"the chunk was not acknowledged by {topic}"
    receipt = codec.Receipt(doc, key, "open", 5, offsets[0], 1, len(body), time.time(), topic)
    producer.produce(s.topics.documents, codec.encode_receipt(receipt), key=f"key:{key}".encode(), partition=0)
    if first_attempt_committed:
        producer.produce(topic, codec.encode_end(codec.DocumentEnd(doc, 1, True)), key=doc.encode(), partition=5)
    producer.produce(topic, codec.encode_flush(), partition=5)
    producer.flush(10)
    with IngestThread(services.connection, s) as ingest:  # a restarted service: it reads the receipts
        ingest.wait_healthy()
        wait_for(lambda: key in ingest.service.receipts.by_key, 10, "the receipts to load")
        retry = requests.post(
            ingest.url + "/v1/documents",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain", "Idempotency-Key": key},
        )
    assert retry.status_code == 202, retry.text
    assert (retry.json()["document"] == doc) is first_attempt_committed
    assert totals(services) - before == words(body)


def test_a_stream_acknowledges_segments_and_a_cut_keeps_only_what_was_acknowledged(services):
    before = totals(services)
    host, port = services.ingest_url.removeprefix("http://").split(":")
    lines = [f"streamline{i} streamword\n".encode() for i in range(40)]
    sent = b""
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            (
                f"POST /v1/streams?name=log HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 200")
        while reader.readline() not in (b"\r\n", b""):
            pass
        acknowledged = []
        for line in lines[:30]:
            sock.sendall(b"%x\r\n%s\r\n" % (len(line), line))
            sent += line
            time.sleep(0.05)
        sock.sendall(b"5\r\npartl\r\n")  # half a word, then the connection drops
        sock.settimeout(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not acknowledged or acknowledged[-1] < len(sent)):
            size = reader.readline()
            if not size.strip():
                continue
            payload = json.loads(reader.read(int(size, 16)))
            reader.readline()
            acknowledged.append(payload["acknowledged_bytes"])
    assert len(acknowledged) >= 2, "progress came while the upload went on"
    assert acknowledged == sorted(acknowledged) and acknowledged[-1] == len(sent)
    wait_for(
        lambda: services.client.status()["documents_open"] == 0,
        30,
        lambda: f"the cut segment to be aborted: {services.client.status()}",
    )
    assert totals(services) - before == words(sent[: acknowledged[-1]])
