"""The results API (schemas/results.openapi.json), served by the aggregator.

    GET /v1/words/{word}    one word's total
    POST /v1/words          the totals of words in a JSON body: any length (a URL holds ~8 KB);
                            a large body is read in a child process (lookup_process.py)
    GET /v1/top?k=          the k most frequent words, shaped like `wordpipe run --json`
    GET /v1/top/events?k=   server-sent events: the top k each time it changes
    GET /v1/totals          every total, in word order, paged with a cursor
    GET /v1/windows         top k of one tumbling window of event time (default: the newest)
    GET /v1/windows/{word}  one word's total per kept window (from the faust windowed table)
    GET /v1/status          documents and chunks ingested and counted (wait for completeness)
    GET /v1/progress        counted offsets per shard (`wordpipe run` waits on it)
    GET /                   a live dashboard
    GET /health  /metrics  /openapi.json

An answer is the whole's or none: while some shards are being recovered or moved between
instances, every view of the counts answers 503 with Retry-After (`status` and `progress`
answer, and `status.complete` says whether every shard is read).
It reads the aggregator through `Counted` and computes its answers with views.py; the
receipts reader, the lag watch and the broker watch are handed to it at start-up (app.py: main).
"""

from __future__ import annotations

import asyncio
import bisect
import json
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from pipeline import tokenize
from pipeline.aggregator import views
from pipeline.aggregator.lookup import BadBody, Tokenized, tokenized, words_in
from pipeline.aggregator.lookup_process import LookupProcess
from pipeline.aggregator.ranking import Ranking, rank
from pipeline.aggregator.state import ShardState
from pipeline.config import Settings
from pipeline.sharding import Router
from pipeline.web import HttpError, int_param, make_app, query_of, tokens_of
from pipeline.webserver import TOO_LONG_HINT

DASHBOARD = Path(__file__).with_name("dashboard.html")
MAX_K = 10_000
MAX_PAGE = 100_000
# POST /v1/words shares the event loop with every other request and with counting. A body
# this small is read and tokenized there in one go: ~2 ms at worst (U+FDFA, which NFKC
# expands 18x, costs ~1 µs a byte; json.loads at most ~130 ns a byte, arrays nested 900 deep).
# A larger one is all done in the lookup process, and the loop only passes it on.
INLINE_BODY = 2048


async def body_of(request: web.Request) -> bytes:
    """A POST /v1/words body, bounded by the app's client_max_size (1 MiB)."""
    if request.content_type != "application/json":
        raise HttpError(415, "unsupported_media_type", f"send application/json, not {request.content_type!r:.60}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise HttpError(
            413,
            "too_large",
            f"the body is over {request.client_max_size:,} bytes; send fewer words at a time "
            "(one word may take all of it)",
        ) from None


class Counted(Protocol):
    """What the API reads from the aggregator (app.py)."""

    router: Router  # the aggregator's: where each word is counted (and its memo of them)
    partials_applied: int
    partials_replayed: int
    words_replayed: int  # in the parts replayed: counted once, not again

    def owned(self) -> dict[int, ShardState]:
        """The states of the shards recovered here (while rebalancing, as they were when revoked)."""
        ...

    def owned_shards(self) -> list[int]:
        """The shards owned and recovered here; [] while rebalancing."""
        ...

    def ranked(self) -> Ranking:
        """The ranking, with every change applied so far folded in."""
        ...

    def windowed_totals(self, word: str) -> dict[int, int]: ...


class Ingested(Protocol):
    """What ingest accepted (pipeline/ingest/receipts.py: Accepted)."""

    @property
    def documents(self) -> int: ...

    @property
    def chunks(self) -> int: ...

    def catch_up(self) -> bool: ...


class LagWatch(Protocol):
    """The pipeline's lag and rates (pipeline/autoscaler/monitor.py: Watch)."""

    def view(self) -> dict: ...


class BrokerHealth(Protocol):
    """Whether Kafka answers (pipeline/kafka.py: BrokerWatch)."""

    @property
    def problem(self) -> str | None: ...


