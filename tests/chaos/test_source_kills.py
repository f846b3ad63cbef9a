"""A source topic fed without pause while workers and the aggregator are SIGKILLed, and a
worker killed where an idle source window's end is recorded: every record counted once."""

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from pipeline import codec, config, kafka
from pipeline.ingest.publisher import IngestReport
from pipeline.ingest.sources import Source
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.chaos.helpers import ReplayedWords, scaled
from tests.e2e.scenario import mixed_documents, no_process_left

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def settings(**overrides) -> config.Settings:
    # Small windows and a short idle: many windows, idle closes and commits to land a kill between.
    return config.Settings(
        workers=2, sources="feed", source_window_records=64, source_idle_seconds=0.2, flush_interval=0.2, **overrides
    )


def lines_of(tmp_path, megabytes: int) -> list[bytes]:
    """Mixed-script and hostile text (tests/e2e/scenario.py), a record per line."""
    documents = mixed_documents(tmp_path, max(2, megabytes // 3), sample_copies=10, hostile_size=600_000)
    return [line for d in documents for line in d.path.read_bytes().splitlines() if line.strip()]


class Feeder(threading.Thread):
    """Writes the lines to the source topic with kafka-python (not wordpipe's client), in
    bursts with pauses, so windows close both full and idle."""

    def __init__(self, bootstrap: str, lines: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.lines, self.rng = bootstrap, lines, random.Random(11)

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")
        at = 0
        while at < len(self.lines):
            burst = self.rng.randint(50, 3000)
            for line in self.lines[at : at + burst]:
                producer.send("feed", line)
            producer.flush()
            at += burst
            time.sleep(self.rng.uniform(0.05, 0.6))
        producer.close()


def counted_up_to_now(p: Pipeline, lines: list[bytes], trial, tmp_path, refused: int = 0) -> None:
    """Wait until every record on the topic now is counted; the totals must be the reference's
    (of `lines`: the topic also holds `refused` records, dead-lettered)."""
    text = tmp_path / "fed.txt"
    text.write_bytes(b"\n".join(lines))
    trial.input_bytes = text.stat().st_size
    trial.expected = count_sources([Source("fed", text)])
    extents = p.source_extents()
    on_topic = sum(end - first for first, end in extents.values())
    assert on_topic == len(lines) + refused, "the topic lost or gained records"
    p.wait_counted(IngestReport(), timeout=600, extents=extents)
    trial.counted = Counter(p.totals())
    assert trial.counted == trial.expected


def test_source_fed_while_workers_and_aggregator_are_sigkilled(tmp_path, trial):
    """A source topic fed while workers and the aggregator are SIGKILLed"""
    lines = lines_of(tmp_path, scaled(6, 30))
    rng = random.Random(7)
    with Pipeline(settings()) as p:
        pids = [p.broker.proc.pid]
        feeder = Feeder(p.connection.bootstrap, lines)
        feeder.start()
        kills, replayed = 0, ReplayedWords(p)
        while feeder.is_alive():
            time.sleep(rng.uniform(0.8, 2.0))
            p.supervise()
            if kills % 4 == 3:
                replayed.before_kill()
                pids.append(victim := p.aggregator.pid)
                what = f"SIGKILL aggregator (pid {victim})"
            else:
                live = [w for w in p.workers.list() if w.state == "running"]
                if not live:
                    continue
                pids.append(victim := p.workers.pid(rng.choice(live).id))
                what = f"SIGKILL worker (pid {victim})"
            os.kill(victim, signal.SIGKILL)
            kills += 1
            last_fault = time.monotonic()
            trial.fault(what)
        feeder.join()
        counted_up_to_now(p, lines, trial, tmp_path)
        trial.recovered(last_fault)
        assert kills >= 3, "the feed ended before the kills"
        assert p.restarts["workers"] >= 1 and p.restarts["aggregator"] >= 1
        # Replays need a kill between a publication and its commit (or an ack and faust's
        # commit): random kills land there by chance, the worst-instant tests below every time.
        trial.notes.append(f"{replayed.total()} words were replayed and ignored as already counted")
        pids += [p.aggregator.pid] + [p.workers.pid(w.id) for w in p.workers.list()]
    no_process_left(pids)


@pytest.mark.parametrize(
    "fault, replays",
    [
        ("worker.after_recorded_end=3", False),  # an idle window's end recorded, its partials not published
        ("worker.idle_window_published=3", True),  # an idle window's partials acknowledged, its end not committed
        ("worker.before_commit=3", True),  # partials published (idle or full windows), offsets not committed
    ],
)
def test_source_worker_dies_at_its_worst_instant(tmp_path, fault, replays, monkeypatch, trial):
    """A source topic's worker dies at its worst instant (fault point)"""
    trial.title = f"Source worker dies at `{fault.split('=')[0]}`"
    lines = lines_of(tmp_path, 3)
    monkeypatch.setenv("WORDPIPE_FAULTS", fault)
    p = Pipeline(settings()).start()  # the first workers get the fault
    monkeypatch.delenv("WORDPIPE_FAULTS")
    with p:
        p.workers.env.pop("WORDPIPE_FAULTS")  # replacements run clean
        feeder = Feeder(p.connection.bootstrap, lines)
        feeder.start()
        feeder.join()
        counted_up_to_now(p, lines, trial, tmp_path)
        trial.fault(f"{fault}: every first worker exits 137 on pass 3 of that point")
        assert p.restarts["workers"] >= 1, "the fault never fired"
        replayed = ReplayedWords(p).total()
        trial.notes.append(f"{replayed} words were replayed and ignored as already counted")
        if replays:
            assert replayed > 0, "no word was replayed, so none was deduplicated"


POISON = b"wordpipe-poison-record"


def test_a_record_that_crashes_its_reader_is_quarantined(tmp_path, monkeypatch, trial):
    """A record that crashes every process that reads it (a native crash) is dead-lettered after two deaths"""
    lines = lines_of(tmp_path, 3)
    at = len(lines) // 3
    lines = lines[:at] + [b"words before " + POISON + b" and after"] + lines[at:]
    monkeypatch.setenv("WORDPIPE_FAULTS", f"reading=~{POISON.decode()}")  # every reader aborts on it
    with Pipeline(settings()) as p:
        feeder = Feeder(p.connection.bootstrap, lines)
        feeder.start()
        feeder.join()
        poison = lines.pop(at)  # the rest is counted exactly
        counted_up_to_now(p, lines, trial, tmp_path, refused=1)
        trial.fault("a record that aborts (SIGABRT) whatever reads it, every time")
        letters = [
            codec.decode_deadletter(m.value()) for m in kafka.read_partition(p.connection, p.settings.topics.deadletter)
        ]
        assert [(letter.payload, "crashed 2 workers" in letter.reason) for letter in letters] == [(poison, True)]
        assert p.restarts["workers"] == 1, "one worker died on it, then it was read apart"
        trial.notes.append(f"dead-lettered: {letters[0].reason}")
