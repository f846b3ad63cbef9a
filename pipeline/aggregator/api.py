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
    POST /v1/shards         this instance's part of an answer, for the shards it owns (peers.py)
    GET /                   a live dashboard
    GET /health  /metrics  /openapi.json

Any instance answers for every shard: its own part, and its peers' parts (POST
/v1/shards to the instances that own the other shards: peers.py), merged (views.py).
An answer is the whole's or none: while some shards are being recovered or moved between
instances, or a peer does not answer, every view of the counts answers 503 with
Retry-After (`status` and `progress` answer, and `status.complete` says whether every
shard is read). /health and /metrics are this instance's own.
It reads the aggregator through `Counted` and computes its answers with views.py; the
receipts reader, the lag watch and the broker watch are handed to it at start-up (app.py: main).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from pipeline import tokenize
from pipeline.aggregator import views
from pipeline.aggregator.lookup import BadBody, Tokenized, tokenized, words_in
from pipeline.aggregator.lookup_process import LookupProcess
from pipeline.aggregator.peers import Peers
from pipeline.aggregator.ranking import Ranking
from pipeline.aggregator.state import ShardState
from pipeline.sharding import Router
from pipeline.web.app import HttpError, int_param, make_app, query_of
from pipeline.web.server import TOO_LONG_HINT

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

    def peers(self) -> dict[int, str]:
        """The results API of the instance that owns each shard not owned here; {} while rebalancing."""
        ...


class Ingested(Protocol):
    """What ingest accepted (pipeline/observe/accepted.py: Accepted)."""

    @property
    def documents(self) -> int: ...

    @property
    def chunks(self) -> int: ...

    def catch_up(self) -> bool: ...


class LagWatch(Protocol):
    """The pipeline's lag and rates (pipeline/observe/lag.py: Watch)."""

    def view(self) -> dict: ...


class BrokerHealth(Protocol):
    """Whether Kafka answers (pipeline/kafka/topics.py: BrokerWatch)."""

    @property
    def problem(self) -> str | None: ...


