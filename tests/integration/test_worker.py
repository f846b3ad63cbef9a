"""The worker process on a real broker: batches, commits, SIGTERM drain."""

import json
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline import codec, config, kafka
from pipeline.ingest.publisher import ChunkPublisher
from pipeline.ingest.sources import Source

pytestmark = pytest.mark.e2e


def committed(bootstrap, settings):
    c = Consumer({**kafka.common_config(bootstrap), "group.id": settings.worker_group})
    try:
        tps = c.committed([TopicPartition(settings.chunks_topic, p) for p in range(settings.chunk_partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def test_worker_commits_what_it_published_and_drains_on_sigterm(broker, tmp_path, corpora):
    s = config.Settings(bootstrap=broker.bootstrap, chunk_partitions=2, window_chunks=4, chunk_size=8192)
    kafka.ensure_topics(broker.bootstrap, s)
    publisher = ChunkPublisher(s, broker.bootstrap)
    publisher.publish(Source("zh", corpora / "seed-mesos-docker-zh.txt"))
    report = publisher.flush()
    status = tmp_path / "status.json"
    env = {**s.to_env(), "WORDPIPE_WORKER_STATUS_FILE": str(status), "PATH": ""}
    worker = subprocess.Popen([sys.executable, "-m", "workers"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        ends = {p: max(e for _, e in r) for p, r in report.produced.items()}
        while committed(broker.bootstrap, s) != ends:
            assert time.monotonic() < deadline, f"committed {committed(broker.bootstrap, s)} != produced {ends}"
            time.sleep(0.3)
        assert json.loads(status.read_text())["assigned"] == [0, 1]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:
        worker.kill()
    log = worker.stderr.read().decode()
    assert "worker stopped after" in log
    # Every chunk's words reached `partials`: one part per shard per window, all windows present.
    c = Consumer({**kafka.common_config(broker.bootstrap), "group.id": "check", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(s.partials_topic, shard, 0) for shard in range(s.partial_partitions)])
    windows = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(windows) < len(report.produced):
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            windows.update(part.source for part in codec.decode_partials(msg.value()))
    c.close()
    assert windows and all(end - start <= 4 for _, start, end in windows)
    assert {p for p, _, _ in windows} == set(report.produced)


def test_worker_without_bootstrap_says_so():
    done = subprocess.run([sys.executable, "-m", "workers"], env={"PATH": ""}, capture_output=True, timeout=30)
    assert done.returncode == 2
    assert b"workers need a bootstrap address" in done.stderr
