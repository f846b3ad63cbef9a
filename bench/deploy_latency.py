"""Deploy latency and worker memory, per cluster backend.

    python bench/deploy_latency.py [--launches 10] [--backends local,docker,mesos] [--load-mb 20]

Deploy latency is the time from the launch request to the new worker counting its first
chunk, taken as the autoscaler sees a scale-up: one resident worker consumes a steady
trickle of chunks, a second is launched, the assigner (pipeline/assigner.py, running here
as in the autoscaler, told of the launch as the autoscaler tells it) hands it half the
partitions at once, and the time runs until
the newcomer's status report (pipeline/observe/roster.py) says it counted a chunk. It splits into
*start* (launch request -> the worker process running its code: process or container
start plus imports) and *assign* (-> first chunk: reading the assignment, the committed
offsets and the first fetch; no group rebalance: workers follow the assignment).
Each newcomer is then stopped gracefully and the resident takes its partitions back;
the next launch comes 0.5-3 s later, at a random moment as scale decisions do.

Scale events pause no one (issue 34): a partition that keeps its owner through a launch
and the stop that follows must go on being counted. Its windows' partials are read as they
are published (their record times), and the *gap* of an event is the longest time between
two windows of any unmoved partition from the launch request to the resident's takeover;
the usual gap, between windows when nothing moves, is printed beside it.

Peak RSS per worker comes from the workers' own reports (getrusage), after two workers
counted --load-mb MB of shakespeare. The Docker and Mesos backends need the engine and
the image; this script starts / builds them as the tests do (both cached). There is no
Mesos master on this machine: the mesos backend runs against the master double of the
tests (tests/mesos_double), whose agent starts containers as the DOCKER containerizer
does, so its figure is the framework's own cost (REVIVE, offer, ACCEPT) on top of Docker's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from e2e_throughput import corpus_text  # noqa: E402

from pipeline import codec, generations, kafka, tokenize  # noqa: E402
from pipeline.assigner import Assigner  # noqa: E402
from pipeline.cluster import Resources, open_backend  # noqa: E402
from pipeline.config import Connection, Settings  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker  # noqa: E402
from pipeline.observe.roster import Roster  # noqa: E402
from tests.chaos.report import machine  # noqa: E402


def trickle(connection: Connection, settings: Settings, stop: threading.Event) -> None:
    """A chunk every 10 ms, round-robin over the partitions, until stopped."""
    producer = Producer(kafka.producer_config(connection))
    chunk = codec.encode_chunk(
        codec.ChunkMessage("trickle", 0, "trickle", 0, b"to be or not to be " * 10, tokenize.DEFAULT.id)
    )
    i = 0
    while not stop.is_set():
        producer.produce(first_generation(settings), chunk, partition=i % settings.topics.chunk_partitions)
        producer.poll(0)
        i += 1
        time.sleep(0.01)
    producer.flush(10)


class Published(threading.Thread):
    """When each chunks partition's windows were published: the record times of their parts."""

    def __init__(self, connection: Connection, s: Settings) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(kafka.consumer_config(connection, "bench-published"))  # assigned: no group
        topic = generations.topic(s.topics.partials, 1)
        # From offset 0: Tansu's "earliest" may skip a first record (README: Tansu, measured).
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(s.topics.partial_partitions)])
        self.times: dict[int, set[float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(500, 0.2):
                parts = None if msg.error() else codec.decode_partials(msg.value(), msg.partition())
                for part in parts if isinstance(parts, list) else []:
                    partition = int(str(part.source[0]).rpartition(":")[2])
                    self.times.setdefault(partition, set()).add(msg.timestamp()[1] / 1000)
        self.consumer.close()

    def gap(self, partitions: set[int], start: float, end: float) -> float:
        """The longest time without a window of any of `partitions` within [start, end]."""
        longest = 0.0
        for p in partitions:
            times = sorted(self.times.get(p, ()))
            # From the last window before `start` to the first one after `end`.
            before, after = [t for t in times if t <= start][-1:], [t for t in times if t >= end][:1]
            inside = (before or [start]) + [t for t in times if start < t < end] + (after or [end])
            longest = max([longest] + [b - a for a, b in zip(inside, inside[1:], strict=False)])
        return longest

    def usual(self, partitions: set[int], start: float, end: float) -> float:
        """The median time between windows of `partitions` within [start, end]."""
        steps = []
        for p in partitions:
            times = sorted(t for t in self.times.get(p, ()) if start <= t <= end)
            steps += [b - a for a, b in zip(times, times[1:], strict=False)]
        return statistics.median(steps) if steps else math.nan


def first_generation(settings: Settings) -> str:
    return generations.topic(settings.topics.chunks, 1)


def wait_for(condition, timeout: float, what: str, roster: Roster) -> None:
    deadline = time.monotonic() + timeout
    while not condition(roster.refresh(0.05)):
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}; roster: {roster.statuses}")


def measure_backend(name: str, launches: int, load_mb: float, image: str, log_dir: Path) -> dict:
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(log_file=log_dir / f"broker-{name}.log"))
        connection = broker.connection()  # and the session `wordpipe run` gives workers on it
        # Small windows: a partition's windows are published every ~0.5 s under the trickle.
        s = Settings(backend=name, image=image, window_chunks=4)
        if name == "mesos":
            from tests.mesos_double.agent import DockerAgent
            from tests.mesos_double.master import MasterDouble

            master = stack.enter_context(MasterDouble(DockerAgent(cpus=8, mem_mb=8192)))
            s = s.replace(mesos_master=master.url, mesos_state_file=str(log_dir / "mesos.json"))
        kafka.ensure_topics(connection, s.topics)
        backend = open_backend(s.cluster, s.mesos, s.worker_env(connection), f"bench-{name}", log_dir)
        roster = Roster(connection, s.topics)
        # As in the autoscaler, which tells it of each launch.
        assigner = stack.enter_context(contextlib.closing(Assigner(connection, s.topics, s.worker)))
        stop = threading.Event()
        producer = threading.Thread(target=trickle, args=(connection, s, stop))
        producer.start()
        published = Published(connection, s)
        published.start()
        try:
            [resident] = backend.launch(1, Resources())
            assigner.expect([resident])  # as the autoscaler does at a launch
            everything = tuple(range(s.topics.chunk_partitions))
            wait_for(
                lambda st: resident in st and st[resident].partitions == everything and st[resident].chunks,
                60,
                "the resident worker",
                roster,
            )
            rows = []
            rng = random.Random(1)
            for _ in range(launches):
                # Launches come at random moments, as scale decisions do; Tansu completes group
                # joins on a timer, so back-to-back launches would all see the same phase of it.
                time.sleep(rng.uniform(0.5, 3.0))
                requested = time.time()
                [newcomer] = backend.launch(1, Resources())
                assigner.expect([newcomer])
                wait_for(
                    lambda st, w=newcomer: w in st and st[w].first_chunk_at, 60, f"{newcomer}'s first chunk", roster
                )
                status = roster.statuses[newcomer]
                moved = set(status.partitions)
                backend.kill([newcomer], grace=20)
                wait_for(
                    lambda st, w=newcomer: w not in st and st[resident].partitions == everything,
                    60,
                    "the resident's takeover",
                    roster,
                )
                time.sleep(1.0)  # the windows that end the last gaps are read
                unmoved = set(everything) - moved
                rows.append(
                    {
                        "latency": status.first_chunk_at - requested,
                        "start": status.started_at - requested,
                        "assign": status.first_chunk_at - status.started_at,
                        "gap": published.gap(unmoved, requested, time.time() - 1.0),
                        "usual_gap": published.usual(unmoved, requested - 5, requested),
                    }
                )
                r = rows[-1]
                print(
                    f"  {name}: {r['latency']:.2f} s (start {r['start']:.2f} s, assign {r['assign']:.2f} s); "
                    f"longest gap of the {len(unmoved)} unmoved partitions {r['gap']:.2f} s "
                    f"(usually {r['usual_gap']:.2f} s between windows)",
                    flush=True,
                )
            stop.set()
            producer.join()
            published.stop.set()
            published.join()
            rss = load_peak_rss(backend, roster, connection, s, load_mb, resident)
        finally:
            stop.set()
            backend.kill([w.id for w in backend.list()], grace=20)
            backend.close()
            roster.close()
    latencies = sorted(r["latency"] for r in rows)
    return {
        "backend": name,
        "launches": launches,
        "median_s": statistics.median(latencies),
        "p90_s": latencies[max(0, math.ceil(0.9 * len(latencies)) - 1)],  # nearest rank
        "median_start_s": statistics.median(r["start"] for r in rows),
        "median_assign_s": statistics.median(r["assign"] for r in rows),
        "max_gap_s": max(r["gap"] for r in rows),  # in any unmoved partition, over every event
        "median_gap_s": statistics.median(r["gap"] for r in rows),
        "usual_gap_s": statistics.median(r["usual_gap"] for r in rows),
        "peak_rss_mb": rss,
        "runs": rows,
    }


