"""Partials records the aggregator's consumer skips are read again, never acked past: faust
drops what it fetched when a rebalance stops its flow and reads on from where its consumer
stood (an instance that took its shards back once never counted a document there). The
fault point `aggregator.drop_fetched` skips a record as faust does."""

from collections import Counter

import pytest

from pipeline import config
from pipeline.ingest.sources import resolve
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.helpers import SAMPLE

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("nth", [3, 40], ids=["early", "late"])
def test_a_partials_record_the_consumer_skips_is_read_again(monkeypatch, nth):
    monkeypatch.setenv("WORDPIPE_FAULTS", f"aggregator.drop_fetched={nth}")
    sources = resolve([str(SAMPLE)] * 3)
    with Pipeline(config.Settings(workers=2, chunk_size=4096, window_chunks=2)) as p:
        report = p.ingest(sources)
        p.wait_counted(report, timeout=120)
        assert Counter(p.totals()) == count_sources(sources)
        log = (p.log_dir / "aggregator.log").read_text()
        assert "were skipped at a rebalance; reading them again" in log
