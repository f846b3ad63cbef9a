"""The faust app: partials in, exactly-once totals out (changelogs, `totals` topic, results API).

Events are consumed without auto-ack. Every `flush_interval` each touched shard writes a
batch of what changed to its changelog (pipeline/aggregator/changelog.py), and only once
every batch is acknowledged are the events acked, so faust never commits a partials
offset whose effect is not durable. A crash replays unacked partials, and the applied
windows each batch carries recognise the ones already counted. A shard this instance comes
to own is recovered from its changelog before its first event is applied.

Decoding never raises past `on_event`: a record that does not decode, whatever its
shape, is dead-lettered with the reason and counting goes on.

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
from collections.abc import Iterable, MutableMapping
from pathlib import Path

import faust
from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faust.assignor import PartitionAssignor
from faust.exceptions import ConsumerNotStarted
from faust.stores.memory import Store as MemoryStore
from faust.tables import TableManager
from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as faust_kafka
from prometheus_client import CollectorRegistry, Counter

from pipeline import codec, faults, generations, kafka
from pipeline.aggregator import views
from pipeline.aggregator.api import ResultsApi
from pipeline.aggregator.changelog import Changelog, Superseded
from pipeline.aggregator.partials_topics import PartialsTopics, assigned_shards
from pipeline.aggregator.ranking import Ranking
from pipeline.aggregator.state import OverlapError, ShardState, pack
from pipeline.config import AggregatorSettings, Connection, Settings, TopicSettings
from pipeline.health import Heartbeat
from pipeline.kafka import KafkaException
from pipeline.observe.accepted import Accepted
from pipeline.observe.lag import Watch
from pipeline.observe.roster import RosterMetrics
from pipeline.sharding import Router
from pipeline.web.app import tokens_of
from pipeline.web.server import ServerLimits, serve

log = logging.getLogger("wordpipe.aggregator")
GENERATIONS_EVERY = 5.0  # seconds between looks at the partials generations (partials_topics.py)
REWIND_AGAIN = 5.0  # seconds a partition sent back to a skipped record has to get there (`in_order`)


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    """faust hard-codes fetch_max_wait_ms=1500; Tansu holds every fetch that long. And a
    rebalance (every change of partials generations is one) can take a partition between
    faust's look at the assignment and its use of it: faust then crashed the aggregator
    (aiokafka's "Partition is not assigned" in the fetcher, "No partitions assigned" at a
    commit). Such a commit is skipped as one a rebalance overtook (the records are read
    again and recognised as replays), and the fetcher's highwater, a metric, is unknown (None).

    An instance alone (`AggregatorSettings.alone`) joins no group: it assigns itself every
    partition of what it subscribes to, and hears of it as from a rebalance."""

    alone = False
    generation = 0  # of the assignments an instance alone gave itself
    assigning: asyncio.Future | None = None

    def _create_worker_consumer(self, transport: faust_kafka.Transport):
        assert isinstance(transport, _Transport)  # only our _Transport's _Consumer makes this thread
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms  # read when the consumer starts
        commit, highwater = consumer.commit, consumer.highwater

        async def commit_unless_rebalanced(offsets=None):
            try:
                return await commit(offsets)
            except IllegalStateError as exc:
                raise CommitFailedError() from exc  # "already rebalanced": faust returns False

        def highwater_if_assigned(tp):
            return highwater(tp) if tp in consumer.assignment() else None  # None: not known, as before a fetch

        consumer.commit, consumer.highwater = commit_unless_rebalanced, highwater_if_assigned
        self.partials, self.alone = transport.partials, transport.alone
        self.next_offsets = transport.next_offsets
        return consumer

    async def subscribe(self, topics: Iterable[str]) -> None:
        if not self.alone:
            return await super().subscribe(topics)

        async def assign_next() -> None:  # after the one before, as a group's rebalances come
            self.assigning = asyncio.ensure_future(self._assign_all(set(topics), self.assigning))

        await self.call_thread(assign_next)

    async def _assign_all(self, topics: set[str], before: asyncio.Future | None) -> None:
        """Take every partition of `topics`, the way a rebalance hands them over: everything
        held is revoked first, and a new generation makes faust drop what was fetched before."""
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)  # it crashed the thread if it failed
        try:
            consumer = self._ensure_consumer()
            partitions = await self._partitions(consumer, topics)
            self.app.on_rebalance_start()
            await self.on_partitions_revoked(ensure_TPset(consumer.assignment()))
            consumer.assign([TopicPartition(tp.topic, tp.partition) for tp in partitions])
            self.generation += 1
            self.app.consumer_generation_id = self.generation
            await self.on_partitions_assigned(partitions, self.generation)
        except Exception as exc:  # nothing would be read any more: crash the consumer thread rather than idle
            log.exception("could not assign the partials partitions to this instance")
            await self.crash(exc)

    async def _partitions(self, consumer, topics: set[str]) -> set[faust.types.TP]:
        """Every partition of `topics`, once the broker knows them all (they are made before
        they are subscribed to; a broker away is asked again)."""
        tries = 0
        while True:
            tries += 1
            try:
                cluster = await consumer._client.fetch_all_metadata()
            except KafkaError as exc:
                log.warning("cannot read the partials topics' partitions: %s", exc)
                cluster = None
            known = {topic: cluster.partitions_for_topic(topic) if cluster else None for topic in topics}
            if all(known.values()):
                return {faust.types.TP(topic, p) for topic, partitions in known.items() for p in partitions or ()}
            if tries % 100 == 0:  # every ~10 s
                log.warning("waiting for topics to subscribe to: %s", ", ".join(t for t, p in known.items() if not p))
            await asyncio.sleep(0.1)

    async def on_partitions_assigned(self, assigned: set[faust.types.TP], generation_id: int = 0) -> None:
        """A partials partition the group has committed nothing for is read from offset 0, not
        from the broker's "earliest": Tansu answers that with its batch written first, not
        the one of lowest offset, and two workers writing at once made an instance that took
        over a partition skip its first record (a run waited forever for its windows). Here,
        in the rebalance listener, before anything is fetched: where aiokafka says a seek belongs."""
        consumer = self._ensure_consumer()
        partials = [tp for tp in assigned if (found := generations.of(tp.topic)) and found[0] == self.partials]
        committed = await asyncio.gather(*(consumer.committed(tp) for tp in partials))
        for tp, offset in zip(partials, committed, strict=True):
            if offset is None:
                consumer.seek(tp, 0)
            self.next_offsets[tp] = offset or 0  # where reading starts (Aggregator.in_order)
        await super().on_partitions_assigned(assigned, generation_id)


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: faust.types.TP, offset_from: int, offset_to: int) -> None:
        """faust takes offsets it did not read for a compacted topic's and acks them. A partials
        topic has a record at every offset: offsets skipped are records faust dropped (at a
        rebalance), and acking them would commit past records never applied. They are read
        again (Aggregator.in_order)."""


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer

    def __init__(
        self,
        *args,
        fetch_max_wait_ms: int,
        partials: str,
        alone: bool,
        next_offsets: dict[faust.types.TP, int],
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.partials = partials  # the partials topic's base name (its generations: partials.gN)
        self.alone = alone
        self.next_offsets = next_offsets  # the Aggregator's: set at each assignment


class _TableManager(TableManager):
    """faust waits a second at start for tables defined late; ours are all defined before it starts."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class Aggregator:
    def __init__(
        self,
        connection: Connection,
        aggregator: AggregatorSettings,
        topics: TopicSettings,
        document_max_span: int,
        broker: kafka.BrokerWatch,
        registry: CollectorRegistry,
        health_file: str | None = None,
    ) -> None:
        self.config = aggregator
        self.topics = topics
        self.document_max_span = document_max_span  # ingest's: how far a held document's end may lie
        self.connection = connection
        datadir = Path(aggregator.datadir or Path(tempfile.gettempdir()) / "wordpipe-faust" / aggregator.id)
        datadir.parent.mkdir(parents=True, exist_ok=True)
        # The workers' session: Tansu holds a join for half of it, so the cluster's 6 s took
        # 3 s of every start on the embedded broker.
        session_ms = connection.session_timeout_ms
        # By partials partition: the offset of the record to read next (`in_order`), from the
        # group's committed one at each assignment; until when one sent back to a record faust
        # skipped ignores the records past it (fetched before the seek).
        self.next_offsets: dict[faust.types.TP, int] = {}
        self.rewinding: dict[faust.types.TP, float] = {}
        self.stalled: dict[faust.types.TP, int] = {}  # next offsets the consumer stood past at the last look
        self.app = faust.App(
            aggregator.id,
            broker=f"kafka://{connection.bootstrap}",
            broker_credentials=kafka.faust_credentials(connection.kafka),
            store="memory://",
            # faust makes (empty, with the memory store) directories here; not in the caller's cwd.
            datadir=str(datadir),
            web_enabled=False,  # the results API is ours (pipeline/aggregator/api.py)...
            canonical_url=aggregator.peer_url,  # ...and faust hands every member the others' URLs (`peers`)
            topic_partitions=topics.partial_partitions,
            topic_replication_factor=topics.replication_factor,
            broker_session_timeout=session_ms / 1000,
            broker_heartbeat_interval=session_ms / 6000,
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            # Acks are ours (after each durable flush); waiting for them at a rebalance or
            # shutdown would only stall: anything unacked is replayed and deduplicated.
            stream_wait_empty=False,
            TableManager=_TableManager,
        )
        self.app.transport = _Transport(
            self.app.conf.broker,
            self.app,
            fetch_max_wait_ms=connection.fetch_max_wait_ms,
            partials=topics.partials,
            alone=aggregator.alone,
            next_offsets=self.next_offsets,
        )
        # The partials generations consumed change as generations come and go (partials_topics.py).
        self.admin = kafka.admin(connection)  # the partials generations' and the changelogs'
        self.partials_topics = PartialsTopics(connection, self.admin, topics, aggregator.id)
        self.partials = self.app.topic(
            *self.partials_topics.start(),
            key_serializer="raw",
            value_serializer="raw",
            partitions=topics.partial_partitions,
        )
        # Windowed totals, mirrored from the exact state with absolute values, a word's
        # windows as it is read (`windowed_totals`, the only reader): a replay rewrites the
        # same values, so the mirror never counts twice. In memory only: the shards'
        # changelogs hold every window durably.
        self.windowed = self.app.Table(
            "windowed",
            default=int,
            partitions=topics.partial_partitions,  # faust's default serializers: json
        ).tumbling(aggregator.window_seconds, expires=aggregator.window_seconds * aggregator.windows_kept)
        self.producer = kafka.producer(connection)  # changelogs, totals and dead letters
        self.deliveries = kafka.DeliveryTracker()
        self.shards: dict[int, ShardState] = {}  # recovered and owned
        self.changelogs: dict[int, Changelog] = {}
        # Revoked by a rebalance, kept until the next assignment: if they come back to us and
        # no one wrote their changelogs meanwhile, they need no recovery.
        self.parked: dict[int, tuple[ShardState, Changelog]] = {}
        self.recovering: dict[int, asyncio.Future[ShardState]] = {}
        self.fragments: dict[int, codec.Fragments] = {}  # by partition: parts arriving in fragments
        self.fragment_events: dict[tuple[int, codec.FragmentKey], list[faust.EventT]] = {}
        self.pending: list[faust.EventT] = []
        self.touched: set[int] = set()
        self.lock = asyncio.Lock()
        self.partials_applied = 0
        self.partials_replayed = 0
        self.words_replayed = 0  # in parts recognised as already applied
        self.heartbeat = Heartbeat(health_file)
        self.broker = broker
        self.router = Router(topics.partial_partitions, topics.buckets)
        self.kept_windows: dict[int, set[int]] = {}
        self.ranking = Ranking()
        self.unpublished: dict[int, set[str]] = {}  # by shard: words whose total changed since it was published
        self.next_publication = 0.0  # monotonic time before which the totals timer skips its tick
        self.metric_parts = Counter(
            "wordpipe_aggregator_parts", "Partial parts by outcome", ["outcome"], registry=registry
        )
        self.metric_words_replayed = Counter(
            "wordpipe_aggregator_words_replayed",
            "Words in partial parts recognised as already applied (replays after a crash), not counted again",
            registry=registry,
        )
        self.metric_deadletters = Counter(
            "wordpipe_aggregator_deadletters", "Partials records the aggregator dead-lettered", registry=registry
        )
        self._wire()

    # -- state -----------------------------------------------------------------

    async def recover(self, shards: list[int]) -> None:
        """Load newly owned shards from their changelogs, each into a generation of its own;
        take back parked shards whose changelog generation is still the newest.

        Every shard it will own is marked recovering before its first wait: an event for one
        meanwhile waits for it (`shard`), where it once started a second recovery that
        replaced the state taken back, and what was applied to that state in between was lost."""
        loop = asyncio.get_running_loop()
        shards = [shard for shard in shards if shard not in self.shards and shard not in self.recovering]
        for shard in shards:
            self.recovering[shard] = loop.create_future()
        parked, self.parked = self.parked, {}
        try:
            for shard, (state, changelog) in parked.items():
                if shard in shards and await asyncio.to_thread(changelog.is_newest):
                    self.shards[shard], self.changelogs[shard] = state, changelog
                    self.recovering.pop(shard).set_result(state)
            self.forget_shards([shard for shard in parked if shard not in self.shards])
            if back := sorted(set(parked) & set(self.shards)):
                log.info("shards %s are ours again, as they were: no recovery", back)
            missing = [shard for shard in shards if shard not in self.shards]
            loaded = await asyncio.gather(*(asyncio.to_thread(self._load, shard) for shard in missing))
            await self.flush_producers()  # every new generation's checkpoint
            for state, changelog in loaded:
                self.shards[state.shard], self.changelogs[state.shard] = state, changelog
                # A crash may have kept totals from the topic; a clean stop published them all.
                publishes = self.config.totals_interval and not state.published
                self.unpublished[state.shard] = set(state.counts) if publishes else set()
                self.ranking.update(state.counts)
                self.recovering.pop(state.shard).set_result(state)
        except BaseException as exc:
            for shard in shards:
                future = self.recovering.pop(shard, None)
                if future is not None and not future.done():
                    future.set_exception(exc)
            raise

    def _load(self, shard: int) -> tuple[ShardState, Changelog]:
        changelog = Changelog(
            self.connection,
            self.admin,
            self.config.id,
            shard,
            self.topics.replication_factor,
            self.producer,
            self.config.checkpoint_min_bytes,
        )
        batches = changelog.recover()
        state = ShardState.load(
            shard, batches, self.document_max_span, self.config.window_seconds, self.config.windows_kept
        )
        changelog.start_generation(pack(state.take_batch(checkpoint=True)), self.deliveries)
        log.info(
            "shard %d recovered: %d words, %d batches; now writing %s",
            shard,
            len(state.counts),
            len(batches),
            changelog.topic,
        )
        return state, changelog

    async def shard(self, shard: int) -> ShardState:
        state = self.shards.get(shard)
        if state is not None:
            return state
        if shard not in self.recovering:  # an event before the assignment's recovery began
            await self.recover([shard])
        return await self.recovering[shard] if shard in self.recovering else self.shards[shard]

    def park(self, shards: list[int]) -> None:
        """Set revoked shards aside until the assignment that follows (see `recover`); what
        else is kept of them (unpublished totals, the ranking) waits with them."""
        for shard in shards:
            state, changelog = self.shards.pop(shard, None), self.changelogs.pop(shard, None)
            if state is not None and changelog is not None:
                self.parked[shard] = (state, changelog)
            self.fragments.pop(shard, None)  # unacked: read again
        self.fragment_events = {k: v for k, v in self.fragment_events.items() if k[0] not in shards}

    async def follow_generations(self) -> None:
        """Consume new partials generations, drop those done with (partials_topics.py), and
        forget the windows of chunks generations that can come no more."""
        try:
            change = await asyncio.to_thread(self.partials_topics.step)
        except (kafka.KafkaUnavailable, KafkaException) as exc:  # Kafka away: the next tick tries again
            log.warning("cannot follow the partials generations: %s", exc)
            return
        if change is not None:
            log.info("consuming %s", ", ".join(change.topics))
            resubscribe(self.app, self.partials, change.topics)
        for state in self.shards.values():
            topics = {name.rpartition(":")[0] for name in state.applied if isinstance(name, str)}
            finished = {topic for topic in topics if self.partials_topics.finished(topic)}
            if finished:
                state.forget(finished)
                self.touched.add(state.shard)

    def forget_shards(self, shards: list[int]) -> None:
        for shard in shards:
            for kept in (self.shards, self.changelogs, self.kept_windows, self.unpublished):
                kept.pop(shard, None)
            self.fragments.pop(shard, None)  # unacked: the next owner reads them again
        self.fragment_events = {k: v for k, v in self.fragment_events.items() if k[0] not in shards}
        self.ranking = Ranking()  # rebuilt from the shards still here
        for state in self.shards.values():
            self.ranking.update(state.counts)

    def owned(self) -> dict[int, ShardState]:
        """The states of the shards owned and recovered here, for the views. While a rebalance
        runs, those it revoked are read as they were when revoked (flushed first): a lone
        instance gets them all back, as at every change of partials generations, and its
        answers have no gap meanwhile."""
        if self.app.rebalancing:
            return {**{shard: state for shard, (state, _) in self.parked.items()}, **self.shards}
        return {shard: self.shards[shard] for shard in self.owned_shards()}

    def peers(self) -> dict[int, str]:
        """The results API of the instance that owns each shard not owned here, from the
        group's last assignment (faust gives every member all of it, URLs included); {}
        while rebalancing."""
        if self.app.rebalancing:
            return {}
        mine = str(self.app.conf.canonical_url)
        assignor = self.app.assignor
        assert isinstance(assignor, PartitionAssignor)  # faust's own; its interface type lacks the map
        return {
            partition: url
            for url, topics in assignor.external_topic_distribution.items()
            if url != mine
            for partitions in topics.values()
            for partition in partitions
        }

    def owned_shards(self) -> list[int]:
        """Partials partitions this instance owns and has recovered; [] while rebalancing."""
        if self.app.rebalancing:
            return []
        return [
            shard
            for shard in assigned_shards(self.app.consumer.assignment(), self.topics.partials)
            if shard in self.shards
        ]

    async def on_event(self, event: faust.EventT) -> None:
        message = event.message
        if faults.fires("aggregator.drop_fetched"):  # as faust drops what it fetched at a rebalance
            await self.app.consumer.seek_wait({message.tp: message.offset + 1})
            return
        if not await self.in_order(message):
            return  # read again, in order
        try:
            parts = self.parts_of(message, event)
        except Exception as exc:  # anything a record can make a decoder raise: its reason, then on
            self.dead_letter(message, str(exc) if isinstance(exc, codec.CodecError) else _crash_reason(exc))
            parts = []
        if parts is None:
            return  # a fragment of a part not yet whole: acked with the part
        if parts:
            state = await self.shard(message.partition)
            for part in parts:
                self.apply(state, message, part)
            self.touched.add(message.partition)
        self.pending.append(event)

    async def in_order(self, message) -> bool:
        """Whether a record is its partition's next one (or one read again), so that no ack goes
        past a record never applied. faust drops what it fetched when a rebalance stops the
        flow, and reads on from where its consumer stood: an instance that took its shards
        back once never counted a document's windows there, and acked past them. A record
        past one never read sends the partition back to it (`read_again`)."""
        tp, offset = message.tp, message.offset
        expected = self.next_offsets.get(tp, offset)
        if offset <= expected:
            self.next_offsets[tp] = max(expected, offset + 1)
            return True
        if time.monotonic() < self.rewinding.get(tp, 0.0):
            return False  # fetched before the seek back: it comes again
        if await self.read_again(tp, expected, offset):
            return False
        self.next_offsets[tp] = offset + 1
        return True

    async def find_skipped(self) -> None:
        """Records faust dropped with none after them show no gap to `in_order`: a partials
        partition whose consumer stands past the next record to read, with nothing read there
        since the last look, is sent back to it."""
        stalled, self.stalled = self.stalled, {}
        try:
            assigned = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return
        partitions = [tp for tp in assigned if tp in self.next_offsets]
        positions = await asyncio.gather(*(self.position(tp) for tp in partitions))
        for tp, position in zip(partitions, positions, strict=True):
            expected = self.next_offsets[tp]
            if position is None or position <= expected or time.monotonic() < self.rewinding.get(tp, 0.0):
                continue
            if stalled.get(tp) != expected:
                self.stalled[tp] = expected  # records in flight, maybe: the next look tells
            elif not await self.read_again(tp, expected, position):
                self.next_offsets[tp] = max(self.next_offsets[tp], position)

    async def position(self, tp: faust.types.TP) -> int | None:
        """Where the consumer reads `tp` next; None if it is not placed yet, or taken away."""
        try:
            return await asyncio.wait_for(self.app.consumer.position(tp), timeout=2)
        except (KafkaError, IllegalStateError, AssertionError, TimeoutError):  # aiokafka asserts the assignment
            return None

    async def read_again(self, tp: faust.types.TP, expected: int, until: int) -> bool:
        """Send `tp` back to `expected` if the broker holds a record there before `until`;
        False if it holds none (retention or compaction took them: reading goes on)."""
        first = await asyncio.to_thread(kafka.first_offset_from, self.connection, tp.topic, tp.partition, expected)
        if first is None or first >= until:
            log.warning("%s:%d has no record at %d..%d; reading on", tp.topic, tp.partition, expected, until - 1)
            return False
        if tp in self.app.consumer.assignment():
            log.warning(
                "%s:%d: records from %d were skipped at a rebalance; reading them again",
                tp.topic,
                tp.partition,
                expected,
            )
            self.rewinding[tp] = time.monotonic() + REWIND_AGAIN
            try:
                await self.app.consumer.seek_wait({tp: expected})
            except (KafkaError, IllegalStateError, TimeoutError) as exc:  # taken away meanwhile: the next look retries
                log.warning("could not seek %s:%d back to %d: %s", tp.topic, tp.partition, expected, exc)
        return True

    def parts_of(self, message, event: faust.EventT) -> list[codec.PartialMessage] | None:
        """A record's parts; None for a fragment that does not yet complete its part (its
        event waits unacked, so faust commits nothing past it until the part is applied)."""
        decoded = codec.decode_partials(message.value, message.partition)
        if not isinstance(decoded, codec.Fragment):
            return decoded
        key = (message.partition, decoded.key)
        waiting = self.fragment_events.setdefault(key, [])
        blob = self.fragments.setdefault(message.partition, codec.Fragments()).add(decoded)
        if blob is None:
            waiting.append(event)
            return None
        self.pending.extend(self.fragment_events.pop(key))  # a start over's events included
        return [codec.decode_part(blob, message.partition)]

    def apply(self, state: ShardState, message, part: codec.PartialMessage) -> None:
        try:
            applied = state.apply(part)
        except OverlapError as exc:  # workers disagree on window settings: an operator must look
            log.error("%s; dead-lettering the record", exc)
            self.dead_letter(message, f"{exc} (this part only; the record's other parts were applied)")
            return
        if applied:
            self.partials_applied += 1
        else:
            self.partials_replayed += 1
            # An upload's words come held for their document's verdict: replayed all the same.
            buckets = [*part.buckets.values(), *(c for held in part.held.values() for c in held.buckets.values())]
            words = sum(sum(counts.values()) for counts in buckets)
            self.words_replayed += words
            self.metric_words_replayed.inc(words)
        self.metric_parts.labels("applied" if applied else "replayed").inc()

    def dead_letter(self, message, reason: str) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason)
        self.metric_deadletters.inc()
        letter = codec.DeadLetter(message.topic, message.partition, message.offset, reason, message.value or b"")
        kafka.produce(
            self.producer,
            self.topics.deadletter,
            codec.encode_deadletter(letter),
            0,
            on_delivery=self.deliveries,
        )

    async def flush(self) -> None:
        """Make everything applied so far durable, then ack its events.

        A flush that fails ends the process: the batches it took are no longer pending, so
        carrying on could let a later batch vouch for counts that are not durable. A restart
        recovers the durable state and replays the unacked partials.
        """
        try:
            await self._flush()
        except Superseded as exc:
            log.warning("%s; exiting: the new owner counts from here", exc)
            logging.shutdown()
            os._exit(70)
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
            rotated = counted = False
            for shard in sorted(touched):
                state, changelog = self.shards.get(shard), self.changelogs.get(shard)
                if state is None or changelog is None or not state.dirty:
                    continue
                counted = counted or bool(state.changed)
                self.fold_changes(shard, state)
                if changelog.wants_checkpoint():
                    checkpoint = pack(state.take_batch(checkpoint=True))
                    await asyncio.to_thread(changelog.start_generation, checkpoint, self.deliveries)
                    rotated = True
                else:
                    changelog.append(pack(state.take_batch()), self.deliveries)
            await self.flush_producers()
            if rotated:
                faults.point("aggregator.after_rotation")  # two generations, the newer one whole
            if counted:  # a crash here replays words, not only start-up windows that carry none
                faults.point("aggregator.before_ack")
            for event in events:
                event.ack()

    async def retire_superseded(self) -> None:
        """Delete the generations our own have superseded, once due (changelog.py: RETIRE_AFTER)."""
        for changelog in list(self.changelogs.values()):
            if changelog.retire_at is not None and changelog.retire_at <= time.monotonic():
                await asyncio.to_thread(changelog.retire)

    async def flush_producers(self) -> None:
        while len(self.producer):
            self.producer.poll(0)
            await asyncio.sleep(0.005)
        if self.deliveries.failures:
            raise kafka.KafkaUnavailable(f"delivery failed: {self.deliveries.failures[0]}")

    def window_range(self, start: int) -> tuple[float, float]:
        window = self.windowed.table.window
        assert window is not None  # a tumbling table
        return window.ranges(start)[0]

    def fold_changes(self, shard: int, state: ShardState) -> None:
        """Hand what changed since the last batch to the readers (the ranking, the totals
        topic) before a batch takes it."""
        self.ranking.update(state.changed)
        if self.config.totals_interval:  # no totals topic: nothing to publish, nothing to track
            self.unpublished.setdefault(shard, set()).update(state.changed)

    def windowed_totals(self, word: str) -> dict[int, int]:
        """A word's total per kept window (start in Unix seconds), from the faust windowed
        table. The word's windows are copied there from the exact state when it is asked for
        (absolute values), so counting tracks nothing for the table (it once kept every
        changed word of every window until a read: ~12 MB a GB); windows the state no longer
        keeps leave it."""
        shard = self.router.route(word)[0]
        state = self.shards[shard]  # owned: the API asks only then
        store = self.windowed.table.data
        # The memory store's own dict (store="memory://" above): no faust __setitem__ per window.
        assert isinstance(store, MemoryStore)
        self.forget_windows(shard, state, store.data)
        for start, counts in state.windows.items():
            key = (word, self.window_range(start))
            if word in counts:
                store.data[key] = counts[word]
            else:
                store.data.pop(key, None)
        starts = views.window_starts(self.owned())
        return {start: self.windowed[word][self.window_range(start)] for start in starts}

    def forget_windows(self, shard: int, state: ShardState, data: MutableMapping) -> None:
        """Drop from the table the windows of `shard` that its state no longer keeps."""
        kept, known = state.window_starts(), self.kept_windows.get(shard)
        if known is None or not kept >= known:  # new here (faust may have recovered stale windows), or one expired
            for key in [k for k in data if int(k[1][0]) not in kept and self.router.route(k[0])[0] == shard]:
                del data[key]
        self.kept_windows[shard] = kept

    def ranked(self) -> Ranking:
        """The ranking, with every change applied so far folded in (for the top-K view)."""
        for state in self.shards.values():
            self.ranking.update(state.changed)  # idempotent: absolute values
        return self.ranking

    def publish_totals(self) -> None:
        topic, fmt = self.topics.totals, self.config.totals_format
        for shard, state in list(self.shards.items()):
            self.fold_changes(shard, state)
            words, self.unpublished[shard] = self.unpublished.get(shard, set()), set()
            counts = state.counts
            for word, value in zip(words, codec.encode_totals({w: counts[w] for w in words}, fmt), strict=True):
                if len(value) + len(word) * 4 > codec.FRAGMENT_BYTES:  # over the record limit: HTTP only
                    self.note_unpublished(word)
                    continue
                kafka.produce(self.producer, topic, value, shard, key=word.encode())
            self.producer.poll(0)

    def mark_published(self) -> None:
        """Every total is on the topic now: a last batch says so, so that whoever recovers a
        shard need not publish all of it again (a restart writes nothing it restored)."""
        for shard, state in self.shards.items():
            changelog = self.changelogs.get(shard)
            if changelog is not None and not state.dirty and not self.unpublished.get(shard):
                changelog.append(pack(state.take_batch(published=True)), self.deliveries)

    def note_unpublished(self, word: str) -> None:
        log.warning(
            "the total of a word of %d characters is not published on %s: a record of it would pass Kafka's "
            "message limit (the results API has it)",
            len(word),
            self.topics.totals,
        )

    def _wire(self) -> None:
        app = self.app

        @app.agent(self.partials, name="aggregate")
        async def aggregate(stream):
            async for event in stream.noack().events():
                await self.on_event(event)

        @app.timer(self.config.flush_interval, name="flush")
        async def flush_timer() -> None:
            await self.flush()
            await self.retire_superseded()
            self.heartbeat.beat(self.broker.problem)

        @app.timer(GENERATIONS_EVERY, name="partials-generations")
        async def generations_timer() -> None:
            await self.follow_generations()
            await self.find_skipped()

        if self.config.totals_interval:

            @app.timer(self.config.totals_interval, name="publish-totals")
            async def totals_timer() -> None:
                if time.monotonic() < self.next_publication:
                    return
                started = time.monotonic()
                self.publish_totals()
                # With a large vocabulary a publication can take seconds (a million words changed:
                # ~2.5 s, a record each); waiting 9x as long keeps it to a tenth of the event loop,
                # and a word that keeps changing meanwhile is published once (docs/totals-topic.md).
                self.next_publication = time.monotonic() + 9 * (time.monotonic() - started)

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode: handler(sender, *args, **kw)
        async def on_assigned(app, assigned, **kwargs) -> None:
            await self.recover(assigned_shards(assigned, self.topics.partials))

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode: handler(sender, *args, **kw)
        async def on_revoked(app, revoked, **kwargs) -> None:
            await self.flush()
            self.park(assigned_shards(revoked, self.topics.partials))

        @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: handler(sender, *args, **kw)
        async def on_shutdown(app, **kwargs) -> None:
            await self.flush()  # a clean stop leaves nothing to replay
            if self.config.totals_interval:
                self.publish_totals()
                await self.flush_producers()
                self.mark_published()
            await self.flush_producers()


