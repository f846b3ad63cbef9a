"""The embedded broker's contents journaled to a state directory as the broker takes them
(`Journal`), and written back into a fresh broker when the stack starts again (`restore`).

One consumer tails every topic and appends each record to its topic's file. In rounds, the
journal fixes a *cut*: the stack's groups' offsets first, then each topic's end, level by
level from what is derived to what it is derived from:

    3  totals, dead letters, assignments, the rest       (nothing here depends on them)
    2  the aggregator's changelogs                       (made from partials)
    1  partials and ingest's receipts                    (made from chunks)
    0  chunks and source topics                          (what producers wrote)

A level's ends are asked of the broker only once the level above is fixed, so each record a
cut holds has its causes in it too, and each group offset what it vouches for. One group
is the other way round: the recorded end of an idle source window (pipeline/worker/worker.py) is
a cause of that window's partials, and a worker that resumes the partition must see it to
cut the window again where the aggregator applied it. So those marks are read first, and
read again once the partials' ends are fixed: if one moved meanwhile (a window closed
idle during the round), the round starts over, and a cut never holds an idle window's
partials without its end. Restored, a
cut is a state the stack was in, or one a crash would have left: counting resumes from it
exactly. The round then syncs every file it wrote (one fdatasync a file, however many
records: many uploads share one) and appends the cut to cuts.log, synced, and publishes the
receipts topic's durable end, which ingest waits on before it answers 202.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import codec, generations, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.errors import UnavailableError
from pipeline.kafka import Consumer, KafkaError, KafkaException, OffsetSpec, Producer, TopicPartition
from pipeline.observe.roster import READER_PREFIX
from pipeline.source_topics import input_of, split_input
from pipeline.statedir.directory import Contents, Directory
from pipeline.statedir.frames import Cut, Record, record_frame

log = logging.getLogger("wordpipe.state")
BATCH = 10_000  # records taken from the consumer at a time
GROUPS_EVERY = 0.5  # seconds: group offsets read again (older ones vouch for less, never for more)
CATCH_UP_TIMEOUT = 30.0
ATTEMPTS = 3  # rounds started over because a window closed idle during them, before one is skipped
JOURNAL_READER = "journal"  # its name in its reader reports


class JournalError(UnavailableError):
    """The journal cannot keep up with the broker, or write the directory."""


@dataclass(frozen=True)
class Levels:
    """Which level of a cut a topic belongs to (the docstring above)."""

    topics: TopicSettings
    changelog_prefix: str  # the aggregator's changelog topics: "<aggregator id>.state."

    def of(self, topic: str) -> int:
        t = self.topics
        base = generations.of(topic)
        if (base is not None and base[0] == t.chunks) or topic in {s.topic for s in t.source_list}:
            return 0
        if (base is not None and base[0] == t.partials) or topic == t.documents:
            return 1
        if topic.startswith(self.changelog_prefix):
            return 2
        return 3

    def done_with(self, topics: Iterable[str]) -> tuple[set[str], set[str]]:
        """The topics no one writes any more (pipeline/generations.py), which their owners
        will delete: (those to let go of at once, those to let go of once read to their end).

        A retiring chunks generation is counted: what the journal may lack of it, nothing
        restored needs. Status reports are not kept at all: they repeat every second, and a
        restarted stack has new workers, writers and supervisors, which report anew. Partials of a retiring generation, and superseded changelog
        generations, are read to their end first: the aggregator may not have applied them."""
        names = set(topics)
        t = self.topics
        retiring = {generations.topic(t.chunks, n) for n in generations.numbers(names, t.chunks)} - {
            generations.topic(t.chunks, n) for n in generations.live(names, t.chunks)
        }
        newest = generations.newest(names, t.chunks) or 0
        chunks = set(generations.numbers(names, t.chunks)) - {generations.number(c) for c in retiring}
        partials = {
            generations.topic(t.partials, n)
            for n in generations.numbers(names, t.partials)
            if n < newest and n not in chunks
        }
        changelogs = {name for name in generations.superseded(names) if name.startswith(self.changelog_prefix)}
        status = {generations.topic(t.status, n) for n in generations.numbers(names, t.status)}
        return retiring | status, partials | changelogs


class Files:
    """Each topic's journal file, appended in rounds (unbuffered: what a failed write leaves
    is only what the next rewind cuts off)."""

    def __init__(self, directory: Directory, sizes: dict[str, int]) -> None:
        self.directory = directory
        self.sizes = dict(sizes)  # topic -> bytes synced
        self.buffers: dict[str, bytearray] = {}
        self.handles: dict[str, int] = {}  # topic -> file descriptor, opened to append

    def add(self, topic: str, record: Record) -> None:
        self.buffers.setdefault(topic, bytearray()).extend(record_frame(record))

    def sync(self) -> dict[str, int]:
        """Write and sync what was added; every topic's synced size."""
        for topic, buffer in self.buffers.items():
            fd = self.handles.get(topic)
            if fd is None:
                fd = self.handles[topic] = os.open(
                    self.directory.topic_file(topic), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
            view = memoryview(buffer)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)
            self.sizes[topic] = os.lseek(fd, 0, os.SEEK_END)
        self.buffers.clear()
        return dict(self.sizes)

    def rewind(self, sizes: dict[str, int]) -> None:
        """Back to the last durable cut, after a round failed: what it wrote is nobody's."""
        self.buffers.clear()
        self.close()
        self.sizes = dict(sizes)
        for topic, size in sizes.items():
            path = self.directory.topic_file(topic)
            if path.exists() and path.stat().st_size > size:
                os.truncate(path, size)

    def drop(self, topic: str) -> None:
        fd = self.handles.pop(topic, None)
        if fd is not None:
            os.close(fd)
        self.sizes.pop(topic, None)
        self.directory.topic_file(topic).unlink(missing_ok=True)

    def close(self) -> None:
        for fd in self.handles.values():
            os.close(fd)
        self.handles.clear()