class ResultsApi:
    def __init__(
        self,
        counted: Counted,
        registry: CollectorRegistry,
        receipts: Ingested,
        lag: LagWatch,
        broker: BrokerHealth,
        tokens: list[str] | None,
        user_dict: str | None,
        partitions: int,
        window_seconds: float,
    ) -> None:
        """`tokens`: the API's (None: no auth); `user_dict`: the workers' extra words;
        `partitions`: the shards; `window_seconds`: the windows' length."""
        self.partitions = partitions
        self.window_seconds = window_seconds
        self.counted = counted
        self.registry = registry
        self.receipts = receipts
        self.lag = lag
        self.broker = broker
        self.tokens = tokens
        self.tokenizer = tokenize.Tokenizer.load(user_dict)  # the workers' definition of a word
        self.heavy = LookupProcess(user_dict)  # started on the first heavy lookup
        self.peers = Peers(self.tokens[0] if self.tokens else None)
        self.words: tuple[str, ...] = ()  # in paging order; rebuilt when the vocabulary grew
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
        ).set_function(lambda: min((s.documents.committed for s in self.counted.owned().values()), default=0))
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
        app.router.add_post("/v1/shards", self.shards)
        app[TOO_LONG_HINT] = 'a word too long for a URL is looked up with POST /v1/words and {"words": [...]}'
        app.on_cleanup.append(lambda app: self.heavy.close())  # the lookup process ends with the API
        app.on_cleanup.append(lambda app: self.peers.close())
        return app

    # -- views: this instance's part, and the whole's from every part ---------------

    def part(self, question: dict) -> dict:
        """This instance's part of an answer (views.py), for the shards it owns now."""
        shards, view = self.counted.owned(), question["view"]
        if view == "top":
            part = views.top_part(shards, self.counted.ranked(), question["k"])
        elif view == "counts":
            part = {"counts": views.counts(shards, self.counted.router, question["words"])}
        elif view == "page":
            part = views.page_part(self.vocabulary(shards), shards, self.counted.router, *question["after_limit"])
        elif view == "windows":
            part = views.window_part(shards, question.get("start"), question.get("k", 10))
        elif view == "word_windows":  # faust's windowed table: owned shards only, never parked ones
            shards = {s: shards[s] for s in self.counted.owned_shards()}
            owns = self.counted.router.route(question["word"])[0] in shards
            windows = list(self.counted.windowed_totals(question["word"]).items()) if owns else []
            part = {"starts": views.window_starts(shards), "windows": windows}
        elif view == "ledgers":
            part = {"ledgers": views.ledger_part(shards)}
        else:  # "progress" (`checked` knows no other)
            part = {"progress": views.progress_part(shards)}
        return {**part, "shards": sorted(shards)}

    async def parts(self, question: dict, whole: bool = True) -> list[dict]:
        """This instance's part and its peers' parts; with `whole`, a 503 unless they hold every
        shard exactly once (a part from some of the shards is not the whole's)."""
        urls = sorted(set(self.counted.peers().values()))
        asked = await asyncio.gather(*(self.peers.ask(url, question) for url in urls), return_exceptions=not whole)
        parts = [self.part(question), *(p for p in asked if isinstance(p, dict))]
        if whole:
            held = Counter(shard for p in parts for shard in p["shards"])
            doubled = any(n > 1 for n in held.values())  # moving: two instances said they own it
            self.require_every_shard(0 if doubled else len(held))
        return parts

    def vocabulary(self, shards: dict[int, ShardState]) -> tuple[str, ...]:
        """The owned shards' words in paging order (kept until the vocabulary changes)."""
        version = views.vocabulary_version(shards)
        if self.words_version != version:
            self.words = views.vocabulary(shards)
            self.words_version = version
        return self.words

    async def status(self) -> dict:
        parts = await self.parts({"view": "ledgers"}, whole=False)  # answers, complete or not
        ledgers = [p["ledgers"] for p in parts]
        ingested = self.receipts.documents, self.receipts.chunks
        return views.merged_status(ledgers, self.partitions, ingested, self.lag.view())

    async def top_k(self, k: int) -> dict:
        return views.merged_top(await self.parts({"view": "top", "k": k}), k)

    async def counts(self, words: list[str]) -> dict[str, int]:
        """Each word's total, asked of the instance that owns its shard."""
        shards, peers, router = self.counted.owned(), self.counted.peers(), self.counted.router
        out: dict[str, int] = {}
        elsewhere: dict[str, list[str]] = {}
        for word, shard in zip(words, router.shards_of(words), strict=True):
            if shard in shards:
                out[word] = shards[shard].count(word)
            elif shard in peers:
                elsewhere.setdefault(peers[shard], []).append(word)
            else:
                self.require_every_shard(0)
        urls = sorted(elsewhere)
        asked = await asyncio.gather(
            *(self.peers.ask(url, {"view": "counts", "words": elsewhere[url]}) for url in urls)
        )
        for url, part in zip(urls, asked, strict=True):
            if not set(router.shards_of(elsewhere[url])) <= set(part["shards"]):
                self.require_every_shard(0)  # it let go of a shard since the assignment said so
            out.update(part["counts"])
        return {word: out[word] for word in words}

    def require_every_shard(self, read: int) -> None:
        partitions = self.partitions
        if read < partitions:
            raise HttpError(
                503,
                "rebalancing",
                f"{partitions - max(read, 0)} of {partitions} shards are being recovered or moved between instances; "
                "ask again",
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

    async def _word(self, raw: str, found: Tokenized) -> str:
        """The word `raw` is by the tokenizer (`found`); an HttpError unless it is exactly one."""
        if found.run is not None and (await self.counts([found.run]))[found.run]:
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
        word = await self._word(raw, tokenized(self.tokenizer, raw))
        return web.json_response({"word": word, "count": (await self.counts([word]))[word]})

    async def lookup(self, request: web.Request) -> web.Response:
        """Up to MAX_LOOKUP words, each answered as GET /v1/words/{word} would, in order; one
        that is not exactly one word gets its error beside it rather than failing the rest."""
        asked, found = await self._tokenized(await body_of(request))
        answers: list[dict] = []
        for raw, tokens in zip(asked, found, strict=True):
            try:
                answers.append({"asked": raw, "word": await self._word(raw, tokens)})
            except HttpError as exc:
                answers.append({"asked": raw, "word": None, "count": 0, "error": exc.code, "detail": exc.detail})
        counts = await self.counts([a["word"] for a in answers if a["word"] is not None])
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
        return web.json_response(await self.top_k(int_param(request, "k", 10, 1, MAX_K)))

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
                    payload = json.dumps({**await self.top_k(k), "status": await self.status()}, ensure_ascii=False)
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
        parts = await self.parts({"view": "page", "after_limit": [cursor, limit]})
        return web.json_response(views.merged_page(parts, limit))

    async def windows(self, request: web.Request) -> web.Response:
        """The top k of one tumbling window (default: the newest)."""
        seconds = self.window_seconds
        k = int_param(request, "k", 10, 1, MAX_K)
        starts = views.merged_starts(await self.parts({"view": "windows"}))
        # Unix seconds, as the spec bounds them
        start = int_param(request, "start", starts[-1] if starts else 0, 0, 10**15)
        if starts and start not in starts:
            raise HttpError(
                404,
                "no_such_window",
                f"no kept window starts at {start}; kept: {starts[0]}..{starts[-1]} every {seconds} s",
            )
        parts = await self.parts({"view": "windows", "start": start, "k": k}) if starts else []
        top = views.merged_top([{**p, "distinct_words": 0} for p in parts], k)
        return web.json_response(
            {
                "window_seconds": seconds,
                "start": start,
                "starts": starts,
                "total_words": top["total_words"],
                "counts": top["counts"],
            }
        )

    async def word_windows(self, request: web.Request) -> web.Response:
        """One word's total in each kept tumbling window."""
        raw = request.match_info["word"]
        word = await self._word(raw, tokenized(self.tokenizer, raw))
        parts = await self.parts({"view": "word_windows", "word": word})
        shard = self.counted.router.route(word)[0]
        mine = dict(next(p["windows"] for p in parts if shard in p["shards"]))
        return web.json_response(
            {
                "word": word,
                "window_seconds": self.window_seconds,
                "windows": [{"start": start, "count": mine.get(start, 0)} for start in views.merged_starts(parts)],
            }
        )

    async def get_status(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.receipts.catch_up)
        return web.json_response(await self.status())

    async def progress(self, request: web.Request) -> web.Response:
        parts = await self.parts({"view": "progress"}, whole=False)  # what is counted so far, where it is
        return web.json_response(views.merged_progress([p["progress"] for p in parts], self.partitions))

    async def shards(self, request: web.Request) -> web.Response:
        """This instance's part of an answer, for a peer that gathers the whole's (peers.py)."""
        try:
            question = json.loads(await request.read())
            checked(question)
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            raise HttpError(400, "bad_question", f"not a question for POST /v1/shards: {exc!s:.200}") from None
        return web.json_response(self.part(question))

    async def stats(self, request: web.Request) -> web.Response:
        c = self.counted
        return web.json_response(
            {
                "partials_applied": c.partials_applied,
                "partials_replayed": c.partials_replayed,
                "words_replayed": c.words_replayed,
            }
        )


def _is_k(v: object) -> bool:
    return type(v) is int and 1 <= v <= MAX_K


# What each view of POST /v1/shards takes: field -> (required, check).
QUESTIONS: dict[str, dict[str, tuple[bool, Callable[[Any], bool]]]] = {
    "top": {"k": (True, _is_k)},
    "counts": {
        "words": (True, lambda v: isinstance(v, list) and len(v) <= MAX_PAGE and all(type(w) is str for w in v))
    },
    "page": {
        "after_limit": (
            True,
            lambda v: (
                isinstance(v, list)
                and len(v) == 2
                and type(v[0]) is str
                and type(v[1]) is int
                and 1 <= v[1] <= MAX_PAGE
            ),
        )
    },  # fmt: skip
    "windows": {"start": (False, lambda v: type(v) is int and v >= 0), "k": (False, _is_k)},
    "word_windows": {"word": (True, lambda v: type(v) is str)},
    "ledgers": {},
    "progress": {},
}


def checked(question: object) -> None:
    """ValueError naming what is wrong with a question for POST /v1/shards (integral
    numbers made ints in place)."""
    if not isinstance(question, dict) or not isinstance(question.get("view"), str) or question["view"] not in QUESTIONS:
        raise ValueError(f'expected {{"view": one of {", ".join(QUESTIONS)}, ...}}, got {question!r:.80}')
    fields = QUESTIONS[question["view"]]
    for name, value in question.items():  # JSON's 10.0 is the integer 10
        if type(value) is float and value.is_integer():
            question[name] = int(value)
        elif isinstance(value, list):
            question[name] = [int(v) if type(v) is float and v.is_integer() else v for v in value]
    for name, value in question.items():
        if name != "view" and (name not in fields or not fields[name][1](value)):
            raise ValueError(f"{question['view']}: {name!r:.40} is not a field it takes, or not a valid one")
    missing = [name for name, (required, _) in fields.items() if required and name not in question]
    if missing:
        raise ValueError(f"{question['view']}: missing {', '.join(missing)}")
