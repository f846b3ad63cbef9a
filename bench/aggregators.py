"""The aggregator tier's ceiling: partials produced beforehand, applied by 1, 2 and 4 aggregators.

    python bench/aggregators.py [--mb 50] [--distinct 1000000] [--instances 1,2,4] [--rounds 1]

No workers: the script draws words uniformly from --distinct 8-letter words, --mb of text's
worth, cuts them into windows as a worker does (`window_max_words` distinct words, or
`window_chunks` chunks, whichever comes first), splits each window by shard and encodes it
with the workers' codec. For each instance count, a fresh aggregator group (its own id, so
its own changelogs) starts on the embedded broker; once every instance owns its shards, the
partials are produced to the partials topic and the clock runs from the first record
produced to the last part applied (each instance's /v1/stats). Prints parts and entries
(word counts) applied per second, and per aggregator CPU-second, in total and per instance;
writes bench/out/aggregators.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests
from confluent_kafka import Producer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import codec, generations, kafka, processes  # noqa: E402
from pipeline.config import Connection, Settings  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker, free_port  # noqa: E402
from pipeline.sharding import Router  # noqa: E402

WORD_BYTES = 9  # an 8-letter word and its space
CHUNK_WORDS = 64 * 1024 // WORD_BYTES  # a default chunk's words


def windows(mb: float, distinct: int, settings: Settings, seed: int = 1) -> list[codec.PartialMessage]:
    """The parts workers would publish for `mb` of uniform draws, window by window."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(distinct)]
    router = Router(settings.topics.partial_partitions, settings.topics.buckets)
    partitions, w = settings.topics.chunk_partitions, settings.worker
    offsets = [0] * partitions
    parts, left, n = [], int(mb * 1e6 / WORD_BYTES), 0
    while left > 0:
        counts: Counter[str] = Counter()
        chunks = 0
        while left > 0 and chunks < w.window_chunks and len(counts) < w.window_max_words:
            counts.update(rng.choices(vocabulary, k=min(CHUNK_WORDS, left)))
            left -= CHUNK_WORDS
            chunks += 1
        partition = n % partitions
        source = (partition, offsets[partition], offsets[partition] + chunks)
        offsets[partition] += chunks
        n += 1
        for shard, buckets in enumerate(router.split(counts)):
            if buckets:
                parts.append(codec.PartialMessage(source, shard, buckets, {}, {}, int(time.time() * 1000)))
    return parts


class Instance:
    def __init__(self, settings: Settings, connection: Connection, log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, **settings.replace(aggregator_port=self.port).to_env(connection)}
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.aggregator"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> dict | None:
        try:
            return requests.get(self.url + path, timeout=5).json()
        except (requests.RequestException, ValueError):
            return None

    def owned(self) -> set[int]:
        health = self.get("/health")  # its own shards (any instance's /v1/progress covers them all)
        return set(health["shards"]) if health else set()

    def applied(self) -> int:
        stats = self.get("/v1/stats")
        return stats["partials_applied"] if stats else 0

    def cpu(self) -> float:
        return processes.usage(self.proc.pid)[0]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(n: int, records: list[tuple[int, bytes]], parts: int, settings: Settings, connection: Connection,
        work: Path, label: str) -> dict:  # fmt: skip
    """Start n aggregators of a fresh group, wait until they own every shard, produce the
    partials, and time them until every part is applied."""
    s = settings.replace(aggregator_id=f"bench-{label}", aggregator_datadir=str(work / label))
    instances = [Instance(s, connection, work / f"{label}-{i}.log") for i in range(n)]
    try:
        deadline = time.monotonic() + 120
        while True:
            owned = [i.owned() for i in instances]
            if all(owned) and sorted(x for o in owned for x in o) == list(range(s.topics.partial_partitions)):
                break
            if time.monotonic() > deadline or any(i.proc.poll() is not None for i in instances):
                raise SystemExit(f"{n} aggregator(s) did not share the shards: {owned}; logs in {work}")
            time.sleep(0.2)
        cpu0 = [i.cpu() for i in instances]
        producer = Producer(kafka.producer_config(connection))
        topic = generations.topic(s.topics.partials, 1)
        started = time.monotonic()
        for shard, value in records:
            kafka.produce(producer, topic, value, shard)
        producer.flush()
        produced = time.monotonic() - started
        while (applied := [i.applied() for i in instances]) and sum(applied) < parts:
            if time.monotonic() - started > 600:
                raise SystemExit(f"{sum(applied)} of {parts} parts applied in 10 minutes; logs in {work}")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        cpu = [i.cpu() - c for i, c in zip(instances, cpu0, strict=True)]
        return {
            "instances": n,
            "seconds": round(seconds, 2),
            "produced_seconds": round(produced, 2),
            "parts_per_second": round(parts / seconds, 1),
            "parts_per_cpu_second": round(parts / sum(cpu), 1),
            "per_instance": [
                {"shards": sorted(o), "parts": a, "cpu_seconds": round(c, 2)}
                for o, a, c in zip(owned, applied, cpu, strict=True)
            ],
        }
    finally:
        for i in instances:
            i.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=50.0, help="text's worth of partials (default 50)")
    p.add_argument("--distinct", type=int, default=1_000_000, help="distinct words drawn from (default 1,000,000)")
    p.add_argument("--instances", default="1,2,4", help="instance counts, in order (default 1,2,4)")
    p.add_argument("--rounds", type=int, default=1, help="times the series runs, alternating (default 1)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "aggregators.json")
    args = p.parse_args()
    counts = [int(x) for x in args.instances.split(",")]
    settings = Settings(auth="none", totals_interval=0)
    parts = windows(args.mb, args.distinct, settings)
    entries = sum(len(words) for part in parts for words in part.buckets.values())
    records = [(part.shard, value) for part in parts for value in codec.encode_partials(part.shard, [part])]
    print(f"{len(parts)} parts, {entries:,} entries, {sum(len(v) for _, v in records) / 1e6:.1f} MB of partials "
          f"({args.mb:g} MB of text from {args.distinct:,} distinct words)", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="wordpipe-aggregators-"))
    broker = EmbeddedBroker(log_file=work / "broker.log").start()
    results = []
    try:
        connection = broker.connection(settings.kafka)
        for r in range(args.rounds):
            for n in counts:
                topics_run = settings.replace(partials_topic=f"partials-{n}-{r}")
                kafka.ensure_topics(connection, topics_run.topics)
                result = run(n, records, len(parts), topics_run, connection, work, f"{n}-{r}")
                result["entries_per_second"] = round(entries / result["seconds"])
                results.append(result)
                per = "; ".join(
                    f"{i['parts']} parts in {i['cpu_seconds']:.1f} CPU-s ({i['parts'] / max(i['cpu_seconds'], 1e-9):.0f}/CPU-s)"
                    for i in result["per_instance"]
                )
                print(f"{n} aggregator(s): {result['seconds']:.2f} s, {result['parts_per_second']:.1f} parts/s "
                      f"({result['entries_per_second']:,} entries/s), {result['parts_per_cpu_second']:.1f} parts "
                      f"per CPU-s; {per}", flush=True)  # fmt: skip
    finally:
        broker.stop()
    base = [r["parts_per_second"] for r in results if r["instances"] == counts[0]]
    for n in counts[1:]:
        mine = [r["parts_per_second"] for r in results if r["instances"] == n]
        print(f"{n} vs {counts[0]}: {sorted(mine)[len(mine) // 2] / sorted(base)[len(base) // 2]:.2f}x parts/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"parts": len(parts), "entries": entries, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
