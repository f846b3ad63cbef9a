"""A stack that runs for months, in minutes: `wordpipe up` takes uploads (or a source topic's
records) at a steady rate, and every `--every` seconds the RSS of each of its processes
(broker, aggregator, ingest, autoscaler, workers) is written against the MB ingested; at the
end the totals are checked against the reference, and the report (a table and a plot) and
the raw figures are written.

    python bench/soak.py --mb 2000 --rate 2 --out docs/soak            # uploads, 2 GB at 2 MB/s
    python bench/soak.py --source --minutes 20 --rate 2 --out docs/soak-source
    python bench/soak.py --mb 200 --rate 4 --state-dir                  # with a state directory

Memory is bounded by what the stack keeps when each process's RSS at the end is within
20% of its RSS at the first checkpoint past `--baseline-mb` (500 MB by default).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from pipeline import tokenize
from pipeline.broker import free_port
from pipeline.client import Client

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "shakespeare.txt"
TOKEN = "soak"
ROLES = (
    ("tansu", "broker"),
    ("pipeline.aggregator.lookup_process", "lookup"),
    ("pipeline.cli aggregator", "aggregator"),
    ("ingest-server", "ingest"),
    ("autoscale", "autoscaler"),
    ("-m workers", "worker"),
    ("pipeline.cli up", "up"),
)


def processes(root: int) -> dict[int, str]:
    """The stack's processes (root's tree), by pid, each with its role."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                commands[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        command = commands.get(pid, "")
        found[pid] = next((role for mark, role in ROLES if mark in command), "other")
        todo += children.get(pid, [])
    return found


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return 0.0


