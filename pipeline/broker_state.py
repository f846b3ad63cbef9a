"""The embedded broker's contents kept in a directory: `wordpipe up --state-dir DIR`.

Tansu keeps everything in memory, so a stack's totals, receipts and idempotency keys would
die with it. `save` copies every topic's records and the stack's consumer groups' offsets
to DIR; `restore` writes them into a fresh broker, at the same offsets, before any
service starts. Exactly once carries over: every dedup key is an offset range.

A save needs no pause. Group offsets are read first, then the topics in an order where
whatever caused a record is read after it: the derived topics (the aggregator's state,
totals, receipts, dead letters, status), then `partials`, then `chunks` and the source
topics. So whatever a saved offset or record vouches for is saved too, and whatever was
written after it is what a crash at that instant would replay.

    DIR/manifest.json               topics (partitions), records saved per partition, group offsets
    DIR/records/<topic>/<p>.msgpack  append-only: [key, value, timestamp, headers] per record

A partition's file only grows; the manifest, replaced atomically after the files are
synced, says how much of each file is saved, so a save cut short leaves the last one whole.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import msgpack
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline import kafka
from pipeline.config import Connection, Settings
from pipeline.errors import UnavailableError
from pipeline.source_topics import input_of, split_input

log = logging.getLogger("wordpipe.state")
VERSION = 1


class StateError(UnavailableError):
    """The state directory cannot be saved or restored; the message says which and why."""


def groups_of(settings: Settings) -> list[str]:
    """The consumer groups whose offsets a stack's state holds."""
    return [settings.worker.group, f"{settings.worker.group}.ends", settings.aggregator.id]


def save_order(topics: list[str], settings: Settings) -> list[str]:
    """Effects before causes: derived topics, then partials, then chunks and source topics."""
    t = settings.topics
    last = [t.partials, t.chunks, *(s.topic for s in t.source_list)]
    return sorted(x for x in topics if x not in last) + [x for x in last if x in topics]


