"""The assigner: which worker reads which input, published on the assignments topic
(pipeline/assignment.py decides), the retirement of counted chunks generations and the
rotation of status generations (pipeline/generations.py). One runs per stack, on a thread of the autoscaler (or of
`wordpipe run`); if it is away, workers read on as last assigned.

    assigner = Assigner(connection, settings.topics, settings.worker)
    ...
    assigner.close()
"""

from __future__ import annotations

import logging
import threading
import time

from pipeline import codec, generations, kafka
from pipeline.assignment import Assignment, decide
from pipeline.config import Connection, TopicSettings, WorkerSettings
from pipeline.kafka import TopicPartition
from pipeline.observe.accepted import Accepted
from pipeline.observe.crash_reports import KEY_PREFIX as CRASHES_PREFIX
from pipeline.observe.roster import READER_PREFIX, Roster
from pipeline.source_topics import input_of, split_input

log = logging.getLogger("wordpipe.assigner")

STEP_SECONDS = 0.2
SOURCES_SECONDS = 1.0  # how often a step looks for source topics and their partitions (a metadata request)
RETIRE_STEP_SECONDS = 2.0
# A worker silent this long is gone: its inputs go to others. Workers report every
# status_interval from a thread of their own, however long a batch takes.
STALE_REPORTS = 3
RETIRE_AFTER = 3.0  # seconds from a generation's marker to its deletion, at the least
KEY = b"assignment"


