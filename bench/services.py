"""The services under load: ingest MB/s over HTTP, top-K latency while counting, ingest memory.

    python bench/services.py [--mb 100] [--uploads 4] [--seconds 10]

One run, on an embedded broker with 2 workers, the aggregator and an ingest service
process (token auth on, as deployed):

1. ingest throughput: --uploads concurrent HTTP uploads of shakespeare.txt repeated to
   --mb MB in all, timed from the first byte sent to the last 202; against the same
   bytes published straight to Kafka by `wordpipe run`'s publisher in the same run
   (the baseline: what HTTP, held documents and receipts cost);
2. top-K latency: a second process asks GET /v1/top?k=10 back to back for --seconds
   from the start of those uploads, while they go in and are counted; p50/p99 against
   GET /health on the idle pipeline in the same run (the baseline: the HTTP round trip alone);
3. the ingest service's peak RSS during a 1 GiB upload (its body is streamed, never held).

Prints the figures and writes bench/out/services.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from e2e_throughput import CORPUS  # noqa: E402

from pipeline import config, processes  # noqa: E402
from pipeline.ingest.publisher import ChunkPublisher  # noqa: E402
from pipeline.ingest.sources import Source  # noqa: E402
from pipeline.kafka.broker import free_port  # noqa: E402
from pipeline.run import Pipeline  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def latencies(url: str, seconds: float, out: multiprocessing.Queue) -> None:
    """Runs in a second process: back-to-back GETs, each timed."""
    http = requests.Session()
    http.headers.update(AUTH)
    times, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        http.get(url, timeout=30).raise_for_status()
        times.append(time.perf_counter() - started)
    out.put(times)


def measure_latency(url: str, seconds: float) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=latencies, args=(url, seconds, queue))
    proc.start()
    times = queue.get()
    proc.join()
    times.sort()
    return {
        "requests": len(times),
        "p50_ms": 1000 * times[len(times) // 2],
        "p99_ms": 1000 * times[int(len(times) * 0.99)],
    }


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0, help="MB uploaded in all for throughput (default 100)")
    ap.add_argument("--uploads", type=int, default=4, help="concurrent uploads (default 4)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each latency measurement (default 10)")
    args = ap.parse_args()
    if not CORPUS.exists():
        sys.exit(f"{CORPUS} not found")
    text = CORPUS.read_bytes()
    per_upload = text * max(1, int(args.mb * 1e6 / args.uploads // len(text)))
    total = len(per_upload) * args.uploads
    settings = config.Settings(workers=2, tokens=TOKEN)
    results: dict = {"machine": f"{os.cpu_count()} cores", "mb": total / 1e6, "uploads": args.uploads}
    with Pipeline(settings) as pipeline:
        s = pipeline.settings.replace(ingest_port=free_port())
        env = {**os.environ, **s.to_env(pipeline.connection)}
        with open(pipeline.log_dir / "ingest.log", "wb") as log:
            service = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "ingest-server"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{s.ingest.port}"
        try:
            while not _healthy(url):
                time.sleep(0.2)

            # 1. Baseline: the same bytes straight into Kafka, then over HTTP.
            publisher = ChunkPublisher(pipeline.connection, s.topics, s.text)
            path = pipeline.log_dir / "upload.txt"
            path.write_bytes(per_upload)
            started = time.perf_counter()
            for _ in range(args.uploads):
                publisher.publish(Source("bench", path))
            publisher.flush()
            direct = total / 1e6 / (time.perf_counter() - started)

            def upload(_: int) -> None:
                reply = requests.post(
                    url + "/v1/documents",
                    data=_blocks(per_upload),
                    timeout=600,
                    headers={**AUTH, "Content-Type": "text/plain"},
                )
                reply.raise_for_status()

            idle = measure_latency(pipeline.results_url + "/v1/top?k=10", args.seconds / 2)
            health = measure_latency(pipeline.results_url + "/health", args.seconds / 2)

            # 2. ...and top-K latency from a second process while those uploads go in and are counted.
            queue: multiprocessing.Queue = multiprocessing.Queue()
            asker = multiprocessing.Process(
                target=latencies, args=(pipeline.results_url + "/v1/top?k=10", args.seconds, queue)
            )
            asker.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.uploads) as pool:
                list(pool.map(upload, range(args.uploads)))
            http = total / 1e6 / (time.perf_counter() - started)
            times = sorted(queue.get())
            asker.join()
            busy = {
                "requests": len(times),
                "p50_ms": 1000 * times[len(times) // 2],
                "p99_ms": 1000 * times[int(len(times) * 0.99)],
            }
            status = pipeline.http.get(pipeline.results_url + "/v1/status").json()
            results["ingest"] = {"http_mb_s": http, "direct_mb_s": direct, "ratio": http / direct}
            results["top_k"] = {
                "while_counting": busy,
                "idle": idle,
                "health_baseline": health,
                "p99_ratio_to_health": busy["p99_ms"] / health["p99_ms"],
                "counted_during_measurement": f"{status['chunks_counted']}/{status['chunks_ingested']} chunks",
            }

            # 3. Peak RSS during a 1 GiB upload.
            baseline, peak, done = rss_mb(service.pid), [0.0], threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(service.pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            gib = (per_upload * (2**30 // len(per_upload) + 1))[: 2**30]
            cpu_before, _ = processes.usage(service.pid)
            started = time.perf_counter()
            reply = requests.post(
                url + "/v1/documents", data=_blocks(gib), timeout=900, headers={**AUTH, "Content-Type": "text/plain"}
            )
            seconds = time.perf_counter() - started
            cpu = processes.usage(service.pid)[0] - cpu_before
            done.set()
            sampler.join()
            reply.raise_for_status()
            results["memory"] = {
                "ingest_rss_before_mb": baseline,
                "ingest_rss_peak_mb": peak[0],
                "upload_gib_seconds": seconds,
                "ingest_cpu_fraction": cpu / seconds,
            }
        finally:
            service.terminate()
            service.wait(30)

    i, t, m = results["ingest"], results["top_k"], results["memory"]
    print(f"machine: {results['machine']}; {results['mb']:.0f} MB in {args.uploads} concurrent uploads")
    print(
        f"ingest over HTTP   {i['http_mb_s']:7.1f} MB/s   straight to Kafka {i['direct_mb_s']:7.1f} MB/s   ratio {i['ratio']:.2f}"
    )
    print(
        f"top-10 latency     p50 {t['while_counting']['p50_ms']:.2f} ms  p99 {t['while_counting']['p99_ms']:.2f} ms while uploading and counting "
        f"({t['while_counting']['requests']} requests; {t['counted_during_measurement']} at the end)"
    )
    print(
        f"                   p50 {t['idle']['p50_ms']:.2f} ms  p99 {t['idle']['p99_ms']:.2f} ms idle; "
        f"/health p50 {t['health_baseline']['p50_ms']:.2f} ms p99 {t['health_baseline']['p99_ms']:.2f} ms "
        f"(p99 ratio {t['p99_ratio_to_health']:.2f})"
    )
    print(
        f"ingest memory      {m['ingest_rss_before_mb']:.0f} MB before, {m['ingest_rss_peak_mb']:.0f} MB peak during a 1 GiB "
        f"upload ({1024 / m['upload_gib_seconds']:.0f} MB/s, {m['ingest_cpu_fraction']:.0%} of a core)"
    )
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "services.json").write_text(json.dumps(results, indent=2))


def _blocks(data: bytes, size: int = 1 << 20):
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
