"""The results API under its own heaviest lookups: how long another client's GET /v1/top waits.

    python bench/lookup_stall.py [--lookups 8] [--seconds 10]

An embedded broker, the aggregator and one worker, token auth on. --lookups processes each
send the worst POST /v1/words bodies back to back, in turn:

- 1,000 words of 340 x U+FDFA (NFKC expands each 18x: the most tokenizer work per byte);
- one word of 960 KiB of U+FDFA (a chunk: one C call to normalize it, ~1 s);
- 1 MiB of arrays nested 900 deep (the most json.loads work per byte, ~130 ms);

while another process times GET /v1/top?k=10, one every 10 ms. Prints the p50/p99/max of
those GETs against the idle figures of the same run (the target: p99 under 100 ms), and
the lookups' own; writes bench/out/lookup_stall.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import config  # noqa: E402
from pipeline.run import Pipeline  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NESTED = b"[" * 900 + b"]" * 900


def worst_bodies() -> dict[str, bytes]:
    return {
        "1000 words of 340 x U+FDFA": json.dumps({"words": ["\ufdfa" * 340] * 1000}, ensure_ascii=False).encode(),
        "one 960 KiB word of U+FDFA": json.dumps(
            {"words": ["\ufdfa" * (960 * 1024 // 3)]}, ensure_ascii=False
        ).encode(),
        "1 MiB of arrays nested 900 deep": b'{"words": [' + b",".join([NESTED] * ((1 << 20) // 1801 - 1)) + b"]}",
    }


def look_up(url: str, seconds: float, out: multiprocessing.Queue) -> None:
    """Runs in a process of its own: the worst bodies in turn, back to back, each timed."""
    http = requests.Session()
    http.headers.update({**AUTH, "Content-Type": "application/json"})
    times: dict[str, list[float]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, body in worst_bodies().items():
            started = time.perf_counter()
            reply = http.post(url, data=body, timeout=300)
            assert reply.status_code in (200, 400), (name, reply.status_code, reply.text[:200])
            times.setdefault(name, []).append(time.perf_counter() - started)
    out.put(times)


def ask_top(url: str, seconds: float, out: multiprocessing.Queue) -> None:
    """Runs in a process of its own: GET /v1/top every 10 ms, each timed."""
    http = requests.Session()
    http.headers.update(AUTH)
    times, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        http.get(url, timeout=60).raise_for_status()
        times.append(time.perf_counter() - started)
        time.sleep(0.01)
    out.put(times)


def summary(times: list[float]) -> dict:
    times = sorted(times)
    return {
        "requests": len(times),
        "p50_ms": 1000 * times[len(times) // 2],
        "p99_ms": 1000 * times[min(len(times) - 1, int(len(times) * 0.99))],
        "max_ms": 1000 * times[-1],
    }


def measure(results_url: str, lookups: int, seconds: float) -> tuple[dict, dict[str, dict]]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    senders = [
        multiprocessing.Process(target=look_up, args=(results_url + "/v1/words", seconds, queue))
        for _ in range(lookups)
    ]
    for sender in senders:
        sender.start()
    time.sleep(0.5)  # the lookups under way before the first GET
    top = summary(_in_process(ask_top, results_url + "/v1/top?k=10", seconds - 0.5))
    own: dict[str, list[float]] = {}
    for _ in senders:
        for name, times in queue.get().items():
            own.setdefault(name, []).extend(times)
    for sender in senders:
        sender.join()
    return top, {name: summary(times) for name, times in own.items()}


def _in_process(target, url: str, seconds: float) -> list[float]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=target, args=(url, seconds, queue))
    proc.start()
    times = queue.get()
    proc.join()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lookups", type=int, default=8, help="concurrent senders of worst-case lookups (default 8)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the measurement (default 10)")
    args = ap.parse_args()
    with Pipeline(config.Settings(workers=1, tokens=TOKEN)) as pipeline:
        pipeline.results.http.post(  # something to rank
            pipeline.results_url + "/v1/words", json={"words": ["warm", "数据", "ひらがな"]}
        ).raise_for_status()
        idle = summary(_in_process(ask_top, pipeline.results_url + "/v1/top?k=10", 3))
        busy, own = measure(pipeline.results_url, args.lookups, args.seconds)
    results = {"machine": f"{os.cpu_count()} cores", "lookups": args.lookups, "idle": idle, "busy": busy, "own": own}
    print(f"machine: {results['machine']}; {args.lookups} senders of worst-case POST /v1/words, {args.seconds:g} s")
    for label, row in (("idle", idle), (f"during {args.lookups} worst lookups", busy)):
        print(
            f"GET /v1/top?k=10 {label:28} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  "
            f"max {row['max_ms']:8.2f} ms  ({row['requests']} requests)"
        )
    for name, row in own.items():
        print(f"  lookup: {name:34} p50 {row['p50_ms']:8.1f} ms  max {row['max_ms']:8.1f} ms  ({row['requests']})")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lookup_stall.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
