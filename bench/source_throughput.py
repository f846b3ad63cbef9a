"""Source topics: how fast wordpipe counts records that are already in Kafka, by record size.

    python bench/source_throughput.py [--mb 100] [--workers 2] [--repeat 3]

shakespeare.txt (or the bundled sample) repeated to --mb MB is written to two source
topics of the embedded broker (12 partitions each), cut at line ends into records of
about 1 KB ("lines") and about 64 KB ("docs"). For each, `--workers` workers count
the topic (`wordpipe run --source` without the command around it): timed from the first
record a worker takes to the last one counted, as bench/peers.py times its peers; MB/s
are of record values. `wordpipe reference` counts the same text in-process in the same
run (counting only: the strictest baseline). Rounds alternate; medians are reported, and
every count is checked against the reference's.

The target (issue 21): 1-KB lines reach >= 0.8x the MB/s of 64-KB documents.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from confluent_kafka import Producer  # noqa: E402

from bench.e2e_throughput import corpus_text, repeat_to  # noqa: E402
from pipeline import kafka  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.ingest.publisher import IngestReport  # noqa: E402
from pipeline.ingest.sources import resolve  # noqa: E402
from pipeline.reference import count_sources  # noqa: E402
from pipeline.run import Pipeline  # noqa: E402

SHAPES = {"lines": 1024, "docs": 64 * 1024}  # topic -> record size (bytes, cut at a line end)


def records(text: bytes, size: int) -> list[bytes]:
    """`text` cut after the last line end within every `size` bytes (or at `size`, if none)."""
    out, at = [], 0
    while at < len(text):
        end = min(at + size, len(text))
        if end < len(text):
            cut = text.rfind(b"\n", at, end)
            end = cut + 1 if cut > at else end
        out.append(text[at:end])
        at = end
    return out


def produce(pipeline: Pipeline, topic: str, values: list[bytes]) -> None:
    producer = Producer(kafka.producer_config(pipeline.connection, **{"linger.ms": 20, "batch.size": 1 << 20}))
    partitions = pipeline.settings.topics.chunk_partitions
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        sys.exit(f"could not write the input to {topic}")


def time_source(topic: str, values: list[bytes], workers: int) -> tuple[float, Counter]:
    """Seconds from the first record a worker takes to the last counted, and the counts."""
    with Pipeline(Settings(workers=0, sources=topic)).start(ready=False) as p:
        produce(p, topic, values)
        extents = p.source_extents()
        p.launch_workers(workers)
        p.wait_counted(IngestReport(), timeout=900, extents=extents)
        ended = time.time()
        assert p.roster is not None
        started = min(st.first_chunk_at for st in p.roster.refresh(timeout=1.0).values() if st.first_chunk_at)
        return ended - started, Counter(p.totals())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Large enough that the workers' group join (a second or two on Tansu) is a small part.
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = repeat_to(corpus_text(), args.mb, args.out / f"source-input-{args.mb:g}mb.txt")
    text = path.read_bytes()
    mb = len(text) / 1e6
    shaped = {topic: records(text, size) for topic, size in SHAPES.items()}
    print(
        f"input {path.name}: {mb:.1f} MB; {os.cpu_count()} CPUs; workers={args.workers}; "
        + "; ".join(f"{t}: {len(v)} records" for t, v in shaped.items()),
        flush=True,
    )
    print(f"{'round':>5}  {'reference MB/s':>14}  " + "  ".join(f"{t + ' MB/s':>15}" for t in SHAPES))
    rows = []
    for i in range(1, args.repeat + 1):
        started = time.perf_counter()
        expected = count_sources(resolve([str(path)]))
        row = {"reference_mb_s": mb / (time.perf_counter() - started)}
        for topic, values in shaped.items():
            seconds, counts = time_source(topic, values, args.workers)
            if counts != expected:
                sys.exit(f"{topic}: counts differ from the reference: not a valid measurement")
            row[f"{topic}_mb_s"] = mb / seconds
        rows.append(row)
        print(f"{i:>5}  {row['reference_mb_s']:>14.2f}  " + "  ".join(f"{row[t + '_mb_s']:>15.2f}" for t in SHAPES))
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    lines, documents, reference = median["lines_mb_s"], median["docs_mb_s"], median["reference_mb_s"]
    print(
        f"median: reference {reference:.2f} MB/s; 64-KB documents {documents:.2f} MB/s ({documents / reference:.2f}x); "
        f"1-KB lines {lines:.2f} MB/s ({lines / reference:.2f}x), {lines / documents:.2f}x the documents' "
        "(target >= 0.8x); counts identical in every run"
    )
    result = {"input_mb": mb, "cpus": os.cpu_count(), "workers": args.workers, "runs": rows, "median": median}
    (args.out / "source_throughput.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
