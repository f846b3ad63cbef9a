"""Hostile and careless clients against a real ingest service process, with workers and the
aggregator: no client denies service to the others, every request gets an answer (JSON),
and nothing that was not acknowledged is counted."""

from __future__ import annotations

import gzip
import json
import select
import socket
import threading
import time
from collections import Counter

import pytest
import requests

from pipeline import config, tokenize
from pipeline.client import Client
from pipeline.run import Pipeline
from tests.hostile import gzip_bomb
from tests.services import IngestProcess, read_response

pytestmark = pytest.mark.e2e

TOKEN = "hostile-token"
STALL = 2.0  # upload_stall_seconds and http_idle_seconds, short for the test
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
OTHER_CLIENT = "127.0.0.2"  # loopback answers on all of 127/8: a second client address


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    log = tmp_path_factory.mktemp("hostile") / "ingest.log"
    with Pipeline(config.Settings(workers=1, tokens=TOKEN)) as pipeline:
        ingest = IngestProcess(
            pipeline,
            log,
            {
                "WORDPIPE_UPLOAD_STALL_SECONDS": str(STALL),
                "WORDPIPE_HTTP_IDLE_SECONDS": str(STALL),
                "WORDPIPE_MAX_UPLOADS_PER_CLIENT": "4",
            },
        )
        client = Client(ingest.url, pipeline.results_url, token=TOKEN)
        try:
            yield ingest, client
        finally:
            client.close()
            ingest.stop()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert TOKEN not in log.read_text()


def totals(client: Client) -> Counter:
    client.wait_counted(timeout=120)
    return Counter(dict(client.totals(page=50_000)))


def words(text: bytes) -> Counter:
    return tokenize.count(tokenize.decode(text).text)


def post(
    ingest: IngestProcess, body, headers: dict | None = None, source: str | None = None, **params
) -> requests.Response:
    session = requests.Session()
    if source:  # connect from another client address
        adapter = requests.adapters.HTTPAdapter()
        adapter.init_poolmanager(1, 1, source_address=(source, 0))
        session.mount("http://", adapter)
    with session:
        return session.post(
            ingest.url + "/v1/documents",
            data=body,
            params=params,
            timeout=60,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain", **(headers or {})},
        )


def json_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert b"application/json" in head, answer[:400]
    return status, json.loads(body)


def test_a_gzip_bomb_is_refused_before_it_floods_the_log(stack):
    ingest, client = stack
    before, sent = totals(client), ingest.chunks_sent()
    bomb = gzip_bomb(b"bomb ", 256 << 20)  # 256 MiB of one word in 400 KB
    started = time.monotonic()
    refused = post(ingest, bomb, {"Content-Encoding": "gzip"})
    assert refused.status_code == 413 and refused.json()["error"] == "inflates_too_much", refused.text
    assert "max_inflate_ratio" in refused.json()["detail"]
    assert time.monotonic() - started < 10
    assert ingest.chunks_sent() - sent <= 40  # at most the first MiB and a little, in 64 KiB chunks (~5,000 unbounded)
    fine = gzip.compress(
        b"ordinary compressed text " * 20_000
    )  # 500 KB of repetitive text: inflates ~250 times, within the first MiB
    assert post(ingest, fine, {"Content-Encoding": "gzip"}).status_code == 202
    assert totals(client) - before == words(b"ordinary compressed text " * 20_000)


