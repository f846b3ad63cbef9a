"""The health file: fresh and empty is healthy; stale, missing, or naming a problem is not."""

import os
import time

from pipeline.health import Heartbeat, check


def test_a_beat_is_healthy_until_it_names_a_problem_or_goes_stale(tmp_path):
    path = str(tmp_path / "health")
    assert "does not exist yet" in check(path, 30)
    beat = Heartbeat(path)
    beat.beat()
    assert check(path, 30) is None
    beat.beat("no Kafka broker answers at 127.0.0.1:9092 (waited 2 s)")
    assert check(path, 30) == "no Kafka broker answers at 127.0.0.1:9092 (waited 2 s)"
    beat.beat()
    assert check(path, 30) is None
    os.utime(path, (time.time() - 60, time.time() - 60))
    assert "is 60 s old (more than 30 s)" in check(path, 30)
    assert "no health file configured" in check(None, 30)
