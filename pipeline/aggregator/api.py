"""The results API (schemas/results.openapi.json), served by the aggregator.

    GET /v1/words/{word}    one word's total
    GET /v1/top?k=          the k most frequent words, shaped like `wordpipe run --json`
    GET /v1/top/events?k=   server-sent events: the top k each time it changes
    GET /v1/totals          every total, in word order, paged with a cursor
    GET /v1/windows         top k of one tumbling window of event time (default: the newest)
    GET /v1/windows/{word}  one word's total per kept window (from the faust windowed table)
    GET /v1/status          documents and chunks ingested and counted (wait for completeness)
    GET /v1/progress        counted offsets per shard (`wordpipe run` waits on it)
    GET /                   a live dashboard
    GET /health  /metrics  /openapi.json

An instance answers for the shards it owns; `status.complete` says whether that is all of them.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import Gauge

from pipeline import tokenize
from pipeline.aggregator.ranking import rank
from pipeline.web import HttpError, int_param, make_app, query_of, tokens_of

if TYPE_CHECKING:
    from pipeline.aggregator.app import Aggregator

DASHBOARD = Path(__file__).with_name("dashboard.html")
MAX_K = 10_000
MAX_PAGE = 100_000


class ResultsApi:
    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator
        self.tokens = tokens_of(aggregator.settings)  # no token configured and auth on: refuse to start
        self.tokenizer = tokenize.Tokenizer.load(
            aggregator.settings.tokenizer_user_dict
        )  # the workers' definition of a word
        a = aggregator
        self.words: list[str] = []  # sorted, for paging; rebuilt when the vocabulary grew
        self.words_version: tuple[tuple[int, ...], int] | None = None
        Gauge(
            "wordpipe_aggregator_distinct_words",
            "Distinct words counted (owned shards)",
            registry=a.registry,
        ).set_function(lambda: a.distinct_words)
        Gauge(
            "wordpipe_aggregator_documents_counted",
            "Uploads counted in every owned shard",
            registry=a.registry,
        ).set_function(lambda: self.status()["documents_counted"])
        Gauge(
            "wordpipe_aggregator_shards_owned",
            "Partials partitions owned and recovered",
            registry=a.registry,
        ).set_function(lambda: len(a.owned_shards()))

    def app(self) -> web.Application:
        app = make_app("results", self.tokens, "results.openapi.json", self.aggregator.registry, public=("/",))
        for path, handler in (
            ("/", self.dashboard),
            ("/health", self.health),
            ("/v1/words/{word}", self.word),
            ("/v1/top", self.top),
            ("/v1/top/events", self.top_events),
            ("/v1/totals", self.totals),
            ("/v1/status", self.get_status),
            ("/v1/progress", self.progress),
            ("/v1/stats", self.stats),
            ("/v1/windows", self.windows),
            ("/v1/windows/{word}", self.word_windows),
        ):
            app.router.add_get(path, handler)
        return app

    # -- views -----------------------------------------------------------------

    def status(self) -> dict:
        a = self.aggregator
        owned = a.owned_shards()
        ledgers = [a.shard(s).documents for s in owned]
        return {
            "documents_ingested": a.accepted.documents,
            "chunks_ingested": a.accepted.chunks,
            "documents_counted": min((d.committed for d in ledgers), default=0),
            "chunks_counted": min((d.committed_chunks for d in ledgers), default=0),
            "documents_aborted": min((d.aborted for d in ledgers), default=0),
            "documents_open": max((len(d.open) for d in ledgers), default=0),
            "shards": {"owned": owned, "total": a.settings.partial_partitions},
            "complete": len(owned) == a.settings.partial_partitions,
            "pipeline": a.watch.view(),
        }

    def top_k(self, k: int) -> dict:
        a = self.aggregator
        a.take_changes()
        shown = a.ranking.top(k, a.totals)
        return {"total_words": a.total_words, "distinct_words": a.distinct_words, "counts": dict(shown)}

    # -- handlers --------------------------------------------------------------

    async def dashboard(self, request: web.Request) -> web.Response:
        return web.Response(text=DASHBOARD.read_text(), content_type="text/html")

    async def health(self, request: web.Request) -> web.Response:
        owned, problem = self.aggregator.owned_shards(), self.aggregator.broker.problem
        return web.json_response(
            {"ok": problem is None, "broker": problem or "up", "shards": owned}, status=200 if problem is None else 503
        )

    def _word(self, request: web.Request) -> str:
        raw = request.match_info["word"]
        found = self.tokenizer.tokens(raw)
        run = self.tokenizer.run_of(raw) if len(found) != 1 else None
        if run is not None and self.aggregator.counts([run])[run]:
            return run  # counted as one word in context, though cut apart when asked alone
        if len(found) != 1:
            raise HttpError(
                404,
                "not_a_word",
                f"{raw!r:.80} is {len(found)} words by the tokenizer, so it has no total; ask for exactly one word",
            )
        return found[0]

    async def word(self, request: web.Request) -> web.Response:
        word = self._word(request)
        return web.json_response({"word": word, "count": self.aggregator.counts([word])[word]})

    async def top(self, request: web.Request) -> web.Response:
        return web.json_response(self.top_k(int_param(request, "k", 10, 1, MAX_K)))

    async def top_events(self, request: web.Request) -> web.StreamResponse:
        """An event whenever the top k changes (checked every 0.5 s), and a comment every 15 s to keep proxies open."""
        k = int_param(request, "k", 10, 1, MAX_K)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        last, idle, event_id = None, 0.0, 0
        try:
            while True:
                top = self.top_k(k)
                payload = json.dumps({**top, "status": self.status()}, ensure_ascii=False)
                if payload != last:
                    event_id += 1
                    await response.write(f"id: {event_id}\nevent: top\ndata: {payload}\n\n".encode())
                    last, idle = payload, 0.0
                elif idle >= 15:
                    await response.write(b": keep-alive\n\n")
                    idle = 0.0
                await asyncio.sleep(0.5)
                idle += 0.5
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def totals(self, request: web.Request) -> web.Response:
        limit = int_param(request, "limit", 1000, 1, MAX_PAGE)
        cursor = query_of(request).get("cursor", "")
        a = self.aggregator
        if self.words_version != a.vocabulary_version:
            self.words = sorted(a.totals())
            self.words_version = a.vocabulary_version
        start = bisect.bisect_right(self.words, cursor) if cursor else 0
        page = self.words[start : start + limit]
        more = start + limit < len(self.words)
        return web.json_response({"totals": a.counts(page), "next": page[-1] if more and page else None})

    async def windows(self, request: web.Request) -> web.Response:
        """The top k of one tumbling window (default: the newest)."""
        a = self.aggregator
        k = int_param(request, "k", 10, 1, MAX_K)
        starts = a.window_starts()
        start = int_param(request, "start", starts[-1] if starts else 0, 0, None)
        if starts and start not in starts:
            raise HttpError(
                404,
                "no_such_window",
                f"no kept window starts at {start}; kept: {starts[0]}..{starts[-1]} "
                f"every {a.settings.window_seconds} s",
            )
        counts = a.window_top(start) if starts else {}
        return web.json_response(
            {
                "window_seconds": a.settings.window_seconds,
                "start": start,
                "starts": starts,
                "total_words": sum(counts.values()),
                "counts": dict(rank(counts, k)),
            }
        )

    async def word_windows(self, request: web.Request) -> web.Response:
        """One word's total in each kept tumbling window."""
        word = self._word(request)
        a = self.aggregator
        a.take_changes()
        per_window = a.windowed_totals(word)
        return web.json_response(
            {
                "word": word,
                "window_seconds": a.settings.window_seconds,
                "windows": [{"start": start, "count": n} for start, n in per_window.items()],
            }
        )

    async def get_status(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.aggregator.accepted.catch_up)
        return web.json_response(self.status())

    async def progress(self, request: web.Request) -> web.Response:
        return web.json_response(self.aggregator.progress())

    async def stats(self, request: web.Request) -> web.Response:
        a = self.aggregator
        return web.json_response({"partials_applied": a.partials_applied, "partials_replayed": a.partials_replayed})
