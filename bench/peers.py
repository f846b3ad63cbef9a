"""wordpipe against other Python stream processors: Bytewax and Quix Streams counting the
same input on the same kind of broker, with the same tokenizer, in one table.

    python bench/peers.py [--mb 50] [--processes 2] [--peers bytewax,quixstreams] [--out bench/out]

The input is shakespeare.txt (../shared/corpora; samples/sample.txt where that is absent)
repeated to at least --mb MB. Rows:

* reference: `wordpipe reference`'s counting, timed in-process (bench/e2e_throughput.py);
* wordpipe: `wordpipe run --workers N` as a user runs it (its own embedded broker). MB/s
  over its steady state (first chunk produced to last chunk counted); core-seconds are the
  workers' busy seconds (counting and publishing, from their status reports) plus the
  aggregator's CPU seconds (its whole life): the publisher's and the broker's not included;
* wordpipe, input in Kafka: the same pipeline timed as the peers are: its input produced
  before its workers start, from its first chunk taken to its last counted, the CPU of its
  workers and aggregator (`wordpipe_beforehand_row`);
* each peer (bench/peer_bytewax.py, bench/peer_quix.py), in its best form: counting each
  record on the spot and sending its partial counts on (one msgpack record per input
  record), with no per-word records or keyed state. Each runs in its own virtual
  environment, made here under <out>/peers/<name>/ (kept for the next run) with the peer,
  and what wordpipe's tokenizer imports; the repository is on its PYTHONPATH.

The peers share one embedded Tansu broker. The input is produced to it beforehand: 64 KiB
chunks cut where no word continues (pipeline/chunking.py), round-robin over 12 partitions,
one record each. Each peer then runs N processes (Bytewax: N cluster processes of one
worker each; Quix Streams: N members of one consumer group) and this script reads its
output topic as it is written. A peer's run starts where it starts consuming: the moment
the first of its processes gets its first record (each process notes it, with its CPU
then: bench/peer_mark.py), so its start-up (imports, group join) is left out, as
wordpipe's steady state leaves out its own; it ends when the last output record is read.
Not the first output record: both peers count a whole batch of records before sending
any result on. MB/s is the input's MB over that time; core-seconds are the CPU (user +
system) its processes used in it (/proc; their whole lives' CPU, start-up included, is
the table's "life" column and in the JSON). On Tansu, a group's follower gets its
partitions ~1 s after its leader (the broker holds a follower's SyncGroup), so the second
Quix Streams process starts consuming up to a second after the first; that is inside its
time (the JSON has the gap). Exact: the sum of every partial equals the reference's
counts. A peer that fails or differs is reported in the table, not fatal.

The reference's core-seconds are its CPU time. wordpipe's are what its --stats-file
gives: its workers' busy seconds (wall time while counting and publishing: above their
CPU when they wait for a core) and its aggregator's CPU over its whole life, start-up
included; its "life" is the CPU of all `wordpipe run` started, its broker and publisher
included, which the peers' "life" leaves out (their broker and input are this script's).

Writes <out>/peers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import msgpack  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from e2e_throughput import CORPUS, SAMPLE, repeat_to, time_pipeline, time_reference  # noqa: E402

from pipeline import kafka  # noqa: E402
from pipeline.chunking import DEFAULT_CHUNK_SIZE, iter_chunks  # noqa: E402
from pipeline.config import Connection  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker, free_port  # noqa: E402

PARTITIONS = 12
INPUT_TOPIC = "peers-chunks"
TOKENIZER_NEEDS = ("regex", "rjieba", "icu4py")  # pipeline/tokenize.py's imports (the last two lazily)
START_LIMIT = 90.0  # seconds without any output record before a peer is given up
IDLE_LIMIT = 20.0  # ... and without a new one, once some came: what is missing by then is lost


@dataclass(frozen=True)
class Peer:
    name: str
    packages: tuple[str, ...]  # besides the tokenizer's and msgpack
    script: str  # in bench/


PEERS = {
    "bytewax": Peer("Bytewax", ("bytewax[kafka]>=0.21,<0.22",), "peer_bytewax.py"),
    "quixstreams": Peer("Quix Streams", ("quixstreams>=3,<4",), "peer_quix.py"),
}


# -- environments ------------------------------------------------------------------------


def requirement(name: str) -> str:
    """wordpipe's own requirement for `name` (pyproject.toml), so a peer tokenizes with the same versions."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if d.split(">")[0].split("=")[0].split("<")[0].strip() == name)


