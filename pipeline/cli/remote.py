"""`wordpipe ingest | top | totals | count | status`: a running stack's APIs, through pipeline/client.py."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import TYPE_CHECKING

from pipeline import config
from pipeline.cli import options
from pipeline.cli.counting import format_counts

if TYPE_CHECKING:
    from pipeline.client import Client


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ingest = sub.add_parser("ingest", help="upload files to the ingest service, each one document, retried safely")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (recursively)")
    _client_flags(ingest, ingest=True)
    ingest.add_argument("--json", action="store_true", help="one JSON object per document")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest)

    top = sub.add_parser("top", help="the K most frequent words so far")
    top.add_argument("k", type=options.positive, metavar="K")
    _client_flags(top)
    top.add_argument(
        "--json", action="store_true", help='print {"total_words", "distinct_words", "counts"} like `run --json`'
    )
    top.set_defaults(func=cmd_top)

    totals = sub.add_parser("totals", help="every total so far (export), most frequent first")
    _client_flags(totals)
    shape = totals.add_mutually_exclusive_group()
    shape.add_argument(
        "--json", action="store_true", help='{"total_words", "distinct_words", "counts"} like `run --json`'
    )
    shape.add_argument("--csv", action="store_true", help="word,count lines under a header")
    totals.add_argument("--min-count", type=options.positive, metavar="N", help="only words counted at least N times")
    totals.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    totals.set_defaults(func=cmd_totals)

    count = sub.add_parser("count", help="one word's total so far")
    count.add_argument("word")
    _client_flags(count)
    count.set_defaults(func=cmd_count)

    status = sub.add_parser("status", help="documents and chunks ingested and counted")
    _client_flags(status)
    status.add_argument("--json", action="store_true", help="the whole status document")
    status.add_argument("--wait", type=float, metavar="SECONDS", help="first wait until everything ingested is counted")
    status.set_defaults(func=cmd_status)


def _client_flags(sp: argparse.ArgumentParser, ingest: bool = False) -> None:
    if ingest:
        sp.add_argument("--url", help="the ingest service (default $WORDPIPE_INGEST_URL, else http://127.0.0.1:8080)")
    else:
        sp.add_argument(
            "--url",
            dest="results_url",
            help="the results API (default $WORDPIPE_RESULTS_URL, else http://127.0.0.1:8081)",
        )
    sp.add_argument("--token", help=options.TOKEN_HELP)


def _client(args: argparse.Namespace) -> Client:
    """The stack the flags name, else the environment's, else the default one (pipeline.client.Client)."""
    from pipeline.client import Client  # requests: not for every process this CLI starts (a worker)

    return Client(
        ingest_url=getattr(args, "url", None), results_url=getattr(args, "results_url", None), token=args.token
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.ingest.sources import resolve

    if "-" in args.paths:
        raise config.ConfigError("paths: '-' (standard input) cannot be retried safely; save it to a file first")
    files = [(src.name, src.path) for src in resolve(args.paths) if src.path is not None]
    client = _client(args)
    results = []
    with tqdm(
        total=sum(path.stat().st_size for _, path in files),
        unit="B",
        unit_scale=True,
        desc="upload",
        disable=args.quiet or None,
    ) as bar:
        for name, path in files:
            start = bar.n
            receipt = client.ingest(path, name=name, on_bytes=bar.update)
            bar.update(start + path.stat().st_size - bar.n)  # a retry sent some bytes twice
            results.append({"path": name, **receipt})
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


def cmd_totals(args: argparse.Namespace) -> int:
    """Every total, paged from the results API (a progress bar on a terminal). total_words and
    distinct_words are over every word, as `top` gives them; --min-count keeps fewer rows."""
    import csv
    import sys

    from tqdm import tqdm

    from pipeline.aggregator.ranking import rank

    client = _client(args)
    distinct = client.top(1)["distinct_words"]  # the bar's length: words counted meanwhile make it longer
    counts: Counter[str] = Counter()
    with tqdm(total=distinct, unit="word", unit_scale=True, desc="totals", disable=args.quiet or None) as bar:
        for word, n in client.totals():
            counts[word] = n
            bar.update(1)
    shown = Counter({w: n for w, n in counts.items() if n >= (args.min_count or 1)})
    if args.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["word", "count"])
        out.writerows(rank(shown, len(shown)))
        return 0
    if args.json:
        body = {
            "total_words": sum(counts.values()),
            "distinct_words": len(counts),
            "counts": dict(rank(shown, len(shown))),
        }
        print(json.dumps(body, ensure_ascii=False))
        return 0
    lines = format_counts(shown, None, False).splitlines()[:-1]
    print("\n".join(lines + [f"{sum(counts.values())} words, {len(counts)} distinct"]))
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
