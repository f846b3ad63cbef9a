"""The faust app: partials in, exactly-once totals out (table, `totals` topic, results API).

Events are consumed without auto-ack. Every `flush_interval` the dirty state buckets
are written to the table's changelog, flushed, then the progress records, flushed,
and only then are the events acked, so faust never commits a partials offset whose
effect is not durable. A crash replays unacked partials, and the source offsets kept
in each bucket recognise the ones already applied.

The aggregator owns the shard states; the read side (views.py) is computed over the
owned ones, and the results API (api.py) serves it. `main` assembles the service: it
builds the receipts reader, the lag watch and the broker watch, and hands them to the
aggregator and the API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from itertools import repeat
from pathlib import Path

import faust
from aiohttp import web
from confluent_kafka import Producer
from faust.stores.memory import Store as MemoryStore
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as faust_kafka
from prometheus_client import CollectorRegistry, Counter

from pipeline import codec, faults, kafka
from pipeline.aggregator import views
from pipeline.aggregator.api import ResultsApi
from pipeline.aggregator.ranking import Ranking
from pipeline.aggregator.state import OverlapError, ShardState
from pipeline.autoscaler.monitor import Watch
from pipeline.config import Connection, Settings
from pipeline.health import Heartbeat
from pipeline.ingest.receipts import Accepted
from pipeline.roster import RosterMetrics
from pipeline.sharding import Router
from pipeline.webserver import ServerLimits, serve

log = logging.getLogger("wordpipe.aggregator")


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    """faust hard-codes fetch_max_wait_ms=1500; Tansu holds every fetch that long."""

    def _create_worker_consumer(self, transport: faust_kafka.Transport):
        assert isinstance(transport, _Transport)  # only our _Transport's _Consumer makes this thread
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms  # read when the consumer starts
        return consumer


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer

    def __init__(self, *args, fetch_max_wait_ms: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms


class _TableManager(TableManager):
    """faust waits a second at start for tables defined late; ours are all defined before it starts."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class Aggregator:
    def __init__(
        self, connection: Connection, settings: Settings, broker: kafka.BrokerWatch, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        s = settings
        datadir = Path(s.aggregator.datadir or Path(tempfile.gettempdir()) / "wordpipe-faust" / s.aggregator.id)
        datadir.parent.mkdir(parents=True, exist_ok=True)
        # The workers' session: Tansu holds a join for half of it, so the cluster's 6 s took
        # 3 s of every start on the embedded broker.
        session_ms = connection.session_timeout_ms
        self.app = faust.App(
            s.aggregator.id,
            broker=f"kafka://{connection.bootstrap}",
            broker_credentials=kafka.faust_credentials(connection.kafka),
            store="memory://",
            # faust makes (empty, with the memory store) directories here; not in the caller's cwd.
            datadir=str(datadir),
            web_enabled=False,  # the results API is ours (pipeline/aggregator/api.py)
            topic_partitions=s.topics.partial_partitions,
            topic_replication_factor=s.topics.replication_factor,
            broker_session_timeout=session_ms / 1000,
            broker_heartbeat_interval=session_ms / 6000,
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            # Acks are ours (after each durable flush); waiting for them at a rebalance or
            # shutdown would only stall: anything unacked is replayed and deduplicated.
            stream_wait_empty=False,
            TableManager=_TableManager,
        )
        self.app.transport = _Transport(self.app.conf.broker, self.app, fetch_max_wait_ms=connection.fetch_max_wait_ms)
        self.partials = self.app.topic(
            s.topics.partials, key_serializer="raw", value_serializer="raw", partitions=s.topics.partial_partitions
        )
        # bytes in and out: faust derives its (recovery) serializers from these types.
        self.table = self.app.Table("state", partitions=s.topics.partial_partitions, key_type=bytes, value_type=bytes)
        # Windowed totals, mirrored from the exact state with absolute values before every
        # read (`windowed_totals`, its only reader): a replay rewrites the same values, so the
        # mirror never counts twice, and a (word, window) changed many times between reads is
        # copied once. In memory only: the buckets' snapshots already hold every window
        # durably, and a loaded shard mirrors all of its windows again.
        self.windowed = self.app.Table(
            "windowed",
            default=int,
            partitions=s.topics.partial_partitions,  # faust's default serializers: json
        ).tumbling(s.aggregator.window_seconds, expires=s.aggregator.window_seconds * s.aggregator.windows_kept)
        self.producer = Producer(kafka.producer_config(connection))  # totals and dead letters
        self.deliveries = kafka.DeliveryTracker()
        self.shards: dict[int, ShardState] = {}
        self.pending: list[faust.EventT] = []
        self.touched: set[int] = set()
        self.lock = asyncio.Lock()
        self.partials_applied = 0
        self.partials_replayed = 0
        self.heartbeat = Heartbeat(s.service.health_file)
        self.broker = broker
        self.router = Router(s.topics.partial_partitions, s.topics.buckets)
        self.kept_windows: dict[int, set[int]] = {}
        self.ranking = Ranking()
        self.unpublished: dict[str, int] = {}  # totals changed since the last publication to the totals topic
        self.next_publication = 0.0  # monotonic time before which the totals timer skips its tick
        self.metric_parts = Counter(
            "wordpipe_aggregator_parts", "Partial parts by outcome", ["outcome"], registry=registry
        )
        self._wire()

    # -- state -----------------------------------------------------------------

    def shard(self, shard: int) -> ShardState:
        state = self.shards.get(shard)
        if state is None:
            prefix = f"{shard}/".encode()
            records = {k.decode(): v for k, v in self.table.data.items() if k.startswith(prefix)}
            s = self.settings
            state = self.shards[shard] = ShardState.load(
                shard, records, s.ingest.document_max_span, s.aggregator.window_seconds, s.aggregator.windows_kept
            )
            self.ranking.update(state.totals())
        return state

    def forget_shards(self, shards: list[int]) -> None:
        for shard in shards:
            self.shards.pop(shard, None)
            self.kept_windows.pop(shard, None)
        self.ranking = Ranking()  # rebuilt from the shards still here, as `shard()` loads them
        for state in self.shards.values():
            self.ranking.update(state.totals())

    def owned(self) -> dict[int, ShardState]:
        """The states of the shards owned and recovered here, for the views; {} while rebalancing."""
        return {shard: self.shard(shard) for shard in self.owned_shards()}

    def owned_shards(self) -> list[int]:
        """Partials partitions this instance owns and has recovered; [] while rebalancing."""
        tables = self.app.tables
        assert isinstance(tables, TableManager)  # faust's TableManagerT does not declare `recovery`
        if self.app.rebalancing or not tables.recovery.completed.is_set():
            return []
        return sorted(
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.topics.partials
        )

    def on_event(self, event: faust.EventT) -> None:
        message = event.message
        try:
            parts = codec.decode_partials(message.value, message.partition)
        except codec.CodecError as exc:
            self.dead_letter(message, str(exc))
        else:
            state = self.shard(message.partition)
            for part in parts:
                try:
                    applied = state.apply(part)
                except OverlapError as exc:  # workers disagree on window settings: an operator must look
                    log.error("%s; dead-lettering the record", exc)
                    self.dead_letter(message, f"{exc} (this part only; the record's other parts were applied)")
                    continue
                if applied:
                    self.partials_applied += 1
                else:
                    self.partials_replayed += 1
                self.metric_parts.labels("applied" if applied else "replayed").inc()
            self.touched.add(message.partition)
        self.pending.append(event)

    def dead_letter(self, message, reason: str) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason)
        letter = codec.DeadLetter(message.topic, message.partition, message.offset, reason, message.value or b"")
        self.producer.produce(
            self.settings.topics.deadletter, codec.encode_deadletter(letter), on_delivery=self.deliveries
        )

    async def flush(self) -> None:
        """Make everything applied so far durable, then ack its events.

        A flush that fails ends the process: its buckets are no longer marked dirty, so
        carrying on could let a later progress record vouch for counts that are not
        durable. A restart recovers the durable state and replays the unacked partials.
        """
        try:
            await self._flush()
        except Exception:
            log.critical("flush failed; exiting so that recovery starts from durable state", exc_info=True)
            logging.shutdown()
            os._exit(70)

    async def _flush(self) -> None:
        async with self.lock:
            if not self.pending:
                return
            events, self.pending = self.pending, []
            touched, self.touched = self.touched, set()
            progress = []
            for shard in sorted(touched):
                buckets, progress_record = self.shards[shard].snapshot()
                self.write(shard, buckets)
                progress.append((shard, progress_record))
            await self.flush_producers()
            faults.point("aggregator.before_progress")
            for shard, record in progress:  # only after the buckets it vouches for are durable
                self.write(shard, record)
            await self.flush_producers()
            faults.point("aggregator.before_ack")
            for event in events:
                event.ack()

    def write(self, shard: int, records: dict[str, bytes]) -> None:
        for key, value in records.items():
            raw_key = key.encode()
            self.table.send_changelog(shard, raw_key, value, key_serializer="raw", value_serializer="raw")
            self.table.data[raw_key] = value

    async def flush_producers(self) -> None:
        await self.app.producer.flush()
        while len(self.producer):
            self.producer.poll(0)
            await asyncio.sleep(0.005)
        if self.deliveries.failures:
            raise kafka.KafkaUnavailable(f"delivery failed: {self.deliveries.failures[0]}")

    def window_range(self, start: int) -> tuple[float, float]:
        window = self.windowed.table.window
        assert window is not None  # a tumbling table
        return window.ranges(start)[0]

    def mirror_windows(self, shard: int) -> None:
        """Copy changed (word, window) totals into the faust windowed table, and drop the
        windows the state no longer keeps."""
        state = self.shards.get(shard)
        if state is None:
            return
        table = self.windowed.table
        # The memory store's own dict (store="memory://" above), filled in C: a faust
        # __setitem__ per (word, window) cost more than counting the word.
        store = table.data
        assert isinstance(store, MemoryStore)
        data = store.data
        for start, counts in state.take_dirty_windowed().items():
            window = self.window_range(start)
            data.update(zip(zip(counts, repeat(window)), counts.values(), strict=True))
        kept, known = state.window_starts(), self.kept_windows.get(shard)
        if known is None or not kept >= known:  # new here (faust may have recovered stale windows), or one expired
            self.kept_windows[shard] = kept
            for key in [k for k in table.data if int(k[1][0]) not in kept and self.router.route(k[0])[0] == shard]:
                del table.data[key]
        elif kept != known:  # only a new window: nothing to forget
            self.kept_windows[shard] = kept

    def windowed_totals(self, word: str) -> dict[int, int]:
        """A word's total per kept window (start in Unix seconds), from the faust windowed table."""
        for shard in self.owned_shards():
            self.mirror_windows(shard)
        starts = views.window_starts(self.owned())
        return {start: self.windowed[word][self.window_range(start)] for start in starts}

    def ranked(self) -> Ranking:
        """The ranking, with every change applied so far folded in (for the top-K view)."""
        self.take_changes()
        return self.ranking

    def take_changes(self) -> None:
        """Bring the ranking and the totals to publish up to what is applied."""
        for state in self.shards.values():
            if state.dirty_words:
                changed = state.take_dirty_words()
                self.ranking.update(changed)
                self.unpublished.update(changed)

    def publish_totals(self) -> None:
        self.take_changes()
        topic = self.settings.topics.totals
        changed, self.unpublished = self.unpublished, {}
        values = codec.encode_totals(changed, self.settings.aggregator.totals_format)
        shards = self.router.shards_of(changed)
        for word, value, shard in zip(changed, values, shards, strict=True):
            self.produce(topic, value, key=word.encode(), partition=shard)
        self.producer.poll(0)

    def produce(self, topic: str, value: bytes, key: bytes, partition: int) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key=key, partition=partition)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.01)

    def _wire(self) -> None:
        app = self.app

        @app.agent(self.partials, name="aggregate")
        async def aggregate(stream):
            async for event in stream.noack().events():
                self.on_event(event)

        @app.timer(self.settings.aggregator.flush_interval, name="flush")
        async def flush_timer() -> None:
            await self.flush()
            self.heartbeat.beat(self.broker.problem)

        @app.timer(self.settings.aggregator.totals_interval, name="publish-totals")
        async def totals_timer() -> None:
            if time.monotonic() < self.next_publication:
                return
            started = time.monotonic()
            self.publish_totals()
            # With a large vocabulary a publication can take seconds (a million words changed:
            # ~2.5 s, a record each); waiting 9x as long keeps it to a tenth of the event loop,
            # and a word that keeps changing meanwhile is published once (docs/totals-topic.md).
            self.next_publication = time.monotonic() + 9 * (time.monotonic() - started)

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode: handler(sender, *args, **kw)
        async def on_revoked(app, revoked, **kwargs) -> None:
            await self.flush()
            self.forget_shards([tp.partition for tp in revoked if tp.topic == self.settings.topics.partials])

        @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: handler(sender, *args, **kw)
        async def on_shutdown(app, **kwargs) -> None:
            await self.flush()  # a clean stop leaves nothing to replay
            self.publish_totals()
            await self.flush_producers()


def serve_results(app: faust.App, api: ResultsApi, settings: Settings) -> None:
    """Serve the results API from the faust worker's event loop, until it shuts down."""
    runner: web.AppRunner | None = None

    @app.task
    async def start_serving() -> None:
        nonlocal runner
        runner = await serve(
            api.app(),
            settings.aggregator.host,
            settings.aggregator.port,
            ServerLimits(settings.service.http_idle_seconds),
        )

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: handler(sender, *args, **kw)
    async def stop_serving(app, **kwargs) -> None:
        if runner is not None:
            await runner.cleanup()


def main(settings: Settings) -> int:
    connection = Connection.to(settings.kafka, why="the aggregator needs a bootstrap address")
    broker = kafka.BrokerWatch(connection)
    watch = Watch(connection, settings)
    registry = CollectorRegistry()
    registry.register(RosterMetrics(watch.monitor.roster))  # the workers' own figures
    aggregator = Aggregator(connection, settings, broker, registry)
    api = ResultsApi(settings, aggregator, registry, Accepted(connection, settings.topics), watch, broker)
    serve_results(aggregator.app, api, settings)
    worker = faust.Worker(aggregator.app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    return 0