def peer_python(key: str, out: Path) -> Path | str:
    """The peer's virtual environment's python: made and filled on first use, then reused
    while it holds the same requirements (a marker file lists them). Why not, if pip fails."""
    venv = out / "peers" / key
    wanted = [*PEERS[key].packages, *(requirement(n) for n in (*TOKENIZER_NEEDS, "msgpack"))]
    marker = venv / "requirements.txt"
    python = venv / "bin" / "python"
    if marker.exists() and marker.read_text().split("\n") == wanted:
        return python
    print(f"making {venv} with {', '.join(wanted)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    with open(venv / "pip.log", "wb") as log:  # pip's warnings about the local index are noise here
        done = subprocess.run([str(python), "-m", "pip", "install", *wanted], stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        lines = (venv / "pip.log").read_text(errors="replace").splitlines()
        return f"pip install failed: {next((x for x in reversed(lines) if 'ERROR' in x), lines[-1:])}"
    marker.write_text("\n".join(wanted))
    return python


# -- the broker's side -------------------------------------------------------------------


def create_topics(connection: Connection, names: list[str]) -> None:
    admin = AdminClient(kafka.client_config(connection))
    for future in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        future.result()
    deadline = time.monotonic() + 30
    while not all(
        len(t.partitions) == PARTITIONS for n, t in admin.list_topics(timeout=10).topics.items() if n in names
    ):
        if time.monotonic() > deadline:
            sys.exit(f"topics {names} did not appear in the broker's metadata")
        time.sleep(0.1)


def produce_input(connection: Connection, path: Path) -> int:
    """The input as wordpipe's ingest cuts it, one record a chunk, round-robin over the
    partitions; returns how many records."""
    producer = Producer(kafka.producer_config(connection))
    n = 0
    with open(path, "rb") as f:
        for n, chunk in enumerate(iter_chunks(f, DEFAULT_CHUNK_SIZE), 1):
            producer.produce(INPUT_TOPIC, chunk.data, partition=n % PARTITIONS)
            producer.poll(0)
    if producer.flush(60):
        sys.exit("could not produce the input to the peers' broker")
    return n


# -- a peer's run ------------------------------------------------------------------------


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a process has used, or None once it is reaped.
    A process that has exited but is not yet waited for still reads its final figure."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consumer_tuning(connection: Connection) -> dict[str, int]:
    """The group session and fetch wait wordpipe's own consumers use on this broker
    (pipeline.kafka.consumer_config): with librdkafka's defaults a group takes ~23 s to
    form on Tansu, which holds a JoinGroup for half the session timeout."""
    config = kafka.consumer_config(connection, "peers")
    return {k: config[k] for k in ("session.timeout.ms", "heartbeat.interval.ms", "fetch.wait.max.ms")}


def launch(key: str, python: Path, connection: Connection, output: str, processes: int, logs: Path) -> list:
    """The peer's N processes, started together; their output goes to logs/<i>.log and
    each one's first-record mark (bench/peer_mark.py) to logs/marks/."""
    (logs / "marks").mkdir(parents=True, exist_ok=True)
    for old in (logs / "marks").iterdir():
        old.unlink()
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'bench'}",
        "PEER_BROKER": connection.bootstrap,
        "PEER_INPUT": INPUT_TOPIC,
        "PEER_OUTPUT": output,
        "PEER_GROUP": f"peers-{key}",
        "PEER_STATE": str(logs / "state"),
        "PEER_MARKS": str(logs / "marks"),
        "PEER_CONSUMER_CONFIG": json.dumps(consumer_tuning(connection)),
    }
    if key == "bytewax":
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        commands = [
            [str(python), "-m", "bytewax.run", "peer_bytewax:flow", "-i", str(i), "-a", addresses]
            for i in range(processes)
        ]
    else:
        commands = [[str(python), str(REPO / "bench" / PEERS[key].script)] for _ in range(processes)]
    return [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(logs / f"{i}.log", "wb"), stderr=subprocess.STDOUT)
        for i, cmd in enumerate(commands)
    ]


