"""docs/totals-topic.md's reader, as written there, gets the same totals as the results API."""

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
    code = re.search(r"```python\n(.*?)```", (REPO / "docs/totals-topic.md").read_text(), re.S).group(1)
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
