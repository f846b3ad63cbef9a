"""What chaos scenarios share: their size (short in CI, long by hand), the totals' growth,
a corpus, and killing while text flows."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import requests

from pipeline.ingest.sources import Source
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.chaos.report import Trial
from tests.e2e.scenario import mixed_documents, trickle

LONG = os.environ.get("WORDPIPE_CHAOS", "short") == "long"


def scaled(short: int, long: int) -> int:
    """`short` in the CI suite, `long` in the long one."""
    return long if LONG else short


def grown(after: Counter, before: Counter) -> Counter:
    """What the totals gained between two reads (totals never shrink)."""
    return Counter({word: n - before[word] for word, n in after.items() if n != before[word]})


class ReplayedWords:
    """Words the aggregator recognised as replays and did not count again, over all its
    instances: each counts its own, so an instance's count is read just before it is killed
    (what it recognises after that read goes unsummed: the sum is never too high)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline, self.earlier = pipeline, 0

    def now(self) -> int:
        p = self.pipeline
        try:
            return int(p.http.get(p.results_url + "/v1/stats", timeout=5).json()["words_replayed"])
        except (requests.RequestException, ValueError, KeyError):
            return 0  # restarting: it has recognised nothing yet

    def before_kill(self) -> None:
        self.earlier += self.now()

    def total(self) -> int:
        return self.earlier + self.now()


def corpus(directory: Path, megabytes: int) -> list[Source]:
    """`megabytes` MB in documents of ~3 MB alternating hostile and mixed-script text and the repeated sample."""
    return mixed_documents(directory, max(2, megabytes // 3), sample_copies=50, hostile_size=3_000_000)


def kill_while_working(
    p: Pipeline, documents: list[Source], trial: Trial, kill, pause: tuple[float, float], at_least: int
) -> None:
    """Start `documents` flowing; every `pause` seconds while there is work, call
    `kill(pipeline, rng)`, which returns what it killed (None: nothing); then check the
    totals against the reference count."""
    rng = random.Random(7)
    trial.input_bytes = sum(d.path.stat().st_size for d in documents)
    trial.expected = count_sources(documents)
    thread, result = trickle(p, documents, pause=1.0)
    while True:
        time.sleep(rng.uniform(*pause))
        if not thread.is_alive() and p.all_counted(result["report"]):
            break  # kills only while there is work
        p.supervise()
        if (what := kill(p, rng)) is not None:
            last_fault = time.monotonic()
            trial.fault(what)
    thread.join()
    p.wait_counted(result["report"], timeout=600)
    trial.recovered(last_fault)
    trial.counted = Counter(p.totals())
    assert trial.counted == trial.expected
    assert len(trial.faults) >= at_least
    assert p.restarts["workers"] >= len(trial.faults) - 1  # the last may not be noticed before all is counted
