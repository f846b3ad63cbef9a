"""main(): the parser from each command group, logging, signals, and the exit code from
pipeline/errors.py's tree (0 done, 2 a usage error, 1 something unavailable, 130 interrupted)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from pipeline.cli import autoscale, counting, deployment, remote, state
from pipeline.errors import UnavailableError, UsageError

ONE_SHOT = ("run",)  # commands that stop everything they start before they return
SERVICES = ("worker", "aggregator", "ingest-server", "up")  # and `autoscale run`: long-running, timestamped logs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wordpipe", description="Message-driven word counting on Kafka.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (counting, deployment, autoscale, remote, state):
        group.add_parsers(sub)
    return p


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
        code = args.func(args)
    except (UsageError, UnavailableError) as exc:  # the tree in pipeline/errors.py
        print(f"wordpipe: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("wordpipe: interrupted", file=sys.stderr)
        code = 130
    if argv is None and args.command in ONE_SHOT:  # the program itself, and all it started is stopped
        with contextlib.suppress(OSError):  # a reader gone (`| head`): nothing more to tell it
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # the interpreter's teardown of what a run imported takes 50-90 ms more
    return code


if __name__ == "__main__":
    sys.exit(main())
