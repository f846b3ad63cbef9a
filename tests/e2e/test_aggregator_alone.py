"""A run's one aggregator joins no consumer group (issue 34: Tansu holds every join for a
second): it assigns itself every partials partition, takes up new partials generations by
assigning itself anew, commits what it counted in its group, and counts exactly."""

import pytest

from pipeline import config, generations, kafka
from pipeline.ingest.sources import resolve
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from pipeline.source_topics import input_of, split_input
from tests.helpers import SAMPLE, wait_for

pytestmark = pytest.mark.e2e


def test_alone_it_counts_across_its_own_reassignments_and_commits(corpora, tmp_path):
    # 1 MiB generations and 256 KiB documents (a document stays in its generation): the
    # generations written soon differ from those it subscribed to at its start, so it
    # assigns itself anew (the log says "consuming ...") while counting goes on.
    text = (corpora / "shakespeare.txt").read_bytes() * 3
    for i in range(0, len(text), 1 << 18):
        (tmp_path / f"part-{i >> 18:03d}.txt").write_bytes(text[i : i + (1 << 18)])
    paths = [str(tmp_path)]
    expected = count_sources(resolve(paths))
    with Pipeline(config.Settings(workers=2, generation_bytes=1 << 20)) as p:
        assert p.settings.aggregator.alone
        p.wait_counted(p.ingest(resolve(paths)), timeout=240)
        assert p.totals() == expected
        log = p.log_dir / "aggregator.log"
        wait_for(lambda: "consuming " in log.read_text(), 90, "the aggregator to take up other generations")
        again = p.ingest(resolve(paths))  # after its reassignment
        p.wait_counted(again, timeout=240)
        assert p.totals() == {word: 2 * count for word, count in expected.items()}

        group = p.settings.aggregator.id
        admin = kafka.admin(p.connection)
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert described.members == [], "an aggregator alone is no member of its group"

        # It commits what its flushes made durable: the partials of the last chunks written, to their end.
        written = generations.newest({split_input(name)[0] for name in again.produced}, p.settings.topics.chunks)
        newest = generations.topic(p.settings.topics.partials, written or 1)
        ends = {name: end for name, (_, end) in kafka.topic_extents(p.connection, [newest]).items() if end > 0}
        assert ends, f"nothing was counted in {newest}"
        asked = [kafka.TopicPartition(*split_input(name)) for name in ends]
        reader = kafka.consumer(p.connection, group)

        def short_of_the_ends() -> dict[str, tuple[int, int]]:
            committed = {input_of(tp.topic, tp.partition): tp.offset for tp in reader.committed(asked, timeout=10)}
            return {name: (committed[name], end) for name, end in ends.items() if committed[name] < end}

        try:
            wait_for(lambda: not short_of_the_ends(), 30, lambda: f"commits to reach the ends: {short_of_the_ends()}")
        finally:
            reader.close()


def test_a_run_does_not_wait_for_generations_counted_and_deleted_since(tmp_path):
    # 1 MiB generations, 3 of them: once the first is counted the aggregator drops it (its
    # windows' offsets go from its progress) and deletes it. A run that waits after that
    # (a long one: the first generation is gone before the last is written) once waited for ever.
    text = SAMPLE.read_bytes() * 20
    for i in range(3):
        (tmp_path / f"part-{i}.txt").write_bytes(text)
    sources = resolve([str(tmp_path)])
    with Pipeline(config.Settings(workers=2, generation_bytes=1 << 20)) as p:
        report = p.ingest(sources)
        first = min({split_input(name)[0] for name in report.produced})
        partials = generations.topic(p.settings.topics.partials, generations.number(first))
        admin = kafka.admin(p.connection)
        wait_for(lambda: not {first, partials} & kafka.topic_names(admin), 150, f"{first} and {partials} to go")
        p.wait_counted(report, timeout=60)
        assert p.totals() == count_sources(sources)
