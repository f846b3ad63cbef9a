"""Driving a pipeline through a scenario: ingest in the background, check what is left."""

import os
import threading
import time

from confluent_kafka import Consumer, TopicPartition

from pipeline import codec, config, kafka
from pipeline.ingest.publisher import ChunkPublisher, IngestReport
from pipeline.ingest.sources import Source
from pipeline.offsets import OffsetRanges
from pipeline.run import Pipeline
from tests.chinese import mixed_bytes
from tests.helpers import SAMPLE
from tests.hostile import hostile_bytes


def mixed_documents(directory, count: int, sample_copies: int, hostile_size: int) -> list[Source]:
    """Documents alternating generated hostile and mixed-script text, Chinese most of it (even),
    and the bundled sample repeated (odd).

    Hostile runs without whitespace are at most 9 KB: keep chunks larger, or the chunker's
    forced cuts make the pipeline's counts differ from the reference, as documented."""
    sources = []
    for i in range(count):
        path = directory / f"doc{i}.txt"
        if i % 2:
            path.write_bytes(SAMPLE.read_bytes() * sample_copies)
        else:
            path.write_bytes(hostile_bytes(i, hostile_size // 2) + mixed_bytes(i, hostile_size // 2))
        sources.append(Source(str(path), path))
    return sources


def trickle(pipeline: Pipeline, sources, pause: float):
    """Ingest one document at a time with pauses, in a thread; returns (thread, result):
    result["report"] is the last document's (a flush reports only what was sent since the
    one before), result["sent"] every document's."""
    result = {}

    def run():
        publisher = ChunkPublisher(pipeline.connection, pipeline.settings.topics, pipeline.settings.text)
        whole = IngestReport()
        for source in sources:
            publisher.publish(source)
            report = publisher.flush()
            whole.documents += report.documents
            whole.chunks += report.chunks
            whole.bytes += report.bytes
            for name, offsets in report.produced.items():
                whole.produced.setdefault(name, OffsetRanges()).update(offsets)
            result["report"], result["sent"] = report, whole
            time.sleep(pause)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def no_process_left(pids):
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().split()[2] == "Z", f"process {pid} outlived the pipeline"


def burst_until_scaled_down(
    pipeline: Pipeline, controller, sources, count_workers, timeout: float
) -> tuple[int, float | None]:
    """Run `controller` while `sources` trickle in, until everything is counted and the
    controller is back at its policy's minimum; returns (peak workers, when all was counted)."""
    from pipeline.progress import all_counted

    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    try:
        ingest, result = trickle(pipeline, sources, pause=0.2)
        peak, counted_at = 1, None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            peak = max(peak, count_workers())
            if counted_at is None and not ingest.is_alive():
                progress = pipeline.progress()
                if progress and all_counted(progress, result["report"].produced):
                    counted_at = time.monotonic()
            if counted_at and len(controller.running()) == controller.policy().min_workers:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    return peak, counted_at


def read_totals_topic(
    connection: config.Connection, topic: str, partitions: int, want: dict, timeout: float = 30
) -> dict:
    """Latest record per key, as any Kafka consumer of the documented format would read it."""
    c = Consumer(kafka.consumer_config(connection, "reader"))
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    latest: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while latest != want and time.monotonic() < deadline:
            msg = c.poll(0.3)
            if msg is not None and not msg.error():
                total = codec.decode_total(msg.value())
                assert msg.key() == total.word.encode()
                latest[total.word] = total.count
    finally:
        c.close()
    return latest
