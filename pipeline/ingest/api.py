"""The ingest service: producers upload text over HTTP (schemas/ingest.openapi.json).

    POST /v1/documents   one document per request; 202 once it is durable in Kafka
    POST /v1/streams     a never-ending body, committed in segments; progress as NDJSON lines
    GET  /health  /metrics  /openapi.json

An upload is a held document: its chunks all go to one chunks partition, then its
end marker. Workers and the aggregator count it only once that marker commits it
(pipeline/aggregator/state.py), so a failed or cut-off upload counts nothing: it gets
an abort marker, or, if this service dies, is abandoned by the same data-defined rule
everywhere. Bodies are read, chunked and sent as they arrive, never held whole.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import re
import socket
import time
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline import codec, faults, kafka, tokenize
from pipeline.chunking import Chunk, Chunker
from pipeline.config import Connection, IngestSettings, Settings
from pipeline.errors import UnavailableError
from pipeline.health import Heartbeat
from pipeline.ingest.chunk_topics import RENEW_SECONDS, ChunkTopics, Fenced
from pipeline.ingest.durability import Durability, NotDurable
from pipeline.ingest.receipts import Receipts
from pipeline.kafka import TopicPartition
from pipeline.statedir.directory import Directory
from pipeline.web.app import HttpError, make_app, query_of, tokens_of
from pipeline.web.server import ServerLimits, serve

log = logging.getLogger("wordpipe.ingest")

CONTENT_TYPES = ("text/plain", "application/octet-stream")
FLUSH_DELAY = 0.05  # seconds from a document's end to the flush marker that gets it counted
MAX_IN_FLIGHT = 64  # chunks sent but not yet acknowledged, per upload: bounds memory
INFLATE_ALLOWANCE = 1 << 20  # decoded bytes a gzip body may produce before its ratio is held to max_inflate_ratio
INFLATE_PIECE = 256 << 10  # decoded bytes at a time
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII
NAME_PATTERN = re.compile(r"[^\x00-\x1f\x7f]{1,1024}")


class Abandoned(UnavailableError):
    """An upload whose end landed past document_max_span: counted nowhere."""


class Document:
    """One held document on its way into Kafka: chunks in, then one verdict."""

    def __init__(self, service: IngestService, name: str, key: str | None, topic: str) -> None:
        self.service = service
        self.settings = service.settings
        self.id = uuid.uuid4().hex
        self.name = name
        self.key = key
        self.topic = topic  # its chunks generation, whole (pipeline/ingest/chunk_topics.py)
        self.partition = service.next_partition()
        self.chunks = 0
        self.bytes = 0
        self.first: int | None = None
        self.in_flight: deque[asyncio.Future[int]] = deque()
        self.ended = False
        self.released = False

    def release(self) -> None:
        """Its generation no longer waits for it (once, however it ended)."""
        if not self.released:
            self.released = True
            self.service.chunk_topics.end(self.topic)

    async def send(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            self.service.chunk_topics.check(self.topic)
            value = codec.encode_chunk(
                codec.ChunkMessage(
                    self.id, self.chunks, self.name, chunk.offset, chunk.data, self.service.tokenizer, held=True
                )
            )
            self.in_flight.append(
                await self.service.producer.enqueue(self.topic, value, self.id.encode(), self.partition)
            )
            self.service.chunk_topics.wrote(len(chunk.data))
            faults.point("ingest.mid_upload")
            self.chunks += 1
            self.bytes += len(chunk.data)
            self.service.metrics_bytes.inc(len(chunk.data))
            self.service.metrics_chunks.inc()
            while len(self.in_flight) > MAX_IN_FLIGHT:
                await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        offset = await self.in_flight.popleft()
        if self.first is None:  # acknowledgements of one partition come in offset order
            self.first = offset

    async def commit(self) -> codec.Receipt:
        """Wait for every chunk, then commit; returns the receipt. Raises if it did not count."""
        try:
            return await self._commit()
        finally:
            if self.ended:
                self.release()

    async def _commit(self) -> codec.Receipt:
        s = self.settings
        while self.in_flight:
            await self._settle_oldest()
        first = self.first if self.first is not None else await self.service.partition_end(self.topic, self.partition)
        if self.key is not None:  # a retry must be able to learn this attempt's fate
            await self.service.durable(await self.service.receipts.write(self._receipt("open", first)))
        faults.point("ingest.before_end")
        self.service.chunk_topics.check(self.topic)
        self.ended = True
        end = codec.encode_end(codec.DocumentEnd(self.id, self.chunks, commit=True))
        offset = await self.service.producer.send(self.topic, end, self.id.encode(), self.partition)
        if self.chunks and offset - first >= s.ingest.document_max_span:
            await self.service.receipts.write(self._receipt("aborted", first))
            raise Abandoned(
                f"the upload took too long: its end landed {offset - first} offsets after its first chunk "
                f"(document_max_span {s.ingest.document_max_span}), so it was abandoned and counts nothing; retry it"
            )
        faults.point("ingest.before_receipt")
        receipt = self._receipt("committed", first)
        offset = await self.service.receipts.write(receipt)
        self.service.ended_on.add((self.topic, self.partition))
        await self.service.durable(offset)
        return receipt

    async def abort(self) -> None:
        """Best effort: the document is abandoned anyway if this cannot reach Kafka."""
        if self.ended:
            return
        self.ended = True
        for future in self.in_flight:
            future.cancel()
        end = codec.encode_end(codec.DocumentEnd(self.id, self.chunks, commit=False))
        try:
            self.service.chunk_topics.check(self.topic)
            await asyncio.wait_for(self.service.producer.send(self.topic, end, self.id.encode(), self.partition), 10)
        except Exception as exc:
            log.warning("could not write the abort of document %s (%s); it will be abandoned", self.id, exc)
        else:
            self.service.ended_on.add((self.topic, self.partition))
        finally:
            self.release()

    def _receipt(self, state: str, first: int) -> codec.Receipt:
        return codec.Receipt(
            self.id, self.key, state, self.partition, first, self.chunks, self.bytes, time.time(), self.topic
        )


class Body:
    """A request body as decoded blocks, read so that no client can hurt the others:

    - gzip inflates as it arrives, at most `max_inflate_ratio` times what came in (beyond
      its first MiB) and at most the size limit, checked 256 KiB at a time, so a bomb is
      refused before more than a MiB of it is chunked;
    - a body that stalls, or (a document's) trickles slower than `upload_min_rate`, is cut
      off. Only time spent waiting on the client counts: not time spent waiting on Kafka.
    """

    def __init__(self, request: web.Request, ingest: IngestSettings, stream: bool = False) -> None:
        self.request = request
        self.limit = ingest.max_document_bytes
        self.ratio = ingest.max_inflate_ratio
        self.window = ingest.upload_stall_seconds
        # A stream may idle (a quiet log): it need only send something each window.
        self.min_rate = 0 if stream else ingest.upload_min_rate
        self.min_bytes = max(1, int(self.min_rate * self.window))
        self.size = 0  # decoded bytes
        self.consumed = 0  # gzip bytes inflated so far
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            raise HttpError(
                415,
                "unsupported_encoding",
                f"Content-Encoding {encoding!r:.60} is not supported; send identity or gzip",
            )
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding != "identity" else None
        length = request.content_length
        if self.inflate is None and length is not None and length > self.limit:
            raise HttpError(
                413, "too_large", f"the body is {length} bytes; the limit is {self.limit} (max_document_bytes)"
            )

    async def blocks(self, tick: float | None = None) -> AsyncIterator[bytes]:
        """Decoded blocks; with `tick`, an empty block whenever none arrived in that time."""
        content, loop = self.request.content, asyncio.get_running_loop()
        waited, got = 0.0, 0  # in the current window
        while True:
            wait = self.window - waited if tick is None else min(tick, self.window - waited)
            began = loop.time()
            raw: bytes | None = None
            try:
                async with asyncio.timeout(wait):  # no task per read, unlike wait_for
                    raw = await content.readany()
            except TimeoutError:
                pass
            waited += loop.time() - began
            got += len(raw or b"")
            if waited >= self.window:
                if got < self.min_bytes:
                    raise self._too_slow(got)
                waited, got = 0.0, 0
            if raw is None:
                if tick is not None:
                    yield b""
                continue
            if not raw:
                break
            for data in self._decode(raw):
                yield data
        if self.inflate is not None and not self.inflate.eof:
            raise HttpError(
                400, "bad_gzip", "the gzip body ended before the end of its stream: truncated; nothing of it counts"
            )

    def _too_slow(self, got: int) -> HttpError:
        if got == 0:
            detail = f"the body sent nothing for {self.window:g} s (upload_stall_seconds)"
        else:
            detail = f"the body sent {got} bytes in {self.window:g} s, under {self.min_rate} bytes/s (upload_min_rate)"
        return HttpError(408, "too_slow", f"{detail}: cut off, nothing of this upload counts", close=True)

    def _decode(self, raw: bytes) -> Iterator[bytes]:
        if self.inflate is None:
            yield self._counted(raw)
            return
        while raw:  # in pieces: a block that inflates a thousandfold never sits whole in memory
            try:
                data = self.inflate.decompress(raw, min(self.limit - self.size + 1, INFLATE_PIECE))
            except zlib.error as exc:
                raise HttpError(400, "bad_gzip", f"the body is not valid gzip ({exc}); nothing of it counts") from None
            self.consumed += len(raw) - len(self.inflate.unconsumed_tail)
            raw = self.inflate.unconsumed_tail
            if self.size + len(data) > self.ratio * self.consumed + INFLATE_ALLOWANCE:
                raise HttpError(
                    413,
                    "inflates_too_much",
                    f"the gzip body inflates more than {self.ratio} times its size (max_inflate_ratio): refused "
                    "as a decompression bomb, nothing of it counts; send it uncompressed or in parts",
                    close=True,
                )
            if data:
                yield self._counted(data)

    def _counted(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.limit:
            raise HttpError(
                413,
                "too_large",
                f"the decoded body exceeds the limit of {self.limit} bytes (max_document_bytes)",
                close=True,
            )
        return data


class IngestService:
    def __init__(self, connection: Connection, settings: Settings) -> None:
        self.settings = settings
        self.connection = connection
        self.tokens = tokens_of(settings.service)
        self.tokenizer = tokenize.Tokenizer.load(settings.text.tokenizer_user_dict).id  # named in every chunk
        self.registry = CollectorRegistry()
        self.metrics_bytes = Counter("wordpipe_ingest_bytes", "Decoded bytes sent to Kafka", registry=self.registry)
        self.metrics_chunks = Counter("wordpipe_ingest_chunks", "Chunks sent to Kafka", registry=self.registry)
        self.metrics_documents = Counter(
            "wordpipe_ingest_documents", "Uploads by outcome", ["outcome"], registry=self.registry
        )
        self.metrics_uploads = Gauge(
            "wordpipe_ingest_uploads_in_progress", "Uploads being received", registry=self.registry
        )
        self.metrics_broker = Gauge("wordpipe_ingest_broker_up", "1 while Kafka answers", registry=self.registry)
        self.heartbeat = Heartbeat(settings.service.health_file)  # the image's HEALTHCHECK
        self._producer: kafka.AsyncProducer | None = None  # made on start, on the service's event loop
        self._receipts: Receipts | None = None
        self._chunk_topics: ChunkTopics | None = None
        self.uploads = 0
        self.uploads_by: collections.Counter[str] = collections.Counter()  # uploads in progress per client address
        self.in_progress: set[str] = set()  # idempotency keys being received
        self.broker_up = False
        self.broker_error = f"Kafka at {connection.bootstrap} not reached yet"
        self._partitions = itertools.cycle(range(settings.topics.chunk_partitions))
        # With a state directory, a 202 waits until the upload is in a durable cut of its journal.
        state_dir = settings.kafka.state_dir
        self.durability = Durability(Directory(Path(state_dir)).durable) if state_dir else None
        self.metrics_durable = Gauge(
            "wordpipe_ingest_state_dir_ok",
            "1 while the state directory takes uploads (1 without one); 0 while it cannot be written",
            registry=self.registry,
        )
        self.metrics_durable.set_function(lambda: int(self.durability is None or self.durability.problem is None))
        self.ended_on: set[tuple[str, int]] = (
            set()
        )  # (generation, partition) with a document end since the last flush marker
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle -------------------------------------------------------------

    @property
    def producer(self) -> kafka.AsyncProducer:
        if self._producer is None:
            raise RuntimeError("the ingest service is not started")
        return self._producer

    @property
    def receipts(self) -> Receipts:
        if self._receipts is None:
            raise RuntimeError("the ingest service is not started")
        return self._receipts

    @property
    def chunk_topics(self) -> ChunkTopics:
        if self._chunk_topics is None:
            raise RuntimeError("the ingest service is not started")
        return self._chunk_topics

    def app(self) -> web.Application:
        app = make_app("ingest", self.tokens, "ingest.openapi.json", self.registry)
        app.router.add_post("/v1/documents", self.post_document)
        app.router.add_post("/v1/streams", self.post_stream)
        app.router.add_get("/health", self.health)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self._producer = kafka.AsyncProducer(
            self.connection,
            {
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": 30_000,
                "queue.buffering.max.kbytes": 64 * 1024,
            },
        )
        self._receipts = Receipts(
            self.connection, self.settings.topics, self.settings.ingest.document_max_span, self.producer
        )
        writer = f"ingest-{socket.gethostname()}-{os.getpid()}"
        self._chunk_topics = ChunkTopics(self.connection, self.settings.topics, writer, self.producer.producer)
        self._tasks = [
            asyncio.create_task(self._watch_broker()),
            asyncio.create_task(self._mark_flushes()),
            asyncio.create_task(self._keep_lease()),
        ]

    async def _stop(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        if self._producer:
            await self._write_flushes()  # what was accepted gets counted without waiting for more traffic
            await asyncio.to_thread(self.producer.close)

    async def _mark_flushes(self) -> None:
        """A flush marker shortly after document ends, so workers close the window holding
        them (pipeline/worker/windows.py) without waiting for it to fill; under load one marker
        closes a window of many documents."""
        while True:
            await asyncio.sleep(FLUSH_DELAY)
            await self._write_flushes()

    async def _write_flushes(self) -> None:
        partitions, self.ended_on = self.ended_on, set()
        for topic, partition in sorted(partitions):
            try:
                self.chunk_topics.check(topic)
                await self.producer.enqueue(topic, codec.encode_flush(), None, partition)
            except kafka.Saturated:
                self.ended_on.add((topic, partition))
            except Fenced:
                pass  # retired: nothing is open there

    async def _keep_lease(self) -> None:
        """Renew this writer's lease on its generations, and follow new ones, every second."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await asyncio.to_thread(self.chunk_topics.tick)
            except kafka.KafkaUnavailable as exc:  # the lease lapses; uploads fail until Kafka is back
                log.warning("could not renew the lease on chunks generations: %s", exc)

    async def document(self, name: str, key: str | None) -> Document:
        """A new held document, in a new generation if this writer filled its own."""
        if self.chunk_topics.due:
            try:
                await asyncio.to_thread(self.chunk_topics.rotate)
            except kafka.KafkaUnavailable as exc:  # nothing of the upload is sent yet: a retry is safe
                raise _as_api_error(exc) from None
        return Document(self, name, key, self.chunk_topics.begin())

    async def _watch_broker(self) -> None:
        """Keep `broker_up` current, so requests fail fast with 503 while Kafka is away. The
        receipts are loaded the first time it answers: no upload is taken before."""
        watch = kafka.BrokerWatch(self.connection)
        loaded = False
        try:
            while True:
                problem = watch.problem
                if problem is None and not loaded:
                    try:
                        await self._load()
                        loaded = True
                    except Exception as exc:
                        problem = f"cannot read the receipts: {exc}"
                self.broker_up = problem is None and loaded
                self.broker_error = problem or self.broker_error
                self.metrics_broker.set(int(self.broker_up))
                self.heartbeat.beat(None if self.broker_up else self.broker_error)
                await asyncio.sleep(1.0)
        finally:
            watch.close()

    async def _load(self) -> None:
        """Before the first upload: the generation to write, the receipts, a verdict for every
        upload a predecessor left open (its generation is kept until then), and a flush
        marker on every partition of every generation, closing windows a predecessor left open."""
        live = await asyncio.to_thread(self.chunk_topics.start)
        await self.receipts.load()
        for receipt in [r for r in self.receipts.by_key.values() if r.state == "open" and r.topic]:
            await self.receipts.settle(receipt)
        partitions = range(self.settings.topics.chunk_partitions)
        self.ended_on.update((self.chunk_topics.topic(n), p) for n in live for p in partitions)

    async def durable(self, receipt_offset: int) -> None:
        """Until the receipt at `receipt_offset` is durable (with a state directory)."""
        if self.durability is not None:
            await self.durability.wait(receipt_offset)

    def next_partition(self) -> int:
        return next(self._partitions)

    async def partition_end(self, topic: str, partition: int) -> int:
        def read() -> int:
            consumer = kafka.consumer(self.connection, "wordpipe-ingest")
            try:
                return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            finally:
                consumer.close()

        return await asyncio.to_thread(read)

    # -- handlers --------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        body = {"ok": self.broker_up, "broker": "up" if self.broker_up else self.broker_error, "uploads": self.uploads}
        if self.durability is not None:
            self.durability.look()
            body["state_dir"] = self.durability.problem or "saving"
            body["ok"] = body["ok"] and self.durability.problem is None
        return web.json_response(body, status=200 if body["ok"] else 503)

    def _admit(self, request: web.Request, stream: bool = False) -> tuple[Body, str]:
        """Checks that need no Kafka; returns the body reader and the document name."""
        kind = request.content_type
        if kind not in CONTENT_TYPES:
            raise HttpError(
                415,
                "unsupported_media_type",
                f"Content-Type {kind!r:.60} is not accepted; send {' or '.join(CONTENT_TYPES)}",
            )
        name = query_of(request).get("name", "upload")
        if not NAME_PATTERN.fullmatch(name):
            raise HttpError(400, "bad_name", "name: 1 to 1024 characters, no control characters")
        body = Body(request, self.settings.ingest, stream)
        if not self.broker_up:
            raise HttpError(
                503,
                "broker_unavailable",
                f"Kafka is unreachable ({self.broker_error}); retry later",
                {"Retry-After": "5"},
            )
        return body, name

    @contextlib.contextmanager
    def _slot(self, request: web.Request) -> Iterator[None]:
        """An upload slot, of max_uploads and of the client's max_uploads_per_client."""
        s, client = self.settings, request.remote or "?"
        if self.uploads >= s.ingest.max_uploads:
            raise HttpError(
                429, "saturated", f"{self.uploads} uploads in progress (max_uploads); retry later", {"Retry-After": "1"}
            )
        if self.uploads_by[client] >= s.ingest.max_uploads_per_client:
            raise HttpError(
                429,
                "client_saturated",
                f"this client ({client}) has {self.uploads_by[client]} uploads in progress "
                "(max_uploads_per_client); finish one first",
                {"Retry-After": "1"},
            )
        self.uploads += 1
        self.uploads_by[client] += 1
        self.metrics_uploads.inc()
        try:
            yield
        finally:
            self.uploads -= 1
            self.uploads_by[client] -= 1
            if not self.uploads_by[client]:
                del self.uploads_by[client]
            self.metrics_uploads.dec()

    async def post_document(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not KEY_PATTERN.fullmatch(key):
            raise HttpError(400, "bad_idempotency_key", "Idempotency-Key: 1 to 255 visible ASCII characters")
        body, name = self._admit(request)
        if key is not None:
            if key in self.in_progress:
                raise HttpError(
                    409,
                    "in_progress",
                    "an upload with this Idempotency-Key is still being received",
                    {"Retry-After": "1"},
                )
            self.in_progress.add(key)
        try:
            if key is not None:
                known = self.receipts.by_key.get(key)
                if known is not None and known.state == "open":
                    try:
                        known = await self.receipts.settle(known)
                    except kafka.KafkaUnavailable as exc:  # still open: the next retry settles it
                        raise _as_api_error(exc) from None
                    self.ended_on.add((known.topic, known.partition))  # its abort gets counted (as nothing) promptly
                if known is not None and known.state == "committed":
                    await self._durable_replay(key)
                    self.metrics_documents.labels("replayed").inc()
                    return web.json_response(_accepted(known), status=202, headers={"Idempotent-Replayed": "true"})
            with self._slot(request):
                return await self._receive(request, body, name, key)
        finally:
            if key is not None:
                self.in_progress.discard(key)

    async def _durable_replay(self, key: str) -> None:
        """A replayed 202 too is an answer that the upload is durable."""
        try:
            await self.durable(self.receipts.offsets[key])
        except NotDurable as exc:
            raise HttpError(
                503, "not_durable", f"{exc}; retry with the same Idempotency-Key", {"Retry-After": "2"}
            ) from None

    async def _receive(self, request: web.Request, body: Body, name: str, key: str | None) -> web.Response:
        document = await self.document(name, key)
        try:
            chunker = Chunker(self.settings.text.chunk_size)
            async for data in body.blocks():
                await document.send(chunker.feed(data))
            await document.send(chunker.finish())
            if request.transport is None or request.transport.is_closing():  # no one to tell: count nothing
                raise ConnectionResetError("the client closed the connection before its upload was committed")
            receipt = await document.commit()
        except BaseException as exc:
            self.metrics_documents.labels("failed").inc()
            if document.ended and isinstance(exc, (kafka.KafkaUnavailable, NotDurable)):  # the commit went out
                raise HttpError(
                    503,
                    "unconfirmed",
                    f"the upload's commit was sent but not confirmed ({exc}); retry with "
                    "the same Idempotency-Key to count it exactly once",
                    {"Retry-After": "5"},
                ) from None
            await document.abort()
            raise _as_api_error(exc) from None
        self.metrics_documents.labels("committed").inc()
        return web.json_response(_accepted(receipt), status=202)

    async def post_stream(self, request: web.Request) -> web.StreamResponse:
        """Commit a segment every stream_segment_bytes or stream_segment_seconds, and say so."""
        body, name = self._admit(request, stream=True)
        with self._slot(request):
            return await self._stream(request, body, name)

    async def _stream(self, request: web.Request, body: Body, name: str) -> web.StreamResponse:
        s = self.settings
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        chunker = Chunker(s.text.chunk_size)
        document = await self.document(name, None)
        acknowledged, segments = 0, 0
        started = time.monotonic()

        async def commit(chunks: list[Chunk]) -> None:
            nonlocal document, acknowledged, segments, started
            await document.send(chunks)
            if document.chunks:
                receipt = await document.commit()
                acknowledged += receipt.bytes
                segments += 1
                self.metrics_documents.labels("committed").inc()
                await response.write(
                    _line(
                        {
                            "document": receipt.document,
                            "bytes": receipt.bytes,
                            "chunks": receipt.chunks,
                            "acknowledged_bytes": acknowledged,
                        }
                    )
                )
                document = await self.document(name, None)
            started = time.monotonic()

        try:
            await response.prepare(request)
            async for data in body.blocks(tick=s.ingest.stream_segment_seconds / 4):
                await document.send(chunker.feed(data))
                if (
                    document.bytes + chunker.pending >= s.ingest.stream_segment_bytes
                    or time.monotonic() - started >= s.ingest.stream_segment_seconds
                ):
                    await commit(chunker.take_whole())
            await commit(chunker.finish())
            await response.write(_line({"done": True, "acknowledged_bytes": acknowledged, "segments": segments}))
        except BaseException as exc:
            await document.abort()
            self.metrics_documents.labels("failed").inc()
            error = _as_api_error(exc)
            if response.prepared:  # the status line is out: the error goes in the stream
                if not isinstance(exc, (ConnectionError, asyncio.CancelledError)):
                    await response.write(
                        _line({"error": error.code, "detail": error.detail, "acknowledged_bytes": acknowledged})
                    )
                if error.close:
                    response.force_close()
                return response
            raise error from None
        await response.write_eof()
        return response


def _accepted(receipt: codec.Receipt) -> dict:
    return {"document": receipt.document, "bytes": receipt.bytes, "chunks": receipt.chunks}


def _line(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _as_api_error(exc: BaseException) -> HttpError:
    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, kafka.Saturated):
        return HttpError(429, "saturated", f"{exc}; retry later", {"Retry-After": "2"})
    if isinstance(exc, kafka.KafkaUnavailable):
        return HttpError(
            503,
            "broker_unavailable",
            f"Kafka did not take the upload ({exc}); nothing of it counts; retry",
            {"Retry-After": "5"},
        )
    if isinstance(exc, Abandoned):
        return HttpError(503, "abandoned", str(exc), {"Retry-After": "1"})
    if isinstance(exc, NotDurable):
        return HttpError(503, "not_durable", f"{exc}; nothing of it counts; retry", {"Retry-After": "2"})
    if isinstance(exc, (ConnectionError, asyncio.CancelledError)):
        return HttpError(400, "cut_off", "the upload was cut off before its end; nothing of it counts")
    if isinstance(exc, Exception) and type(exc).__module__.startswith("aiohttp"):
        return HttpError(400, "bad_body", f"the body could not be read ({exc}); nothing of it counts")
    raise exc


async def run(connection: Connection, settings: Settings) -> None:
    """Serve until cancelled."""
    service = IngestService(connection, settings)
    runner = await serve(
        service.app(), settings.ingest.host, settings.ingest.port, ServerLimits(settings.service.http_idle_seconds)
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
