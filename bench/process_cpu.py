"""Where a command's CPU goes, process by process, and the floor that sets on this machine.

    python bench/process_cpu.py [--repeat 3] -- wordpipe run --workers 2 FILE [--reference]

Runs the command (and, with --reference, the same CLI's `reference` on the command's last
argument, alternately), reads every process of its tree from /proc every 0.1 s, and prints
each one's CPU-seconds by role (aggregator, worker, broker, the command itself), the
total (exact: the rusage of the waited-for tree), the wall time, and the floor the total
sets on this machine's cores (total / cores: no schedule of that work can end sooner).
A process's last tenth of a second before it exits may be missed in its own line, never
in the total. Medians over --repeat runs; writes bench/out/process_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROLES = (("pipeline.aggregator", "aggregators"), ("pipeline.worker", "workers"), ("tansu", "broker"))
HZ = os.sysconf("SC_CLK_TCK")


def role(cmdline: str) -> str:
    return next((name for marker, name in ROLES if marker in cmdline), "command")


def tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        at = todo.pop()
        found.append(at)
        try:
            for task in os.listdir(f"/proc/{at}/task"):
                with open(f"/proc/{at}/task/{task}/children") as f:
                    todo += [int(child) for child in f.read().split()]
        except OSError:
            pass
    return found


def cpu_of(pid: int) -> tuple[str, float] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline") as f:
            cmdline = f.read().replace("\0", " ")
    except OSError:
        return None
    return cmdline, (int(fields[11]) + int(fields[12])) / HZ  # utime + stime


def measure(command: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        for pid in tree(proc.pid):
            if (seen := cpu_of(pid)) is not None:
                cmdline, cpu = seen  # an exiting process's command line reads empty: keep the one before
                last[pid] = (cmdline or last.get(pid, ("", 0.0))[0], cpu)
        time.sleep(0.1)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    by_role: dict[str, float] = defaultdict(float)
    for cmdline, cpu in last.values():
        by_role[role(cmdline)] += cpu
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"returncode": proc.returncode, "wall_s": wall, "cpu_s": total, "by_role": dict(by_role)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--reference", action="store_true", help="alternate with `<the CLI> reference` on the last argument"
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "process_cpu.json")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given")
    cores = len(os.sched_getaffinity(0))
    runs, references = [], []
    for i in range(args.repeat):
        if args.reference:
            references.append(measure([command[0], "reference", command[-1]]))
        run = measure(command)
        if run["returncode"] != 0:
            print(f"run {i + 1} failed (exit {run['returncode']})", file=sys.stderr)
            return 1
        runs.append(run)
        line = ", ".join(f"{name} {cpu:.1f}" for name, cpu in sorted(run["by_role"].items()))
        ref = f"; reference {references[-1]['wall_s']:.2f} s" if references else ""
        print(f"run {i + 1}: {run['wall_s']:.2f} s wall, {run['cpu_s']:.1f} CPU-s ({line}){ref}")
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    roles = {name: statistics.median(r["by_role"].get(name, 0.0) for r in runs) for name in runs[0]["by_role"]}
    print(
        f"median: {wall:.2f} s wall, {cpu:.1f} CPU-s on {cores} cores: floor {cpu / cores:.2f} s ({wall / (cpu / cores):.2f}x it)"
    )
    print("  by role: " + ", ".join(f"{name} {v:.1f} CPU-s" for name, v in sorted(roles.items())))
    summary = {"command": command, "cores": cores, "runs": runs, "wall_s": wall, "cpu_s": cpu, "by_role": roles}
    if references:
        ref_wall = statistics.median(r["wall_s"] for r in references)
        summary["reference_wall_s"] = ref_wall
        print(f"  reference {ref_wall:.2f} s: the run at {ref_wall / wall:.2f}x its speed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
