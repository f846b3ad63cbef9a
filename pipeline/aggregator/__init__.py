"""The aggregator: partials in, exactly-once totals out (app.py), and the results API (api.py)."""

from __future__ import annotations

from pipeline.config import AggregatorSettings
from pipeline.kafka.broker import free_port


def instances(aggregator: AggregatorSettings) -> list[tuple[str, int]]:
    """(name, results port) of each instance `wordpipe run` and `wordpipe up` start: the first
    is "aggregator" on the configured port, the others "aggregator-2"... on free ports."""
    free = [free_port(aggregator.host) for _ in range(aggregator.count - 1)]
    return [("aggregator", aggregator.port), *((f"aggregator-{i}", port) for i, port in enumerate(free, start=2))]