def load_peak_rss(backend, roster: Roster, connection: Connection, s: Settings, load_mb: float, resident: str) -> float:
    """Two workers count load_mb MB of shakespeare; returns the larger peak RSS, in MB."""
    [second] = backend.launch(1, Resources())
    wait_for(lambda st: second in st and st[second].partitions, 60, "the second worker's assignment", roster)
    text = corpus_text()
    producer = Producer(kafka.producer_config(connection))
    before = {w: roster.statuses[w].chunks for w in (resident,) if w in roster.statuses}
    produced, size, seq = 0, 0, 0
    while size < load_mb * 1e6:
        for start in range(0, len(text), s.text.chunk_size):
            piece = text[start : start + s.text.chunk_size]
            producer.produce(
                first_generation(s),
                codec.encode_chunk(codec.ChunkMessage("load", seq, "load", start, piece, tokenize.DEFAULT.id)),
                partition=seq % s.topics.chunk_partitions,
            )
            producer.poll(0)
            seq, produced, size = seq + 1, produced + 1, size + len(piece)
    producer.flush(60)
    target = before.get(resident, 0) + produced
    wait_for(
        lambda st: sum(st[w].chunks for w in (resident, second) if w in st) >= target,
        300,
        "the load to be counted",
        roster,
    )
    return max(roster.statuses[w].peak_rss_kb for w in (resident, second)) / 1024


