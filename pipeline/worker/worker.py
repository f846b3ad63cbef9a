"""Consume chunks in batches, count them by window, publish partials, then commit.

A worker reads the inputs the assignment gives it (pipeline/assignment.py): a chunks
partition in every live generation of the chunks topics (pipeline/generations.py), or a
source topic's partition. It looks for new and retiring generations every second and
lets go of a retiring one, whose every window is committed already. The windows of
chunks.gN go to partials.gN; source windows to the newest generation's partials.

Offsets are committed only at the ends of windows whose partials the broker has
acknowledged, so a crash replays chunks rather than losing them; a replayed window
is identical to the original (pipeline/worker/windows.py) and the aggregator recognises it
by its offset range.

Chunks and source partitions are inputs of one interface (inputs.py): each kind owns its
windows, decoding, partials topic and resume; this loop consumes, counts, publishes and
commits them alike. A source window idle for `source_idle_seconds` closes where it stands,
which the log alone cannot tell a successor: before its partials go out, every earlier window of the
worker is committed and the idle window's end is committed as the offset of a second
group, `<group>.ends` (Kafka's commit metadata would do, but Tansu drops it). A worker
that takes the partition over reads it back (`SourcePartitions.resume`) and closes its first
window at the same end, so a replay is the same window.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from pipeline import codec, faults, generations, kafka, processes, tokenize
from pipeline.config import Connection, Settings, TopicSettings, WorkerSettings
from pipeline.health import Heartbeat
from pipeline.kafka import KafkaError, KafkaException, TopicPartition
from pipeline.sharding import Router
from pipeline.source_topics import Input, SourceTopic, input_of, split_input
from pipeline.worker import pacing, reading
from pipeline.worker.inputs import ChunkPartitions, CountedRecord, Inputs, SourcePartitions
from pipeline.worker.isolation import Crashed, Isolation
from pipeline.worker.partials import partials_of
from pipeline.worker.windows import Window

log = logging.getLogger("wordpipe.worker")
PREFETCH_KIB = 8192
# librdkafka keeps a whole fetch response alive while any record of it waits in the queue, and
# its defaults (50 MiB a fetch, 1 MiB a partition) let one worker hold ~200 MB of them on hostile
# text (peak RSS 315 MB; with these bounds 216 MB, and 94 -> 75 MB on shakespeare, same speed).
FETCH_MAX_BYTES = 2 << 20
PARTITION_FETCH_MAX_BYTES = 512 << 10
RELEASED = 0  # a resume mark: the input's owner let go of it cleanly; a positive one is its holder's token
LOOK_SECONDS = 1.0  # how often a worker looks for new and retiring chunks generations
# How long an idle worker waits for a record before it looks at the assignment again: any
# worker takes a handover within this (at 0.5 s, before the assigner was told of launches,
# a new worker counted its first chunk 1.70 s after its launch, median of 10; 1.28 s at 0.05 s).
IDLE_WAIT_SECONDS = 0.05


@dataclass
class PendingCommit:
    """Window ends to commit once every partial of their batch is acknowledged."""

    ends: dict[Input, int]  # chunks partition or source input -> offset after the last closed window
    words: int = 0  # in its windows (every window sends partials, an empty one too)
    unacked: int = 0
    failure: str | None = None

    def on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failure = f"{msg.topic()}[{msg.partition()}]: {err.str()}"
        self.unacked -= 1


class Worker:
    def __init__(
        self,
        connection: Connection,
        worker: WorkerSettings,
        topics: TopicSettings,
        user_dict: str | None = None,
        health_file: str | None = None,
    ) -> None:
        self.config = worker
        self.topics = topics
        self.tokenizer = tokenize.Tokenizer.load(user_dict)
        self.router = Router(topics.partial_partitions, topics.buckets)
        # The group only keeps our offsets: inputs are assigned by the assigner, never by a
        # group rebalance (pipeline/assignment.py), so no one pauses when workers come and go.
        self.consumer = kafka.consumer(
            connection,
            worker.group,
            **{
                "on_commit": self.on_commit,
                # librdkafka prefetches up to 64 MiB by default; a quarter second's work never
                # runs dry and bounds a worker's memory. Its default 1 s pause once the
                # queue is full would starve the worker (Tansu holds every fetch anyway).
                "queued.max.messages.kbytes": PREFETCH_KIB,
                "fetch.queue.backoff.ms": 10,
                "fetch.max.bytes": FETCH_MAX_BYTES,
                "max.partition.fetch.bytes": PARTITION_FETCH_MAX_BYTES,
            },
        )
        self.producer = kafka.producer(connection)
        self.assignments = kafka.Follower(connection, topics.assignments)
        self.admin = kafka.admin(connection)
        self.status_topic = generations.status_current((), topics.status)  # followed in `follow`
        self.pending: deque[PendingCommit] = deque()  # in publication order
        # Where idle source windows ended, kept as the committed offsets of a group of their own.
        self.recorded_ends = kafka.consumer(connection, worker.ends_group) if topics.source_list else None
        self.chunks = ChunkPartitions(topics, worker, self.tokenizer.id)
        self.sources = SourcePartitions(topics, worker, self.consumer, self.recorded_ends)
        self.kinds: tuple[Inputs, ...] = (self.chunks, self.sources)
        # Caught-up source partitions rest for half the idle time that closes their windows,
        # so a steady topic's windows stay open (pipeline/worker/pacing.py).
        self.pacing = pacing.Pacing(worker.source_idle_seconds / 2)
        # Whether each input's owner let go of it cleanly, as the committed offsets of a group of
        # their own: the holder's token while an owner has it, RELEASED after a clean hand-over. Finding it held,
        # the previous owner died, maybe on a record just past its last commit, so we read that
        # input's records in a child until a window there is committed (pipeline/worker/isolation.py).
        self.resume_marks = kafka.consumer(connection, worker.resumes_group)
        self.careful: set[Input] = set()
        # How far each input's refused records are dead-lettered, as the committed offsets of a
        # group of their own: a window replayed after a hand-over or a death refuses its records
        # again, and below the mark each was lettered already (every letter is delivered before
        # the next record is read).
        self.letter_marks = kafka.consumer(connection, worker.letters_group)
        self.lettered: dict[Input, int] = {}  # input -> offset below which its refusals are lettered
        self.letters_due: set[Input] = set()  # inputs whose mark moved since the last commit
        self.token = secrets.randbelow(1 << 62) + 1  # our resume mark while we hold an input
        self.isolation = Isolation()
        self.stopping = False
        self.epoch = 0  # of the assignment we follow
        self.owned: set[str] = set()  # its inputs that are ours: "chunks:5" (every generation), "tweets:0"
        self.held: set[str] = set()  # the partitions we read now: "chunks.g3:5", "tweets:0"
        self.newest = 0  # the newest chunks generation: source windows' partials go to its partials
        self.next_look = 0.0
        # What the status topic hears about us (pipeline/observe/roster.py).
        self.id = worker.id or f"{socket.gethostname()}-{os.getpid()}"
        self.started_at = time.time()
        self.first_chunk_at: float | None = None
        self.chunks_counted = 0
        self.busy_seconds = 0.0
        self.next_report = 0.0
        self.report_lock = threading.Lock()
        self.reported_stop = False
        self.heartbeat = Heartbeat(health_file)
        self.broker = kafka.BrokerWatch(connection)

    def follow(self) -> None:
        """Take and let go of partitions to match the newest assignment and the chunks
        generations now (a new one is read at once; a retiring one is let go of)."""
        latest = self.assignments.latest()
        changed = latest is not None and self.take_assignment(latest)
        if not changed and time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + LOOK_SECONDS
        names = kafka.topic_names(self.admin)
        self.status_topic = generations.status_current(names, self.topics.status)
        base = self.topics.chunks
        live = generations.live(names, base)
        self.newest = live[-1] if live else self.newest
        wanted: set[str] = set()
        for name in self.owned:
            topic, partition = split_input(name)
            if topic == base:
                wanted.update(input_of(generations.topic(base, n), partition) for n in live)
            elif topic in names:
                wanted.add(name)
        if wanted != self.held:
            self.let_go(sorted(self.held - wanted))
            self.take(sorted(wanted - self.held))
            self.report_status()

    def take_assignment(self, value: bytes) -> bool:
        try:
            assignment = codec.decode_assignment(value)
        except codec.CodecError as exc:
            log.error("ignoring a bad assignment: %s", exc)
            return False
        if assignment.epoch <= self.epoch:
            return False
        self.epoch, self.owned = assignment.epoch, assignment.of(self.id)
        return True

    def take(self, inputs: list[str]) -> None:
        """Start reading `inputs` where the group's committed offsets say."""
        if not inputs:
            return
        positions = self.consumer.committed([self.topic_partition(name, 0) for name in inputs], timeout=30)
        for kind in self.kinds:
            if mine := [tp for tp in positions if kind.owns(tp.topic)]:
                kind.resume(mine)
        self.mark_resumed(positions)
        marks = self.letter_marks.committed([TopicPartition(tp.topic, tp.partition) for tp in positions], timeout=30)
        self.lettered.update({input_of(m.topic, m.partition): m.offset for m in marks if m.offset > 0})
        self.consumer.incremental_assign(positions)
        self.held.update(inputs)
        log.info("reading %s (assignment %d)", ", ".join(inputs), self.epoch)

    def let_go(self, inputs: list[str]) -> None:
        """Hand over cleanly: commit what is published, so the next owner replays only open windows."""
        if not inputs:
            return
        self.producer.flush(30)
        self.commit_acknowledged(asynchronous=False)
        partitions = [self.topic_partition(name, 0) for name in inputs]
        self.release(partitions)
        self.commit_letters(asynchronous=False)
        self.forget(inputs)
        if resting := self.pacing.drop((tp.topic, tp.partition) for tp in partitions):
            self.consumer.resume([TopicPartition(*p) for p in resting])  # taken again later, it is read at once
        self.consumer.incremental_unassign(partitions)
        log.info("let go of %s (assignment %d)", ", ".join(inputs), self.epoch)

    def mark_resumed(self, positions: list[TopicPartition]) -> None:
        """Mark each input held by us, and read carefully (in a child) the inputs whose previous
        owner died holding them."""
        marks = self.resume_marks.committed([TopicPartition(tp.topic, tp.partition) for tp in positions], timeout=30)
        for at, mark in zip(positions, marks, strict=True):
            if mark.offset > RELEASED:
                name = input_of(at.topic, at.partition)
                self.careful.add(name)
                log.warning(
                    "%s: its last owner died after offset %d; reading its records one at a time in a "
                    "child process until its first window closes",
                    name,
                    at.offset,
                )
        self.resume_marks.commit(
            offsets=[TopicPartition(tp.topic, tp.partition, self.token) for tp in positions], asynchronous=False
        )

    def release(self, partitions: list[TopicPartition]) -> None:
        """A clean hand-over: the next owner need not read carefully, except where we still do
        (a record that killed a reader may lie in what we did not commit)."""
        clean = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        clean = [tp for tp in clean if input_of(tp.topic, tp.partition) not in self.careful]
        # Only a mark that is still ours: a new owner that took the input before we let go
        # marked it with its token, and overwriting that with RELEASED would hide its death.
        marks = self.resume_marks.committed(clean, timeout=30) if clean else []
        clean = [TopicPartition(m.topic, m.partition, RELEASED) for m in marks if m.offset == self.token]
        if clean:
            self.resume_marks.commit(offsets=clean, asynchronous=False)

    def forget(self, inputs: list[str]) -> None:
        """Drop every trace of inputs we no longer read: open windows and commits still pending."""
        self.held.difference_update(inputs)
        for kind in self.kinds:
            kind.forget(inputs)
        for commit in self.pending:
            for name in inputs:
                commit.ends.pop(name, None)
        self.careful.difference_update(inputs)
        for name in inputs:
            self.lettered.pop(name, None)

    def input_for(self, topic: str) -> Inputs:
        return self.chunks if self.chunks.owns(topic) else self.sources

    def topic_partition(self, name: Input, offset: int) -> TopicPartition:
        topic, partition = split_input(str(name))
        return TopicPartition(topic, partition, offset)

    def partials_topic(self, name: Input) -> str:
        """Where a window's partials go: a chunks generation's own partials, or (a source
        window) the newest generation's."""
        topic, _ = split_input(str(name))
        return self.input_for(topic).partials_topic(topic, self.newest)

    def on_commit(self, err, partitions) -> None:
        if err is not None:
            log.warning("commit failed (%s); those windows will be replayed by the next owner", err)

    def report_status(self, stopped: bool = False) -> None:
        """Tell the status topic who we are and what we own; a tombstone once we stopped."""
        with self.report_lock:  # from the loop and from keep_reporting: no report after the tombstone
            if not self.reported_stop:
                self.reported_stop = stopped
                self._report(stopped)

    def _report(self, stopped: bool) -> None:
        self.next_report = time.monotonic() + self.config.status_interval
        self.heartbeat.beat(self.broker.problem)
        value = None
        held = sorted(tuple(self.held))  # one C call: safe beside the loop's changes
        if not stopped:
            value = codec.encode_status(
                codec.WorkerStatus(
                    self.id,
                    tuple(sorted({split_input(name)[1] for name in held if self.chunks.owns(split_input(name)[0])})),
                    self.chunks_counted,
                    self.busy_seconds,
                    self.started_at,
                    # VmHWM, not ru_maxrss: that keeps the peak of the process that spawned us (vfork, exec).
                    self.first_chunk_at,
                    round(processes.usage(os.getpid())[1] * 1024),
                    time.time(),
                    tuple(held),
                    self.epoch,
                )
            )
        # A full queue: reports are periodic; the next one says the same and more.
        kafka.try_produce(self.producer, self.status_topic, value, 0, self.id.encode())

    def keep_reporting(self) -> None:
        """Report while a long batch keeps the loop busy: silence means gone to the assigner,
        which hands our inputs to others (pipeline/assigner.py)."""
        interval = self.config.status_interval
        while not self.stopping:
            time.sleep(interval)
            if time.monotonic() > self.next_report + interval:
                self.report_status()

    def request_stop(self, *_: object) -> None:
        self.stopping = True
        faults.point("worker.draining")

    def run(self) -> None:
        log.info("worker %s following %s, offsets in group %s", self.id, self.topics.assignments, self.config.group)
        self.report_status()  # ready: the assigner gives inputs to workers that reported
        threading.Thread(target=self.keep_reporting, name="status", daemon=True).start()
        try:
            while not self.stopping:
                self.follow()
                self.wake_rested_sources()
                batch = self.next_batch()
                if batch:
                    busy_from = time.perf_counter()
                    self.process(batch)
                    self.busy_seconds += time.perf_counter() - busy_from
                    self.rest_caught_up_sources(batch)
                self.close_idle_sources()
                self.producer.poll(0)  # delivery reports
                self.commit_acknowledged()
                self.commit_letters()
                if time.monotonic() >= self.next_report:
                    self.report_status()
            self.let_go(sorted(self.held))  # drain: what was published gets committed
        finally:
            self.consumer.close()
            self.assignments.close()
            if self.recorded_ends is not None:
                self.recorded_ends.close()
            self.resume_marks.close()
            self.letter_marks.close()
            self.isolation.close()
            self.broker.close()
        self.report_status(stopped=True)
        self.producer.flush(5)
        log.info("worker stopped after %d chunks", self.chunks_counted)

    def next_batch(self) -> list:
        """Up to worker_batch chunks: whatever is fetched already, else wait for the first."""
        batch = self.consumer.consume(num_messages=self.config.batch, timeout=0)
        if not batch:
            batch = self.consumer.consume(num_messages=1, timeout=IDLE_WAIT_SECONDS)
            if batch:
                batch += self.consumer.consume(num_messages=self.config.batch - 1, timeout=0)
        return batch

    def rest_caught_up_sources(self, batch: list) -> None:
        """Pause the source partitions this batch read up to their high watermark, for a rest
        (pipeline/worker/pacing.py); a partition with a backlog goes on."""
        read = {
            (m.topic(), m.partition()): m.offset() + 1
            for m in batch
            if not m.error() and self.sources.owns(m.topic()) and input_of(m.topic(), m.partition()) in self.held
        }
        highs = {}
        for p in read:
            marks = self.consumer.get_watermark_offsets(TopicPartition(*p), cached=True)  # from the last fetch
            if marks is not None:
                highs[p] = marks[1]
        if resting := self.pacing.rest(pacing.caught_up(read, highs), time.monotonic()):
            self.consumer.pause([TopicPartition(*p) for p in resting])

    def wake_rested_sources(self) -> None:
        if due := self.pacing.due(time.monotonic()):
            self.consumer.resume([TopicPartition(*p) for p in due])

    def process(self, batch: list) -> None:
        closed: list[Window] = []
        for msg in batch:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", msg.error().str())
                continue
            closed += self.count(msg)
        if self.first_chunk_at is None and self.chunks_counted:
            self.first_chunk_at = time.time()
            self.next_report = 0.0  # at once, from the loop: once this batch's busy time is added
        if closed:
            self.publish(closed)

    def count(self, msg) -> list[Window]:
        """One record into its window; returns the windows it closed. Nothing a record holds
        gets past here: whatever fails in reading or counting it (depth, size, encoding, a
        bug not found yet) dead-letters it with the reason, and it still takes up its offset."""
        kind = self.input_for(msg.topic())
        try:
            counted = kind.count(msg, self.read)
        except (KafkaException, kafka.KafkaUnavailable):
            raise  # Kafka's failure, not the record's
        except Exception as exc:
            name, at = input_of(msg.topic(), msg.partition()), max(msg.timestamp()[1], 0)
            refusal = f"counting it failed ({type(exc).__name__}: {str(exc)[:300]})"
            counted = CountedRecord(kind.skip(name, msg.offset(), at), refusal)
        if counted.refusal is not None:
            self.dead_letter(msg, counted.refusal)  # it still took up its offset
        elif counted.text:
            self.chunks_counted += 1
        return counted.closed

    def read(self, name: Input, spec: SourceTopic | None, value: bytes | None) -> reading.Reading:
        """A record's words, read here or, for an input its last owner died on, in a child."""
        if name not in self.careful:
            faults.trip("reading", value)
            if spec is None:
                return reading.chunk(self.tokenizer, value or b"")
            return reading.source(self.tokenizer, spec, value)
        try:
            return self.isolation.read(spec, value)
        except Crashed as exc:
            return reading.Reading(
                None,
                refusal=f"it crashed 2 workers: the last owner of {name} died before counting past it, and {exc}",
            )

    def close_idle_sources(self) -> None:
        """Close the source windows that received nothing for a while, so a quiet topic's
        counts show: their ends are recorded durably before their partials go out."""
        idle = self.sources.idle()
        if not idle:
            return
        # A successor learns one recorded end per partition, past its committed offset: so
        # every earlier window is acknowledged and committed first, the last commit in no doubt.
        if self.producer.flush(30):
            raise kafka.KafkaUnavailable("partials not acknowledged within 30 s")
        self.commit_acknowledged(asynchronous=False)
        starts = [self.topic_partition(name, self.sources.windows.open[name].start) for name in idle]
        try:
            self.consumer.commit(offsets=starts, asynchronous=False)
        except KafkaException as exc:  # a rebalance raced us: the next owner reads these windows again
            log.warning("could not close idle windows (%s); trying again", exc)
            return
        closed = self.sources.close(idle)
        assert self.recorded_ends is not None
        self.recorded_ends.commit(
            offsets=[self.topic_partition(w.partition, w.end) for w in closed], asynchronous=False
        )
        faults.point("worker.after_recorded_end")
        self.publish(closed)
        self.producer.flush(30)  # idle anyway: out now, committed with the next commit pass
        faults.point("worker.idle_window_published")

    def publish(self, closed: list[Window]) -> None:
        """Send the partials of the closed windows; their ends are committed once acknowledged."""
        commit = PendingCommit({w.partition: w.end for w in closed})  # offset order: the last end wins
        parts: dict[tuple[str, int], list[codec.PartialMessage]] = {}  # (partials topic, shard) -> parts
        for window in closed:
            commit.words += window.words
            topic = self.partials_topic(window.partition)
            for part in partials_of(window, self.router):
                parts.setdefault((topic, part.shard), []).append(part)
        for (topic, shard), shard_parts in sorted(parts.items()):
            for record in codec.encode_partials(shard, shard_parts):
                commit.unacked += 1
                kafka.produce(self.producer, topic, record, shard, on_delivery=commit.on_delivery)
        self.pending.append(commit)

    def commit_acknowledged(self, asynchronous: bool = True) -> None:
        """Commit, in order, the batches whose partials are all acknowledged.

        A failed delivery stops the worker without committing anything after it: its
        windows are replayed by the next owner. In steady state the commit is
        asynchronous: a commit lost to a rebalance also only means a replay.
        """
        while self.pending and self.pending[0].unacked == 0:
            commit = self.pending.popleft()
            if commit.failure:
                raise kafka.KafkaUnavailable(f"partials not delivered, stopping uncommitted: {commit.failure}")
            if commit.words:  # the worst instant: words out, the ends that cover them not committed
                faults.point("worker.before_commit")
            offsets = [self.topic_partition(name, end) for name, end in commit.ends.items()]
            if not offsets:  # all its partitions were handed over
                continue
            if self.careful:  # committed past where its last owner died: read here again
                self.careful.difference_update(commit.ends)
                if not self.careful:
                    self.isolation.close()
            try:
                _commit(self.consumer, offsets, asynchronous)
            except Exception as exc:  # synchronous only: a rebalance raced us
                log.warning("commit of %s failed (%s); those windows will be replayed", commit.ends, exc)

    def dead_letter(self, msg, reason: str) -> None:
        name = input_of(msg.topic(), msg.partition())
        if msg.offset() < self.lettered.get(name, 0):
            log.info("%s[%d]@%d is dead-lettered already: %s", msg.topic(), msg.partition(), msg.offset(), reason)
            return
        log.warning("dead-lettering %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason)
        letter = codec.DeadLetter(msg.topic(), msg.partition(), msg.offset(), reason, msg.value() or b"")
        # Rare, so delivered at once: it must be durable before any commit covers its offset.
        failures: list[str] = []
        kafka.produce(
            self.producer,
            self.topics.deadletter,
            codec.encode_deadletter(letter),
            0,
            on_delivery=lambda err, m: failures.append(err.str()) if err else None,
        )
        if self.producer.flush(30) or failures:
            raise kafka.KafkaUnavailable(f"dead letter not delivered: {failures or 'timed out'}")
        self.lettered[name] = msg.offset() + 1
        self.letters_due.add(name)

    def commit_letters(self, asynchronous: bool = True) -> None:
        """Commit the marks of the inputs lettered since the last time: with the window
        commits, and at once when letting go (a successor reads them as it takes over)."""
        due = [self.topic_partition(name, self.lettered[name]) for name in self.letters_due if name in self.lettered]
        self.letters_due.clear()
        if not due:
            return
        try:
            _commit(self.letter_marks, due, asynchronous)
        except KafkaException as exc:  # synchronous only: a later replay may letter them again
            log.warning("could not record how far %s are dead-lettered: %s", due, exc)


def _commit(consumer: kafka.Consumer, offsets: list[TopicPartition], asynchronous: bool) -> None:
    # Two calls: confluent-kafka's stubs type `asynchronous` as one literal or the other.
    if asynchronous:
        consumer.commit(offsets=offsets, asynchronous=True)
    else:
        consumer.commit(offsets=offsets, asynchronous=False)


def main(settings: Settings) -> int:
    worker = Worker(
        Connection.to(settings.kafka, why="workers need a bootstrap address"),
        settings.worker,
        settings.topics,
        settings.text.tokenizer_user_dict,
        settings.service.health_file,
    )
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    started = time.monotonic()
    worker.run()
    log.info("worker ran %.1f s", time.monotonic() - started)
    return 0
