"""Poison beside normal producers (issue 29): a `wordpipe up` stack with two source topics,
`lines` (text) and `events` (JSON, `$.text`), takes a normal HTTP producer and a normal
source producer (kafka-python) while a third party sends everything that once stopped the
counting: JSON nested 100,000 deep, a word of 2 MB, 24 words of 64,999 characters in one
upload, 10 MB records, invalid UTF-8, tombstones, binary values, and the results API's
worst lookups, 8 at a time. Every record is counted exactly or dead-lettered with its
reason, the normal producers' words are counted within seconds, and no service restarts.
"""

from __future__ import annotations

import json
import random
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
from kafka import KafkaProducer

from pipeline import codec, config, kafka, tokenize
from pipeline.client import Client
from pipeline.kafka.broker import free_port
from pipeline.stack import Stack
from tests.chaos.helpers import scaled
from tests.helpers import SAMPLE

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
TOKEN = "chaos-token"
LINES = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
WORST_WORD = "\ufdfa" * 340  # NFKC makes it 18 times longer


@dataclass
class Ledger:
    """What was sent and what must come of it."""

    expected: Counter = field(default_factory=Counter)  # the words that must be counted
    sent_at: dict[str, float] = field(default_factory=dict)  # marker word -> when its text was acknowledged
    counted_after: dict[str, float] = field(default_factory=dict)  # marker word -> seconds to be counted
    refused: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (topic, partition, offset) -> what
    poison: list[str] = field(default_factory=list)  # what was sent, for the report
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counts(self, text: str | bytes) -> None:
        decoded = tokenize.decode(text).text if isinstance(text, bytes) else text
        with self.lock:
            self.expected.update(tokenize.count(decoded))

    def watch(self, marker: str) -> None:
        with self.lock:
            self.sent_at[marker] = time.monotonic()