class Journal:
    def __init__(
        self,
        directory: Directory,
        connection: Connection,
        levels: Levels,
        groups: list[str],
        marks: str,
        cut: Cut | None,
    ) -> None:
        self.directory = directory
        self.connection = connection
        self.levels = levels
        self.groups = groups  # read in this order
        self.marks = marks  # the group of idle windows' recorded ends (the docstring above)
        self.admin = kafka.admin(connection)
        self.consumer = kafka.consumer(
            connection,
            "wordpipe-journal",  # assigned, never subscribed: the group is only a name
            **{"fetch.wait.max.ms": 5, "queued.max.messages.kbytes": 32768},
        )
        self.readers: dict[str, Consumer] = {}  # a consumer per group whose offsets a cut holds
        self.cut = cut  # the last durable one
        self.positions: dict[str, int] = dict(cut.ends) if cut else {}  # "topic:partition" -> next offset
        self.partitions: dict[str, int] = {}  # the topics tailed, and their partitions
        # Superseded generations read to their end and let go of: kept in cuts until deleted
        # (librdkafka, from 2.5, crashes in a consumer whose topic is deleted under it).
        self.released: set[str] = set()
        self.files = Files(directory, cut.sizes if cut else {})
        self.group_offsets = dict(cut.groups) if cut else {}
        self.groups_at = 0.0
        self.fresh = False  # records taken since the last cut
        self.problem: str | None = None
        self.round_seconds: deque[float] = deque(maxlen=10_000)
        self.reports = kafka.producer(connection)  # which chunks generations we read
        self.status_topic = generations.status_current((), levels.topics.status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-journal", daemon=True)

    # -- the loop ------------------------------------------------------------------

    def start(self) -> Journal:
        self._refresh()
        self._thread.start()
        return self

    def stop(self) -> Cut | None:
        """A last cut, marked clean, once the services are stopped; returns it."""
        self._stop.set()
        self._thread.join()
        try:
            self._round(clean=True)
        finally:
            self.files.close()
            self.consumer.close()
            self.reports.flush(5)
            for reader in self.readers.values():
                reader.close()
        return self.cut

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._pump(0.02)
                if self.fresh or time.monotonic() - self.groups_at > GROUPS_EVERY:
                    self._round()
            except (OSError, KafkaException, UnavailableError) as exc:
                self._fail(exc)
                self._stop.wait(1.0)

    def _fail(self, exc: BaseException) -> None:
        """Keep the last good cut and serve on; say so (log, and ingest's health and 503s)."""
        problem = f"the state directory {self.directory.path} is not saved to: {exc}"
        if problem != self.problem:
            log.error("%s; the last durable cut is kept, and uploads wait", problem)
        self.problem = problem
        cut = self.cut
        for undo in (
            lambda: self.directory.publish_durable(self._documents_end(cut), problem, cut.n if cut else 0),
            lambda: self.files.rewind(cut.sizes if cut else {}),
        ):
            try:
                undo()
            except OSError:
                pass  # the disk refuses even this: the next round tries again
        self.positions = dict(cut.ends) if cut else {}
        self.partitions = {}  # assigned again, from the last cut's ends (released ones stay let go of)
        self.consumer.assign([])

    # -- a round ------------------------------------------------------------------

    def _round(self, clean: bool = False) -> None:
        started = time.monotonic()
        self._refresh()
        if time.monotonic() - self.groups_at > GROUPS_EVERY or clean:
            self.group_offsets = self._read_groups()
            self.groups_at = time.monotonic()
        for _ in range(ATTEMPTS):
            ends, asked = self._fix_ends()
            if self._read_group(self.marks, sources=True) == self.group_offsets.get(self.marks, {}):
                break
            self.group_offsets = self._read_groups()  # a window closed idle meanwhile: again, from its mark
            self.groups_at = time.monotonic()
        else:
            log.info("idle source windows closed during %d rounds in a row; the next round cuts", ATTEMPTS)
            return
        self.fresh = False
        sizes = self.files.sync()
        cut = Cut(
            (self.cut.n if self.cut else 0) + 1,
            time.time(),
            clean,
            dict(self.partitions),
            ends,
            {t: sizes.get(t, 0) for t in self.partitions},
            self.group_offsets,
        )
        self.directory.append_cut(cut)
        gone = set(self.cut.topics if self.cut else ()) - set(cut.topics)
        self.cut = cut
        for topic in gone:  # deleted from the broker, and no longer in a durable cut
            self.files.drop(topic)
        if self.problem is not None:
            log.warning("the state directory %s is saved to again", self.directory.path)
        self.problem = None
        self.directory.publish_durable(self._documents_end(cut), None, cut.n)
        self._release(asked)
        self._report()
        self.round_seconds.append(time.monotonic() - started)

    def _fix_ends(self) -> tuple[dict[str, int], dict[str, int]]:
        """Every partition's end in the cut, level by level, and what the broker said its end was."""
        ends: dict[str, int] = {}
        asked: dict[str, int] = {}
        for level in (3, 2, 1, 0):
            names = [n for n in self._inputs() if self.levels.of(split_input(n)[0]) == level]
            if names:
                asked.update(broker := self._broker_ends(names))
                self._catch_up({n: end for n, end in broker.items() if split_input(n)[0] not in self.released})
                ends.update({n: self.positions.get(n, 0) for n in names})
        return ends, asked

    def _report(self) -> None:
        """Say which chunks generations we still read: the assigner deletes a retiring one
        only once we said we let go of it (pipeline/assigner.py), however long a round takes."""
        base = self.levels.topics.chunks
        read = [t for t in self.partitions if t not in self.released]
        held = tuple(sorted(found[1] for t in read if (found := generations.of(t)) is not None and found[0] == base))
        value = codec.encode_lease(codec.WriterLease(JOURNAL_READER, held, time.time()))
        # A full queue: said again next round.
        kafka.try_produce(self.reports, self.status_topic, value, 0, (READER_PREFIX + JOURNAL_READER).encode())
        self.reports.poll(0)

    def _release(self, asked: dict[str, int]) -> None:
        """Let go of the generations no one writes (their owners delete them)."""
        now, read = self.levels.done_with(self.partitions)
        for topic in (now | read) - self.released:
            names = [input_of(topic, p) for p in range(self.partitions[topic])]
            if topic in now or all(self.positions.get(n, 0) >= asked.get(n, 0) for n in names):
                self.consumer.incremental_unassign([TopicPartition(*split_input(n)) for n in names])
                self.released.add(topic)

    def _documents_end(self, cut: Cut | None) -> int:
        return cut.ends.get(input_of(self.levels.topics.documents, 0), 0) if cut else 0

    def _inputs(self) -> list[str]:
        return [input_of(t, p) for t, n in self.partitions.items() for p in range(n)]

    def _refresh(self) -> None:
        """Tail the topics the broker has now: new ones from their start, deleted ones no more."""
        listed = kafka.describe_partitions(self.admin, 10)
        # A retiring marker is empty and soon deleted: never read (librdkafka would crash on its deletion).
        topics = {t: n for t, n in listed.items() if not t.startswith("__") and not generations.is_marker(t)}
        self.status_topic = generations.status_current(topics, self.levels.topics.status)
        retiring, _ = self.levels.done_with(listed)  # the markers say which chunks are retiring
        held = [
            TopicPartition(t, p) for t in retiring - self.released if t in self.partitions for p in range(topics[t])
        ]
        if held:  # counted: let go of at once, before its deletion (see _release)
            self.consumer.incremental_unassign(held)
            log.info("let go of %s", ", ".join(sorted({tp.topic for tp in held})))
        self.released |= retiring
        new = [TopicPartition(t, p, self.positions.get(input_of(t, p), 0)) for t in topics for p in range(topics[t])]
        new = [tp for tp in new if tp.topic not in self.partitions and tp.topic not in self.released]
        gone = [
            TopicPartition(t, p)
            for t, n in self.partitions.items()
            if t not in topics and t not in self.released  # a released one is let go of already
            for p in range(n)
        ]
        self.released &= set(topics)
        if gone:
            self.consumer.incremental_unassign(gone)
        if new:
            self.consumer.incremental_assign(new)
        self.partitions = topics

    def _broker_ends(self, names: list[str]) -> dict[str, int]:
        """Each partition's end now; a topic deleted since it was listed ends where it was read."""
        asked = {TopicPartition(*split_input(n)): OffsetSpec.latest() for n in names}
        ends = {}
        for tp, future in self.admin.list_offsets(asked, request_timeout=10).items():
            name = input_of(tp.topic, tp.partition)
            try:
                ends[name] = future.result().offset
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
                ends[name] = self.positions.get(name, 0)
        return ends

    def _catch_up(self, ends: dict[str, int]) -> None:
        """Take every record the broker had when it was asked its ends. Tansu's end is its last
        batch's base + 1: a batch is queued whole, so once its first record is taken the rest
        is in the queue, and is taken by draining it."""
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while any(self.positions.get(n, 0) < end for n, end in ends.items()):
            if time.monotonic() > deadline:
                behind = {n: (self.positions.get(n, 0), e) for n, e in ends.items() if self.positions.get(n, 0) < e}
                raise JournalError(f"could not take the broker's records within {CATCH_UP_TIMEOUT:.0f} s: {behind}")
            self._pump(0.005)
        while self._pump(0) == BATCH:
            pass

    def _pump(self, timeout: float) -> int:
        messages = self.consumer.consume(num_messages=BATCH, timeout=timeout)
        for msg in messages:
            if error := msg.error():
                if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    raise KafkaException(error)
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None  # a record, not an error
            name = input_of(topic, partition)
            if offset < self.positions.get(name, 0):
                continue  # taken already (before a rewind)
            headers = [(str(h[0]), _bytes(h[1])) for h in (msg.headers() or [])]
            record = Record(partition, offset, msg.key(), msg.value(), max(msg.timestamp()[1], 0), headers)
            self.files.add(topic, record)
            self.positions[name] = offset + 1
        self.fresh = self.fresh or bool(messages)
        return len(messages)

    def _read_groups(self) -> dict[str, dict[str, int]]:
        return {group: self._read_group(group) for group in self.groups}

    def _read_group(self, group: str, sources: bool = False) -> dict[str, int]:
        """A group's committed offsets on every partition tailed, or only on source topics'."""
        wanted = {s.topic for s in self.levels.topics.source_list} if sources else self.partitions
        partitions = [TopicPartition(t, p) for t, n in self.partitions.items() if t in wanted for p in range(n)]
        reader = self.readers.get(group)
        if reader is None:
            reader = self.readers[group] = kafka.consumer(self.connection, group)
        committed = reader.committed(partitions, timeout=10) if partitions else []
        return {input_of(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}


def restore(directory: Directory, contents: Contents, connection: Connection, topics: TopicSettings) -> int:
    """Write a verified directory's last cut (records and group offsets) into an empty broker,
    at the same offsets; returns the records written."""
    cut = contents.cut
    if cut is None:
        return 0
    admin = kafka.admin(connection)
    specs = {spec.topic: spec for spec in kafka.topic_specs(topics)}
    new = [specs.get(t) or kafka.new_topic(t, n, topics.replication_factor) for t, n in cut.topics.items()]
    if new:
        for name, future in admin.create_topics(new, request_timeout=30).items():
            try:
                future.result()
            except KafkaException as exc:
                raise JournalError(f"cannot create topic {name} to restore it: {exc}") from None
        kafka.wait_for_topics(admin, cut.topics)
    # Records as large as the broker took them (a source's may pass our own limit).
    limit = max(kafka.PRODUCER_MAX_BYTES, contents.largest + (64 << 10))
    producer = kafka.producer(connection, **{"linger.ms": 20, "message.max.bytes": limit})
    deliveries = kafka.DeliveryTracker()
    last: dict[tuple[str, int], Record] = {}
    written = 0
    for topic in cut.topics:
        for record in directory.records(topic, cut):
            previous = last.get((topic, record.partition))
            if previous is not None:
                _produce(producer, topic, previous, deliveries)
            last[topic, record.partition] = record
            written += 1
    _flush(producer, deliveries)
    # Each partition's last record in a batch of its own: Tansu's end is its last batch's base + 1.
    for (topic, _), record in last.items():
        _produce(producer, topic, record, deliveries)
    _flush(producer, deliveries)
    ends = kafka.topic_extents(connection, list(cut.topics)) if cut.topics else {}
    wrong = {n: (ends.get(n, (0, 0))[1], end) for n, end in cut.ends.items() if ends.get(n, (0, 0))[1] != end}
    if wrong:
        raise JournalError(f"restored partitions end at other offsets than the cut (end, cut): {wrong}")
    for group, offsets in cut.groups.items():
        held = [TopicPartition(*split_input(n), o) for n, o in offsets.items() if split_input(n)[0] in cut.topics]
        if held:
            consumer = kafka.consumer(connection, group)
            try:
                consumer.commit(offsets=held, asynchronous=False)
            finally:
                consumer.close()
    return written


def _produce(producer: Producer, topic: str, record: Record, deliveries: kafka.DeliveryTracker) -> None:
    kafka.produce(
        producer,
        topic,
        record.value,
        record.partition,
        key=record.key,
        on_delivery=deliveries,
        timestamp=record.timestamp,
        headers=record.headers,
    )


def _flush(producer: Producer, deliveries: kafka.DeliveryTracker) -> None:
    if producer.flush(120) or deliveries.failures:
        raise JournalError(f"restoring records failed: {deliveries.failures[:3] or 'not acknowledged within 120 s'}")


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""
