"""What a state directory adds to an upload's 202 (issue 30: under 50 ms at the median, at 10
uploads a second): `wordpipe up` with and without `--state-dir`, in turns, the same uploads
(small documents, with and without an Idempotency-Key) at 10 a second.

    python bench/state_dir_latency.py [--seconds 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pipeline import config
from pipeline.client import Client
from pipeline.kafka.broker import free_port
from pipeline.stack import Stack

TOKEN = "bench"


def run(state: Path | None, seconds: float, keyed: bool) -> list[float]:
    log_dir = Path(tempfile.mkdtemp(prefix="wordpipe-bench-"))
    settings = config.Settings(
        tokens=TOKEN,
        state_dir=str(state) if state else None,
        ingest_port=free_port(),
        aggregator_port=free_port(),
        autoscaler_port=free_port(),
    )
    stack = Stack(settings, log_dir).start()
    client = Client(stack.urls["ingest"], stack.urls["results"], token=TOKEN)
    latencies = []
    try:
        client.ingest(b"warm up", key="warm" if keyed else None)
        n, until = 0, time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.monotonic()
            client.ingest(f"upload{n} of the bench, a few words".encode(), key=f"k{n}" if keyed else None)
            latencies.append(time.monotonic() - started)
            n += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))  # 10 a second
    finally:
        client.close()
        stack.stop()
    return latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    for keyed in (False, True):
        figures: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(args.rounds):
            figures["without"] += run(None, args.seconds, keyed)
            figures["with"] += run(Path(tempfile.mkdtemp(prefix="wordpipe-state-")) / "state", args.seconds, keyed)
        medians = {k: statistics.median(v) * 1000 for k, v in figures.items()}
        p90 = {k: statistics.quantiles(v, n=10)[-1] * 1000 for k, v in figures.items()}
        print(
            f"{'keyed' if keyed else 'unkeyed'} uploads, 10/s: 202 median {medians['without']:.1f} ms without a state "
            f"directory, {medians['with']:.1f} ms with (+{medians['with'] - medians['without']:.1f} ms); p90 "
            f"{p90['without']:.1f} / {p90['with']:.1f} ms ({len(figures['with'])} uploads each)"
        )


if __name__ == "__main__":
    main()