@dataclass
class Watched:
    values: list[bytes]
    first_at: float | None = None  # wall-clock time the first output record was read
    last_at: float | None = None  # ... and the last
    cpu_first: dict[int, float] = field(default_factory=dict)  # each process's CPU seconds then
    cpu_last: dict[int, float] = field(default_factory=dict)
    failure: str | None = None


def watch(connection: Connection, topic: str, expected: int, procs: list) -> Watched:
    """Read the output topic as the peer writes it, until `expected` records (or the peer
    exits early, or stays silent START_LIMIT seconds before any record or IDLE_LIMIT seconds
    after one: `missing` then); note when the first and last came and
    each process's CPU then. CPU is read every round, before any exit is reaped, so a
    process that finished early keeps its final figure."""
    consumer = Consumer(kafka.consumer_config(connection, f"watch-{topic}", **{"fetch.wait.max.ms": 10}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    seen = Watched([])
    cpu: dict[int, float] = {}
    quiet_since = time.time()
    try:
        while len(seen.values) < expected:
            batch = [m for m in consumer.consume(500, 0.05) if m.error() is None]
            now = time.time()
            cpu.update({p.pid: c for p in procs if (c := process_cpu(p.pid)) is not None})
            if batch:
                if seen.first_at is None:
                    seen.first_at, seen.cpu_first = now, dict(cpu)
                seen.last_at, seen.cpu_last, quiet_since = now, dict(cpu), now
                seen.values += [m.value() for m in batch]
            elif any(p.poll() not in (None, 0) for p in procs):
                seen.failure = "a process exited with status " + ", ".join(str(p.poll()) for p in procs)
                break
            elif now - quiet_since > (IDLE_LIMIT if seen.values else START_LIMIT):
                if not seen.values:
                    seen.failure = f"no output in {START_LIMIT:.0f} s"
                print(f"no new output for {now - quiet_since:.0f} s: {len(seen.values)} of {expected} records")
                break
    finally:
        consumer.close()
    return seen


def read_marks(marks: Path) -> dict[int, dict]:
    """Each process's first-record mark (bench/peer_mark.py), by pid."""
    return {int(f.stem): json.loads(f.read_text()) for f in marks.glob("*.json")}


def consuming_from(seen: Watched, found: dict[int, dict]) -> tuple[float, float]:
    """When the peer's consuming started (its processes' earliest first record) and the CPU
    its processes used from then to the last output record. A process without a mark (no
    partition came its way) counts from the first output record."""
    assert seen.first_at is not None
    start = min([m["at"] for m in found.values()], default=seen.first_at)
    cpu = sum(
        last - (found[pid]["cpu"] if pid in found else seen.cpu_first.get(pid, 0.0))
        for pid, last in seen.cpu_last.items()
    )
    return start, cpu


def stop(procs: list, wait: float) -> None:
    """Let processes that end by themselves (Bytewax at the input's end) end; SIGTERM the rest."""
    deadline = time.monotonic() + wait
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout and p.stdout.close()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_peer(key: str, python: Path, connection: Connection, records: int, mb: float, reference: Counter, args) -> dict:
    """One peer's run on the input already in the broker, as a row of the table."""
    output = f"peers-{key}-partials"
    create_topics(connection, [output])
    logs = args.out / "peers" / key / "logs"
    lived_before = children_cpu()
    launched = time.time()
    procs = launch(key, python, connection, output, args.processes, logs)
    try:
        seen = watch(connection, output, records, procs)
    finally:
        stop(procs, wait=10.0 if key == "bytewax" else 0.0)
    row = {"system": f"{PEERS[key].name} ({args.processes} processes)", "records": len(seen.values)}
    if seen.failure or seen.first_at is None or seen.last_at is None:  # no figures to give
        tail = "\n".join((logs / "0.log").read_text(errors="replace").splitlines()[-5:])
        print(f"{PEERS[key].name} failed: {seen.failure}; its log ({logs}/0.log) ends:\n{tail}", flush=True)
        return {**row, "failure": seen.failure, "exact": False}
    found = read_marks(logs / "marks")
    start, cpu = consuming_from(seen, found)
    total: Counter = Counter()
    for value in seen.values:
        total.update(msgpack.unpackb(value))
    return {
        **row,
        "mb_s": mb / (seen.last_at - start),
        "core_s_per_mb": cpu / mb,
        "seconds": seen.last_at - start,
        "startup_s": start - launched,
        "first_output_after_s": seen.first_at - start,
        "processes_consuming": len(found),
        "last_process_consuming_after_s": max(m["at"] for m in found.values()) - start if found else None,
        "lifetime_core_s_per_mb": (children_cpu() - lived_before) / mb,
        "missing": records - len(seen.values),  # input records without an output record
        "exact": total == reference,
    }


def run_peers(keys: list[str], path: Path, mb: float, reference: Counter, args) -> list[dict]:
    pythons = {key: peer_python(key, args.out) for key in keys}  # before any timing
    with EmbeddedBroker(log_file=args.out / "peers" / "broker.log") as broker:
        connection = broker.connection()
        create_topics(connection, [INPUT_TOPIC])
        records = produce_input(connection, path)
        print(f"produced {records} records to {INPUT_TOPIC} ({PARTITIONS} partitions)", flush=True)
        rows = []
        for key in keys:
            python = pythons[key]
            if isinstance(python, str):
                print(f"{PEERS[key].name}: {python}", flush=True)
                rows.append({"system": PEERS[key].name, "failure": python, "exact": False})
                continue
            rows.append(run_peer(key, python, connection, records, mb, reference, args))
            print(f"{rows[-1]['system']}: {rows[-1].get('mb_s', 0):.1f} MB/s", flush=True)
        return rows


# -- wordpipe and the reference ----------------------------------------------------------


def reference_row(path: Path, mb: float) -> tuple[dict, Counter, str]:
    """The reference's row (its CPU, not its wall time, per MB: on a shared machine they
    differ), its counts, and those as `wordpipe run --json` prints them."""
    cpu = time.process_time()
    seconds, counts_json = time_reference(path)
    cpu = time.process_time() - cpu
    counts = Counter(json.loads(counts_json)["counts"])
    row = {"system": "wordpipe reference (1 process)", "mb_s": mb / seconds, "core_s_per_mb": cpu / mb}
    return {**row, "seconds": seconds, "exact": True}, counts, counts_json


def wordpipe_row(path: Path, mb: float, workers: int, reference_json: str) -> dict:
    """`wordpipe run`'s row. Its core-seconds are what its stats give: the workers' busy
    seconds (wall time while counting and publishing, so above their CPU when they wait
    for a core) and the aggregator's CPU; its "life" is the CPU of everything it ran, its
    broker and publisher included (they are waited for, so RUSAGE_CHILDREN has them)."""
    lived_before = children_cpu()
    stats, counts_json = time_pipeline(path, workers)
    res = stats["resources"]
    busy = sum(w["busy_seconds"] for w in res["workers"])
    return {
        "system": f"wordpipe run --workers {workers}",
        "mb_s": mb / stats["steady_seconds"],
        "core_s_per_mb": (busy + res["aggregator"]["cpu_seconds"]) / mb,
        "workers_busy_s": busy,
        "aggregator_cpu_s": res["aggregator"]["cpu_seconds"],
        "lifetime_core_s_per_mb": (children_cpu() - lived_before) / mb,
        "seconds": stats["steady_seconds"],
        "exact": counts_json == reference_json,
    }


def wordpipe_beforehand_row(path: Path, mb: float, workers: int, reference: Counter) -> dict:
    """wordpipe timed as the peers are: its input is in Kafka before its workers start, and
    its run begins where its first worker took its first chunk (the workers' status
    reports) and ends when the aggregator has counted every chunk. Core-seconds: the CPU
    of its workers and aggregator (/proc) from the first report of a counted chunk (a
    batch later than the first chunk: slightly in wordpipe's favour) to the end; like the
    peers', they leave out the broker and whoever produced the input."""
    from pipeline.config import Settings
    from pipeline.ingest.sources import resolve
    from pipeline.run import Pipeline

    with Pipeline(Settings(workers=0)).start(ready=False) as p:
        report = p.ingest(resolve([str(path)]))
        p.launch_workers(workers)
        backend, roster, aggregator = p.workers, p.roster, p.aggregator
        assert backend is not None and roster is not None and aggregator is not None
        pids = [aggregator.pid, *(backend.pid(w.id) for w in backend.list())]  # type: ignore[attr-defined]
        cpu_from: list[float] = []

        def on_counted(_: int) -> None:
            if not cpu_from and any(st.first_chunk_at for st in roster.refresh().values()):
                cpu_from.append(sum(process_cpu(pid) or 0.0 for pid in pids))

        p.wait_counted(report, timeout=600, on_counted=on_counted)
        ended, cpu = time.time(), sum(process_cpu(pid) or 0.0 for pid in pids) - cpu_from[0]
        started = min(st.first_chunk_at for st in roster.refresh(timeout=1.0).values() if st.first_chunk_at)
        counts = Counter(p.totals())
    return {
        "system": f"wordpipe, {workers} workers, input in Kafka",
        "mb_s": mb / (ended - started),
        "core_s_per_mb": cpu / mb,
        "seconds": ended - started,
        "exact": counts == reference,
    }


# -- output ------------------------------------------------------------------------------


def print_table(rows: list[dict]) -> None:
    """The rows as text; `life` is a peer's processes' whole lives' CPU per MB, start-up included."""
    reference = rows[0]["mb_s"]
    print(f"{'system':<40} {'MB/s':>6} {'× ref':>6} {'core-s/MB':>9} {'exact':>5} {'start-up s':>10} {'life':>6}")
    for r in rows:
        if "mb_s" not in r:
            print(f"{r['system']:<40} {'failed':>6} {'':>6} {'':>9} {'no':>5}  ({r['failure']})")
            continue
        exact = "yes" if r["exact"] else "NO"
        note = f"  ({r['missing']} records without output)" if r.get("missing") else ""
        startup = f"{r['startup_s']:.1f}" if "startup_s" in r else "—"
        life = f"{r['lifetime_core_s_per_mb']:.3f}" if "lifetime_core_s_per_mb" in r else "—"
        print(
            f"{r['system']:<40} {r['mb_s']:>6.1f} {r['mb_s'] / reference:>5.2f}x {r['core_s_per_mb']:>9.3f} "
            f"{exact:>5} {startup:>10} {life:>6}{note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--processes", type=int, default=2, help="wordpipe's workers and each peer's processes")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"which of {', '.join(PEERS)}")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = CORPUS if CORPUS.exists() else SAMPLE
    path = repeat_to(corpus.read_bytes(), args.mb, args.out / f"{corpus.stem}-{args.mb:g}mb.txt")
    mb = path.stat().st_size / 1e6
    print(f"input {path.name}: {mb:.1f} MB; {os.cpu_count()} CPUs; {args.processes} processes each", flush=True)
    ref, counts, counts_json = reference_row(path, mb)
    rows = [ref, wordpipe_row(path, mb, args.processes, counts_json)]
    rows.append(wordpipe_beforehand_row(path, mb, args.processes, counts))
    rows += run_peers([k for k in args.peers.split(",") if k], path, mb, counts, args)
    for r in rows:
        if "mb_s" in r:
            r["ratio"] = r["mb_s"] / ref["mb_s"]
    print_table(rows)
    result = {"input": path.name, "input_mb": mb, "cpus": os.cpu_count(), "processes": args.processes, "rows": rows}
    (args.out / "peers.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
