"""Poison records written straight into `chunks` and `partials` (garbage bytes, wrong
schema versions and shapes, huge payloads) go to the dead-letter topic with a reason;
counting goes on, exactly."""

import os
import time
from collections import Counter

import msgpack
import pytest
from confluent_kafka import Consumer, Producer

from pipeline import codec, config, generations, kafka
from pipeline.ingest.sources import Source
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.helpers import SAMPLE

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
HUGE = 5 * 1024 * 1024

POISON_CHUNKS = [
    (b"\x00garbage\xff", "not msgpack"),
    (
        msgpack.packb({"v": 9, "doc": "d", "seq": 0, "source": "s", "offset": 0, "text": b"x" * 40}),
        "unsupported schema version 9",
    ),
    (
        msgpack.packb(
            {"v": 1, "doc": "d", "seq": 0, "source": "s", "offset": 0, "text": 5, "held": False, "pad": "x" * 20}
        ),
        "unknown field(s) pad",
    ),
    (
        msgpack.packb({"v": 1, "end": "d", "chunks": 1, "commit": "yes", "pad": "x"}),
        "document end: unknown field(s) pad",
    ),
    (b"\x92" + b"x" * 50, "not msgpack"),
    (os.urandom(HUGE), f"chunk: {HUGE:,} bytes, more than a chunk record may have"),
    (
        msgpack.packb({"v": 1, "doc": "d", "seq": 0, "source": "s", "offset": 0, "text": b"x " * HUGE, "held": False}),
        "more than a chunk record may have",
    ),
]
POISON_PARTIALS = [
    (b"\xc1", "partials: not msgpack"),
    (msgpack.packb({"v": 1, "shard": 3, "parts": []}), "partials.shard: 3 arrived on partition 0"),
    (
        msgpack.packb(
            {
                "v": 1,
                "shard": 0,
                "parts": [{"source": [0, 5, 6], "buckets": {0: {"w": -2}}, "held": {}, "ends": {}, "at": 0}],
            }
        ),
        "counts must be positive",
    ),
    (
        msgpack.packb(
            {
                "v": 1,
                "shard": 0,
                "parts": [{"source": [0, 7, 8], "buckets": {}, "held": {"d": [7, 0, {}]}, "ends": {}, "at": 0}],
            }
        ),
        "expected [first offset, chunks >= 1, buckets]",
    ),
    (b"\xc1" + os.urandom(HUGE), "partials: not msgpack"),
    (msgpack.packb({"v": 2, "shard": 0, "parts": [], "pad": b"x" * HUGE}), "partials: unsupported schema version 2"),
]


def read_deadletters(connection, topic, want, timeout=30.0):
    consumer = Consumer(kafka.consumer_config(connection, "dlq-reader"))
    consumer.subscribe([topic])
    letters = []
    try:
        deadline = time.monotonic() + timeout
        while len(letters) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                letters.append(codec.decode_deadletter(msg.value()))
    finally:
        consumer.close()
    return letters


def test_poison_is_dead_lettered_and_counts_stay_exact(trial):
    """Poison records in `chunks` and `partials`, huge ones too"""
    doc = Source("sample", SAMPLE)
    trial.input_bytes = SAMPLE.stat().st_size
    trial.expected = count_sources([doc])
    with Pipeline(config.Settings(workers=1, chunk_size=4096)) as p:
        s = p.settings
        chunks, partials = (
            generations.topic(base, 1) for base in (s.topics.chunks, s.topics.partials)
        )  # the live ones
        producer = Producer(kafka.producer_config(p.connection, **{"message.max.bytes": 3 * HUGE}))
        for value, reason in POISON_CHUNKS:
            producer.produce(chunks, value, partition=0)
            trial.fault(f"into {chunks}: {len(value):,} bytes, expected reason: {reason}")
        for value, reason in POISON_PARTIALS:
            producer.produce(partials, value, partition=0)
            trial.fault(f"into {partials}: {len(value):,} bytes, expected reason: {reason}")
        assert producer.flush(30) == 0
        poisoned_at = time.monotonic()
        report = p.ingest([doc])
        p.wait_counted(report, timeout=120)
        trial.recovered(poisoned_at)
        trial.recovery_from = "the poison, the sample's upload included"
        trial.counted = Counter(p.totals())
        assert trial.counted == trial.expected
        letters = read_deadletters(p.connection, s.topics.deadletter, len(POISON_CHUNKS) + len(POISON_PARTIALS))
    by_topic = Counter(letter.topic for letter in letters)
    assert by_topic == {chunks: len(POISON_CHUNKS), partials: len(POISON_PARTIALS)}
    reasons = [letter.reason for letter in letters]
    for _, expected in POISON_CHUNKS + POISON_PARTIALS:
        assert any(expected in r for r in reasons), (expected, reasons)
    # Each payload as it was, the huge ones cut to their first 64 KiB.
    assert {letter.payload for letter in letters} == {
        v[: codec.DEADLETTER_PAYLOAD_LIMIT] for v, _ in POISON_CHUNKS + POISON_PARTIALS
    }
    trial.notes.append(
        f"{len(letters)} dead letters, each with its reason; payloads over 64 KiB are cut to their first 64 KiB"
    )
