"""The `wordpipe` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipeline import config
from pipeline.errors import UnavailableError, UsageError

log = logging.getLogger("wordpipe")
SERVICES = ("worker", "aggregator", "ingest-server", "up")  # and `autoscale run`


def _settings(args: argparse.Namespace, **overrides) -> config.Settings:
    return config.load(args.config, overrides={"bootstrap": args.bootstrap, **overrides})


def format_counts(counts: Counter[str], top: int | None, as_json: bool) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked if top is None else ranked[:top]
    if as_json:
        body = {"total_words": sum(counts.values()), "distinct_words": len(counts), "counts": dict(shown)}
        return json.dumps(body, ensure_ascii=False)
    from wcwidth import wcswidth  # a terminal shows Chinese in two columns a character

    widths = [max(wcswidth(w), 0) for w, _ in shown]
    width = max(widths + [4])
    lines = [f"{'rank':>4}  {'word':<{width}}  {'count':>10}"]
    lines += [
        f"{i:>4}  {w}{' ' * (width - ww)}  {n:>10}"
        for i, ((w, n), ww) in enumerate(zip(shown, widths, strict=False), 1)
    ]
    lines.append(f"{sum(counts.values())} words, {len(counts)} distinct")
    return "\n".join(lines)


def _path(path: str | None) -> str | None:
    """A path flag made absolute: services and workers may run elsewhere."""
    return os.path.abspath(path) if path else None


def _top(args: argparse.Namespace) -> int | None:
    """--top K; without it, every word with --json and the top 20 in a table."""
    return args.top if args.top is not None or args.json else 20


def cmd_reference(args: argparse.Namespace) -> int:
    from pipeline.ingest.sources import resolve
    from pipeline.reference import count_sources
    from pipeline.tokenize import Tokenizer

    settings = config.load(args.config, overrides={"tokenizer_user_dict": _path(args.tokenizer_user_dict)})
    started = time.monotonic()
    counts = count_sources(resolve(args.paths), Tokenizer.load(settings.tokenizer_user_dict))
    log.info("reference counted in %.3f s", time.monotonic() - started)
    print(format_counts(counts, _top(args), args.json))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.ingest.sources import resolve
    from pipeline.run import Pipeline

    # Flags not given are None: the file and env decide.
    settings = _settings(
        args,
        workers=args.workers,
        chunk_size=args.chunk_size,
        backend=args.backend,
        image=args.image,
        mesos_master=args.mesos_master,
        tokenizer_user_dict=_path(args.tokenizer_user_dict),
    )
    sources = resolve(args.paths)  # bad paths fail before anything starts
    known = [size for s in sources if (size := s.size()) is not None]
    total = sum(known) if len(known) == len(sources) else None
    with Pipeline(settings) as pipeline:
        started = time.monotonic()
        with tqdm(total=total, unit="B", unit_scale=True, desc="ingest", disable=args.quiet or None) as bar:
            report = pipeline.ingest(sources, on_bytes=bar.update)
        with tqdm(total=report.chunks, unit="chunk", desc="count", disable=args.quiet or None) as bar:

            def on_counted(n: int) -> None:
                bar.update(n - bar.n)

            pipeline.wait_counted(report, timeout=args.timeout, on_counted=on_counted)
        pipeline.check_nothing_refused()
        counts = Counter(pipeline.totals())
        if args.stats_file:
            stats = {
                "bytes": report.bytes,
                "chunks": report.chunks,
                "documents": report.documents,
                "workers": settings.workers,
                "wall_seconds": time.monotonic() - started,
                "steady_seconds": pipeline.counted_at - report.first_produced_at
                if pipeline.counted_at and report.first_produced_at
                else 0.0,
                "restarts": pipeline.restarts,
                "resources": pipeline.resources(),
            }
            with open(args.stats_file, "w") as f:
                json.dump(stats, f)
    print(format_counts(counts, _top(args), args.json))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import main

    return main(_settings(args))


def cmd_health(args: argparse.Namespace) -> int:
    from pipeline.health import check

    problem = check(_settings(args).health_file, args.max_age)
    if problem:
        print(f"wordpipe: unhealthy: {problem}", file=sys.stderr)
        return 1
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


def cmd_autoscale_run(args: argparse.Namespace) -> int:
    import threading

    from pipeline.autoscaler import policy_file
    from pipeline.autoscaler.api import serve_status
    from pipeline.autoscaler.controller import Controller
    from pipeline.autoscaler.monitor import LagMonitor
    from pipeline.autoscaler.policy import Policy
    from pipeline.cluster import Resources, open_backend
    from pipeline.health import Heartbeat
    from pipeline.web import tokens_of
    from pipeline.webserver import ServerLimits

    s = _settings(
        args, backend=args.backend, autoscaler_port=args.port, image=args.image, mesos_master=args.mesos_master
    )
    tokens_of(s)  # no token configured and auth on: refuse before launching anything
    if not s.bootstrap:
        raise config.ConfigError(
            "bootstrap: the autoscaler watches an existing cluster; give --bootstrap or $WORDPIPE_BOOTSTRAP"
        )
    watched = policy_file.PolicyFile(args.policy) if args.policy else None
    current = watched.current if watched else Policy
    log_dir = Path(args.log_dir or Path(tempfile.gettempdir()) / "wordpipe-workers" / s.worker_group)
    log_dir.mkdir(parents=True, exist_ok=True)
    backend = open_backend(s, s.to_env(), s.worker_group, log_dir)
    monitor = LagMonitor(s.bootstrap, s, offset_reset=current().offset_reset)
    controller = Controller(
        backend,
        monitor,
        current,
        Resources(s.worker_cpus, s.worker_mem_mb),
        interval=s.autoscale_interval,
        heartbeat=Heartbeat(s.health_file),
    )
    server = serve_status(
        controller, s.autoscaler_host, s.autoscaler_port, tokens=tokens_of(s), limits=ServerLimits(s.http_idle_seconds)
    )
    print(f"wordpipe autoscaler: status on http://{s.autoscaler_host}:{s.autoscaler_port}/v1/status", file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        controller.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        monitor.close()
        if args.stop_workers:
            backend.kill([w.id for w in backend.list()], grace=controller.grace)
        backend.close()  # local workers stop with us; containers and tasks stay, for the next controller to adopt
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline import kafka

    s = _settings(args)
    if not s.bootstrap:
        raise config.ConfigError(
            "bootstrap: topics are created on an existing cluster; give --bootstrap or $WORDPIPE_BOOTSTRAP"
        )
    try:
        kafka.ensure_topics(s.bootstrap, s)
    except ValueError as exc:  # an existing topic with other partition counts
        raise config.ConfigError(str(exc)) from None
    print(
        f"topics ready on {s.bootstrap}: {s.chunks_topic}, {s.partials_topic}, {s.totals_topic}, "
        f"{s.deadletter_topic}, {s.status_topic}, {s.documents_topic}"
    )
    return 0


def cmd_autoscale_status(args: argparse.Namespace) -> int:
    from pipeline.client import Client, RequestFailed

    try:
        status = Client(token=args.token).autoscaler_status(args.url)
    except RequestFailed as exc:
        hint = ": give the autoscaler's token (--token or $WORDPIPE_TOKEN)" if exc.status == 401 else ""
        raise RequestFailed(exc.status, exc.code, f"{args.url}: {exc.detail}{hint}") from None
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


def cmd_ingest_server(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.ingest.service import run

    s = _settings(args, ingest_port=args.port)
    if not s.bootstrap:
        raise config.ConfigError(
            "bootstrap: the ingest service needs a bootstrap address (--bootstrap or $WORDPIPE_BOOTSTRAP)"
        )
    print(f"wordpipe ingest: listening on http://{s.ingest_host}:{s.ingest_port}", file=sys.stderr)
    try:
        asyncio.run(run(s, s.bootstrap))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    import secrets

    from pipeline.client import token_file
    from pipeline.stack import Stack

    s = _settings(
        args,
        backend=args.backend,
        image=args.image,
        mesos_master=args.mesos_master,
        ingest_port=args.ingest_port,
        aggregator_port=args.results_port,
        autoscaler_port=args.autoscaler_port,
        tokenizer_user_dict=_path(args.tokenizer_user_dict),
    )
    generated = None
    if s.auth == "token" and not s.token_list:  # a token for this stack, where clients on this machine find it
        generated = secrets.token_urlsafe(24)
        s = s.replace(tokens=generated)
        _save_token(token_file(), generated)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="wordpipe-up-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(s, log_dir, policy=args.policy)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        stack.start()
        urls = stack.urls
        print(f"wordpipe is up ({'embedded broker' if s.embedded else s.bootstrap}, {s.backend} workers):")
        for name in ("ingest", "results", "dashboard", "autoscaler"):
            print(f"  {name:<11}{urls[name]}")
        if generated:
            print(f"  token      {generated}  (saved to {token_file()}; the wordpipe CLI reads it there)")
        print(f"  logs       {log_dir}\nCtrl-C stops it.", flush=True)
        while not stop:
            stack.supervise()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("wordpipe: stopping", file=sys.stderr, flush=True)
        stack.stop()
    return 0


def _save_token(path: Path, token: str) -> None:
    """Write the token readable by its owner alone, whatever mode a file already there had:
    a fresh file (0600 from its creation) replaces the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".token-")  # created 0600
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(temporary, path)


