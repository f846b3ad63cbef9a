"""A writer's rotation to its next chunks generation, while its lease tick (another thread of
the ingest service) or another upload's rotation runs beside it."""

from __future__ import annotations

import pytest

from pipeline import config, kafka
from pipeline.ingest.chunk_topics import ChunkTopics

pytestmark = pytest.mark.e2e


def writer(broker) -> ChunkTopics:
    connection = broker.connection()
    topics = config.Settings().topics
    producer = kafka.producer(connection)
    writer = ChunkTopics(connection, topics, "writer-1", producer)
    writer.start()
    return writer


@pytest.mark.parametrize("beside", ["tick", "rotate"])
def test_a_rotation_lands_on_the_generation_it_created(broker, monkeypatch, beside):
    """The tick saw the new generation before the rotation moved to it (it then wrote to
    chunks.g3, a topic nobody made: its uploads hung 30 s, its aborts were lost)."""
    topics = writer(broker)
    create = kafka.create_generation

    def create_and_race(admin, settings, n):
        create(admin, settings, n)
        monkeypatch.setattr(kafka, "create_generation", create)  # the one beside it runs plainly
        topics.tick(force=True) if beside == "tick" else topics.rotate()

    monkeypatch.setattr(kafka, "create_generation", create_and_race)
    topics.rotate()
    assert topics.topic() == "chunks.g2"
    assert topics.topic() in kafka.topic_names(topics.admin)
