"""A whole `wordpipe up --state-dir` stack SIGKILLed again and again (issue 30): its process
group killed at random instants while an HTTP producer uploads with idempotency keys
(retrying each upload until it is acknowledged, as `wordpipe ingest` does) and a kafka-python
producer writes to a source topic; the stack is started again on the same directory each
time. In the end, every acknowledged upload is counted exactly once, every record the
restored source topic holds is counted, and a record the broker acknowledged but a crash
took was acknowledged within the journal's bound before that crash.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pipeline import kafka, tokenize
from pipeline.client import Client, RequestFailed
from pipeline.config import Connection, KafkaSettings
from pipeline.kafka.broker import free_port
from pipeline.progress import sources_counted
from pipeline.supervisor import log_tail
from tests.chaos.helpers import scaled
from tests.helpers import SAMPLE, logged_errors

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
TOKEN = "chaos-token"
LINES = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
# What a crash may take of the records the broker acknowledged: those acknowledged less than
# this long before it (the README's bound: a journal round, and the fetch before it).
LOSS_BOUND = 1.0


@dataclass
class Ledger:
    acknowledged: dict[str, bytes] = field(default_factory=dict)  # upload key -> its text, once a 202 came
    # source records acknowledged: each with when, and by which stack's broker
    records: list[tuple[bytes, float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Stack:
    """`wordpipe up` on the same ports and directory, started again after each kill."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.ports = {"ingest": free_port(), "results": free_port(), "autoscaler": free_port()}
        self.proc: subprocess.Popen | None = None
        self.bootstrap = ""  # the broker of the stack running now
        self.banner = ""
        self.output = tmp_path / "up.log"
        # When each stack's broker was killed, by its address: its records acknowledged since
        # were taken by that kill too (the broker dies with `up`, a moment after it).
        self.killed: dict[str, float] = {}

    def start(self) -> None:
        self.output = self.tmp_path / f"up-{len(self.killed)}.log"  # a file: a pipe nobody reads would fill
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline.cli",
                    "up",
                    "--state-dir",
                    str(self.tmp_path / "state"),
                    "--source",
                    "feed",
                ]
                + [f"--{name}-port={port}" for name, port in self.ports.items()]
                + ["--log-dir", str(self.tmp_path / f"logs-{len(self.killed)}")],
                env={**os.environ, "WORDPIPE_TOKENS": TOKEN, "XDG_STATE_HOME": str(self.tmp_path / "xdg")},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while "Ctrl-C" not in (banner := self.output.read_text(errors="replace")):
            assert self.proc.poll() is None, f"wordpipe up exited early:\n{banner}"
            time.sleep(0.05)
        self.banner = banner
        self.bootstrap = next(
            line.split(" at ")[-1].rstrip(")") for line in self.banner.splitlines() if "(topic feed at" in line
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.killed[self.bootstrap] = time.monotonic()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)

    def client(self) -> Client:
        return Client(
            f"http://127.0.0.1:{self.ports['ingest']}", f"http://127.0.0.1:{self.ports['results']}", token=TOKEN
        )


def uploads(stack: Stack, ledger: Ledger, stop: threading.Event) -> None:
    """Keyed uploads, each retried until acknowledged, whatever dies meanwhile."""
    client, rng, n = stack.client(), random.Random(30), 0
    while not stop.is_set():
        key = f"upload{n}"
        text = f"{key} {' '.join(rng.sample(LINES, 8))}".encode()
        while True:
            try:
                client.ingest(text, name=key, key=key, attempts=1)
                break
            except RequestFailed:
                time.sleep(0.2)  # down, or answering 503 while it starts: the same key again
        with ledger.lock:
            ledger.acknowledged[key] = text
        n += 1
        time.sleep(0.05)
    client.close()


def records(stack: Stack, ledger: Ledger, stop: threading.Event) -> None:
    """Source records to whichever broker the stack has now; each acknowledged one noted, with when."""
    rng, n = random.Random(31), 0
    while not stop.is_set():
        bootstrap = stack.bootstrap
        try:
            producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=3000)
        except Exception:
            time.sleep(0.2)
            continue
        try:
            while not stop.is_set():
                value = f"record{n} {rng.choice(LINES)}".encode()
                producer.send("feed", value).get(3)
                with ledger.lock:
                    ledger.records.append((value, time.monotonic(), bootstrap))
                n += 1
                time.sleep(0.01)
        except Exception:  # the broker is gone: a new one comes with the next stack
            time.sleep(0.2)
        finally:
            try:
                producer.close(timeout=0)
            except Exception:
                pass  # a producer of a broker that is gone may not close cleanly


