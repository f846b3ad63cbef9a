"""The autoscaler live, on the local backend: a burst scales workers up, idleness scales
them back down to the minimum, and the counts stay exact throughout."""

from collections import Counter

import pytest
import requests

from pipeline import config
from pipeline.autoscaler.api import serve_status
from pipeline.autoscaler.controller import Controller
from pipeline.autoscaler.policy import Policy
from pipeline.cluster import Resources
from pipeline.kafka.broker import free_port
from pipeline.observe.lag import LagMonitor
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.e2e.scenario import burst_until_scaled_down, mixed_documents

pytestmark = pytest.mark.e2e

# Eager on purpose, so that a burst this machine counts in seconds still needs more workers.
EAGER = Policy(
    min_workers=1,
    max_workers=6,
    target_utilization=0.2,
    catch_up_seconds=2,
    stabilization_seconds=8,
    cooldown_seconds=3,
    assumed_worker_rate=50,
)


def test_a_burst_scales_up_idleness_scales_down_and_counts_stay_exact(tmp_path):
    sources = mixed_documents(tmp_path, 3, sample_copies=40, hostile_size=2_000_000)
    expected = count_sources(sources)
    s = config.Settings(workers=1, chunk_size=16 * 1024, window_chunks=8)
    with Pipeline(s) as p:
        monitor = LagMonitor(p.connection, p.settings.topics, p.settings.worker.group, window=4)
        controller = Controller(p.workers, monitor, lambda: EAGER, Resources(), interval=0.5, grace=20)
        server = serve_status(controller, "127.0.0.1", port := free_port("127.0.0.1"), tokens=None)
        try:
            peak, counted_at = burst_until_scaled_down(
                p, controller, sources, lambda: len(controller.running()), timeout=90
            )
            status = requests.get(f"http://127.0.0.1:{port}/v1/status", timeout=5).json()
            scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            server.shutdown()
            monitor.close()
        assert counted_at is not None, "the burst was never fully counted"
        assert peak > 1, f"never scaled up; last decision: {controller.last_decision}"
        assert len(controller.running()) == EAGER.min_workers, (
            f"never scaled back down; last decision: {controller.last_decision}"
        )
        assert Counter(p.totals()) == expected
    actions = [d["action"] for d in status["actions"]]
    assert "up" in actions and "down" in actions
    assert status["next_decision"]["reason"] and status["metrics"]["lag"] is not None
    assert 'wordpipe_autoscaler_decisions_total{reason="up"}' in scrape and "wordpipe_autoscaler_lag_records" in scrape