def _client(args: argparse.Namespace):
    from pipeline.client import Client

    return Client(
        ingest_url=getattr(args, "url", None) or "http://127.0.0.1:8080",
        results_url=getattr(args, "results_url", None) or "http://127.0.0.1:8081",
        token=args.token,
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.ingest.sources import resolve

    sources = resolve(args.paths)
    if any(src.path is None for src in sources):
        raise config.ConfigError("paths: '-' (standard input) cannot be retried safely; save it to a file first")
    client = _client(args)
    total = sum(src.size() or 0 for src in sources)
    results = []
    with tqdm(total=total, unit="B", unit_scale=True, desc="upload", disable=args.quiet or None) as bar:
        for src in sources:
            start = bar.n

            def on_bytes(n: int) -> None:
                bar.update(n)

            receipt = client.ingest(src.path, name=src.name, on_bytes=on_bytes)
            bar.update(start + src.size() - bar.n)  # a retry sent some bytes twice
            results.append({"path": src.name, **receipt})
    for r in results:
        print(
            json.dumps(r)
            if args.json
            else f"{r['path']}: document {r['document']}, {r['bytes']} bytes, {r['chunks']} chunks"
        )
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    body = _client(args).top(args.k)
    if args.json:
        print(json.dumps(body, ensure_ascii=False))
        return 0
    counts = Counter(body["counts"])
    lines = format_counts(counts, args.k, False).splitlines()[:-1]
    print("\n".join(lines + [f"{body['total_words']} words, {body['distinct_words']} distinct"]))
    return 0


def cmd_count(args: argparse.Namespace) -> int:
    print(_client(args).count(args.word))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    status = client.wait_counted(timeout=args.wait) if args.wait else client.status()
    if args.json:
        print(json.dumps(status))
        return 0
    print(
        f"documents  {status['documents_counted']} counted of {status['documents_ingested']} ingested "
        f"({status['documents_aborted']} aborted, {status['documents_open']} open)"
    )
    print(f"chunks     {status['chunks_counted']} counted of {status['chunks_ingested']} ingested")
    print(
        f"shards     {len(status['shards']['owned'])} of {status['shards']['total']} owned"
        + ("" if status["complete"] else " (rebalancing or recovering)")
    )
    return 0


def cmd_aggregator(args: argparse.Namespace) -> int:
    from pipeline.aggregator.app import main

    return main(_settings(args, aggregator_port=args.port))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wordpipe", description="Message-driven word counting on Kafka.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--bootstrap", help="Kafka bootstrap servers; omit to start an embedded broker ($WORDPIPE_BOOTSTRAP)"
        )
        sp.add_argument("--config", help="TOML settings file ($WORDPIPE_CONFIG)")

    def counting(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("paths", nargs="+", metavar="PATH", help="files, directories (recursively) or '-' for stdin")
        sp.add_argument(
            "--top",
            type=_positive,
            metavar="K",
            help="only the K most frequent words (default: all with --json, 20 otherwise)",
        )
        sp.add_argument("--json", action="store_true", help='print {"total_words", "distinct_words", "counts"}')
        sp.add_argument(
            "--tokenizer-user-dict",
            metavar="PATH",
            help="extra Chinese words for the segmenter, in jieba's user dictionary format",
        )

    run = sub.add_parser("run", help="count files with the whole pipeline (embedded broker unless --bootstrap)")
    counting(run)
    common(run)
    run.add_argument("--workers", type=_positive, metavar="N", help="worker processes (default 2)")
    run.add_argument("--chunk-size", type=_positive, metavar="BYTES", help="chunk size in bytes (default 65536)")
    run.add_argument(
        "--backend",
        choices=config.BACKENDS,
        help="where workers run: local processes (default), docker containers, or mesos tasks",
    )
    run.add_argument("--image", help="the workers' image for --backend docker or mesos (default wordpipe:latest)")
    run.add_argument(
        "--mesos-master",
        help="the Mesos master(s) for --backend mesos, comma-separated (default http://127.0.0.1:5050)",
    )
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="give up if counting takes longer")
    run.add_argument("--stats-file", metavar="PATH", help="write timing figures as JSON (for benchmarks)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    ref = sub.add_parser("reference", help="count files in one process with the same tokenizer (the baseline)")
    counting(ref)
    ref.add_argument("--config", help="TOML settings file ($WORDPIPE_CONFIG)")
    ref.set_defaults(func=cmd_reference)

    worker = sub.add_parser("worker", help="run one worker process (same as python -m workers)")
    common(worker)
    worker.set_defaults(func=cmd_worker)

    agg = sub.add_parser("aggregator", help="run the aggregator (faust app)")
    common(agg)
    agg.add_argument("--port", type=int, help="HTTP port (default 8081)")
    agg.set_defaults(func=cmd_aggregator)

    autoscale = sub.add_parser("autoscale", help="the autoscaler: run it, ask it how it is, or simulate a policy")
    autoscale_sub = autoscale.add_subparsers(dest="autoscale_command", required=True)
    sim = autoscale_sub.add_parser("simulate", help="run a policy against a model of workers under a load scenario")
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
    sim.add_argument("--partitions", type=_positive, metavar="P", help="chunks partitions (default 12)")
    sim.add_argument("--seed", type=int, default=0, help="for the noisy scenario")
    sim.set_defaults(func=cmd_simulate)
    arun = autoscale_sub.add_parser("run", help="watch the workers' lag and scale them through the backend")
    common(arun)
    arun.add_argument(
        "--policy", metavar="FILE", help="policy TOML file, reloaded when it changes (default: the built-in policy)"
    )
    arun.add_argument("--backend", choices=config.BACKENDS, help="where workers run (default local)")
    arun.add_argument("--image", help="the workers' image for --backend docker or mesos (default wordpipe:latest)")
    arun.add_argument("--mesos-master", help="the Mesos master(s) for --backend mesos, comma-separated")
    arun.add_argument("--port", type=int, help="status and metrics port (default 8082)")
    arun.add_argument("--log-dir", help="where local workers' logs go (default $TMPDIR/wordpipe-workers/GROUP)")
    arun.add_argument(
        "--stop-workers",
        action="store_true",
        help="stop the workers on exit (default: containers and tasks stay for the next autoscaler to adopt)",
    )
    arun.set_defaults(func=cmd_autoscale_run)
    astatus = autoscale_sub.add_parser("status", help="lag, rates, workers, and the next decision and why")
    astatus.add_argument("--url", default="http://127.0.0.1:8082", help="the autoscaler's status address")
    astatus.add_argument("--json", action="store_true", help="the whole status document")
    astatus.add_argument("--token", help="bearer token (default: $WORDPIPE_TOKEN, or the one `wordpipe up` saved)")
    astatus.set_defaults(func=cmd_autoscale_status)

    up = sub.add_parser(
        "up", help="run the long-running stack: broker, aggregator, ingest and autoscaler, until Ctrl-C"
    )
    common(up)
    up.add_argument("--backend", choices=config.BACKENDS, help="where workers run (default local)")
    up.add_argument("--image", help="the workers' image for --backend docker or mesos (default wordpipe:latest)")
    up.add_argument("--mesos-master", help="the Mesos master(s) for --backend mesos, comma-separated")
    up.add_argument("--policy", metavar="FILE", help="the autoscaler's policy TOML file")
    up.add_argument(
        "--tokenizer-user-dict",
        metavar="PATH",
        help="extra Chinese words for the segmenter, in jieba's user dictionary format",
    )
    up.add_argument("--ingest-port", type=int, help="ingest API port (default 8080)")
    up.add_argument("--results-port", type=int, help="results API and dashboard port (default 8081)")
    up.add_argument("--autoscaler-port", type=int, help="autoscaler status port (default 8082)")
    up.add_argument("--log-dir", help="where the services' logs go (default: a new temporary directory)")
    up.set_defaults(func=cmd_up)

    iserver = sub.add_parser("ingest-server", help="run the ingest HTTP service")
    common(iserver)
    iserver.add_argument("--port", type=int, help="HTTP port (default 8080)")
    iserver.set_defaults(func=cmd_ingest_server)

    def client(sp: argparse.ArgumentParser, ingest: bool = False) -> None:
        if ingest:
            sp.add_argument("--url", help="the ingest service (default http://127.0.0.1:8080)")
        else:
            sp.add_argument("--url", dest="results_url", help="the results API (default http://127.0.0.1:8081)")
        sp.add_argument("--token", help="bearer token (default: $WORDPIPE_TOKEN, or the one `wordpipe up` saved)")

    ingest = sub.add_parser("ingest", help="upload files to the ingest service, each one document, retried safely")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (recursively)")
    client(ingest, ingest=True)
    ingest.add_argument("--json", action="store_true", help="one JSON object per document")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest)

    top = sub.add_parser("top", help="the K most frequent words so far")
    top.add_argument("k", type=_positive, metavar="K")
    client(top)
    top.add_argument(
        "--json", action="store_true", help='print {"total_words", "distinct_words", "counts"} like `run --json`'
    )
    top.set_defaults(func=cmd_top)

    count = sub.add_parser("count", help="one word's total so far")
    count.add_argument("word")
    client(count)
    count.set_defaults(func=cmd_count)

    status = sub.add_parser("status", help="documents and chunks ingested and counted")
    client(status)
    status.add_argument("--json", action="store_true", help="the whole status document")
    status.add_argument("--wait", type=float, metavar="SECONDS", help="first wait until everything ingested is counted")
    status.set_defaults(func=cmd_status)

    topics = sub.add_parser(
        "topics", help="create the pipeline's topics on a cluster where missing (a deployment's first step)"
    )
    common(topics)
    topics.set_defaults(func=cmd_topics)

    health = sub.add_parser("health", help="exit 0 if this container's service is alive (the image's HEALTHCHECK)")
    health.add_argument("--config", help="TOML settings file ($WORDPIPE_CONFIG)")
    health.add_argument("--bootstrap", help=argparse.SUPPRESS)
    health.add_argument(
        "--max-age",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="the longest a service may go without a heartbeat",
    )
    health.set_defaults(func=cmd_health)
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the pipeline's cleanup


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in SERVICES or getattr(args, "autoscale_command", None) == "run":  # long-running: timestamped logs
        logging.basicConfig(
            level=logging.INFO, format=f"%(asctime)s {args.command}[%(process)d] %(levelname)s %(name)s: %(message)s"
        )
    else:
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING, format="wordpipe: %(levelname)s %(message)s"
        )
    if not args.verbose and args.command not in SERVICES:
        logging.getLogger("wordpipe.librdkafka").setLevel(logging.CRITICAL)  # our own errors say it better
    signal.signal(signal.SIGTERM, _terminate)
    # A shell starting us in the background hands its children SIGINT ignored: Ctrl-C and
    # `kill -INT` must stop us however we were started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return args.func(args)
    except (UsageError, UnavailableError) as exc:  # the tree in pipeline/errors.py
        print(f"wordpipe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wordpipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