def test_whole_stack_sigkilled_again_and_again(tmp_path, trial):
    """The whole `wordpipe up --state-dir` stack SIGKILLed at random instants, and started again"""
    kills = scaled(3, 10)
    stack, ledger, stop = Stack(tmp_path), Ledger(), threading.Event()
    rng = random.Random(30)
    stack.start()
    threads = [threading.Thread(target=f, args=(stack, ledger, stop), daemon=True) for f in (uploads, records)]
    for thread in threads:
        thread.start()
    for _ in range(kills):
        time.sleep(rng.uniform(2.0, 6.0))
        stack.kill()
        trial.fault("SIGKILL of the whole `wordpipe up` process group (broker, services, workers)")
        stack.start()
        assert "the last stop was not clean" in stack.banner, stack.banner
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(60)
    try:
        check(stack, ledger, trial)
    except BaseException:
        print(f"{stack.output.name}, its end:\n{log_tail(stack.output)}\n\nerrors logged:\n{logged_errors(tmp_path)}")
        raise
    finally:
        stack.stop()


def check(stack: Stack, ledger: Ledger, trial) -> None:
    client = stack.client()
    status = wait_counted(client, timeout=300)
    held = topic_records(stack.bootstrap)
    extents = {f"feed:{p}": (0, len(values)) for p, values in held.items()}
    deadline = time.monotonic() + 300
    while not sources_counted(client._get("/v1/progress"), extents):
        assert time.monotonic() < deadline, "the restored source topic was not counted to its end"
        time.sleep(0.5)
    kept = Counter(value for values in held.values() for value in values)
    texts = list(ledger.acknowledged.values()) + [v for values in held.values() for v in values]
    trial.expected = sum((Counter(tokenize.count(tokenize.decode(t).text)) for t in texts), Counter())
    trial.counted = Counter(dict(client.totals()))
    trial.input_bytes = sum(map(len, texts))
    lost = [(value, at, broker) for value, at, broker in ledger.records if not kept[value]]
    # How long before the kill of the broker that acknowledged it (None: the last, never killed).
    late = [
        (value, max(0.0, stack.killed[broker] - at) if broker in stack.killed else None) for value, at, broker in lost
    ]
    trial.recovered(max(stack.killed.values()))
    trial.notes += [  # a service of a stack that exited and was restarted by it
        line
        for out in sorted(stack.tmp_path.glob("up-*.log"))
        for line in out.read_text().splitlines()
        if "restarting it" in line
    ]
    trial.notes += [
        f"{len(ledger.acknowledged)} uploads acknowledged (each retried until it was), "
        f"{status['documents_counted']} documents counted",
        f"{len(ledger.records)} source records acknowledged by the broker, {sum(kept.values())} in the restored "
        f"topic; {len(lost)} taken by a crash, each acknowledged at most "
        f"{max((t for _, t in late if t is not None), default=0) * 1000:.0f} ms before it (bound: {LOSS_BOUND * 1000:.0f} ms)",
    ]
    assert status["documents_counted"] == len(ledger.acknowledged), "an acknowledged upload was lost or counted twice"
    assert trial.counted == trial.expected, "words lost or counted twice"
    assert all(t is not None and t <= LOSS_BOUND for _, t in late), f"records lost beyond the bound: {late[:5]}"
    client.close()


def wait_counted(client: Client, timeout: float) -> dict:
    """Until everything accepted is counted, through a restart of the results API: `up`
    restarts a service that exits (its restarts are noted in the report)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.wait_counted(timeout=max(0.0, deadline - time.monotonic()))
        except RequestFailed as exc:
            if exc.code != "unreachable" or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def topic_records(bootstrap: str) -> dict[int, list[bytes]]:
    """Every record of the source topic now, by partition (each read to its true end)."""
    connection = Connection.to(KafkaSettings(), embedded=bootstrap)
    ends = kafka.topic_extents(connection, ["feed"])
    return {
        int(name.split(":")[1]): [m.value() for m in kafka.read_partition(connection, "feed", int(name.split(":")[1]))]
        for name, (_, end) in ends.items()
    }
