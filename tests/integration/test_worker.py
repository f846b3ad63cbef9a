"""The worker process on a real broker: batches, commits, SIGTERM drain."""

import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline import codec, config, generations, kafka
from pipeline.assigner import Assigner
from pipeline.ingest.publisher import ChunkPublisher
from pipeline.ingest.sources import Source
from pipeline.observe.roster import Roster
from pipeline.offsets import OffsetRanges
from tests.helpers import SAMPLE

pytestmark = pytest.mark.e2e


def committed(connection, settings):
    """The workers' committed offsets in the first chunks generation, by input name."""
    topic = generations.topic(settings.topics.chunks, 1)
    c = Consumer(kafka.consumer_config(connection, settings.worker.group))
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(settings.topics.chunk_partitions)], timeout=10)
        return {f"{topic}:{tp.partition}": tp.offset for tp in tps}
    finally:
        c.close()


def partials_of_first_generation(settings):
    topic = generations.topic(settings.topics.partials, 1)
    return [TopicPartition(topic, shard, 0) for shard in range(settings.topics.partial_partitions)]


def test_worker_commits_what_it_published_reports_itself_and_drains_on_sigterm(broker):
    s = config.Settings(bootstrap=broker.bootstrap, chunk_partitions=2, window_chunks=4, chunk_size=8192)
    kafka.ensure_topics(broker.connection(), s.topics)
    publisher = ChunkPublisher(broker.connection(), s.topics, s.text)
    publisher.publish(Source("sample", SAMPLE))
    report = publisher.flush()
    env = {**s.to_env(), "WORDPIPE_WORKER_ID": "w-test", "PATH": ""}
    launched_at = time.time()
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.worker"], env=env, stderr=subprocess.PIPE)
    assigner = Assigner(broker.connection(), s.topics, s.worker)  # workers read what it assigns
    roster = Roster(broker.connection(), s.topics)
    try:
        deadline = time.monotonic() + 60
        ends = {p: max(e for _, e in r) for p, r in report.produced.items()}
        while committed(broker.connection(), s) != ends:
            assert time.monotonic() < deadline, f"committed {committed(broker.connection(), s)} != produced {ends}"
            time.sleep(0.3)
        while roster.refresh(0.2).get("w-test") is None or roster.statuses["w-test"].chunks < report.chunks:
            assert time.monotonic() < deadline, f"status reports: {roster.statuses}"
        status = roster.statuses["w-test"]
        assert set(status.inputs) == set(ends) and status.chunks == report.chunks
        assert launched_at < status.started_at < status.first_chunk_at <= status.at
        assert 0 < status.busy_seconds < status.at - status.started_at
        assert 20_000 < status.peak_rss_kb < 500_000
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert "w-test" not in roster.refresh(1.0), "a clean stop leaves a tombstone"
    finally:
        worker.kill()
        roster.close()
        assigner.close()
    log = worker.stderr.read().decode()
    assert "worker stopped after" in log
    # Every produced offset reached `partials` inside some window of at most 4 chunks.
    c = Consumer(kafka.consumer_config(broker.connection(), "check"))
    c.assign(partials_of_first_generation(s))
    covered: dict[str, OffsetRanges] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(
        covered.get(p, OffsetRanges()).covers(r) for p, r in report.produced.items()
    ):
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            for part in codec.decode_partials(msg.value()):
                name, start, end = part.source
                assert end - start <= 4
                covered.setdefault(str(name), OffsetRanges()).add_range(start, end)
    c.close()
    assert all(covered.get(p, OffsetRanges()).covers(r) for p, r in report.produced.items()), covered


def test_worker_without_bootstrap_says_so():
    done = subprocess.run([sys.executable, "-m", "pipeline.worker"], env={"PATH": ""}, capture_output=True, timeout=30)
    assert done.returncode == 2
    assert b"workers need a bootstrap address" in done.stderr


