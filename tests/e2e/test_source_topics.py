"""`wordpipe run --source`: topics that another client fills, counted exactly as the files would be.

The records are written with kafka-python, a client that shares no code with wordpipe's
librdkafka, as a user's own producer would."""

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.helpers import CORPORA, SAMPLE, create_topics, wordpipe

pytestmark = pytest.mark.e2e


def corpus_lines() -> list[str]:
    """Shakespeare (or the bundled sample) and Chinese prose, a line each."""
    english = CORPORA / "shakespeare.txt"
    chinese = CORPORA / "seed-mesos-docker-zh.txt"
    lines = (english if english.exists() else SAMPLE).read_text(encoding="utf-8").splitlines()
    if chinese.exists():
        lines += chinese.read_text(encoding="utf-8").splitlines()
    return lines


def produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    create_topics(bootstrap, {topic: 6})
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for value in values:
        producer.send(topic, value, key=None if value is not None else b"gone")  # a tombstone needs a key
    producer.flush()
    producer.close()


def reference(text: str) -> dict:
    done = wordpipe("reference", "-", "--json", input=text.encode())
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def run(*args: str):
    return wordpipe("run", *args, "--json", "-q", timeout=300)


def test_lines_on_a_topic_count_as_the_file_does(broker):
    lines = corpus_lines()
    produce(broker.bootstrap, "lines", [line.encode() for line in lines])
    done = run("--source", "lines", "--bootstrap", broker.bootstrap)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert json.loads(done.stdout) == reference("\n".join(lines))
    assert b"dead-letter" not in done.stderr and b"no text" not in done.stderr


def test_the_documented_producer_writes_lines_that_get_counted(broker, tmp_path):
    """docs/producing.md's example producer, run as the document says."""
    import subprocess
    import sys

    from tests.helpers import REPO

    book = tmp_path / "book.txt"
    lines = corpus_lines()[:3000]  # the bundled sample has fewer, without the shared corpora
    book.write_text("\n".join(lines) + "\n", encoding="utf-8")
    create_topics(broker.bootstrap, {"book": 6})
    example = REPO / "docs" / "examples" / "produce_lines.py"
    assert str(example.relative_to(REPO / "docs")) in (REPO / "docs" / "producing.md").read_text()
    wrote = subprocess.run(
        [sys.executable, str(example), "--bootstrap", broker.bootstrap, "--topic", "book", str(book)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrote.returncode == 0 and wrote.stdout.strip() == f"{len(lines)} lines written to book", wrote.stderr[-2000:]
    done = run("--source", "book", "--bootstrap", broker.bootstrap)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert json.loads(done.stdout) == json.loads(wordpipe("reference", str(book), "--json").stdout)


def test_a_json_field_is_counted_and_records_without_text_are_dead_lettered(broker):
    lines = corpus_lines()[:5000]
    values: list[bytes | None] = [
        json.dumps({"id": i, "body": {"text": line}}).encode() for i, line in enumerate(lines)
    ]
    bad = [
        b"plain words, not JSON",
        b'{"body": {"title": "no text field"}}',
        b'{"body": {"text": 7}}',
        b"\xff\xfe",
        None,
    ]
    produce(broker.bootstrap, "events", values[:100] + bad + values[100:])
    done = run("--source", "events:$.body.text", "--bootstrap", broker.bootstrap)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert json.loads(done.stdout) == reference("\n".join(lines))
    stderr = done.stderr.decode()
    assert "5 source record(s) held no text" in stderr, stderr[-2000:]


def test_a_source_needs_a_cluster_and_a_topic_that_exists(broker):
    embedded = run("--source", "lines")
    assert embedded.returncode == 2 and b"give --bootstrap" in embedded.stderr
    missing = run("--source", "nowhere", "--bootstrap", broker.bootstrap)
    assert missing.returncode == 1 and b"no topic 'nowhere'" in missing.stderr, missing.stderr.decode()[-2000:]
    bad = run("--source", "lines:text", "--bootstrap", broker.bootstrap)
    assert bad.returncode == 2 and b"a field path starts with '$'" in bad.stderr


def test_a_quiet_source_shows_within_seconds_by_its_records_event_time(broker):
    """One record at a time, half an hour apart in event time: each is counted within seconds
    (its window closes idle), in the tumbling window of its own timestamp."""
    from pipeline import config
    from pipeline.run import Pipeline

    stamps = [1_700_000_000_000, 1_700_000_000_000 + 30 * 60_000]  # two windows of event time, both kept
    settings = config.Settings(bootstrap=broker.bootstrap, sources="quiet", window_seconds=60, totals_interval=0.2)
    create_topics(broker.bootstrap, {"quiet": 3})
    with Pipeline(settings) as p:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for n, at in enumerate(stamps, start=1):
            producer.send("quiet", b"wombat", timestamp_ms=at)
            producer.flush()
            sent = time.monotonic()
            while p.http.get(f"{p.results_url}/v1/words/wombat", timeout=5).json()["count"] != n:
                assert time.monotonic() - sent < 5, f"record {n} was not counted within 5 s"
                time.sleep(0.05)
        producer.close()
        windows = p.http.get(f"{p.results_url}/v1/windows/wombat", timeout=5).json()["windows"]
        assert sorted((w["start"], w["count"]) for w in windows) == [(at // 1000 // 60 * 60, 1) for at in stamps]


def test_the_autoscaler_sees_each_source_topics_lag(broker):
    """The lag monitor adds the source topics' records waiting to the chunks topic's, and
    says each topic's part."""
    from pipeline import config
    from pipeline.kafka.broker import start_kafka
    from pipeline.observe.lag import LagMonitor

    settings = config.Settings(bootstrap=broker.bootstrap, sources="feed,other:$.text")
    create_topics(broker.bootstrap, {"feed": 3, "other": 2})
    _, connection = start_kafka(settings.kafka, settings.topics, Path("."))  # wordpipe's topics on that cluster
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(7):
        producer.send("feed", b"words", partition=i % 3)
        producer.flush()  # a batch each: Tansu's high watermark is its last batch's base + 1
    producer.close()
    monitor = LagMonitor(connection, settings.topics, settings.worker.group)
    try:
        metrics = monitor.read([])
        assert monitor.lag_by_topic == {"chunks": 0, "feed": 7, "other": 0}
        assert metrics.lag == 7 and metrics.partitions == 12 + 3 + 2
    finally:
        monitor.close()
