"""The state directory's journal on a real broker: what a cut holds when a worker acts during
the round that takes it."""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline import config, generations, kafka
from pipeline.aggregator.changelog import topics_prefix
from pipeline.stack import groups_of
from pipeline.statedir.directory import Directory
from pipeline.statedir.journal import Journal, Levels

pytestmark = pytest.mark.e2e


def commit(connection, group: str, topic: str, offset: int) -> None:
    consumer = Consumer(kafka.consumer_config(connection, group))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def test_a_source_window_closed_idle_during_a_round_is_cut_with_its_recorded_end(broker, tmp_path):
    """The sequence pipeline/worker/worker.py follows to close an idle window (its start committed, its
    end recorded, its partials published), run after the round read the groups and before it
    fixed the partials' ends: the cut must not hold those partials without that end, or a
    restored worker cuts the window elsewhere and the aggregator refuses it (words lost)."""
    s = config.Settings(bootstrap=broker.bootstrap, sources="feed")
    connection = broker.connection()
    kafka.ensure_topics(connection, s.topics, with_sources=True)
    producer = Producer(kafka.producer_config(connection))
    for n in range(10):
        producer.produce("feed", f"line {n}".encode(), partition=0)
    assert producer.flush(10) == 0
    directory = Directory(tmp_path / "state")
    directory.initialize()
    levels = Levels(s.topics, topics_prefix(s.aggregator.id))
    journal = Journal(directory, connection, levels, groups_of(s.worker, s.aggregator.id), s.worker.ends_group, None)
    partials = generations.topic(s.topics.partials, 1)
    broker_ends = journal._broker_ends
    raced = []

    def close_idle_window_first(names: list[str]) -> dict[str, int]:
        if not raced and any(name.startswith(f"{partials}:") for name in names):
            raced.append(True)
            commit(connection, s.worker.group, "feed", 0)
            commit(connection, s.worker.ends_group, "feed", 10)
            producer.produce(partials, b"the window's partial", partition=0)
            assert producer.flush(10) == 0
        return broker_ends(names)

    journal._broker_ends = close_idle_window_first  # type: ignore[method-assign]
    try:
        journal._round()
        cut = journal.cut
        assert raced and cut is not None
        assert cut.ends[f"{partials}:0"] == 1, "the race did not happen: the partials are not in the cut"
        assert cut.groups[s.worker.ends_group].get("feed:0") == 10, (
            f"the cut holds the idle window's partials but not its recorded end: {cut.groups}"
        )
        assert cut.groups[s.worker.group].get("feed:0") == 0
        assert cut.ends["feed:0"] == 10
    finally:
        journal.start().stop()