def test_slow_uploads_from_one_client_leave_room_for_the_others_and_are_cut_off(stack):
    ingest, client = stack
    before = totals(client)
    head = (
        f"POST /v1/documents HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    answers: list[bytes] = []

    def drip() -> None:  # a word a second of a declared megabyte, until answered
        with socket.create_connection(("127.0.0.1", ingest.port), source_address=(OTHER_CLIENT, 0)) as sock:
            sock.settimeout(30)
            sock.sendall(head)
            for _ in range(20):
                sock.sendall(b"slowword ")
                if select.select([sock], [], [], 1.0)[0]:
                    break
            answers.append(read_response(sock))

    drips = [threading.Thread(target=drip) for _ in range(16)]
    for thread in drips:
        thread.start()
    time.sleep(0.5)
    # The slow client holds at most max_uploads_per_client slots; another client is served at once.
    normal = post(ingest, b"a normal producer's upload")
    assert normal.status_code == 202, normal.text
    for thread in drips:
        thread.join(60)
    statuses = Counter(json_error(answer)[0] for answer in answers)
    assert statuses == {429: 12, 408: 4}, statuses
    too_slow = [json_error(a)[1] for a in answers if json_error(a)[0] == 408]
    assert all(e["error"] == "too_slow" and "upload_min_rate" in e["detail"] for e in too_slow), too_slow
    saturated = [json_error(a)[1] for a in answers if json_error(a)[0] == 429]
    assert all(e["error"] == "client_saturated" for e in saturated), saturated
    after = totals(client)
    assert after["slowword"] == 0
    assert after - before == words(b"a normal producer's upload")


def test_a_stalled_stream_is_cut_off_keeping_what_it_committed(stack):
    ingest, client = stack
    before = totals(client)
    with socket.create_connection(("127.0.0.1", ingest.port)) as sock:
        sock.settimeout(30)
        sock.sendall(
            (
                f"POST /v1/streams HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(b"stalled stream\n"), b"stalled stream\n"))
        answer = b""
        while b"too_slow" not in answer and (data := sock.recv(65536)):  # then nothing more
            answer += data
    assert b'"acknowledged_bytes": 15' in answer and b"sent nothing for 2 s" in answer, answer
    assert totals(client) - before == words(b"stalled stream\n")


def test_idle_connections_are_closed(stack):
    ingest, _ = stack
    idle = [socket.create_connection(("127.0.0.1", ingest.port)) for _ in range(50)]
    slow_headers = socket.create_connection(("127.0.0.1", ingest.port))
    slow_headers.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    started = time.monotonic()
    for sock in [*idle, slow_headers]:
        sock.settimeout(STALL + 10)
        assert sock.recv(100) == b""  # closed by the service
        sock.close()
    assert time.monotonic() - started < STALL + 5


def test_a_half_closed_request_is_answered_and_a_half_sent_one_counts_nothing(stack):
    ingest, client = stack
    before = totals(client)
    body = b"halfclosed words answered"
    answer = ingest.raw(
        (
            f"POST /v1/documents HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body,
        half_close=True,
    )
    assert answer.startswith(b"HTTP/1.1 202"), answer
    cut = ingest.raw(
        (
            f"POST /v1/documents HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\n"
            "Content-Length: 1000\r\n\r\nhalfsent words"
        ).encode(),
        half_close=True,
    )
    status, error = json_error(cut)
    assert (status, error["error"]) == (400, "cut_off"), error
    assert totals(client) - before == words(body)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "header_too_large"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
            431,
            "too_many_headers",
        ),
        (b"GET /health?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, "header_too_large"),
        ("GET /health?x=\u0665 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400, "bad_target"),
        (
            b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "bad_content_length",
        ),
        (b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello", 400, "bad_content_length"),
        (
            b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
            "bad_content_length",
        ),
        (
            f"POST /v1/documents HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            "zz\r\nhello\r\n0\r\n\r\n".encode(),
            400,
            "bad_chunking",
        ),
        (
            b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\x01\r\n\r\n",
            400,
            "bad_header",
        ),
        (
            f"POST /v1/documents HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            "5\r\nhello\r\n0\r\n\r\n".encode(),
            501,
            "unsupported_transfer_encoding",
        ),
        (
            f"POST /v1/documents?name=a&name=b HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\nContent-Length: 1\r\n\r\n"
            "x".encode(),
            400,
            "repeated_parameter",
        ),
        (
            f"POST /v1/documents?nmae=a HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: text/plain\r\nContent-Length: 1\r\n\r\n"
            "x".encode(),
            400,
            "unknown_parameter",
        ),
        (
            b"POST /v1/documents?name=%ff HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"Content-Length: 1\r\n\r\nx",
            400,
            "bad_query",
        ),
    ],
)
def test_every_malformed_request_gets_a_json_error_and_counts_nothing(stack, request_bytes, status, code):
    ingest, client = stack
    documents = client.status()["documents_ingested"]
    got_status, error = json_error(ingest.raw(request_bytes))
    assert (got_status, error["error"]) == (status, code), error
    assert TOKEN not in error["detail"]
    assert client.status()["documents_ingested"] == documents


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("k=5&k=6", "more than once"),
        ("k=+5", "ASCII digits"),
        ("k=%D9%A5", "ASCII digits"),
        ("k=5&x=1", "'x' is not a query parameter"),
    ],
)
def test_repeated_or_malformed_parameters_are_refused(stack, query, fragment):
    _, client = stack
    reply = client.http.get(f"{client.results_url}/v1/top?{query}", timeout=10)
    assert reply.status_code == 400 and fragment in reply.json()["detail"], reply.text


def test_the_token_rides_in_the_query_only_on_the_event_stream(stack):
    _, client = stack
    assert requests.get(f"{client.results_url}/v1/top?token={TOKEN}", timeout=10).status_code == 401
    with requests.get(f"{client.results_url}/v1/top/events?token={TOKEN}", stream=True, timeout=10) as events:
        assert events.status_code == 200
