"""The worker process: chunks in, partial counts out (`python -m pipeline.worker`)."""

from __future__ import annotations

from pipeline.config import WorkerSettings

RUN_WORKERS = 2  # what `wordpipe run` starts unless told, or its input has fewer chunks


def for_run(worker: WorkerSettings, input_bytes: int | None, files: int, chunk_size: int) -> int:
    """How many workers a run starts for `files` holding `input_bytes` (None: not known, or
    topics to count too): no more than the input has chunks, each another process to start
    on the cores the aggregator starts on."""
    if worker.count is not None:
        return worker.count
    if input_bytes is None:
        return RUN_WORKERS
    chunks = max(files, -(-input_bytes // chunk_size), 1)  # each file starts a chunk of its own
    return min(RUN_WORKERS, chunks)