class ResultsApi:
    def __init__(
        self,
        settings: Settings,
        counted: Counted,
        registry: CollectorRegistry,
        receipts: Ingested,
        lag: LagWatch,
        broker: BrokerHealth,
    ) -> None:
        self.settings = settings
        self.counted = counted
        self.registry = registry
        self.receipts = receipts
        self.lag = lag
        self.broker = broker
        self.tokens = tokens_of(settings.service)  # no token configured and auth on: refuse to start
        self.tokenizer = tokenize.Tokenizer.load(settings.text.tokenizer_user_dict)  # the workers' definition of a word
        self.heavy = LookupProcess(settings.text.tokenizer_user_dict)  # started on the first heavy lookup
        self.words: list[str] = []  # sorted, for paging; rebuilt when the vocabulary grew
        self.words_version: tuple[tuple[int, ...], int] | None = None
        self._gauges()

    def _gauges(self) -> None:
        Gauge(
            "wordpipe_aggregator_words",
            "Words counted (owned shards): its derivative is words counted per second",
            registry=self.registry,
        ).set_function(lambda: views.total_words(self.counted.owned()))
        Gauge(
            "wordpipe_deadletters",
            "Records on the dead-letter topic (refused by any service or worker)",
            registry=self.registry,
        ).set_function(lambda: self.lag.view().get("deadletters") or 0)
        Gauge(
            "wordpipe_aggregator_distinct_words",
            "Distinct words counted (owned shards)",
            registry=self.registry,
        ).set_function(lambda: views.distinct_words(self.counted.owned()))
        Gauge(
            "wordpipe_aggregator_documents_counted",
            "Uploads counted in every owned shard",
            registry=self.registry,
        ).set_function(lambda: self.status()["documents_counted"])
        Gauge(
            "wordpipe_aggregator_shards_owned",
            "Partials partitions owned and recovered",
            registry=self.registry,
        ).set_function(lambda: len(self.counted.owned()))

    def app(self) -> web.Application:
        app = make_app("results", self.tokens, "results.openapi.json", self.registry, public=("/",))
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
        app.router.add_post("/v1/words", self.lookup)
        app[TOO_LONG_HINT] = 'a word too long for a URL is looked up with POST /v1/words and {"words": [...]}'
        app.on_cleanup.append(lambda app: self.heavy.close())  # the lookup process ends with the API
        return app

    # -- views -----------------------------------------------------------------

    def status(self) -> dict:
        ingested = self.receipts.documents, self.receipts.chunks
        return views.status(self.counted.owned(), self.settings.topics.partial_partitions, ingested, self.lag.view())

    def top_k(self, k: int) -> dict:
        return views.top(self.whole(), self.counted.ranked(), k)

    def counts(self, words: list[str]) -> dict[str, int]:
        return views.counts(self.whole(), self.counted.router, words)

    def whole(self) -> dict[int, ShardState]:
        """Every shard's state, or a 503: counts from some of the shards are not the totals."""
        shards = self.counted.owned()
        self.require_every_shard(len(shards))
        return shards

    def require_every_shard(self, read: int) -> None:
        partitions = self.settings.topics.partial_partitions
        if read < partitions:
            raise HttpError(
                503,
                "rebalancing",
                f"{partitions - read} of {partitions} shards are being recovered or moved between instances; ask again",
                headers={"Retry-After": "1"},
            )

    # -- handlers --------------------------------------------------------------

    async def dashboard(self, request: web.Request) -> web.Response:
        return web.Response(text=DASHBOARD.read_text(), content_type="text/html")

    async def health(self, request: web.Request) -> web.Response:
        owned, problem = sorted(self.counted.owned()), self.broker.problem
        return web.json_response(
            {"ok": problem is None, "broker": problem or "up", "shards": owned}, status=200 if problem is None else 503
        )

    def _word(self, raw: str, found: Tokenized) -> str:
        """The word `raw` is by the tokenizer (`found`); an HttpError unless it is exactly one."""
        if found.run is not None and self.counts([found.run])[found.run]:
            return found.run  # counted as one word in context, though cut apart when asked alone
        if found.word is None:
            raise HttpError(
                404,
                "not_a_word",
                f"{raw!r:.80} is {found.tokens} words by the tokenizer, so it has no total; ask for exactly one word",
            )
        return found.word

    async def word(self, request: web.Request) -> web.Response:
        raw = request.match_info["word"]  # a URL holds ~8 KB: cheap enough for the loop
        word = self._word(raw, tokenized(self.tokenizer, raw))
        return web.json_response({"word": word, "count": self.counts([word])[word]})

    async def lookup(self, request: web.Request) -> web.Response:
        """Up to MAX_LOOKUP words, each answered as GET /v1/words/{word} would, in order; one
        that is not exactly one word gets its error beside it rather than failing the rest."""
        asked, found = await self._tokenized(await body_of(request))
        answers: list[dict] = []
        for raw, tokens in zip(asked, found, strict=True):
            try:
                answers.append({"asked": raw, "word": self._word(raw, tokens)})
            except HttpError as exc:
                answers.append({"asked": raw, "word": None, "count": 0, "error": exc.code, "detail": exc.detail})
        counts = self.counts([a["word"] for a in answers if a["word"] is not None])
        for answer in answers:
            if answer["word"] is not None:
                answer["count"] = counts[answer["word"]]
        return web.json_response({"words": answers})

    async def _tokenized(self, body: bytes) -> tuple[list[str], list[Tokenized]]:
        """The words a body asks for, and what the tokenizer makes of each."""
        try:
            if len(body) <= INLINE_BODY:
                asked = words_in(body)
                return asked, [tokenized(self.tokenizer, raw) for raw in asked]
            asked = await self.heavy.words_in(body)
        except BadBody as exc:
            raise HttpError(400, exc.code, exc.detail) from None
        return asked, await self.heavy.tokenized(asked)

    async def top(self, request: web.Request) -> web.Response:
        return web.json_response(self.top_k(int_param(request, "k", 10, 1, MAX_K)))

    async def top_events(self, request: web.Request) -> web.StreamResponse:
        """An event whenever the top k changes (checked every 0.5 s), and a comment every 15 s to keep proxies open."""
        k = int_param(request, "k", 10, 1, MAX_K)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        last: str | None = None
        idle, event_id = 0.0, 0
        try:
            while True:
                payload: str | None
                try:
                    payload = json.dumps({**self.top_k(k), "status": self.status()}, ensure_ascii=False)
                except HttpError:  # shards moving: the next event is the whole's
                    payload = last
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
        shards = self.whole()
        version = views.vocabulary_version(shards)
        if self.words_version != version:
            self.words = sorted(views.totals(shards))
            self.words_version = version
        start = bisect.bisect_right(self.words, cursor) if cursor else 0
        page = self.words[start : start + limit]
        more = start + limit < len(self.words)
        return web.json_response(
            {"totals": views.counts(shards, self.counted.router, page), "next": page[-1] if more and page else None}
        )

    async def windows(self, request: web.Request) -> web.Response:
        """The top k of one tumbling window (default: the newest)."""
        shards, seconds = self.whole(), self.settings.aggregator.window_seconds
        k = int_param(request, "k", 10, 1, MAX_K)
        starts = views.window_starts(shards)
        # Unix seconds, as the spec bounds them
        start = int_param(request, "start", starts[-1] if starts else 0, 0, 10**15)
        if starts and start not in starts:
            raise HttpError(
                404,
                "no_such_window",
                f"no kept window starts at {start}; kept: {starts[0]}..{starts[-1]} every {seconds} s",
            )
        counts = views.window_top(shards, start) if starts else {}
        return web.json_response(
            {
                "window_seconds": seconds,
                "start": start,
                "starts": starts,
                "total_words": sum(counts.values()),
                "counts": dict(rank(counts, k)),
            }
        )

    async def word_windows(self, request: web.Request) -> web.Response:
        """One word's total in each kept tumbling window."""
        raw = request.match_info["word"]
        word = self._word(raw, tokenized(self.tokenizer, raw))
        # The windowed table is faust's: read only from shards owned now, never parked ones.
        self.require_every_shard(len(self.counted.owned_shards()))
        per_window = self.counted.windowed_totals(word)
        return web.json_response(
            {
                "word": word,
                "window_seconds": self.settings.aggregator.window_seconds,
                "windows": [{"start": start, "count": n} for start, n in per_window.items()],
            }
        )

    async def get_status(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.receipts.catch_up)
        return web.json_response(self.status())

    async def progress(self, request: web.Request) -> web.Response:
        return web.json_response(views.progress(self.counted.owned(), self.settings.topics.partial_partitions))

    async def stats(self, request: web.Request) -> web.Response:
        c = self.counted
        return web.json_response(
            {
                "partials_applied": c.partials_applied,
                "partials_replayed": c.partials_replayed,
                "words_replayed": c.words_replayed,
            }
        )
