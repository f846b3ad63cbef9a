"""docs/totals-topic.md's readers, as written there, get the same totals as the results API:
the msgpack one (librdkafka) and the JSON one (kafka-python), with `totals_format = "json"`."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from tests.helpers import REPO, SAMPLE

pytestmark = pytest.mark.e2e


def test_the_documented_reader_sees_the_totals(services):
    services.client.ingest(SAMPLE.read_bytes(), name="sample")
    services.client.wait_counted(timeout=120)
    expected = Counter(dict(services.client.totals()))
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs/totals-topic.md").read_text(), re.S)[0]
    code = code.replace("127.0.0.1:9092", services.connection.bootstrap).replace(
        '["totals"]', repr([services.settings.topics.totals])
    )
    code = code.replace(
        "while True:", "deadline = time.monotonic() + 60\nwhile totals != expected and time.monotonic() < deadline:"
    )
    scope = {"time": time, "expected": expected}
    exec(compile(code, "docs/totals-topic.md", "exec"), scope)  # noqa: S102 - the documented example, verbatim
    scope["consumer"].close()
    assert Counter(scope["totals"]) == expected


def test_the_documented_json_reader_sees_the_totals(tmp_path):
    from pipeline import config
    from pipeline.ingest.sources import Source
    from pipeline.run import Pipeline

    with Pipeline(config.Settings(totals_format="json", totals_interval=0.2)) as p:
        p.wait_counted(p.ingest([Source("sample", SAMPLE)]), timeout=120)
        expected = Counter(p.totals())
        code = re.findall(r"```python\n(.*?)```", (REPO / "docs/totals-topic.md").read_text(), re.S)[1]
        code = code.replace("127.0.0.1:9092", p.connection.bootstrap)
        code = code.replace(
            "while True:", "deadline = time.monotonic() + 60\nwhile totals != expected and time.monotonic() < deadline:"
        )
        scope = {"time": time, "expected": expected}
        exec(compile(code, "docs/totals-topic.md", "exec"), scope)  # noqa: S102 - the documented example, verbatim
        scope["consumer"].close()
        assert Counter(scope["totals"]) == expected
