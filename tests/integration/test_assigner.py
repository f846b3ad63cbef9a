"""The assigner on a real broker: a worker just launched gets inputs before its first
report, and loses them if it never reports; a deleted source topic leaves the assignment,
named in the log."""

import time

import pytest
from kafka import KafkaAdminClient

from pipeline import codec, config, kafka
from pipeline.assigner import Assigner
from pipeline.kafka.reading import Follower
from tests.helpers import create_topics

pytestmark = pytest.mark.e2e


def owners_until(follower: Follower, wanted, timeout: float) -> dict[str, str]:
    """The published owners once `wanted(owners)` holds (or the last seen, at the timeout)."""
    deadline, owners = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        value = follower.latest()
        if value is not None:
            owners = codec.decode_assignment(value).owners
            if wanted(owners):
                break
        time.sleep(0.05)
    return owners


def test_a_launched_worker_is_assigned_inputs_before_it_reports(broker):
    s = config.Settings(bootstrap=broker.bootstrap, chunk_partitions=4)
    kafka.ensure_topics(broker.connection(), s.topics)
    inputs = {f"{s.topics.chunks}:{p}" for p in range(4)}
    assigner = Assigner(broker.connection(), s.topics, s.worker)
    follower = Follower(broker.connection(), s.topics.assignments)
    try:
        launched = time.monotonic()
        assigner.expect(["launched"])  # it never reports: as if it were still starting
        owners = owners_until(follower, lambda o: set(o) == inputs, timeout=5)
        assert owners == dict.fromkeys(inputs, "launched"), owners
        assert time.monotonic() - launched < 1.0, "not assigned at once"
        owners = owners_until(follower, lambda o: not o, timeout=10)
        assert owners == {}, "a launched worker that never reported kept its inputs"
        assert time.monotonic() - launched >= 3.0  # silent as long as a live worker may be
    finally:
        follower.close()
        assigner.close()


def test_a_deleted_source_topic_is_unassigned_and_named(broker, caplog):
    """Someone deletes a source topic: its partitions leave the assignment, and the log says
    which topic went (a worker reading it only exits: librdkafka crashes on it)."""
    s = config.Settings(bootstrap=broker.bootstrap, chunk_partitions=2, sources="feed")
    kafka.ensure_topics(broker.connection(), s.topics)
    create_topics(broker.bootstrap, {"feed": 2})
    assigner = Assigner(broker.connection(), s.topics, s.worker)
    follower = Follower(broker.connection(), s.topics.assignments)
    try:
        assigner.expect(["launched"])
        owners = owners_until(follower, lambda o: "feed:1" in o, timeout=5)
        assert {"feed:0", "feed:1"} <= set(owners), owners
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.delete_topics(["feed"])
        finally:
            admin.close()
        owners = owners_until(follower, lambda o: not {"feed:0", "feed:1"} & set(o), timeout=5)
        assert not {"feed:0", "feed:1"} & set(owners), owners
        assert "source topic feed is gone" in caplog.text
    finally:
        follower.close()
        assigner.close()
