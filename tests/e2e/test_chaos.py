"""SIGKILL workers and the aggregator in the middle of a run; the counts stay exact."""

import os
import random
import signal
import time
from collections import Counter

import pytest

from pipeline import config
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.e2e.scenario import mixed_documents, no_process_left, trickle

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.fixture
def documents(tmp_path):
    return mixed_documents(tmp_path, 6, sample_copies=15, hostile_size=600_000)


def settings(**overrides) -> config.Settings:
    # Small chunks and windows: many windows, commits and flushes to land a kill between.
    return config.Settings(workers=2, chunk_size=16 * 1024, window_chunks=4, flush_interval=0.2, **overrides)


def stats(pipeline: Pipeline) -> dict:
    return pipeline.http.get(pipeline.results_url + "/v1/stats", timeout=5).json()


def test_sigkill_random_workers_and_the_aggregator_once(documents):
    rng = random.Random(42)
    expected = count_sources(documents)
    with Pipeline(settings()) as p:
        pids = [p.broker.proc.pid]
        thread, result = trickle(p, documents, pause=1.0)
        aggregator_killed = False
        started = time.monotonic()
        while thread.is_alive() or time.monotonic() - started < 4:
            time.sleep(rng.uniform(0.4, 1.2))
            live = [w for w in p.workers.list() if w.state == "running"]
            if live:
                victim = rng.choice(live)
                pids.append(p.workers.pid(victim.id))
                os.kill(p.workers.pid(victim.id), signal.SIGKILL)
            if not aggregator_killed and time.monotonic() - started > 2.5:
                pids.append(p.aggregator.pid)
                os.kill(p.aggregator.pid, signal.SIGKILL)
                aggregator_killed = True
            p.supervise()
        thread.join()
        p.wait_counted(result["report"], timeout=240)
        assert Counter(p.totals()) == expected
        assert p.restarts["workers"] >= 3 and p.restarts["aggregator"] == 1
        pids += [w.id and p.workers.pid(w.id) for w in p.workers.list()] + [p.aggregator.pid]
    no_process_left(pids)


@pytest.mark.parametrize(
    "fault, restarted",
    [
        ("worker.before_commit=2", "workers"),  # partials published, offsets not committed
        ("aggregator.before_progress=2", "aggregator"),  # bucket snapshots durable, progress not
        ("aggregator.before_ack=2", "aggregator"),  # everything durable, partials not acked
    ],
)
def test_crash_at_the_worst_instant(documents, fault, restarted, monkeypatch):
    expected = count_sources(documents[:3])
    monkeypatch.setenv("WORDPIPE_FAULTS", fault)
    p = Pipeline(settings()).start()  # the first processes get the fault
    monkeypatch.delenv("WORDPIPE_FAULTS")
    with p:
        p.workers.env.pop("WORDPIPE_FAULTS")  # replacements run clean
        thread, result = trickle(p, documents[:3], pause=0.5)
        thread.join()
        p.wait_counted(result["report"], timeout=240)
        assert Counter(p.totals()) == expected
        assert p.restarts[restarted] >= 1, "the fault never fired"
        assert stats(p)["partials_replayed"] > 0, "nothing was replayed, so nothing was deduplicated"
