"""The aggregator: partials in, exactly-once totals out (app.py), and the results API (api.py)."""

from __future__ import annotations

from pipeline.config import AggregatorSettings
from pipeline.kafka.broker import free_port

# From this much input on, `wordpipe run` starts a second instance unless told how many: its
# start-up (~0.3 s) hides behind the ingest, and on a large vocabulary one instance is the
# ceiling (README: Several aggregators).
LARGE_RUN_BYTES = 32 << 20


def for_run(aggregator: AggregatorSettings, input_bytes: int | None, cores: int) -> int:
    """How many instances a run of `input_bytes` (None: not known) starts on `cores` cores."""
    if aggregator.count is not None:
        return aggregator.count
    return 2 if input_bytes is not None and input_bytes >= LARGE_RUN_BYTES and cores >= 2 else 1


def instances(aggregator: AggregatorSettings) -> list[tuple[str, int]]:
    """(name, results port) of each instance `wordpipe run` and `wordpipe up` start: the first
    is "aggregator" on the configured port, the others "aggregator-2"... on free ports."""
    free = [free_port(aggregator.host) for _ in range((aggregator.count or 1) - 1)]
    return [("aggregator", aggregator.port), *((f"aggregator-{i}", port) for i, port in enumerate(free, start=2))]
