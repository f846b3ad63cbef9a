"""The processes of a deployment: `up` (the whole stack), `ingest-server`, `aggregator`,
`worker`, and `topics` and `health`, which a deployment's scripts and images call."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pipeline import config, faults
from pipeline.cli import options


def add_parsers(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up", help="run the long-running stack: broker, aggregator, ingest and autoscaler, until Ctrl-C"
    )
    options.cluster(up)
    options.backend(up)
    options.source(up, "count its records as they arrive (on the embedded broker it is created, for producers)")
    up.add_argument("--policy", metavar="FILE", help="the autoscaler's policy TOML file")
    up.add_argument("--tokenizer-user-dict", metavar="PATH", help=options.USER_DICT_HELP)
    up.add_argument("--ingest-port", type=int, help="ingest API port (default 8080)")
    up.add_argument("--results-port", type=int, help="results API and dashboard port (default 8081)")
    options.aggregators(up)
    up.add_argument("--autoscaler-port", type=int, help="autoscaler status port (default 8082)")
    up.add_argument("--log-dir", help="where the services' logs go (default: a new temporary directory)")
    up.add_argument(
        "--state-dir",
        help="keep the embedded broker's topics and offsets here: restored at start, saved on stop and every 5 min",
    )
    up.set_defaults(func=cmd_up)

    iserver = sub.add_parser("ingest-server", help="run the ingest HTTP service")
    options.cluster(iserver)
    iserver.add_argument("--port", type=int, help="HTTP port (default 8080)")
    iserver.set_defaults(func=cmd_ingest_server)

    agg = sub.add_parser("aggregator", help="run the aggregator (faust app)")
    options.cluster(agg)
    agg.add_argument("--port", type=int, help="HTTP port (default 8081)")
    agg.set_defaults(func=cmd_aggregator)

    worker = sub.add_parser("worker", help="run one worker process (same as python -m pipeline.worker)")
    options.cluster(worker)
    worker.set_defaults(func=cmd_worker)

    topics = sub.add_parser(
        "topics", help="create the pipeline's topics on a cluster where missing (a deployment's first step)"
    )
    options.cluster(topics)
    topics.set_defaults(func=cmd_topics)

    health = sub.add_parser("health", help="exit 0 if this container's service is alive (the image's HEALTHCHECK)")
    health.add_argument("--config", help=options.CONFIG_HELP)
    health.add_argument("--bootstrap", help=argparse.SUPPRESS)
    health.add_argument(
        "--max-age",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="the longest a service may go without a heartbeat",
    )
    health.set_defaults(func=cmd_health)


EMBEDDED_KEEPS_NOTHING = (
    "  note       the embedded broker keeps everything in memory: totals, receipts and idempotency keys "
    "are gone once the stack stops; to keep them, give --state-dir DIR, or run against a Kafka cluster (--bootstrap)"
)


def cmd_up(args: argparse.Namespace) -> int:
    import secrets
    import signal

    from pipeline.client import save_token, token_file
    from pipeline.stack import Stack

    s = options.settings(
        args,
        **options.backend_choice(args),
        **options.source_choice(args),
        state_dir=options.path(args.state_dir),
        ingest_port=args.ingest_port,
        aggregator_port=args.results_port,
        aggregators=args.aggregators,
        autoscaler_port=args.autoscaler_port,
        tokenizer_user_dict=options.path(args.tokenizer_user_dict),
    )
    _check_ports(s)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="wordpipe-up-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(s, log_dir, policy=args.policy)
    stack.claim()  # a state directory another stack holds is refused before its token is touched
    generated, saved_to = None, None
    if s.service.token_missing:  # a token for this stack, in a file of its own: other stacks keep theirs
        generated = secrets.token_urlsafe(24)
        stack.settings = stack.settings.replace(tokens=generated)
        saved_to = token_file(s.ingest.port, s.kafka.state_dir)
        save_token(generated, saved_to)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        stack.start()
        urls = stack.urls
        print(
            f"wordpipe is up ({'embedded broker' if s.kafka.embedded else s.kafka.bootstrap}, {s.cluster.backend} workers):"
        )
        for name in ("ingest", "results", "dashboard", "autoscaler"):
            print(f"  {name:<11}{urls[name]}")
        for name, url in stack.other_results.items():  # each answers for all, as `results` does
            print(f"  {'results':<11}{url} ({name})")
        bootstrap = stack.connection.bootstrap if stack.connection else ""
        for source in s.topics.source_list:
            print(f"  source     {source.spec} (topic {source.topic} at {bootstrap})")
        if generated:
            print(f"  token      {generated}  (saved to {saved_to})")
        print(f"  logs       {log_dir}")
        if stack.directory is not None:
            print(f"  state      {stack.directory.path} ({stack.state_line()}; every upload is durable before its 202)")
        elif s.kafka.embedded:
            print(EMBEDDED_KEEPS_NOTHING)
        print("  the wordpipe CLI (ingest, top, count, status...) finds this stack in another shell with:")
        print("\n".join(f"    {line}" for line in _exports(urls, saved_to)))
        print("Ctrl-C stops it.", flush=True)
        while not stop:
            stack.supervise()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("wordpipe: stopping", file=sys.stderr, flush=True)
        stack.stop()
    return 0


def _check_ports(s: config.Settings) -> None:
    """Before anything starts or is written: a port in use is one line naming it, not a
    banner and then a crash loop of the service that needed it."""
    from pipeline.web.server import check_listen

    listens = {
        "ingest": (s.ingest.host, s.ingest.port),
        "results": (s.aggregator.host, s.aggregator.port),
        "autoscaler": (s.autoscaler.host, s.autoscaler.port),
    }
    for name, (host, port) in listens.items():
        check_listen(f"the {name} API (--{name}-port)", host, port)


def _exports(urls: dict[str, str], token_path: Path | None) -> list[str]:
    """What points the wordpipe CLI at this stack (pipeline.client reads it), not at the
    default one or at another stack on this machine."""
    import shlex

    from pipeline import client

    values = {
        client.INGEST_URL_VARIABLE: urls["ingest"],
        client.RESULTS_URL_VARIABLE: urls["results"],
        client.AUTOSCALER_URL_VARIABLE: urls["autoscaler"].removesuffix("/v1/status"),
    }
    if token_path is not None:
        values[client.TOKEN_FILE_VARIABLE] = str(token_path)
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def cmd_ingest_server(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.ingest.api import run

    faults.point("ingest.start")
    s = options.settings(args, ingest_port=args.port)
    connection = config.Connection.to(s.kafka, why="the ingest service needs a bootstrap address")
    print(f"wordpipe ingest: listening on http://{s.ingest.host}:{s.ingest.port}", file=sys.stderr)
    if asyncio.run(_until_signalled(run(connection, s))) == signal.SIGTERM:
        raise SystemExit(128 + signal.SIGTERM)
    return 0


async def _until_signalled(serving: Coroutine[Any, Any, None]) -> int:
    """Serve until SIGTERM or SIGINT, which the event loop takes between callbacks; returns
    the signal. Raised from a plain signal handler, SystemExit could land inside aiohttp's
    request parser, which took it for a broken request body and served on: a SIGTERM during
    an upload went unheard."""
    import asyncio
    import contextlib

    task = asyncio.ensure_future(serving)
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop, signum)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return received[0] if received else 0


def cmd_aggregator(args: argparse.Namespace) -> int:
    from pipeline.aggregator.app import main

    faults.point("aggregator.start")
    return main(options.settings(args, aggregator_port=args.port))


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.worker.worker import main

    faults.point("worker.start")
    return main(options.settings(args))


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline import kafka

    s = options.settings(args)
    connection = config.Connection.to(s.kafka, why="topics are created on an existing cluster")
    try:
        kafka.ensure_topics(connection, s.topics)
    except ValueError as exc:  # an existing topic with other partition counts
        raise config.ConfigError(str(exc)) from None
    print(
        f"topics ready on {connection.bootstrap}: {s.topics.chunks}.g*, {s.topics.partials}.g*, {s.topics.totals}, "
        f"{s.topics.deadletter}, {s.topics.status}.g*, {s.topics.documents}, {s.topics.assignments}"
    )
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from pipeline.health import check

    problem = check(options.settings(args).service.health_file, args.max_age)
    if problem:
        print(f"wordpipe: unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0
