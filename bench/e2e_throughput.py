"""End-to-end throughput: `wordpipe run --workers N` over `wordpipe reference`, measured in one run.

    python bench/e2e_throughput.py [--mb 50] [--workers 2] [--repeat 3] [--corpus shakespeare|chinese|PATH]
    python bench/e2e_throughput.py --whole-command [--mb 200] ...

The input is shakespeare.txt (or, with --corpus chinese, the generated Chinese prose of
tests/chinese.py; or any file) repeated to at least --mb MB. The reference is timed
in-process (counting only, no interpreter start-up: the strictest baseline). The
pipeline is timed as a user runs it, in steady state: from the first chunk produced
to the last chunk counted (`--stats-file`). Runs alternate so both see the same
machine; medians are reported, and every pipeline result is checked against the
reference's.

--whole-command times what a user waits for instead: `wordpipe reference FILE` and
`wordpipe run FILE` as whole commands (start-up, broker, joins, shutdown included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.cli.counting import format_counts  # noqa: E402
from pipeline.ingest.sources import resolve  # noqa: E402
from pipeline.reference import count_sources  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpora" / "shakespeare.txt"
SAMPLE = REPO / "samples" / "sample.txt"  # shipped with the repo


def corpus_text() -> bytes:
    """shakespeare.txt from ../shared, or the bundled sample where that is absent."""
    return (CORPUS if CORPUS.exists() else SAMPLE).read_bytes()


def build_input(corpus: Path, mb: float, out: Path) -> Path:
    return repeat_to(corpus.read_bytes(), mb, out / f"{corpus.stem}-{mb:g}mb.txt")


def corpus_input(corpus: str, mb: float, out: Path) -> Path:
    """The --corpus input: `shakespeare`, `chinese` (generated to --mb MB) or a file's path."""
    if corpus == "chinese":
        from tests.chinese import chinese_bytes  # here: the other benches import this module

        return repeat_to(chinese_bytes(3, int(mb * 1e6)), mb, out / f"chinese-{mb:g}mb.txt")
    return build_input(CORPUS if corpus == "shakespeare" else Path(corpus), mb, out)


def repeat_to(data: bytes, mb: float, path: Path) -> Path:
    """`data` repeated to at least `mb` MB, in `path` (kept when it is there already)."""
    copies = int(mb * 1e6 // len(data)) + 1
    if not path.exists() or path.stat().st_size != copies * len(data):
        with open(path, "wb") as f:
            for _ in range(copies):
                f.write(data)
    return path


def time_reference(path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    counts = count_sources(resolve([str(path)]))
    return time.perf_counter() - started, format_counts(counts, None, True)


def time_pipeline(
    path: Path, workers: int, backend: str = "local", env: dict[str, str] | None = None
) -> tuple[dict, str]:
    """`wordpipe run` as a user runs it; returns its --stats-file figures and its JSON counts."""
    with tempfile.NamedTemporaryFile(suffix=".json") as stats:
        exe = Path(sys.executable).with_name("wordpipe")
        done = subprocess.run(
            [
                str(exe),
                "run",
                str(path),
                "--workers",
                str(workers),
                "--backend",
                backend,
                "--json",
                "-q",
                "--stats-file",
                stats.name,
            ],
            capture_output=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
        if done.returncode:
            sys.exit(f"wordpipe run ({backend}, {workers} workers) failed:\n{done.stderr.decode()[-3000:]}")
        return json.loads(Path(stats.name).read_text()), done.stdout.decode().strip()


def time_command(*args: str) -> tuple[float, str]:
    """Wall seconds of `wordpipe ARGS...` as a user runs it, and its output."""
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("wordpipe")), *args], capture_output=True, check=False)
    if done.returncode:
        sys.exit(f"wordpipe {args[0]} failed:\n{done.stderr.decode()[-3000:]}")
    return time.perf_counter() - started, done.stdout.decode().strip()


def whole_commands(path: Path, workers: int | None, repeat: int, out: Path) -> None:
    mb = path.stat().st_size / 1e6
    print(
        f"input {path.name}: {mb:.1f} MB; {os.cpu_count()} CPUs; whole commands; workers={workers or 'as run decides'}"
    )
    print(f"{'run':>3}  {'reference s':>11}  {'run s':>7}  {'speed-up':>8}")
    rows = []
    for i in range(1, repeat + 1):
        ref_s, ref_json = time_command("reference", str(path), "--json")
        told = ["--workers", str(workers)] if workers else []
        run_s, run_json = time_command("run", str(path), *told, "--json", "-q")
        if run_json != ref_json:
            sys.exit("pipeline counts differ from the reference: not a valid measurement")
        rows.append({"reference_s": ref_s, "run_s": run_s, "speedup": ref_s / run_s})
        print(f"{i:>3}  {ref_s:>11.2f}  {run_s:>7.2f}  {ref_s / run_s:>7.2f}x")
    median = {k: statistics.median(r[k] for r in rows) for k in ("reference_s", "run_s")}
    print(
        f"median: reference {median['reference_s']:.2f} s, run {median['run_s']:.2f} s -> "
        f"{median['reference_s'] / median['run_s']:.2f}x (target >= 1.1x); counts identical in every run"
    )
    (out / "e2e_whole_command.json").write_text(json.dumps({"input_mb": mb, "workers": workers, "runs": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument(
        "--workers", type=int, help="workers (default 2; whole commands: what `run` starts unless told)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--corpus", default="shakespeare", help="shakespeare, chinese (tests/chinese.py) or a file's path"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--whole-command", action="store_true", help="time both as whole commands")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = corpus_input(args.corpus, args.mb, args.out)
    if args.whole_command:
        whole_commands(path, args.workers, args.repeat, args.out)
        return
    mb = path.stat().st_size / 1e6
    args.workers = args.workers or 2
    print(f"input {path.name}: {mb:.1f} MB; {os.cpu_count()} CPUs; workers={args.workers}; repeat={args.repeat}")
    print(f"{'run':>3}  {'reference MB/s':>14}  {'pipeline MB/s':>13}  {'ratio':>6}  {'pipeline wall s':>15}")
    rows = []
    for i in range(1, args.repeat + 1):
        ref_s, ref_json = time_reference(path)
        stats, run_json = time_pipeline(path, args.workers)
        if run_json != ref_json:
            sys.exit("pipeline counts differ from the reference: not a valid measurement")
        row = {
            "reference_mb_s": mb / ref_s,
            "pipeline_mb_s": mb / stats["steady_seconds"],
            "pipeline_wall_s": stats["wall_seconds"],
        }
        row["ratio"] = row["pipeline_mb_s"] / row["reference_mb_s"]
        rows.append(row)
        print(
            f"{i:>3}  {row['reference_mb_s']:>14.2f}  {row['pipeline_mb_s']:>13.2f}  {row['ratio']:>5.2f}x  {row['pipeline_wall_s']:>15.2f}"
        )
    summary = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    ratio = summary["pipeline_mb_s"] / summary["reference_mb_s"]
    print(
        f"median: reference {summary['reference_mb_s']:.2f} MB/s, pipeline {summary['pipeline_mb_s']:.2f} MB/s "
        f"-> {ratio:.2f}x (target >= 1.0x); counts identical in every run"
    )
    result = {
        "input": path.name,
        "input_mb": mb,
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "runs": rows,
        "median": summary,
        "ratio_of_medians": ratio,
    }
    (args.out / "e2e_throughput.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