class Assigner:
    def __init__(
        self,
        connection: Connection,
        topics: TopicSettings,
        workers: WorkerSettings,
    ) -> None:
        self.connection = connection
        self.topics = topics
        self.stale = max(3.0, STALE_REPORTS * workers.status_interval)
        self.admin = kafka.admin(connection)
        self.producer = kafka.producer(connection)
        self.offsets = kafka.consumer(connection, workers.group)  # committed offsets only
        self.roster = Roster(connection, topics)
        self.accepted = Accepted(connection, topics)
        published = kafka.read_partition(connection, topics.assignments)  # epochs go on from the last
        self.assignment = codec.decode_assignment(published[-1].value()) if published else Assignment()
        self.chunks_newest = (0, time.monotonic())  # the newest chunks generation, since when we know it
        self.status_newest = (0, time.monotonic())  # the newest status generation, since when we know it
        self.marked: dict[int, float] = {}  # retiring generation -> time.monotonic() we saw its marker
        self.next_retire = 0.0
        self.sources: tuple[float, list[str]] = (0.0, [])  # when to list them again, the source partitions
        self.problem: str | None = None
        self.expected: dict[str, float] = {}  # worker -> when it was launched (monotonic)
        self._lock = threading.Lock()  # `expect` comes from the launching thread
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="assigner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                if time.monotonic() >= self.next_retire:
                    self.next_retire = time.monotonic() + RETIRE_STEP_SECONDS
                    self.retire()
                    self.problem = None  # a step may need no request: only a retire round says Kafka answers
            except Exception as exc:  # Kafka away, mostly: try again, workers read on meanwhile
                if self.problem is None:
                    log.warning("assigner: %s", exc)
                self.problem = str(exc)
            self._wake.wait(STEP_SECONDS)
            self._wake.clear()

    # -- assignment ------------------------------------------------------------

    def live(self) -> dict[str, codec.WorkerStatus]:
        """The workers that report, with their last report (a clean stop removes it)."""
        statuses = self.roster.refresh()
        now = time.monotonic()
        return {w: st for w, st in statuses.items() if now - self.roster.seen.get(w, 0.0) < self.stale}

    def expect(self, workers: list[str]) -> None:
        """Workers just launched: assign them inputs now, without waiting for their first report."""
        with self._lock:
            self.expected.update(dict.fromkeys(workers, time.monotonic()))
        self._wake.set()

    def awaited(self) -> list[str]:
        """The launched workers that have not reported yet: live, until silent as long as a
        live worker may be (a launch that failed, or a worker that died starting, then loses
        its inputs as a dead worker does; one that is only slow gets them at its first report)."""
        now = time.monotonic()
        with self._lock:
            for w, since in list(self.expected.items()):
                if w in self.roster.seen or now - since > self.stale:
                    del self.expected[w]
            return list(self.expected)

    def inputs(self) -> list[str]:
        """Every chunks partition (of all generations) and every source partition."""
        out = [input_of(self.topics.chunks, p) for p in range(self.topics.chunk_partitions)]
        if self.topics.source_list and time.monotonic() >= self.sources[0]:
            partitions = kafka.describe_partitions(self.admin, 10)
            listed = [input_of(s.topic, p) for s in self.topics.source_list for p in range(partitions.get(s.topic, 0))]
            say_changes({split_input(n)[0] for n in self.sources[1]}, {split_input(n)[0] for n in listed})
            self.sources = (time.monotonic() + SOURCES_SECONDS, listed)
        return out + self.sources[1]

    def step(self) -> None:
        workers = self.live()
        base = self.topics.chunks
        holding = {w: {self.input_of(name) for name in st.inputs} for w, st in workers.items()}
        holding.update((w, set()) for w in self.awaited())
        chosen = decide(self.assignment, self.inputs(), holding, lambda i: split_input(i)[0] != base)
        if chosen is self.assignment:
            return
        kafka.produce(self.producer, self.topics.assignments, codec.encode_assignment(chosen), 0, key=KEY)
        if self.producer.flush(10):
            raise kafka.KafkaUnavailable("the assignment was not acknowledged within 10 s")
        self.assignment = chosen
        log.info("assignment %d: %s", chosen.epoch, _summary(chosen))

    def input_of(self, name: str) -> str:
        """The assignment's input a worker's partition belongs to ("chunks.g3:5" -> "chunks:5")."""
        topic, partition = split_input(name)
        found = generations.of(topic)
        if found is not None and found[0] == self.topics.chunks:
            return input_of(self.topics.chunks, partition)
        return name

    # -- retirement ------------------------------------------------------------

    def retire(self) -> None:
        """Mark the counted generations no one writes, and delete the marked ones every
        live worker has let go of."""
        names = kafka.topic_names(self.admin)
        self.rotate_status(names)
        self.rotate_for_sources(names)
        base = self.topics.chunks
        every = generations.numbers(names, base)
        live = generations.live(names, base)
        leased = self.leased()
        now = time.monotonic()
        for n in set(every) - set(live):
            self.marked.setdefault(n, now)
        for n in list(self.marked):
            if n not in every:
                del self.marked[n]
        for n in sorted(self.marked):
            self.finish(n, leased, names)
        candidates = [n for n in live if n < every[-1] and n not in leased]
        if candidates:
            self.accepted.catch_up(timeout=10)
            open_receipts = {generations.number(t) for t in list(self.accepted.open.values()) if generations.of(t)}
            for n in candidates:
                if n not in open_receipts and self.counted(generations.topic(base, n)):
                    kafka.create(self.admin, [kafka.new_topic(generations.marker(generations.topic(base, n)), 1, 1)])
                    self.marked[n] = time.monotonic()
                    log.info("%s is counted and no one writes it: retiring", generations.topic(base, n))

    def finish(self, n: int, leased: set[int], names: set[str]) -> None:
        """Delete a marked generation once every live worker has let go of it; a writer's
        lease naming it again (a race with a writer coming back) takes the marker back."""
        topic = generations.topic(self.topics.chunks, n)
        if n in leased:
            log.warning("%s: a writer's lease names it again; it is not retired", topic)
            kafka.delete(self.admin, [generations.marker(topic)])
            del self.marked[n]
            return
        since = self.marked[n]
        if time.monotonic() - since < RETIRE_AFTER:
            return
        reported_after = since + 1.0 + 0.5  # a worker looks at the topics every second
        for w, status in self.live().items():
            if self.roster.seen[w] < reported_after:
                return  # not heard from since: it may still read the generation
            if any(name.startswith(topic + ":") for name in status.inputs):
                return
        for reader, report in self.roster.readers.items():  # a state directory's journal
            seen = self.roster.seen.get(READER_PREFIX + reader, 0.0)
            if time.monotonic() - seen < generations.LEASE_SECONDS and (
                seen < reported_after or n in report.generations
            ):
                return
        if topic in names:
            kafka.delete(self.admin, [topic])
        kafka.delete(self.admin, [generations.marker(topic)])
        log.info("%s retired", topic)

    def rotate_for_sources(self, names: set[str]) -> None:
        """Start the next chunks generation every SOURCE_ROTATE_SECONDS while source topics
        are counted: their windows' partials go to the newest partials generation, and
        without uploads no writer would ever start another, nor could it be dropped."""
        newest = generations.newest(names, self.topics.chunks)
        if not self.topics.source_list or newest is None:
            return
        if self.chunks_newest[0] != newest:
            self.chunks_newest = (newest, time.monotonic())
        if time.monotonic() - self.chunks_newest[1] < generations.SOURCE_ROTATE_SECONDS:
            return
        partials = generations.topic(self.topics.partials, newest)
        if not any(end for _, end in kafka.topic_extents(self.connection, [partials], timeout=10).values()):
            return  # nothing to drop: every new generation changes the aggregator's subscription
        kafka.create_generation(self.admin, self.topics, newest + 1)
        log.info(
            "%s started: source windows' partials go to the next generation",
            generations.topic(self.topics.chunks, newest + 1),
        )

    def rotate_status(self, names: set[str]) -> None:
        """Start the next status generation every STATUS_ROTATE_SECONDS, copying the crash
        reports into it (said once, they must outlive their generation), and delete those
        no one reads STATUS_DELETE_AFTER seconds after the newest began."""
        base = self.topics.status
        newest = generations.newest(names, base) or 0
        if self.status_newest[0] != newest:
            self.status_newest = (newest, time.monotonic())
        age = time.monotonic() - self.status_newest[1]
        unread = generations.status_unread(names, base)
        if unread and age >= generations.STATUS_DELETE_AFTER:
            kafka.delete(self.admin, unread)
        if age >= generations.STATUS_ROTATE_SECONDS:
            topic = generations.topic(base, newest + 1)
            kafka.create(self.admin, [kafka.status_spec(self.topics, newest + 1)])
            self.roster.refresh()
            for role, report in self.roster.crashes.items():
                key = (CRASHES_PREFIX + role).encode()
                kafka.produce(self.producer, topic, codec.encode_crashes(report), 0, key=key)
            self.producer.flush(10)
            log.info("status reports go to %s from now on", topic)

    def leased(self) -> set[int]:
        """Generations a writer's lease named in the last generations.LEASE_SECONDS."""
        now = time.monotonic()
        return {
            n
            for writer, lease in self.roster.leases.items()
            if now - self.roster.seen.get(writer, 0.0) < generations.LEASE_SECONDS
            for n in lease.generations
        }

    def counted(self, topic: str) -> bool:
        """Every record of `topic` is in a window the workers committed."""
        extents = kafka.topic_extents(self.connection, [topic], timeout=10)
        asked = [TopicPartition(*split_input(name)) for name in extents]
        committed = self.offsets.committed(asked, timeout=10)
        return all(
            at.offset >= extents[input_of(at.topic, at.partition)][1]
            or extents[input_of(at.topic, at.partition)][1] == 0
            for at in committed
        )

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.roster.close()
        self.accepted.close()
        self.offsets.close()
        self.producer.flush(5)


def _summary(assignment: Assignment) -> str:
    by_worker: dict[str, list[str]] = {}
    for name, worker in sorted(assignment.owners.items()):
        by_worker.setdefault(worker, []).append(name)
    waiting = f"; waiting: {sorted(assignment.waiting)}" if assignment.waiting else ""
    return "; ".join(f"{w}: {len(inputs)} inputs" for w, inputs in sorted(by_worker.items())) + waiting


def say_changes(before: set[str], found: set[str]) -> None:
    """A source topic someone deleted is the user's doing, not a fault of ours: say so once,
    by name, where the worker that read it only exits (librdkafka crashes on a deleted
    topic, confluentinc/librdkafka#5093) and is relaunched."""
    for topic in sorted(before - found):
        log.warning(
            "source topic %s is gone (deleted?): its partitions are no longer assigned; "
            "a worker reading one when it went may exit and be relaunched",
            topic,
        )
    for topic in sorted(found - before):
        log.info("source topic %s: its partitions are assigned", topic)
