"""A partition nobody has committed an offset for is read from its first record, whatever the
broker calls "earliest": Tansu answers that with the record batch it stored first, not the
one of lowest offset, and two producers writing at once can make those differ. An
aggregator that took over such a partials partition skipped its first record, and the
windows in it were never counted (a `wordpipe run` with two aggregators waited forever)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests
from confluent_kafka import OFFSET_INVALID

from pipeline import codec, config, kafka
from pipeline.kafka import TopicPartition
from pipeline.kafka.broker import free_port
from pipeline.worker.inputs import ChunkPartitions
from tests.helpers import logged_errors, wait_for

pytestmark = pytest.mark.e2e

SHARDS = 32  # partials partitions: each is one more chance of the broker misplacing its first record
TRIES = 80


def part(settings: config.Settings, shard: int, chunks_partition: int, words: int) -> bytes:
    source = (f"{settings.topics.chunks}.g1:{chunks_partition}", 0, 1)
    buckets = {0: {f"w{chunks_partition}x{i}": 1 for i in range(words)}}
    (record,) = codec.encode_partials(shard, [codec.PartialMessage(source, shard, buckets, {}, {}, 1)])
    return record


def write_at_once(connection, topic: str, first: list[bytes], second: list[bytes]) -> None:
    """`first[p]` and `second[p]` to each partition p from two producers together, as two
    workers write: the first records large, the second small and a moment later."""
    producers = [kafka.producer(connection) for _ in range(2)]
    for producer in producers:
        producer.list_topics(timeout=10)  # connected, with its producer id: both start together
    start = threading.Barrier(2)

    def write(producer, records: list[bytes], after: float) -> None:
        start.wait()
        time.sleep(after)
        for p, record in enumerate(records):
            kafka.produce(producer, topic, record, p)
        assert producer.flush(30) == 0

    threads = [
        threading.Thread(target=write, args=(producers[0], first, 0.0)),
        threading.Thread(target=write, args=(producers[1], second, 0.0002)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def misplaced(connection, topic: str) -> list[int]:
    """The partitions whose "earliest" offset, as the broker answers, is not 0."""
    consumer = kafka.consumer(connection, "first-records-test")
    try:
        return [p for p in range(SHARDS) if consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0]]
    finally:
        consumer.close()


def until_misplaced(make_topic) -> tuple[int, list[int]]:
    """Calls `make_topic(attempt)` (it creates a topic, writes it at once and returns its
    name) until the broker misplaces a partition's first record: (attempt, partitions)."""
    for attempt in range(TRIES):
        if found := misplaced(*make_topic(attempt)):
            return attempt, found
    pytest.skip(f"the broker named offset 0 its earliest in all {SHARDS * TRIES} partitions: the case did not arise")


def test_an_aggregator_taking_a_partition_reads_it_from_offset_0(broker, tmp_path):
    connection = broker.connection()

    def settings(attempt: int) -> config.Settings:
        return config.Settings(
            bootstrap=broker.bootstrap,
            chunks_topic=f"chunks{attempt}",
            partials_topic=f"partials{attempt}",
            partial_partitions=SHARDS,
            aggregator_id=f"aggregator{attempt}",
            aggregator_port=free_port("127.0.0.1"),
            aggregator_datadir=str(tmp_path / "faust"),
            auth="none",
        )

    def make_topic(attempt: int) -> tuple:
        s = settings(attempt)
        kafka.ensure_topics(connection, s.topics)
        topic = f"{s.topics.partials}.g1"
        big, small = ([part(s, shard, n, words) for shard in range(SHARDS)] for n, words in ((0, 30_000), (1, 1)))
        write_at_once(connection, topic, big, small)
        return connection, topic

    attempt, skipped = until_misplaced(make_topic)
    s = settings(attempt)
    log = (tmp_path / "aggregator.log").open("w")
    env = {**os.environ, **s.to_env(connection)}
    aggregator = subprocess.Popen([sys.executable, "-m", "pipeline.aggregator"], env=env, stdout=log, stderr=log)
    inputs = {f"{s.topics.chunks}.g1:0", f"{s.topics.chunks}.g1:1"}

    def every_window_counted() -> bool:
        try:
            shards = requests.get(f"http://127.0.0.1:{s.aggregator.port}/v1/progress", timeout=5).json()["shards"]
        except (requests.RequestException, ValueError, KeyError):
            return False
        return len(shards) == SHARDS and all(set(done) == inputs for done in shards.values())

    try:
        wait_for(
            every_window_counted,
            timeout=60,
            what=lambda: (
                f"both windows counted on every shard; {skipped} start past their first record "
                f"as the broker tells it\n{logged_errors(tmp_path)}"
            ),
        )
    finally:
        aggregator.kill()
        aggregator.wait()
        log.close()


def test_a_partition_whose_first_record_the_broker_misplaces_has_its_whole_extent(broker):
    """topic_extents (what `run --source` waits for, what says a generation is all counted
    before it is deleted) reads the first record where the broker's answers are doubtful:
    Tansu answered (1, 1) for a partition holding offsets 0 and 1."""
    connection = broker.connection()

    def make_topic(attempt: int) -> tuple:
        topic = f"extents{attempt}"
        kafka.create(kafka.admin(connection), [kafka.new_topic(topic, SHARDS, 1)])
        write_at_once(connection, topic, [b"x" * 300_000] * SHARDS, [b"y"] * SHARDS)
        return connection, topic

    attempt, _ = until_misplaced(make_topic)
    extents = kafka.topic_extents(connection, [f"extents{attempt}"])
    assert extents == {f"extents{attempt}:{p}": (0, 2) for p in range(SHARDS)}


def test_a_chunks_partition_nobody_committed_is_read_from_offset_0():
    """The workers' side of the same: a position is given, never left to "earliest"."""
    positions = [TopicPartition("chunks.g1", 0, OFFSET_INVALID), TopicPartition("chunks.g1", 1, 42)]
    ChunkPartitions(config.Settings().topics, config.Settings().worker, "unicode").resume(positions)
    assert [tp.offset for tp in positions] == [0, 42]


def test_reading_a_partition_that_never_held_a_record_or_is_not_there(broker):
    """An empty partition is read as empty without a fetch; one that does not exist is an
    error naming its topic, not an empty answer."""
    connection = broker.connection()
    kafka.create(kafka.admin(connection), [kafka.new_topic("never-written", 2, 1)])
    assert kafka.read_partition(connection, "never-written", 1, timeout=5) == []
    for topic, partition in (("no-such-topic", 0), ("never-written", 2)):
        with pytest.raises(kafka.KafkaUnavailable, match=f"reading {topic}"):
            kafka.read_partition(connection, topic, partition, timeout=5)
