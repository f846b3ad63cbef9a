"""`--bootstrap`: a run on an existing cluster uses topics of its own, publishes totals, and cleans up."""

from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient

from pipeline import config, kafka
from pipeline.ingest.sources import Source
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.e2e.scenario import read_totals_topic
from tests.helpers import SAMPLE, wordpipe

pytestmark = pytest.mark.e2e


def test_run_on_a_shared_cluster(broker):
    doc = Source("sample", SAMPLE)
    settings = config.Settings(bootstrap=broker.bootstrap, totals_interval=0.2)
    with Pipeline(settings) as p:
        assert p.settings.topics.chunks.startswith("wordpipe-run-") and p.settings.topics.chunks != "chunks"
        report = p.ingest([doc])
        p.wait_counted(report, timeout=120)
        totals = p.totals()
        assert Counter(totals) == count_sources([doc])
        published = read_totals_topic(
            broker.connection(), p.settings.topics.totals, p.settings.topics.partial_partitions, totals
        )
        assert published == totals
    left = AdminClient(kafka.client_config(broker.connection())).list_topics(timeout=10).topics
    assert not [t for t in left if t.startswith("wordpipe-run-")], "run topics were not deleted"
    assert not set(left) & {"chunks", "partials", "totals", "deadletter", "workers"}, "a run used a shared topic"


def test_cli_with_bootstrap(broker):
    done = wordpipe("run", str(SAMPLE), "--bootstrap", broker.bootstrap, "--json", "--top", "3")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    expected = wordpipe("reference", str(SAMPLE), "--json", "--top", "3")
    assert done.stdout == expected.stdout