class Stack:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.ports = {"ingest": free_port(), "results": free_port(), "autoscaler": free_port()}
        command = [sys.executable, "-m", "pipeline.cli", "up", "--log-dir", str(work / "logs")]
        command += [f"--{name}-port={port}" for name, port in self.ports.items()]
        command += ["--state-dir", str(work / "state")] if args.state_dir else []
        command += ["--source", "feed"] if args.source else []
        self.proc = subprocess.Popen(
            command,
            env={**os.environ, "WORDPIPE_TOKENS": TOKEN, "XDG_STATE_HOME": str(work / "xdg")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        banner = ""
        while "Ctrl-C" not in banner:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if not line:
                raise SystemExit(f"wordpipe up exited early:\n{banner}")
            banner += line
        self.bootstrap = next(
            (s.split(" at ")[-1].rstrip(")") for s in banner.splitlines() if "(topic feed at" in s), ""
        )
        self.client = Client(
            f"http://127.0.0.1:{self.ports['ingest']}", f"http://127.0.0.1:{self.ports['results']}", token=TOKEN
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


class Feed(threading.Thread):
    """Text at a steady rate: uploads of the corpus, or its lines as source records."""

    def __init__(self, stack: Stack, args: argparse.Namespace, text: bytes) -> None:
        super().__init__(daemon=True)
        self.stack, self.args, self.text = stack, args, text
        self.sent = 0  # bytes
        self.documents = 0
        self.done = threading.Event()

    def run(self) -> None:
        started, limit = time.monotonic(), self.args.mb * 1e6
        deadline = started + self.args.minutes * 60 if self.args.minutes else None
        producer = None
        if self.args.source:
            from kafka import KafkaProducer

            producer = KafkaProducer(bootstrap_servers=self.stack.bootstrap, linger_ms=20, acks="all")
            lines = self.text.splitlines()
        while (deadline is None and self.sent < limit) or (deadline is not None and time.monotonic() < deadline):
            if producer is not None:
                for line in lines:
                    producer.send("feed", line)
                producer.flush()
            else:
                self.stack.client.ingest(self.text, name=f"upload{self.documents}")
            self.sent += len(self.text)
            self.documents += 1
            ahead = self.sent / (self.args.rate * 1e6) - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # the steady rate
        if producer is not None:
            producer.close()
        self.done.set()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=2000, help="MB to send (uploads)")
    p.add_argument("--minutes", type=float, default=0, help="send for this long instead (a source topic)")
    p.add_argument("--rate", type=float, default=2.0, help="MB a second")
    p.add_argument("--every", type=float, default=30.0, help="seconds between RSS checkpoints")
    p.add_argument("--baseline-mb", type=float, default=500.0)
    p.add_argument("--source", action="store_true", help="a kafka-python producer writes lines to a source topic")
    p.add_argument("--state-dir", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "soak")
    args = p.parse_args()
    text = (CORPUS if CORPUS.exists() else ROOT / "samples" / "sample.txt").read_bytes()
    work = Path(tempfile.mkdtemp(prefix="wordpipe-soak-"))
    stack = Stack(args, work)
    feed = Feed(stack, args, text)
    rows: list[dict] = []
    started = time.monotonic()
    try:
        feed.start()
        while True:
            done = feed.done.wait(args.every)
            rows.append(checkpoint(stack, feed, started))
            print(json.dumps(rows[-1]), flush=True)
            if done:
                break
        stack.client.wait_counted(timeout=1800)
        if args.source:
            wait_for_feed(stack, feed, text)
        rows.append(checkpoint(stack, feed, started))
        exact = Counter(dict(stack.client.totals())) == Counter(
            {w: n * feed.documents for w, n in tokenize.count(tokenize.decode(text).text).items()}
        )
        state = du(work / "state") if args.state_dir else None
    finally:
        stack.stop()
    report(args, rows, exact, state, feed)


def wait_for_feed(stack: Stack, feed: Feed, text: bytes) -> None:
    from pipeline import kafka
    from pipeline.config import Connection, KafkaSettings
    from pipeline.progress import sources_counted

    extents = kafka.topic_extents(Connection.to(KafkaSettings(), embedded=stack.bootstrap), ["feed"])
    while not sources_counted(stack.client._get("/v1/progress"), extents):
        time.sleep(1)


def checkpoint(stack: Stack, feed: Feed, started: float) -> dict:
    by_role: dict[str, float] = {}
    for pid, role in processes(stack.proc.pid).items():
        name = role if role not in by_role else f"{role}-{pid}"
        by_role[name] = round(rss_mb(pid), 1)
    return {"seconds": round(time.monotonic() - started), "mb": round(feed.sent / 1e6, 1), "rss_mb": by_role}


def du(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def report(args: argparse.Namespace, rows: list[dict], exact: bool, state: float | None, feed: Feed) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    roles = sorted({r for row in rows for r in row["rss_mb"]})
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seconds", "mb", *roles])
        for row in rows:
            writer.writerow([row["seconds"], row["mb"], *(row["rss_mb"].get(r, "") for r in roles)])
    base = next((row for row in rows if row["mb"] >= args.baseline_mb), rows[0])
    last = rows[-1]
    lines = [
        f"# Soak: {'a source topic' if args.source else 'uploads'} at {args.rate:g} MB/s"
        + (" with a state directory" if args.state_dir else ""),
        "",
        f"`python bench/soak.py {' '.join(sys.argv[1:])}`: {last['mb']:,.0f} MB in {feed.documents:,} "
        f"{'passes over the corpus' if args.source else 'uploads'} over {last['seconds'] / 60:.1f} minutes; "
        f"totals {'equal to' if exact else 'DIFFERENT from'} the reference."
        + (f" The state directory holds {state:,.1f} MB at the end." if state is not None else ""),
        "",
        f"| process | RSS at {base['mb']:,.0f} MB (MB) | at the end (MB) | change |",
        "|---|---|---|---|",
    ]
    for role in roles:
        at, end = base["rss_mb"].get(role), last["rss_mb"].get(role)
        if at and end:
            lines.append(f"| {role} | {at:,.1f} | {end:,.1f} | {100 * (end - at) / at:+.0f}% |")
    lines += ["", f"![RSS against MB ingested]({args.out.name}.png)", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    plot(rows, roles, args.out.with_suffix(".png"))
    print("\n".join(lines))


def plot(rows: list[dict], roles: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for role in roles:
        points = [(row["mb"], row["rss_mb"][role]) for row in rows if role in row["rss_mb"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=role, marker=".")
    ax.set_xlabel("MB ingested")
    ax.set_ylabel("RSS (MB)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