def test_worker_refuses_chunks_for_another_tokenizer_loudly(broker, tmp_path):
    """Chunks name their tokenizer: a worker with another user dictionary dead-letters them and counts nothing of them."""
    user_dict = tmp_path / "user.dict"
    user_dict.write_text("杭研大厦\n", encoding="utf-8")
    s = config.Settings(bootstrap=broker.bootstrap, chunk_partitions=2, window_chunks=4, chunk_size=1024)
    kafka.ensure_topics(broker.connection(), s.topics)
    theirs = tmp_path / "theirs.txt"
    theirs.write_text("他来到了网易杭研大厦。" * 300, encoding="utf-8")
    ours = tmp_path / "ours.txt"
    ours.write_text("数据处理 " * 500, encoding="utf-8")
    other = ChunkPublisher(broker.connection(), s.topics, s.text)  # no user dictionary: another tokenizer
    other.publish(Source("theirs", theirs))
    refused = other.flush().chunks
    same = ChunkPublisher(broker.connection(), s.topics, s.replace(tokenizer_user_dict=str(user_dict)).text)
    same.publish(Source("ours", ours))
    same.flush()
    env = {**s.to_env(), "WORDPIPE_TOKENIZER_USER_DICT": str(user_dict), "WORDPIPE_WORKER_ID": "w-dict", "PATH": ""}
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.worker"], env=env, stderr=subprocess.PIPE)
    assigner = Assigner(broker.connection(), s.topics, s.worker)
    c = Consumer(kafka.consumer_config(broker.connection(), "check"))
    c.assign([TopicPartition(s.topics.deadletter, 0, 0), *partials_of_first_generation(s)])
    letters, counted = [], Counter()
    try:
        deadline = time.monotonic() + 60
        while len(letters) < refused or counted["数据处理"] < 500:
            assert time.monotonic() < deadline, f"{len(letters)} of {refused} dead letters, counted {dict(counted)}"
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.topic() == s.topics.deadletter:
                letters.append(codec.decode_deadletter(msg.value()))
            else:
                for part in codec.decode_partials(msg.value()):
                    for words in part.buckets.values():
                        counted.update(words)
    finally:
        worker.terminate()
        worker.wait(15)
        assigner.close()
        c.close()
    assert counted == Counter({"数据处理": 500}), "nothing of the refused chunks is counted"
    ours_id = same.tokenizer
    assert ours_id != other.tokenizer
    assert all(
        f"must be counted by {other.tokenizer}, this worker's tokenizer is {ours_id}" in d.reason for d in letters
    )
    log = worker.stderr.read().decode()
    assert (
        log.count(f"chunks name tokenizer {other.tokenizer}; this worker counts with {ours_id}") == 1
    )  # once, not per chunk
    assert {d.reason.split(" at byte ")[0] for d in letters} == {"tokenizer mismatch: the chunk of theirs"}


def test_a_run_whose_chunks_were_refused_fails_instead_of_printing_short_counts(tmp_path):
    from pipeline.run import Pipeline, RunError

    user_dict = tmp_path / "user.dict"
    user_dict.write_text("杭研大厦\n", encoding="utf-8")
    text = tmp_path / "t.txt"
    text.write_text("他来到了网易杭研大厦。\n" * 100, encoding="utf-8")
    with Pipeline(config.Settings(workers=1)) as p:
        p.check_nothing_refused()  # nothing yet
        stranger = ChunkPublisher(
            p.connection, p.settings.topics, p.settings.replace(tokenizer_user_dict=str(user_dict)).text
        )
        stranger.publish(Source("stranger", text))
        p.wait_counted(stranger.flush(), timeout=120)
        with pytest.raises(
            RunError, match="records were dead-lettered.*tokenizer mismatch: the chunk of stranger at byte 0"
        ):
            p.check_nothing_refused()


def test_a_window_replayed_after_a_hand_over_dead_letters_nothing_again(broker, tmp_path):
    """Records refused in a window still open when its worker stops are dead-lettered once: the
    next owner replays the window, and knows from the first one's mark that they were."""
    s = config.Settings(bootstrap=broker.bootstrap, chunk_partitions=1, window_chunks=1000, chunk_size=8192)
    connection = broker.connection()
    kafka.ensure_topics(connection, s.topics)
    (tmp_path / "a.txt").write_text("before the garbage\n")
    (tmp_path / "b.txt").write_text("after the garbage\n")
    publisher = ChunkPublisher(connection, s.topics, s.text)
    publisher.publish(Source("a", tmp_path / "a.txt"))
    publisher.flush()  # a closed window, and chunks.g1 exists
    topic = generations.topic(s.topics.chunks, 1)
    at = kafka.topic_extents(connection, [topic])[f"{topic}:0"][1]
    producer = kafka.producer(connection)
    for n in range(3):  # refused records in a window that nothing closes yet
        kafka.produce(producer, topic, f"garbage {n}".encode(), 0)
    producer.flush(10)
    assigner = Assigner(connection, s.topics, s.worker)
    env = {**s.to_env(), "PATH": ""}

    def letters():
        return [codec.decode_deadletter(m.value()) for m in kafka.read_partition(connection, s.topics.deadletter)]

    workers: list[subprocess.Popen] = []
    try:
        workers.append(
            subprocess.Popen([sys.executable, "-m", "pipeline.worker"], env={**env, "WORDPIPE_WORKER_ID": "w-1"})
        )
        deadline = time.monotonic() + 60
        while len(letters()) < 3:
            assert time.monotonic() < deadline, "the first worker did not dead-letter the garbage"
        workers[0].send_signal(signal.SIGTERM)  # a clean hand-over: its open window is not committed
        assert workers[0].wait(15) == 0
        assert committed(connection, s) == {f"{topic}:0": at}, "the window of the garbage was committed"
        workers.append(
            subprocess.Popen([sys.executable, "-m", "pipeline.worker"], env={**env, "WORDPIPE_WORKER_ID": "w-2"})
        )
        publisher.publish(Source("b", tmp_path / "b.txt"))
        publisher.flush()  # its flush marker closes the replayed window
        end = kafka.topic_extents(connection, [topic])[f"{topic}:0"][1]
        while committed(connection, s) != {f"{topic}:0": end}:
            assert time.monotonic() < deadline + 60, f"committed {committed(connection, s)}, end {end}"
            time.sleep(0.3)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(15)
        assigner.close()
    assert sorted(letter.offset for letter in letters()) == [at, at + 1, at + 2], "each refused record once"
