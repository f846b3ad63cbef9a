"""An event for a shard while the aggregator takes its parked shards back after a
reassignment: it must get the state taken back, not start a second recovery that replaces
it (what was applied to the state in between was then lost: a document counted by every
shard but one, in the long chaos suite's gzip-bomb scenario)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from pipeline import config, kafka
from pipeline.aggregator.app import Aggregator

pytestmark = pytest.mark.e2e


def test_an_event_during_a_take_back_waits_for_the_shard_taken_back(broker, tmp_path):
    settings = config.Settings()
    connection = broker.connection()
    kafka.ensure_topics(connection, settings.topics, with_sources=False)
    aggregator = Aggregator(
        connection,
        config.AggregatorSettings(datadir=str(tmp_path)),
        settings.topics,
        settings.ingest.document_max_span,
        kafka.BrokerWatch(connection),
        CollectorRegistry(),
    )
    shards = list(range(settings.topics.partial_partitions))

    async def reassigned() -> tuple[object, object, object]:
        await aggregator.recover(shards)  # empty changelogs: a first start
        before = aggregator.shards[6]
        aggregator.park(shards)  # revoked...
        taking_back = asyncio.create_task(aggregator.recover(shards))  # ...and assigned again
        await asyncio.sleep(0)  # it has begun: it asks the broker whether each changelog is the newest
        during = await aggregator.shard(6)  # an event for shard 6 meanwhile
        await taking_back
        return before, during, aggregator.shards[6]

    before, during, after = asyncio.run(reassigned())
    assert during is before and after is before
