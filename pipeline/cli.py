"""The `wordpipe` command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections import Counter
from typing import Sequence

from pipeline import config

log = logging.getLogger("wordpipe")
SERVICES = ("worker", "aggregator")


def _settings(args: argparse.Namespace, **overrides) -> config.Settings:
    return config.load(args.config, overrides={"bootstrap": args.bootstrap, **overrides})


def format_counts(counts: Counter[str], top: int | None, as_json: bool) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked if top is None else ranked[:top]
    if as_json:
        body = {"total_words": sum(counts.values()), "distinct_words": len(counts), "counts": dict(shown)}
        return json.dumps(body, ensure_ascii=False)
    width = max([len(w) for w, _ in shown] + [4])
    lines = [f"{'rank':>4}  {'word':<{width}}  {'count':>10}"]
    lines += [f"{i:>4}  {w:<{width}}  {n:>10}" for i, (w, n) in enumerate(shown, 1)]
    lines.append(f"{sum(counts.values())} words, {len(counts)} distinct")
    return "\n".join(lines)


def _top(args: argparse.Namespace) -> int | None:
    """--top K; without it, every word with --json and the top 20 in a table."""
    return args.top if args.top is not None or args.json else 20


def cmd_reference(args: argparse.Namespace) -> int:
    from pipeline.ingest.sources import resolve
    from pipeline.reference import count_sources

    started = time.monotonic()
    counts = count_sources(resolve(args.paths))
    log.info("reference counted in %.3f s", time.monotonic() - started)
    print(format_counts(counts, _top(args), args.json))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.ingest.sources import resolve
    from pipeline.run import Pipeline

    overrides = {"workers": args.workers, "chunk_size": args.chunk_size, "backend": args.backend, "image": args.image}
    settings = _settings(args, **{k: v for k, v in overrides.items() if v is not None})
    sources = resolve(args.paths)  # bad paths fail before anything starts
    known = [s.size() for s in sources]
    total = None if None in known else sum(known)
    with Pipeline(settings) as pipeline:
        started = time.monotonic()
        with tqdm(total=total, unit="B", unit_scale=True, desc="ingest", disable=args.quiet or None) as bar:
            report = pipeline.ingest(sources, on_bytes=bar.update)
        with tqdm(total=report.chunks, unit="chunk", desc="count", disable=args.quiet or None) as bar:
            def on_counted(n: int) -> None:
                bar.update(n - bar.n)

            pipeline.wait_counted(report, timeout=args.timeout, on_counted=on_counted)
        counts = Counter(pipeline.totals())
        if args.stats_file:
            stats = {
                "bytes": report.bytes,
                "chunks": report.chunks,
                "documents": report.documents,
                "workers": settings.workers,
                "wall_seconds": time.monotonic() - started,
                "steady_seconds": pipeline.counted_at - report.first_produced_at if report.first_produced_at else 0.0,
                "restarts": pipeline.restarts,
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


def cmd_aggregator(args: argparse.Namespace) -> int:
    from pipeline.aggregator.app import main

    return main(_settings(args, aggregator_port=args.port))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wordpipe", description="Message-driven word counting on Kafka.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--bootstrap", help="Kafka bootstrap servers; omit to start an embedded broker ($WORDPIPE_BOOTSTRAP)")
        sp.add_argument("--config", help="TOML settings file ($WORDPIPE_CONFIG)")

    def counting(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("paths", nargs="+", metavar="PATH", help="files, directories (recursively) or '-' for stdin")
        sp.add_argument("--top", type=_positive, metavar="K", help="only the K most frequent words (default: all with --json, 20 otherwise)")
        sp.add_argument("--json", action="store_true", help='print {"total_words", "distinct_words", "counts"}')

    run = sub.add_parser("run", help="count files with the whole pipeline (embedded broker unless --bootstrap)")
    counting(run)
    common(run)
    run.add_argument("--workers", type=_positive, metavar="N", help="worker processes (default 2)")
    run.add_argument("--chunk-size", type=_positive, metavar="BYTES", help="chunk size in bytes (default 65536)")
    run.add_argument("--backend", choices=config.BACKENDS, help="where workers run: local processes (default) or docker containers")
    run.add_argument("--image", help="the workers' image for --backend docker (default wordpipe:latest)")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="give up if counting takes longer")
    run.add_argument("--stats-file", metavar="PATH", help="write timing figures as JSON (for benchmarks)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    ref = sub.add_parser("reference", help="count files in one process with the same tokenizer (the baseline)")
    counting(ref)
    ref.set_defaults(func=cmd_reference)

    worker = sub.add_parser("worker", help="run one worker process (same as python -m workers)")
    common(worker)
    worker.set_defaults(func=cmd_worker)

    agg = sub.add_parser("aggregator", help="run the aggregator (faust app)")
    common(agg)
    agg.add_argument("--port", type=int, help="HTTP port (default 8081)")
    agg.set_defaults(func=cmd_aggregator)

    health = sub.add_parser("health", help="exit 0 if this container's service is alive (the image's HEALTHCHECK)")
    health.add_argument("--config", help="TOML settings file ($WORDPIPE_CONFIG)")
    health.add_argument("--bootstrap", help=argparse.SUPPRESS)
    health.add_argument("--max-age", type=float, default=30.0, metavar="SECONDS", help="the longest a service may go without a heartbeat")
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
    from pipeline.broker import BrokerError
    from pipeline.ingest.sources import SourceError
    from pipeline.kafka import KafkaUnavailable
    from pipeline.run import RunError

    args = parser().parse_args(argv)
    if args.command in SERVICES:  # long-running: a timestamped log of what they do
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.command}[%(process)d] %(levelname)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="wordpipe: %(levelname)s %(message)s")
    if not args.verbose and args.command not in SERVICES:
        logging.getLogger("wordpipe.librdkafka").setLevel(logging.CRITICAL)  # our own errors say it better
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except (config.ConfigError, SourceError) as exc:
        print(f"wordpipe: error: {exc}", file=sys.stderr)
        return 2
    except (KafkaUnavailable, BrokerError, RunError) as exc:
        print(f"wordpipe: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wordpipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