class BrokerState:
    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self.manifest_path = directory / "manifest.json"
        self.manifest: dict = {"version": VERSION, "topics": {}, "saved": {}, "bytes": {}, "groups": {}}
        if self.manifest_path.exists():
            self.manifest = json.loads(self.manifest_path.read_text())
            if self.manifest.get("version") != VERSION:
                raise StateError(f"{self.manifest_path}: version {self.manifest.get('version')!r}, expected {VERSION}")

    @property
    def records(self) -> int:
        return sum(self.manifest["saved"].values())

    def _file(self, topic: str, partition: int) -> Path:
        return self.directory / "records" / topic / f"{partition}.msgpack"

    # -- save --------------------------------------------------------------------

    def save(self, connection: Connection) -> int:
        """Append what the broker has beyond what is saved; returns the records appended."""
        admin = AdminClient(kafka.client_config(connection))
        # The broker's own topics (__consumer_offsets) are its business: group offsets are kept apart.
        partitions = {t: n for t, n in kafka.describe_partitions(admin, 30).items() if not t.startswith("__")}
        tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
        groups = {}
        for group in groups_of(self.settings):  # first: everything they vouch for is read after
            consumer = Consumer(kafka.consumer_config(connection, group))
            try:
                committed = consumer.committed(tps, timeout=30)
            finally:
                consumer.close()
            groups[group] = {input_of(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}
        saved, sizes = dict(self.manifest["saved"]), dict(self.manifest["bytes"])
        ends = kafka.topic_extents(connection, list(partitions))
        appended = 0
        reader = Consumer(kafka.consumer_config(connection, "wordpipe-state", **{"enable.partition.eof": True}))
        try:
            for topic in save_order(list(partitions), self.settings):
                for p in range(partitions[topic]):
                    name = input_of(topic, p)
                    first, end = ends[name]
                    if first > 0:
                        raise StateError(
                            f"{name} starts at offset {first}: its first records are gone, so it cannot be kept"
                        )
                    sizes[name] = self._append(reader, topic, p, saved.get(name, 0), end, sizes.get(name, 0))
                    appended += end - saved.get(name, 0)
                    saved[name] = end
        finally:
            reader.close()
        self.manifest = {
            "version": VERSION,
            "topics": {t: {"partitions": n} for t, n in partitions.items()},
            "saved": saved,
            "bytes": sizes,
            "groups": groups,
        }
        temporary = self.manifest_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.manifest, indent=1))
        with open(temporary) as f:
            os.fsync(f.fileno())
        temporary.replace(self.manifest_path)
        return appended

    def _append(self, reader: Consumer, topic: str, partition: int, start: int, end: int, size: int) -> int:
        """Records start..end of one partition appended to its file, first cut back to the
        `size` the manifest says is saved (a save may have been cut short); its new size."""
        path = self._file(topic, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.truncate(size)
        if end <= start:
            return size
        packer = msgpack.Packer(use_bin_type=True)
        expected = start
        reader.assign([TopicPartition(topic, partition, start)])
        with open(path, "ab") as out:
            while expected < end:
                msg = reader.poll(10)
                if msg is None:
                    raise StateError(f"{topic}:{partition}: no record at offset {expected} within 10 s")
                if msg.topic() is not None and (msg.topic(), msg.partition()) != (topic, partition):
                    continue  # left over from the partition read before this one
                if error := msg.error():
                    if error.code() == KafkaError._PARTITION_EOF:
                        raise StateError(f"{topic}:{partition} ended at {expected}, before {end}")
                    raise StateError(f"{topic}:{partition}: {error.str()}")
                if msg.offset() != expected:  # offsets must be what a fresh broker gives them back
                    raise StateError(f"{topic}:{partition}: offset {msg.offset()} follows {expected - 1}")
                at = msg.timestamp()[1]
                out.write(packer.pack([msg.key(), msg.value(), max(at, 0), msg.headers() or []]))
                expected += 1
            out.flush()
            os.fsync(out.fileno())
            return out.tell()

    # -- restore -----------------------------------------------------------------

    def restore(self, connection: Connection) -> int:
        """Write the saved topics and group offsets into an empty broker; returns the records."""
        topics = self.manifest["topics"]
        if not topics:
            return 0
        admin = AdminClient(kafka.client_config(connection))
        specs = {s.topic: s for s in kafka.topic_specs(self.settings.topics)}
        new = [specs.get(t) or NewTopic(t, spec["partitions"], 1) for t, spec in topics.items()]
        for name, future in admin.create_topics(new, request_timeout=30).items():
            try:
                future.result()
            except Exception as exc:
                raise StateError(f"cannot create topic {name} to restore it: {exc}") from None
        producer = Producer(kafka.producer_config(connection, **{"linger.ms": 20, "batch.size": 1 << 20}))
        failures: list[str] = []
        last: list[tuple[str, int, tuple]] = []
        for name, count in self.manifest["saved"].items():
            topic, p = split_input(name)
            records = _read(self._file(topic, p), count)
            previous = next(records, None)
            for record in records:
                _produce(producer, topic, p, previous, failures)
                previous = record
            if previous is not None:
                last.append((topic, p, previous))
        if producer.flush(120) or failures:
            raise StateError(f"restoring records failed: {failures[:3] or 'not acknowledged within 120 s'}")
        # Each partition's last record in a batch of its own (batches are per partition): Tansu's
        # high watermark is its last batch's base + 1, and faust recovers a table only up to it.
        for topic, p, record in last:
            _produce(producer, topic, p, record, failures)
        if producer.flush(120) or failures:
            raise StateError(f"restoring records failed: {failures[:3] or 'not acknowledged within 120 s'}")
        ends = kafka.topic_extents(connection, list(topics))
        wrong = {n: (ends[n][1], c) for n, c in self.manifest["saved"].items() if ends.get(n, (0, 0))[1] != c}
        if wrong:
            raise StateError(f"restored partitions end at other offsets than saved (end, saved): {wrong}")
        for group, offsets in self.manifest["groups"].items():
            if not offsets:
                continue
            consumer = Consumer(kafka.consumer_config(connection, group))
            try:
                commits = [TopicPartition(*split_input(n), o) for n, o in offsets.items()]
                consumer.commit(offsets=commits, asynchronous=False)
            finally:
                consumer.close()
        return self.records


def _produce(producer: Producer, topic: str, partition: int, record, failures: list[str]) -> None:
    key, value, timestamp, headers = record
    while True:
        try:
            producer.produce(
                topic,
                value,
                key=key,
                partition=partition,
                timestamp=timestamp,
                headers=[tuple(h) for h in headers],
                on_delivery=lambda err, msg: failures.append(err.str()) if err else None,
            )
            return
        except BufferError:
            producer.poll(0.05)


def _read(path: Path, count: int):
    """The first `count` records of a partition's file."""
    if count == 0:
        return
    with open(path, "rb") as f:
        for n, (key, value, timestamp, headers) in enumerate(
            msgpack.Unpacker(f, raw=False, strict_map_key=False, max_buffer_size=1 << 30), 1
        ):
            yield key, value, timestamp, headers
            if n == count:
                return
    raise StateError(f"{path} holds fewer records than its manifest says")