def ensure_docker() -> str:
    for step in (["deploy/docker-engine.sh"], ["deploy/build-image.sh", "--local-base"]):
        subprocess.run(
            step,
            cwd=REPO,
            check=True,
            env={"PYTHON": sys.executable, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
        )
    return "wordpipe:latest"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--launches", type=int, default=10)
    ap.add_argument("--backends", default="local,docker")
    ap.add_argument("--load-mb", type=float, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "deploy_latency.json")
    args = ap.parse_args()
    backends = args.backends.split(",")
    image = ensure_docker() if {"docker", "mesos"} & set(backends) else "wordpipe:latest"
    results = []
    with tempfile.TemporaryDirectory(prefix="wordpipe-bench-") as tmp:
        for name in backends:
            results.append(measure_backend(name, args.launches, args.load_mb, image, Path(tmp)))
    print(f"\ndeploy latency: launch request -> first chunk counted, {args.launches} launches each")
    print(
        f"{'backend':<8} {'median':>8} {'p90':>8} {'start':>8} {'assign':>8} {'max gap':>8} {'usual':>8} {'peak RSS':>10}"
    )
    for r in results:
        print(
            f"{r['backend']:<8} {r['median_s']:>7.2f}s {r['p90_s']:>7.2f}s {r['median_start_s']:>7.2f}s "
            f"{r['median_assign_s']:>7.2f}s {r['max_gap_s']:>7.2f}s {r['usual_gap_s']:>7.2f}s {r['peak_rss_mb']:>7.0f} MB"
        )
    for r in results[1:]:
        print(f"{r['backend']} / {results[0]['backend']} median: {r['median_s'] / results[0]['median_s']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"run": machine(), "backends": results}, indent=2))


if __name__ == "__main__":
    main()
