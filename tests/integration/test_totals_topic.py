"""docs/totals-topic.md's readers, as written there, get the same totals as the results API:
the msgpack one (librdkafka) and the JSON one (kafka-python), with `totals_format = "json"`."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from tests.helpers import REPO, SAMPLE

pytestmark = pytest.mark.e2e


def read_as_documented(example: int, bootstrap: str, topic: str, expected: Counter) -> Counter:
    """The page's `example`th Python block run verbatim, its address and topic ours, its
    endless loop ended once it has the expected totals (or after 60 s)."""
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs/totals-topic.md").read_text(), re.S)[example]
    code = code.replace("127.0.0.1:9092", bootstrap).replace('["totals"]', repr([topic]))
    code = code.replace('"totals", bootstrap_servers', f"{topic!r}, bootstrap_servers")
    code = code.replace(
        "while True:", "deadline = time.monotonic() + 60\nwhile totals != expected and time.monotonic() < deadline:"
    )
    scope = {"time": time, "expected": expected}
    exec(compile(code, "docs/totals-topic.md", "exec"), scope)  # noqa: S102 - the documented example, verbatim
    scope["consumer"].close()
    return Counter(scope["totals"])


def test_the_documented_reader_sees_the_totals():
    from pipeline import config
    from pipeline.ingest.sources import Source
    from pipeline.run import Pipeline

    with Pipeline(config.Settings(totals_interval=0.2)) as p:  # off by default on the embedded broker
        p.wait_counted(p.ingest([Source("sample", SAMPLE)]), timeout=120)
        expected = Counter(p.totals())
        assert read_as_documented(0, p.connection.bootstrap, p.settings.topics.totals, expected) == expected


def test_the_embedded_broker_gets_no_totals_topic_records_by_default(services):
    """It never compacts: a totals topic there would grow with every update (README: a stack that runs for months)."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline import kafka

    services.client.ingest(SAMPLE.read_bytes(), name="sample")
    services.client.wait_counted(timeout=120)
    s = services.settings
    c = Consumer(kafka.consumer_config(services.connection, "check"))
    try:
        ends = [c.get_watermark_offsets(TopicPartition(s.topics.totals, p), timeout=10)[1] for p in range(8)]
    finally:
        c.close()
    assert s.aggregator.totals_interval == 0 and ends == [0] * 8


def test_the_documented_json_reader_sees_the_totals(tmp_path):
    from pipeline import config
    from pipeline.ingest.sources import Source
    from pipeline.run import Pipeline

    with Pipeline(config.Settings(totals_format="json", totals_interval=0.2)) as p:
        p.wait_counted(p.ingest([Source("sample", SAMPLE)]), timeout=120)
        expected = Counter(p.totals())
        assert read_as_documented(1, p.connection.bootstrap, p.settings.topics.totals, expected) == expected