class Producers:
    """The normal producers, the poisoner and the latency watcher, as threads."""

    def __init__(self, stack: Stack, ledger: Ledger, seconds: float) -> None:
        self.stack, self.ledger = stack, ledger
        self.client = Client(stack.urls["ingest"], stack.urls["results"], token=TOKEN)
        bootstrap = stack.connection.bootstrap if stack.connection else ""
        self.kafka = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_request_size=16 << 20)
        self.until = time.monotonic() + seconds
        self.rng = random.Random(29)
        self.lookup_stalls: list[float] = []
        self.threads = [threading.Thread(target=t, daemon=True) for t in (self.uploads, self.records, self.poisons)]
        self.watcher = threading.Thread(target=self.watch, daemon=True)
        self.watching = True

    def __enter__(self) -> Producers:
        for thread in [*self.threads, self.watcher]:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self.threads:
            thread.join(300)
        self.kafka.flush()
        self.kafka.close()

    def running(self) -> bool:
        return time.monotonic() < self.until

    def uploads(self) -> None:
        """The normal HTTP producer: an upload every half second, with its idempotency key."""
        n = 0
        while self.running():
            marker, text = f"normalupload{n}", " ".join(self.rng.sample(LINES, 5))
            self.client.ingest(f"{marker} {text}".encode(), name=marker, key=marker)
            self.ledger.counts(f"{marker} {text}")
            self.ledger.watch(marker)
            n += 1
            time.sleep(0.5)

    def records(self) -> None:
        """The normal source producer: lines and JSON events, ten a second."""
        n = 0
        while self.running():
            marker, text = f"normalrecord{n}", self.rng.choice(LINES)
            if n % 2:
                self.kafka.send("lines", f"{marker} {text}".encode()).get(30)
            else:
                self.kafka.send("events", json.dumps({"text": f"{marker} {text}", "n": n}).encode()).get(30)
            self.ledger.counts(f"{marker} {text}")
            self.ledger.watch(marker)
            n += 1
            time.sleep(0.1)

    def poisons(self) -> None:
        """Every kind of poison once per round, the worst lookups between them."""
        deep = b"[" * 100_000 + b"]" * 100_000
        while self.running():
            self.refuse("events", deep, "deep JSON")
            self.refuse("events", b'{"text": ' + deep + b"}", "deep JSON in the field")
            self.count("lines", self.words(1, 2_000_000)[0].encode(), "a 2 MB word")
            self.worst_lookups()
            self.upload_long_words()
            self.count("lines", self.ten_megabytes(), "a 10 MB record")
            self.count("lines", b"broken \xff\xfe utf-8 \xc3( invalid", "invalid UTF-8")
            self.refuse("lines", None, "a tombstone", key=b"gone")
            self.refuse("lines", b"binary\x00value", "a binary value")
            self.worst_lookups()

    def words(self, count: int, length: int) -> list[str]:
        return ["".join(self.rng.choices(string.ascii_lowercase, k=length)) for _ in range(count)]

    def ten_megabytes(self) -> bytes:
        text = " ".join(self.words(5_000, 12)) + "\n"
        while len(text) < 10_000_000:
            text += "\n".join(self.rng.sample(LINES, 200)) + "\n"
        return text.encode()

    def count(self, topic: str, value: bytes, what: str) -> None:
        self.kafka.send(topic, value).get(60)
        self.ledger.counts(value)
        self.ledger.poison.append(what)

    def refuse(self, topic: str, value: bytes | None, what: str, key: bytes | None = None) -> None:
        sent = self.kafka.send(topic, value, key=key).get(60)
        self.ledger.refused[(topic, sent.partition, sent.offset)] = what
        self.ledger.poison.append(what)

    def upload_long_words(self) -> None:
        text = " ".join(self.words(24, 64_999))
        self.client.ingest(text.encode(), name="long words")
        self.ledger.counts(text)
        self.ledger.poison.append("24 words of 64,999 characters in one upload")

    def worst_lookups(self) -> None:
        """8 lookups of 1,000 words that NFKC expands 18 times, while GET /v1/top is timed."""
        body = json.dumps({"words": [WORST_WORD] * 1000})
        url, headers = self.stack.urls["results"], {"Authorization": f"Bearer {TOKEN}"}
        threads = [
            threading.Thread(
                target=requests.post,
                args=(url + "/v1/words",),
                kwargs={"data": body, "headers": {**headers, "Content-Type": "application/json"}, "timeout": 120},
            )
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            started = time.monotonic()
            requests.get(url + "/v1/top", headers=headers, timeout=30)
            self.lookup_stalls.append(time.monotonic() - started)
            time.sleep(0.05)
        self.ledger.poison.append("8 worst lookups at once")

    def watch(self) -> None:
        """Note when each marker word is first counted."""
        while self.watching:
            with self.ledger.lock:
                waiting = [m for m in self.ledger.sent_at if m not in self.ledger.counted_after][:1000]
            if waiting:
                for answer in self.client.lookup(waiting):
                    if answer["count"]:
                        word = answer["asked"]
                        self.ledger.counted_after[word] = time.monotonic() - self.ledger.sent_at[word]
            time.sleep(0.1)


def test_poison_beside_normal_producers(tmp_path, trial):
    """Poison records and the worst lookups beside a normal HTTP producer and a normal source producer"""
    settings = config.Settings(
        tokens=TOKEN,
        sources="lines,events:$.text",
        ingest_port=free_port(),
        aggregator_port=free_port(),
        autoscaler_port=free_port(),
    )
    (tmp_path / "logs").mkdir()
    stack = Stack(settings, tmp_path / "logs").start()
    ledger = Ledger()
    try:
        with Producers(stack, ledger, seconds=scaled(30, 180)) as producers:
            while any(t.is_alive() for t in producers.threads):
                stack.supervise()
                time.sleep(0.5)
        done_by = time.monotonic() + 300
        while len(ledger.counted_after) < len(ledger.sent_at) and time.monotonic() < done_by:
            stack.supervise()
            time.sleep(0.5)
        producers.watching = False
        check(stack, producers, ledger, trial)
    finally:
        stack.stop()


def check(stack: Stack, producers: Producers, ledger: Ledger, trial) -> None:
    client = producers.client
    status = client.wait_counted(timeout=300)
    connection = stack.connection
    assert connection is not None
    extents = kafka.topic_extents(connection, ["lines", "events"])
    wait_for_sources(client, extents)
    trial.expected = ledger.expected
    trial.counted = Counter(dict(client.totals()))
    trial.input_bytes = sum(len(w) * n for w, n in ledger.expected.items())
    letters = {
        (letter.topic, letter.partition, letter.offset): letter.reason
        for letter in map(codec.decode_deadletter, (m.value() for m in _deadletters(stack)))
    }
    latencies = sorted(ledger.counted_after.values())
    median = latencies[len(latencies) // 2]
    restarts = {role: crashes["restarts"] for role, crashes in status["pipeline"].get("crashes", {}).items()}
    restarts.update({f"{role} (up)": n for role, n in stack.supervisor.restarts.items() if n})
    stalls = sorted(producers.lookup_stalls)
    for what, n in Counter(ledger.poison).items():
        trial.fault(f"{n} x {what}")
    trial.notes += [
        f"normal producers: {len(latencies)} texts, counted {median:.2f} s after they were acknowledged at "
        f"the median ({latencies[int(len(latencies) * 0.9)]:.2f} s at p90, {latencies[-1]:.2f} s at most)",
        f"dead-lettered with their reasons: {len(letters)} records, "
        + "; ".join(sorted({f"{what}: {letters.get(at, 'MISSING')[:90]}" for at, what in ledger.refused.items()})),
        f"GET /v1/top during the worst lookups: p50 {stalls[len(stalls) // 2] * 1000:.0f} ms, "
        f"max {stalls[-1] * 1000:.0f} ms over {len(stalls)} requests",
        f"restarts: {sum(restarts.values())} ({restarts or 'none'})",
    ]
    assert trial.counted == trial.expected, "a normal or countable record's words were lost or counted twice"
    assert set(ledger.refused) <= set(letters), "a poison record was neither counted nor dead-lettered"
    assert all(letters[at] for at in ledger.refused), "a dead letter without its reason"
    assert median < 2.0, f"the normal producers' words were counted {median:.2f} s after, at the median"
    assert sum(restarts.values()) <= len(ledger.poison), f"restarts beyond one per poison: {restarts}"


def wait_for_sources(client: Client, extents: dict[str, tuple[int, int]], timeout: float = 300) -> None:
    """Until every shard has counted each source partition to its end now."""
    from pipeline.progress import sources_counted

    deadline = time.monotonic() + timeout
    while not sources_counted(client._get("/v1/progress"), extents):
        assert time.monotonic() < deadline, "the source topics were not counted to their ends"
        time.sleep(0.5)


def _deadletters(stack: Stack) -> list:
    assert stack.connection is not None
    return kafka.read_partition(stack.connection, stack.settings.topics.deadletter)
