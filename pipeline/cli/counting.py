"""`wordpipe run` and `wordpipe reference`: count files once and print the totals."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from pipeline import config
from pipeline.cli import options

log = logging.getLogger("wordpipe")


TOP_MAX = 10_000  # the largest k GET /v1/top takes (schemas/results.openapi.json)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="count files with the whole pipeline (embedded broker unless --bootstrap)")
    _counting(run, paths="*")
    options.cluster(run)
    options.source(run, "count its records up to the end they have when the run starts, then exit (needs --bootstrap)")
    run.add_argument(
        "--workers",
        type=options.positive,
        metavar="N",
        help="worker processes (default 2, or one per chunk of a smaller input)",
    )
    options.aggregators(run)
    run.add_argument("--chunk-size", type=options.positive, metavar="BYTES", help="chunk size in bytes (default 65536)")
    options.backend(run, "default local processes; docker containers or mesos tasks")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="give up if counting takes longer")
    run.add_argument("--stats-file", metavar="PATH", help="write timing figures as JSON (for benchmarks)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    ref = sub.add_parser("reference", help="count files in one process with the same tokenizer (the baseline)")
    _counting(ref, paths="+")
    ref.add_argument("--config", help=options.CONFIG_HELP)
    ref.set_defaults(func=cmd_reference)


def _counting(sp: argparse.ArgumentParser, paths: str) -> None:
    sp.add_argument("paths", nargs=paths, metavar="PATH", help="files, directories (recursively) or '-' for stdin")
    sp.add_argument(
        "--top",
        type=options.positive,
        metavar="K",
        help="only the K most frequent words (default: all with --json, 20 otherwise)",
    )
    sp.add_argument("--json", action="store_true", help='print {"total_words", "distinct_words", "counts"}')
    sp.add_argument("--tokenizer-user-dict", metavar="PATH", help=options.USER_DICT_HELP)


def format_counts(counts: Counter[str], top: int | None, as_json: bool) -> str:
    # The words sorted, then by count (a stable sort: ties stay in word order), compare
    # strings, then ints; one sort by (-count, word) makes and compares a tuple a word: 2x
    # slower on a million words.
    words = sorted(counts)
    words.sort(key=counts.__getitem__, reverse=True)
    shown = words if top is None else words[:top]
    with _collector_paused():
        ranked = list(zip(shown, map(counts.__getitem__, shown), strict=True))
        return format_ranked(ranked, sum(counts.values()), len(counts), as_json)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A million tuples made at once (the pairs, then json's own) set off a full collection
    every few thousand, each walking every list of them: 40% of the time formatting a
    million counts. None of them is in a cycle; the collector runs again after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def format_ranked(shown: list[tuple[str, int]], total: int, distinct: int, as_json: bool) -> str:
    """The words shown, most frequent first, and how many there are in all."""
    if as_json:
        return json.dumps({"total_words": total, "distinct_words": distinct, "counts": dict(shown)}, ensure_ascii=False)
    from wcwidth import wcswidth  # a terminal shows Chinese in two columns a character

    widths = [max(wcswidth(w), 0) for w, _ in shown]
    width = max(widths + [4])
    lines = [f"{'rank':>4}  {'word':<{width}}  {'count':>10}"]
    lines += [
        f"{i:>4}  {w}{' ' * (width - ww)}  {n:>10}"
        for i, ((w, n), ww) in enumerate(zip(shown, widths, strict=False), 1)
    ]
    lines.append(f"{total} words, {distinct} distinct")
    return "\n".join(lines)


def _top(args: argparse.Namespace) -> int | None:
    """--top K; without it, every word with --json and the top 20 in a table."""
    return args.top if args.top is not None or args.json else 20


def cmd_reference(args: argparse.Namespace) -> int:
    from pipeline.ingest.sources import resolve
    from pipeline.reference import count_sources
    from pipeline.tokenize import Tokenizer

    settings = config.load(args.config, overrides={"tokenizer_user_dict": options.path(args.tokenizer_user_dict)})
    started = time.monotonic()
    counts = count_sources(resolve(args.paths), Tokenizer.load(settings.text.tokenizer_user_dict))
    log.info("reference counted in %.3f s", time.monotonic() - started)
    print(format_counts(counts, _top(args), args.json))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline import aggregator, worker
    from pipeline.errors import UsageError
    from pipeline.ingest.sources import resolve
    from pipeline.run import Pipeline

    # Flags not given are None: the file and env decide. A run's totals topic is its own and
    # deleted after it: nobody would read it.
    settings = options.settings(
        args,
        totals_interval=0,
        workers=args.workers,
        aggregators=args.aggregators,
        chunk_size=args.chunk_size,
        **options.backend_choice(args),
        **options.source_choice(args),
        tokenizer_user_dict=options.path(args.tokenizer_user_dict),
    )
    if settings.topics.sources and settings.kafka.embedded:
        raise UsageError(
            "--source counts a topic of a Kafka cluster: give --bootstrap (the embedded broker starts empty)"
        )
    if not args.paths and not settings.topics.sources:
        raise UsageError("nothing to count: name files, directories or '-' for stdin, or a --source topic")
    sources = resolve(args.paths) if args.paths else []  # bad paths fail before anything starts
    known = [size for s in sources if (size := s.size()) is not None]
    total = sum(known) if len(known) == len(sources) else None
    count = aggregator.for_run(settings.aggregator, total, len(os.sched_getaffinity(0)))
    files = None if settings.topics.sources else total  # a topic's records are not known yet
    workers = worker.for_run(settings.worker, files, len(sources), settings.text.chunk_size)
    settings = replace(
        settings,
        aggregator=replace(settings.aggregator, count=count),
        worker=replace(settings.worker, count=workers),
    )
    # A benchmark's steady state begins with every service ready; a user's input goes out at once.
    with Pipeline(settings).start(ready=args.stats_file is not None) as pipeline:
        from tqdm import tqdm  # while the aggregator starts: it is the one waited for

        started = time.monotonic()
        extents = pipeline.source_extents()  # source topics are counted up to where they end now
        with tqdm(
            total=total, unit="B", unit_scale=True, desc="ingest", disable=args.quiet or not sources or None
        ) as bar:
            report = pipeline.ingest(sources, on_bytes=bar.update)
        records = sum(end - first for first, end in extents.values())
        unit = "record" if extents else "chunk"
        with tqdm(total=report.chunks + records, unit=unit, desc="count", disable=args.quiet or None) as bar:

            def on_counted(n: int) -> None:
                bar.update(n - bar.n)

            pipeline.wait_counted(report, timeout=args.timeout, on_counted=on_counted, extents=extents)
        pipeline.check_nothing_refused()
        top = _top(args)
        # The top K is kept ranked (pipeline/aggregator/ranking.py): every total is read only to print them all.
        answer = pipeline.top(top) if top is not None and top <= TOP_MAX else None
        counts = Counter(pipeline.totals()) if answer is None else None
        if args.stats_file:
            stats = {
                "bytes": report.bytes,
                "chunks": report.chunks,
                "documents": report.documents,
                "workers": settings.worker.count,
                "aggregators": count,
                "wall_seconds": time.monotonic() - started,
                "steady_seconds": pipeline.counted_at - report.first_produced_at
                if pipeline.counted_at and report.first_produced_at
                else 0.0,
                "restarts": pipeline.restarts,
                "resources": pipeline.resources(),
            }
            with open(args.stats_file, "w") as f:
                json.dump(stats, f)
    if answer is not None:
        print(format_ranked(list(answer["counts"].items()), answer["total_words"], answer["distinct_words"], args.json))
    else:
        assert counts is not None
        print(format_counts(counts, top, args.json))
    return 0