def resubscribe(app: faust.App, topic: faust.TopicT, names: list[str]) -> None:
    """Have the agent consume `names` from now on: faust's conductor subscribes to its
    channels' topics (the agent reads a clone of `topic`), and resubscribes when flagged."""
    old = set(topic.topics)
    for channel in [topic, *app.topics]:
        if set(getattr(channel, "topics", ())) == old:
            channel.topics = list(names)
    conductor = app.topics
    # Changes come one at a time (partials_topics.py): no storm of them to wait out.
    conductor._resubscribe_sleep_lock_seconds = 0.5  # type: ignore[attr-defined]
    conductor._flag_changes()  # type: ignore[attr-defined]


def _crash_reason(exc: BaseException) -> str:
    return f"the record made its decoder fail ({type(exc).__name__}: {str(exc)[:300]})"


def serve_results(app: faust.App, api: ResultsApi, host: str, port: int, limits: ServerLimits) -> None:
    """Serve the results API from the faust worker's event loop, until it shuts down."""
    runner: web.AppRunner | None = None

    @app.task
    async def start_serving() -> None:
        nonlocal runner
        runner = await serve(api.app(), host, port, limits)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: handler(sender, *args, **kw)
    async def stop_serving(app, **kwargs) -> None:
        if runner is not None:
            await runner.cleanup()


def main(settings: Settings) -> int:
    settings = settings.resolved()
    connection = Connection.to(settings.kafka, why="the aggregator needs a bootstrap address")
    broker = kafka.BrokerWatch(connection)
    watch = Watch(connection, settings.topics, settings.worker.group)
    registry = CollectorRegistry()
    registry.register(RosterMetrics(watch.monitor.roster))  # the workers' own figures
    s = settings
    aggregator = Aggregator(
        connection, s.aggregator, s.topics, s.ingest.document_max_span, broker, registry, s.service.health_file
    )
    api = ResultsApi(
        aggregator,
        registry,
        Accepted(connection, s.topics),
        watch,
        broker,
        tokens_of(s.service),
        s.text.tokenizer_user_dict,
        s.topics.partial_partitions,
        s.aggregator.window_seconds,
    )
    serve_results(aggregator.app, api, s.aggregator.host, s.aggregator.port, ServerLimits(s.service.http_idle_seconds))
    for theirs in ("faust", "mode", "aiokafka"):  # warnings only: our shard moves are worth a line each
        logging.getLogger(theirs).setLevel(logging.WARNING)
    worker = faust.Worker(aggregator.app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
    return 0
