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
    sources = resolve([str(SAMPLE)] * 6)
    with Pipeline(config.Settings(workers=2, chunk_size=4096, window_chunks=2)) as p:
        # One at a time: each document's windows go out apart, a record for each of the 8
        # shards at least (its words reach them all), so the 40th record comes whatever the
        # batching; all at once, a worker can send a run's windows in a few records.
        for source in sources:
            p.wait_counted(p.ingest([source]), timeout=120)
        assert Counter(p.totals()) == count_sources(sources)
        log = (p.log_dir / "aggregator.log").read_text()
        assert "were skipped at a rebalance; reading them again" in log
