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
TRIES = 40


def part(settings: config.Settings, shard: int, chunks_partition: int, words: int) -> bytes:
    source = (f"{settings.topics.chunks}.g1:{chunks_partition}", 0, 1)
    buckets = {0: {f"w{chunks_partition}x{i}": 1 for i in range(words)}}
    (record,) = codec.encode_partials(shard, [codec.PartialMessage(source, shard, buckets, {}, {}, 1)])
    return record


def write_at_once(connection, settings: config.Settings) -> None:
    """One partial to every partials partition from each of two producers, together, as two
    workers write: the first large, the second small and a moment later."""
    topic = f"{settings.topics.partials}.g1"
    producers = [kafka.producer(connection) for _ in range(2)]
    for producer in producers:
        producer.list_topics(timeout=10)  # connected, with its producer id: both start together
    start = threading.Barrier(2)

    def write(producer, chunks_partition: int, words: int, after: float) -> None:
        records = [part(settings, shard, chunks_partition, words) for shard in range(SHARDS)]
        start.wait()
        time.sleep(after)
        for shard, record in enumerate(records):
            kafka.produce(producer, topic, record, shard)
        assert producer.flush(30) == 0

    threads = [
        threading.Thread(target=write, args=(producers[0], 0, 30_000, 0.0)),
        threading.Thread(target=write, args=(producers[1], 1, 1, 0.0002)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def misplaced(connection, settings: config.Settings) -> list[int]:
    """The partials partitions whose "earliest" offset, as the broker answers, is not 0."""
    consumer = kafka.consumer(connection, "first-records-test")
    try:
        topic = f"{settings.topics.partials}.g1"
        return [p for p in range(SHARDS) if consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0]]
    finally:
        consumer.close()


def test_an_aggregator_taking_a_partition_reads_it_from_offset_0(broker, tmp_path):
    connection = broker.connection()
    for attempt in range(TRIES):
        s = config.Settings(
            bootstrap=broker.bootstrap,
            chunks_topic=f"chunks{attempt}",
            partials_topic=f"partials{attempt}",
            partial_partitions=SHARDS,
            aggregator_id=f"aggregator{attempt}",
            aggregator_port=free_port("127.0.0.1"),
            aggregator_datadir=str(tmp_path / "faust"),
            auth="none",
        )
        kafka.ensure_topics(connection, s.topics)
        write_at_once(connection, s)
        if skipped := misplaced(connection, s):
            break
    else:
        pytest.skip(
            f"the broker named offset 0 its earliest in all {SHARDS * TRIES} partitions: the case did not arise"
        )
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


def test_a_chunks_partition_nobody_committed_is_read_from_offset_0():
    """The workers' side of the same: a position is given, never left to "earliest"."""
    positions = [TopicPartition("chunks.g1", 0, OFFSET_INVALID), TopicPartition("chunks.g1", 1, 42)]
    ChunkPartitions(config.Settings().topics, config.Settings().worker, "unicode").resume(positions)
    assert [tp.offset for tp in positions] == [0, 42]
