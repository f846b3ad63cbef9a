"""`wordpipe autoscale run | status | simulate`: the autoscaler, its status, and its simulator."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from pipeline import faults
from pipeline.cli import options


def add_parsers(sub: argparse._SubParsersAction) -> None:
    autoscale = sub.add_parser("autoscale", help="the autoscaler: run it, ask it how it is, or simulate a policy")
    group = autoscale.add_subparsers(dest="autoscale_command", required=True)

    run = group.add_parser("run", help="watch the workers' lag and scale them through the backend")
    options.cluster(run)
    run.add_argument(
        "--policy", metavar="FILE", help="policy TOML file, reloaded when it changes (default: the built-in policy)"
    )
    options.backend(run)
    run.add_argument("--port", type=int, help="status and metrics port (default 8082)")
    run.add_argument("--log-dir", help="where local workers' logs go (default $TMPDIR/wordpipe-workers/GROUP)")
    run.add_argument(
        "--stop-workers",
        action="store_true",
        help="stop the workers on exit (default: containers and tasks stay for the next autoscaler to adopt)",
    )
    run.set_defaults(func=cmd_autoscale_run)

    status = group.add_parser("status", help="lag, rates, workers, and the next decision and why")
    status.add_argument(
        "--url", help="the autoscaler's address (default $WORDPIPE_AUTOSCALER_URL, else http://127.0.0.1:8082)"
    )
    status.add_argument("--json", action="store_true", help="the whole status document")
    status.add_argument("--token", help=options.TOKEN_HELP)
    status.set_defaults(func=cmd_autoscale_status)

    sim = group.add_parser("simulate", help="run a policy against a model of workers under a load scenario")
    sim.add_argument("--policy", metavar="FILE", help="policy TOML file (default: the built-in policy)")
    sim.add_argument(
        "--scenario",
        required=True,
        metavar="NAME",
        help="step, ramp, spike, noisy, or a CSV trace (seconds,records_per_second)",
    )
    sim.add_argument(
        "--compare", choices=["keda"], help="also run a KEDA-style policy (ceil(lag / lagThreshold), HPA defaults)"
    )
    sim.add_argument("--plot", type=Path, metavar="PNG", help="plot arrival rate, lag and workers over time")
    sim.add_argument(
        "--json",
        action="store_true",
        help="print decisions, final_workers, expected_workers, reversals, drain_seconds, ...",
    )
    sim.add_argument(
        "--worker-rate", type=float, default=100.0, metavar="R", help="records/s of one worker (default 100)"
    )
    sim.add_argument(
        "--startup", type=float, default=5.0, metavar="S", help="seconds from launch to consuming (default 5)"
    )
    sim.add_argument(
        "--rebalance",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds every membership change pauses all workers (default 3)",
    )
    sim.add_argument("--partitions", type=options.positive, metavar="P", help="chunks partitions (default 12)")
    sim.add_argument("--seed", type=int, default=0, help="for the noisy scenario")
    sim.set_defaults(func=cmd_simulate)


def cmd_autoscale_run(args: argparse.Namespace) -> int:
    from pipeline.autoscaler.main import run

    faults.point("autoscaler.start")
    s = options.settings(args, autoscaler_port=args.port, **options.backend_choice(args))
    log_dir = Path(args.log_dir or Path(tempfile.gettempdir()) / "wordpipe-workers" / s.worker.group)
    run(s, args.policy, log_dir, stop_workers=args.stop_workers)
    return 0


def cmd_autoscale_status(args: argparse.Namespace) -> int:
    from pipeline.client import Client, RequestFailed

    client = Client(autoscaler_url=args.url, token=args.token)
    try:
        status = client.autoscaler_status()
    except RequestFailed as exc:
        hint = ": give the autoscaler's token (--token or $WORDPIPE_TOKEN)" if exc.status == 401 else ""
        raise RequestFailed(exc.status, exc.code, f"{client.autoscaler_url}: {exc.detail}{hint}") from None
    if args.json:
        print(json.dumps(status))
        return 0
    m = status["metrics"] or {}

    def rate(key: str) -> str:
        return "-" if m.get(key) is None else f"{m[key]:.1f}/s"

    print(f"lag        {m.get('lag')!s:>12} records (growing {rate('lag_growth')})")
    print(f"arrival    {rate('arrival_rate'):>12} (trend {rate('arrival_trend')})")
    print(f"processing {rate('processing_rate'):>12} (one busy worker: {rate('worker_rate')})")
    workers = status["workers"]
    print(
        f"workers    {sum(w['state'] == 'running' for w in workers):>12} running: {', '.join(w['id'] for w in workers) or '-'}"
    )
    nxt = status["next_decision"]
    if nxt:
        print(f"next       {nxt['action']} {nxt['from']} -> {nxt['to']} ({nxt['reason']}): {nxt['message']}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.autoscaler import policy_file
    from pipeline.autoscaler.policy import Policy
    from pipeline.autoscaler.simulate import (
        WorkerModel,
        compare,
        plot,
        scenario,
        simulate,
    )

    policy = policy_file.load(args.policy) if args.policy else Policy()
    sc = scenario(args.scenario, seed=args.seed)
    if args.partitions:
        sc = dataclasses.replace(sc, partitions=args.partitions)
    model = WorkerModel(args.worker_rate, args.startup, args.rebalance)
    results = list(compare(policy, sc, model)) if args.compare else [simulate(policy, sc, model)]
    if args.plot:
        plot(results, args.plot)
    ours = results[0].summary()
    if args.json:
        if args.compare:
            ours["compare"] = {r.policy: r.summary() for r in results[1:]}
        print(json.dumps(ours))
        return 0
    for d in ours["decisions"]:
        print(f"{d['at'] / 60:6.1f} min  {d['from']:>3} -> {d['to']:<3} {d['message']}")
    print(f"\n{'':<22}" + "".join(f"{r.policy:>14}" for r in results))
    summaries = [r.summary() for r in results]
    for key in ("final_workers", "expected_workers", "reversals", "drain_seconds", "max_lag", "worker_seconds"):
        cells = "".join(f"{'-' if s[key] is None else round(s[key]):>14}" for s in summaries)
        print(f"{key:<22}{cells}")
    print(f"{'actions':<22}" + "".join(f"{len(s['decisions']):>14}" for s in summaries))
    return 0
