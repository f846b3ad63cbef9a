"""One live autoscaling run, set against the KEDA-style policy on the same arrivals.

    python bench/autoscale_live.py [--out DIR]

A `wordpipe up` stack (embedded broker, local workers) gets a step of load over the
ingest API: LOW MB/s, then HIGH MB/s, then LOW again, in four uploads a second. Its
autoscaler runs a time-compressed policy (seconds where production has minutes, so the
whole story fits in a few minutes) and its /v1/status is sampled every second.

The arrivals the stack saw then drive the simulator twice, on workers modelled from the
run (their measured rate, the measured start-up): with the same policy, and with the
KEDA-style one (ceil(lag / lagThreshold), the HPA's tolerance, doubling limit and
scale-down stabilization, compressed the same way). Writes autoscale-live.csv (the live
timeline), autoscale-live.json (summaries) and autoscale-live.png; prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import requests
from e2e_throughput import corpus_text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import config  # noqa: E402
from pipeline.autoscaler.policy import Policy  # noqa: E402
from pipeline.autoscaler.simulate import (  # noqa: E402
    KedaStyle,
    Result,
    Scenario,
    WorkerModel,
    plot,
    simulate,
)
from pipeline.client import Client  # noqa: E402
from pipeline.kafka.broker import free_port  # noqa: E402
from pipeline.observe.lag import RATE_WINDOW  # noqa: E402
from pipeline.stack import Stack  # noqa: E402
from tests.chaos.report import machine  # noqa: E402

INTERVAL = 2  # seconds between autoscaler ticks
UPLOADS = 4  # a second
POLICY = Policy(
    max_workers=4, catch_up_seconds=20, stabilization_seconds=30, cooldown_seconds=8, stale_after_seconds=10
)
STARTUP_SECONDS = 2.3  # the local backend's deploy latency (bench/deploy_latency.py), for the model
DURATION = 240


def load(t: int, low: float, high: float) -> float:
    """MB/s in second t: LOW for 30 s, HIGH for 90 s, LOW for 120 s."""
    return high if 30 <= t < 120 else low


def text_of(mb: float) -> bytes:
    source = corpus_text()
    want = int(mb * 1e6)
    return (source * (want // len(source) + 1))[:want].rsplit(b" ", 1)[0]


def live_run(low: float, high: float, log_dir: Path) -> tuple[list[dict], dict]:
    token = secrets.token_urlsafe(16)
    policy_file = log_dir / "policy.toml"
    policy_file.write_text(
        "".join(f"{k} = {json.dumps(v)}\n" for k, v in asdict(POLICY).items())
    )  # TOML, as operators write it
    s = config.Settings(
        tokens=token,
        autoscale_interval=INTERVAL,
        ingest_port=free_port(),
        aggregator_port=free_port(),
        autoscaler_port=free_port(),
    )
    stack = Stack(s, log_dir, policy=str(policy_file)).start()
    try:
        client = Client(stack.urls["ingest"], stack.urls["results"], token=token)
        status_url = stack.urls["autoscaler"]
        auth = {"Authorization": f"Bearer {token}"}
        texts = {mb: text_of(mb / UPLOADS) for mb in {low, high}}
        sent: dict[int, int] = {}  # second -> chunks uploaded in it (the arrivals)
        started, started_at = time.monotonic(), time.time()

        def upload() -> None:
            for i in range(DURATION * UPLOADS):
                t = i // UPLOADS
                receipt = client.ingest(texts[load(t, low, high)], name=f"upload-{i}")
                sent[t] = sent.get(t, 0) + receipt["chunks"]
                time.sleep(max(0.0, started + (i + 1) / UPLOADS - time.monotonic()))

        uploader = threading.Thread(target=upload)
        uploader.start()
        rows = []
        while uploader.is_alive():
            t = time.monotonic() - started
            status = requests.get(status_url, headers=auth, timeout=5).json()
            m = status["metrics"] or {}
            rows.append(
                {
                    "second": round(t, 1),
                    "load_mb_s": load(int(t), low, high),
                    "lag": m.get("lag"),
                    "arrival_rate": m.get("arrival_rate"),
                    "worker_rate": m.get("worker_rate"),
                    "workers": sum(w["state"] == "running" for w in status["workers"]),
                    "desired": (status["last_decision"] or {}).get("to"),
                }
            )
            stack.supervise()
            time.sleep(max(0.0, started + t + 1 - time.monotonic()))
        uploader.join()
        actions = status["actions"]
        client.wait_counted(600)
        return rows, {"sent": [sent.get(t, 0) for t in range(DURATION)], "actions": actions, "started_at": started_at}
    finally:
        stack.stop()


def summary(timeline: list[tuple[float, float, float, int]], actions: int) -> dict:
    lags = [lag for _, _, lag, _ in timeline]
    step = timeline[1][0] - timeline[0][0] if len(timeline) > 1 else 1.0
    return {
        "actions": actions,
        "max_lag": max(lags),
        "peak_workers": max(w for *_, w in timeline),
        "worker_seconds": sum(w for *_, w in timeline) * step,
        "lag_seconds": sum(lags) * step,
    }  # the integral: how much waiting the policy left


def replay(rows: list[dict], run: dict) -> tuple[Result, Result, WorkerModel]:
    rates = [r["worker_rate"] for r in rows if r["worker_rate"]]
    model = WorkerModel(rate=statistics.median(rates), startup_seconds=STARTUP_SECONDS, rebalance_seconds=2.0)
    arrivals = run["sent"]
    sc = Scenario(
        "live",
        DURATION,
        lambda t: float(arrivals[t]) if t < len(arrivals) else 0.0,
        partitions=config.Settings().topics.chunk_partitions,
    )
    # The live monitor's rate window, so the replay sees the arrival trend the controller saw.
    ours = simulate(POLICY, sc, model, interval=INTERVAL, rate_window=int(RATE_WINDOW), name="wordpipe (simulated)")
    keda = KedaStyle(
        lag_threshold=10 * model.rate, scale_down_stabilization=POLICY.stabilization_seconds, sync_period=INTERVAL
    )
    theirs = simulate(
        POLICY,
        sc,
        model,
        interval=INTERVAL,
        rate_window=int(RATE_WINDOW),
        decide_fn=keda.decide,
        name="keda-style (simulated)",
    )
    return ours, theirs, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--low", type=float, default=2.0, help="MB/s before and after the step")
    ap.add_argument("--high", type=float, default=14.0, help="MB/s during the step")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wordpipe-live-") as tmp:
        rows, run = live_run(args.low, args.high, Path(tmp))
    ours, theirs, model = replay(rows, run)
    live = Result(
        "live step",
        "wordpipe (live)",
        [],
        [
            (r["second"], float(run["sent"][min(int(r["second"]), DURATION - 1)]), r["lag"] or 0.0, r["workers"])
            for r in rows
        ],
        ours.expected_workers,
        POLICY.catch_up_seconds,
    )
    report = {
        "run": machine(),
        "policy": asdict(POLICY),
        "interval": INTERVAL,
        "started_at": run["started_at"],
        "load": {"low_mb_s": args.low, "high_mb_s": args.high, "duration": DURATION},
        "model": {"worker_rate": model.rate, "startup_seconds": model.startup_seconds},
        "live": summary(live.timeline, len(run["actions"])) | {"decisions": run["actions"], "arrivals": run["sent"]},
        "simulated": {r.policy: summary(r.timeline, len(r.actions)) for r in (ours, theirs)},
    }
    with open(args.out / "autoscale-live.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "autoscale-live.json").write_text(json.dumps(report, indent=1))
    plot([live, ours, theirs], args.out / "autoscale-live.png")
    print(
        json.dumps(
            {
                "model": report["model"],
                "live": summary(live.timeline, len(run["actions"])),
                "simulated": report["simulated"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
