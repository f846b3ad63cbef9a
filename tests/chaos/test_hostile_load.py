"""Hostile clients beside a normal producer: gzip bombs and 32 slow uploads (from four client
addresses, reconnecting as soon as they are cut off) against the ingest service with its
default limits, while a normal producer uploads a document a second. The normal uploads
are all accepted and counted within seconds, nothing of the attackers counts, and the
ingest service's memory stays flat."""

from __future__ import annotations

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
from tests.chaos.helpers import grown, scaled
from tests.hostile import gzip_bomb
from tests.services import IngestProcess, read_response

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
TOKEN = "chaos-token"
SLOW_CLIENTS = [f"127.0.0.{i}" for i in range(2, 6)]  # 8 slow uploads each
BOMBER = "127.0.0.6"


class Attack:
    """The attackers' threads, and what they were answered."""

    def __init__(self, ingest: IngestProcess) -> None:
        self.ingest = ingest
        self.stop = threading.Event()
        self.answers: Counter[str] = Counter()
        self.bomb = gzip_bomb(b"bombword\n", 4 << 30)
        self.bomb_seconds: list[float] = []
        # Daemons, and ended in a finally: a failed scenario left them attacking, and pytest never exited.
        self.threads = [
            threading.Thread(target=self.drip, args=(source,), daemon=True) for source in SLOW_CLIENTS for _ in range(8)
        ]
        self.threads.append(threading.Thread(target=self.bombs, daemon=True))

    def start(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def drip(self, source: str) -> None:
        """A slow upload of a declared megabyte, a word a second; again as soon as it is answered."""
        head = (
            f"POST /v1/documents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
        while not self.stop.is_set():
            with socket.create_connection(("127.0.0.1", self.ingest.port), source_address=(source, 0)) as sock:
                sock.settimeout(60)
                sock.sendall(head)
                while not self.stop.is_set():
                    try:
                        sock.sendall(b"slowword ")
                    except OSError:
                        break
                    if select.select([sock], [], [], 1.0)[0]:
                        break
                answer = read_response(sock)
            self.answers[f"slow {answer[9:12].decode() or 'cut'}"] += 1

    def bombs(self) -> None:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter()
        adapter.init_poolmanager(1, 1, source_address=(BOMBER, 0))
        session.mount("http://", adapter)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                reply = session.post(
                    self.ingest.url + "/v1/documents",
                    data=self.bomb,
                    timeout=60,
                    headers={
                        "Authorization": f"Bearer {TOKEN}",
                        "Content-Type": "text/plain",
                        "Content-Encoding": "gzip",
                    },
                )
                self.answers[f"bomb {reply.status_code} {reply.json()['error']}"] += 1
            except requests.ConnectionError:  # refused mid-body: the service closed while the bomb was still going out
                self.answers["bomb closed mid-body"] += 1
            self.bomb_seconds.append(time.monotonic() - started)
            self.stop.wait(1.0)


def test_gzip_bombs_and_slow_clients_beside_a_normal_producer(tmp_path, trial):
    """Gzip bombs and 32 slow clients beside a normal producer"""
    trial.recovery_from = "a normal upload's start (the slowest of them)"
    with Pipeline(config.Settings(workers=2, tokens=TOKEN)) as pipeline:
        ingest = IngestProcess(pipeline, tmp_path / "ingest.log")
        client = Client(ingest.url, pipeline.results_url, token=TOKEN)
        try:
            run(ingest, client, trial)
        finally:
            client.close()
            ingest.stop()
    assert "Traceback" not in (tmp_path / "ingest.log").read_text()


def run(ingest: IngestProcess, client: Client, trial) -> None:
    before = Counter(dict(client.totals()))
    assert client.ingest(b"warm up the service") and client.wait_counted(60)
    baseline = ingest.rss_mb()
    attack = Attack(ingest).start()
    trial.fault(
        f"gzip bombs from {BOMBER}: {len(attack.bomb) / 1e6:.1f} MB that inflate to 4 GiB of one word, "
        "one after another"
    )
    trial.fault(
        f"32 slow uploads from {', '.join(SLOW_CLIENTS)} (8 each): a declared 1 MB body, a word a second, "
        "reconnecting as soon as answered"
    )
    rss, accepted, counted, expected = [], [], [], Counter()
    deadline = time.monotonic() + scaled(60, 180)
    i = 0
    try:
        while time.monotonic() < deadline:
            body = f"normal producer upload{i} arrives whole\n".encode()
            started = time.monotonic()
            reply = requests.post(
                ingest.url + "/v1/documents",
                data=body,
                timeout=30,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
            )
            assert reply.status_code == 202, reply.text
            accepted.append(time.monotonic() - started)
            expected += tokenize.count(body.decode())
            while client.count(f"upload{i}") != 1:
                assert time.monotonic() - started < 30, f"upload{i} not counted in 30 s"
                time.sleep(0.1)
            counted.append(time.monotonic() - started)
            rss.append(ingest.rss_mb())
            i += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    finally:
        attack.end()
    client.wait_counted(120)
    trial.expected = expected + tokenize.count("warm up the service")
    trial.counted = grown(Counter(dict(client.totals())), before)
    trial.input_bytes = sum(len(f"normal producer upload{n} arrives whole\n") for n in range(i))
    trial.recovery = round(max(counted), 1)
    answers = ", ".join(f"{what}: {n}" for what, n in sorted(attack.answers.items()))
    trial.notes += [
        f"normal producer: {i} uploads, all 202; accepted in {_spread(accepted)}, counted in {_spread(counted)}",
        f"the attackers were answered: {answers}",
        f"each bomb was answered in {_spread(attack.bomb_seconds)}",
        f"ingest service RSS: {baseline:.0f} MB before, {min(rss):.0f}–{max(rss):.0f} MB under attack",
    ]
    assert trial.counted == trial.expected  # nothing of the bombs or the slow uploads
    assert attack.answers["bomb 413 inflates_too_much"] >= 3
    assert attack.answers["slow 408"] >= 8 and attack.answers["slow 429"] == 0
    assert max(counted) < 10
    assert max(rss) - baseline < 48, (baseline, max(rss))


def _spread(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return f"median {ordered[len(ordered) // 2]:.2f} s, max {ordered[-1]:.2f} s"
