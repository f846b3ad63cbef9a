"""A worker's two kinds of input behind one interface (`Inputs`): the partitions of ingest's
chunks topics, and the partitions of source topics that other producers fill. Each kind owns
its windows, how its records are decoded into words, where its windows' partials go, and how
reading it resumes; the worker (worker.py) consumes, counts, publishes and commits alike.

A source partition has no flush markers, so its windows also close when idle (`idle`), and
one that closed so was recorded where it ended: a worker that takes the partition over is
told that end (`resume`) and cuts its first window there too (windows.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline import codec, generations
from pipeline.config import TopicSettings, WorkerSettings
from pipeline.kafka import Consumer, TopicPartition
from pipeline.source_topics import Input, SourceTopic, input_of
from pipeline.worker.reading import Reading
from pipeline.worker.windows import Window, Windows

log = logging.getLogger("wordpipe.worker")

Read = Callable[[Input, SourceTopic | None, bytes | None], Reading]  # the worker's careful reader


@dataclass
class CountedRecord:
    """What one record did: the windows it closed; why it was refused (to dead-letter), if it
    was; and whether it held text that was counted."""

    closed: list[Window] = field(default_factory=list)
    refusal: str | None = None
    text: bool = False


class Inputs(Protocol):
    windows: Windows

    def owns(self, topic: str) -> bool: ...

    def count(self, msg: Any, read: Read) -> CountedRecord:
        """One record into its window (a refused one still takes up its offset)."""

    def skip(self, name: Input, offset: int, at: int) -> list[Window]:
        """A record that could not be counted takes up its offset."""

    def partials_topic(self, topic: str, newest: int) -> str: ...

    def resume(self, positions: list[TopicPartition]) -> None:
        """Where reading each partition starts (offsets < 0: none committed yet), fixed in place."""

    def forget(self, names: list[str]) -> None: ...


def _where(msg: Any) -> tuple[Input, int, int]:
    return input_of(msg.topic(), msg.partition()), msg.offset(), max(msg.timestamp()[1], 0)


class ChunkPartitions:
    """Ingest's chunks, in generations: chunks.gN's windows go to partials.gN."""

    def __init__(self, topics: TopicSettings, worker: WorkerSettings, tokenizer: str) -> None:
        self.base = topics.chunks
        self.partials = topics.partials
        self.windows = Windows(worker.window_chunks, worker.window_max_words)
        self.tokenizer = tokenizer  # the id every chunk must name
        self.foreign_tokenizers: set[str] = set()  # ids of refused chunks, each logged once

    def owns(self, topic: str) -> bool:
        found = generations.of(topic)
        return found is not None and found[0] == self.base

    def count(self, msg: Any, read: Read) -> CountedRecord:
        name, offset, at = _where(msg)
        try:
            record = codec.decode_chunk(msg.value())
            refusal = self.foreign(record) if isinstance(record, codec.ChunkMessage) else None
        except codec.CodecError as exc:
            refusal = str(exc)
        if refusal is not None:
            return CountedRecord(self.windows.add(name, offset, at=at), refusal)
        if isinstance(record, codec.FlushMarker):
            return CountedRecord(self.windows.add(name, offset, flush=True, at=at))
        if isinstance(record, codec.DocumentEnd):
            return CountedRecord(self.windows.add(name, offset, end=(record.doc, record.chunks, record.commit), at=at))
        assert isinstance(record, codec.ChunkMessage)
        reading = read(name, None, record.text)
        if reading.words is None:  # it crashed its readers
            return CountedRecord(self.windows.add(name, offset, at=at), reading.refusal or "")
        if reading.invalid_bytes:
            log.warning(
                "%s: %d invalid UTF-8 byte sequence(s) replaced by U+FFFD in the chunk at byte %d",
                record.source,
                reading.invalid_bytes,
                record.offset,
            )
        held_by = record.doc if record.held else None
        return CountedRecord(self.windows.add(name, offset, reading.words, held_by, at=at), text=True)

    def foreign(self, record: codec.ChunkMessage) -> str | None:
        """Why a chunk for another tokenizer is refused (None: it is ours). Two definitions of a
        word must never meet in one total; the first of each foreign id is also logged."""
        if record.tokenizer == self.tokenizer:
            return None
        if record.tokenizer not in self.foreign_tokenizers:
            self.foreign_tokenizers.add(record.tokenizer)
            log.error(
                "chunks name tokenizer %s; this worker counts with %s (another wordpipe version or user "
                "dictionary): they are dead-lettered",
                record.tokenizer,
                self.tokenizer,
            )
        return (
            f"tokenizer mismatch: the chunk of {record.source} at byte {record.offset} must be counted by "
            f"{record.tokenizer}, this worker's tokenizer is {self.tokenizer}"
        )

    def skip(self, name: Input, offset: int, at: int) -> list[Window]:
        return self.windows.add(name, offset, at=at)

    def partials_topic(self, topic: str, newest: int) -> str:
        return generations.partials_of(topic, self.partials)

    def resume(self, positions: list[TopicPartition]) -> None:
        # A chunks partition starts at its beginning: its windows are the log's. Offset 0, not
        # the broker's "earliest": Tansu answers that with the batch it wrote first, which
        # need not be the one of lowest offset (pipeline/aggregator/app.py).
        for tp in positions:
            tp.offset = max(tp.offset, 0)

    def forget(self, names: list[str]) -> None:
        self.windows.drop(names)


class SourcePartitions:
    """Other producers' topics: each record's text read by its topic's spec, its timestamp its
    event time; the windows go to the newest generation's partials."""

    def __init__(
        self, topics: TopicSettings, worker: WorkerSettings, consumer: Consumer, recorded_ends: Consumer | None
    ) -> None:
        self.specs = {source.topic: source for source in topics.source_list}
        self.partials = topics.partials
        self.start = topics.source_start
        self.idle_seconds = worker.source_idle_seconds
        self.windows = Windows(worker.source_window_records, worker.window_max_words)
        self.consumer = consumer  # the worker's: its committed offsets are where reading starts
        self.recorded_ends = recorded_ends  # the idle windows' ends, as a group's offsets
        self.last_record: dict[Input, float] = {}  # input -> when its open window last grew
        self.warned_invalid: set[str] = set()  # topics whose invalid UTF-8 was logged

    def owns(self, topic: str) -> bool:
        return topic in self.specs

    def count(self, msg: Any, read: Read) -> CountedRecord:
        name, offset, at = _where(msg)
        topic = msg.topic()
        reading = read(name, self.specs[topic], msg.value())
        if reading.words is None:
            return CountedRecord(self.skip(name, offset, at), reading.refusal or "")
        if reading.invalid_bytes and topic not in self.warned_invalid:
            self.warned_invalid.add(topic)  # once a topic: a feed of such lines would flood the log
            log.warning(
                "%s[%d]@%d: %d invalid UTF-8 byte sequence(s) replaced by U+FFFD (as in files; "
                "further ones in %s are not logged)",
                topic,
                msg.partition(),
                offset,
                reading.invalid_bytes,
                topic,
            )
        return CountedRecord(self._add(name, offset, reading.words, at), text=True)

    def skip(self, name: Input, offset: int, at: int) -> list[Window]:
        return self._add(name, offset, None, at)

    def _add(self, name: Input, offset: int, tokens: list[str] | None, at: int) -> list[Window]:
        closed = self.windows.add(name, offset, tokens, at=at)
        if name in self.windows.open:
            self.last_record[name] = time.monotonic()
        else:
            self.last_record.pop(name, None)
        return closed

    def idle(self) -> list[Input]:
        """The inputs whose open window received nothing for `source_idle_seconds`."""
        quiet_since = time.monotonic() - self.idle_seconds
        return [name for name, at in self.last_record.items() if at <= quiet_since]

    def close(self, names: list[Input]) -> list[Window]:
        """Close the open windows of `names` where they stand."""
        for name in names:
            self.last_record.pop(name, None)
        return self.windows.close(names)

    def partials_topic(self, topic: str, newest: int) -> str:
        return generations.topic(self.partials, newest)

    def resume(self, positions: list[TopicPartition]) -> None:
        """Where to read each source partition from, made durable on first use (a successor
        must start where we did, not at a newer `latest`), and the recorded end of an idle
        window published past it, which our first window there must share."""
        fresh = [tp for tp in positions if tp.offset < 0]
        for tp in fresh:
            # "earliest" is offset 0, as for chunks: below a cluster's log start it is out of
            # range, and auto.offset.reset (earliest) finds the first record kept.
            tp.offset = 0 if self.start == "earliest" else self.consumer.get_watermark_offsets(tp, timeout=30)[1]
        if fresh:
            self.consumer.commit(offsets=fresh, asynchronous=False)
        assert self.recorded_ends is not None
        recorded = self.recorded_ends.committed(
            [TopicPartition(tp.topic, tp.partition) for tp in positions], timeout=30
        )
        for at, end in zip(positions, recorded, strict=True):
            if end.offset > at.offset:
                self.windows.end_at(input_of(at.topic, at.partition), end.offset)

    def forget(self, names: list[str]) -> None:
        self.windows.drop(names)
        for name in names:
            self.last_record.pop(name, None)
