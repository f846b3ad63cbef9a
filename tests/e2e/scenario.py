"""Driving a pipeline through a scenario: ingest in the background, check what is left."""

import os
import threading
import time

from pipeline.ingest.publisher import ChunkPublisher
from pipeline.run import Pipeline


def trickle(pipeline: Pipeline, sources, pause: float):
    """Ingest one document at a time with pauses, in a thread; returns (thread, reports)."""
    result = {}

    def run():
        publisher = ChunkPublisher(pipeline.settings, pipeline.bootstrap)
        for source in sources:
            publisher.publish(source)
            result["report"] = publisher.flush()
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
