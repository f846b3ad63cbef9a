"""A state directory on disk: its layout, its lock, and what it holds, verified.

    DIR/manifest.json          {"version": 2}: what this directory is
    DIR                        locked (flock) by the one stack that uses it
    DIR/holder                 that stack's pid
    DIR/journal/<topic>.log    a topic's records (frames.py), appended as the broker took them
    DIR/cuts.log               the cuts; the last whole one is what a restore brings back
    DIR/durable.json           the last cut's end of the receipts topic, for ingest's 202s

Every file is checksummed frame by frame. What a restore needs (the last cut, and every
record below its ends) must verify whole: a missing manifest beside data, a checksum that
does not match, a file shorter than its cut says, another version, or a directory that
cannot be written stops the stack before it serves, naming the file, and changes nothing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.source_topics import input_of
from pipeline.statedir.frames import Cut, Damaged, Record, as_cut, as_record, cut_frame, payloads, record_frame

VERSION = 2
CUTS_MAX_BYTES = 4 << 20  # the cuts log starts over (from its last cut) past this


class InUse(UsageError):
    """Another stack holds the directory."""


@dataclass(frozen=True)
class Contents:
    """What a verified directory holds: its last cut (None: nothing yet) and each topic's records."""

    cut: Cut | None
    records: dict[str, int]  # topic -> records below the cut's ends
    largest: int = 0  # bytes of the largest value among them


class Directory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest = path / "manifest.json"
        self.journal = path / "journal"
        self.cuts = path / "cuts.log"
        self.durable = path / "durable.json"
        self.holder = path / "holder"
        self._lock: int | None = None

    def topic_file(self, topic: str) -> Path:
        return self.journal / f"{topic}.log"

    # -- ownership ---------------------------------------------------------------

    def lock(self) -> None:
        """Take the directory for this process (a flock on the directory itself, so that taking
        it writes nothing), or raise InUse naming the holder's pid."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise Damaged(f"{self.path}: cannot be used as a state directory ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder.read_text().strip() if self.holder.exists() else "?"
            raise InUse(
                f"{self.path} is the state directory of another wordpipe up (pid {holder}); stop it first"
            ) from None
        self._lock = fd

    def note_holder(self) -> None:
        """Say which process holds it, once it verified (a refused directory is not written)."""
        _replace(self.holder, f"{os.getpid()}\n".encode(), sync=False)

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def check_writable(self) -> None:
        probe = self.path / ".writable"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise Damaged(f"{self.path}: the state directory cannot be written ({exc.strerror})") from None

    # -- what it holds ------------------------------------------------------------

    def verify(self) -> Contents:
        """Check everything a restore needs; raises Damaged naming the file and what is wrong."""
        data = self.cuts.exists() or (self.journal.exists() and any(self.journal.iterdir()))
        if not self.manifest.exists():
            if data:
                raise Damaged(f"{self.manifest} is missing beside the journal: not restored, nothing changed")
            return Contents(None, {})
        try:
            version = json.loads(self.manifest.read_text()).get("version")
        except (ValueError, AttributeError) as exc:
            raise Damaged(f"{self.manifest}: not a manifest ({exc})") from None
        if version != VERSION:
            raise Damaged(f"{self.manifest}: version {version!r}; this wordpipe reads version {VERSION}")
        cut = self.last_cut()
        if cut is None:
            if data and self.journal.exists() and any(self.journal.iterdir()):
                raise Damaged(f"{self.cuts} holds no whole cut beside a journal: not restored, nothing changed")
            return Contents(None, {})
        counts, largest = {}, 0
        for topic in cut.topics:
            counts[topic] = 0
            for record in self.records(topic, cut):
                counts[topic] += 1
                largest = max(largest, len(record.value or b""))
        return Contents(cut, counts, largest)

    def last_cut(self) -> Cut | None:
        cuts = self.all_cuts()
        return cuts[-1] if cuts else None

    def all_cuts(self, tolerant: bool = False) -> list[Cut]:
        """The cuts of cuts.log, oldest first; `tolerant`: those before any damage."""
        if not self.cuts.exists():
            return []
        cuts: list[Cut] = []
        with open(self.cuts, "rb") as f:
            try:
                for position, payload in payloads(f, self.cuts):
                    cuts.append(as_cut(self.cuts, position, payload))
            except Damaged:
                if not tolerant:
                    raise
        return cuts

    def records(self, topic: str, cut: Cut) -> Iterator[Record]:
        """A topic's records below the cut's ends, each partition's in offset order, verified."""
        path, size = self.topic_file(topic), cut.sizes.get(topic, 0)
        if not path.exists():
            if size:
                raise Damaged(f"{path} is missing; the last cut holds {size:,} bytes of it")
            return
        if path.stat().st_size < size:
            raise Damaged(f"{path} is {path.stat().st_size:,} bytes; the last cut holds {size:,} of it: cut short")
        ends = {p: cut.ends.get(input_of(topic, p), 0) for p in range(cut.topics[topic])}
        expected = dict.fromkeys(ends, 0)
        with open(path, "rb") as f:
            for position, payload in payloads(f, path, limit=size):
                record = as_record(path, position, payload)
                end = ends.get(record.partition)
                if end is None:
                    raise Damaged(f"{path}: at byte {position}, partition {record.partition} of a topic of {len(ends)}")
                if record.offset >= end:
                    continue  # taken after the cut fixed this partition: not part of it
                if record.offset != expected[record.partition]:
                    raise Damaged(
                        f"{path}: at byte {position}, {topic}:{record.partition} offset {record.offset} follows "
                        f"{expected[record.partition] - 1}: a record is missing"
                    )
                expected[record.partition] += 1
                yield record
        short = {p: (expected[p], end) for p, end in ends.items() if expected[p] != end}
        if short:
            raise Damaged(f"{path}: the last cut ends partitions at {short} (held, cut): records are missing")

    def salvage(self, new: Directory) -> tuple[Cut, int]:
        """Copy into `new` (empty) the newest cut whose records all verify; returns it and how
        many newer cuts did not. Raises Damaged when none does."""
        if new.path.exists() and any(new.path.iterdir()):
            raise InUse(f"{new.path} is not empty: salvage writes a new directory")
        cuts = self.all_cuts(tolerant=True)
        for skipped, cut in enumerate(reversed(cuts)):
            try:
                records = {topic: list(self.records(topic, cut)) for topic in cut.topics}
            except Damaged:
                continue
            new.initialize()
            sizes = {}
            for topic, kept in records.items():
                with open(new.topic_file(topic), "wb") as out:
                    for record in kept:
                        out.write(record_frame(record))
                    out.flush()
                    os.fdatasync(out.fileno())
                    sizes[topic] = out.tell()
            new.append_cut(dataclasses.replace(cut, sizes=sizes))
            return cut, skipped
        raise Damaged(
            f"{self.path}: no cut verifies whole ({len(cuts)} read): nothing of it can be restored exactly; "
            "move it away to start afresh"
        )

    # -- writing -----------------------------------------------------------------

    def initialize(self) -> None:
        """A fresh directory: its manifest and journal folder (a directory verified empty)."""
        self.journal.mkdir(parents=True, exist_ok=True)
        if not self.manifest.exists():
            _replace(self.manifest, json.dumps({"version": VERSION}).encode() + b"\n")

    def compact(self, cut: Cut) -> Cut:
        """After a crash: each topic's file holds exactly the records below the last cut's
        ends (a round may have taken more before it crashed), and a topic the cut does not
        hold has none; returns the cut that says so, durable. (A clean stop's last cut holds
        everything: nothing to trim.)"""
        sizes = {}
        for path in self.journal.glob("*.log"):
            topic = path.name[: -len(".log")]
            if topic not in cut.topics:
                path.unlink()
                continue
            with open(path.with_suffix(".new"), "wb") as out:
                for record in self.records(topic, cut):
                    out.write(record_frame(record))
                out.flush()
                os.fdatasync(out.fileno())
                sizes[topic] = out.tell()
            os.replace(path.with_suffix(".new"), path)
        _sync_dir(self.journal)
        compacted = dataclasses.replace(cut, n=cut.n + 1, sizes=sizes)
        self.append_cut(compacted)
        return compacted

    def append_cut(self, cut: Cut) -> None:
        """Make `cut` durable; the log starts over from it once it has grown past CUTS_MAX_BYTES."""
        data = cut_frame(cut)
        if self.cuts.exists() and self.cuts.stat().st_size + len(data) > CUTS_MAX_BYTES:
            _replace(self.cuts, data)
            return
        with open(self.cuts, "ab") as f:
            f.write(data)
            f.flush()
            os.fdatasync(f.fileno())

    def publish_durable(self, documents_end: int, problem: str | None, cut: int) -> None:
        """What ingest waits on before a 202 (pipeline/ingest/durability.py)."""
        _replace(
            self.durable,
            json.dumps({"cut": cut, "documents": documents_end, "problem": problem}).encode(),
            sync=False,  # it names a durable cut; losing it in a crash loses nothing
        )


def _replace(path: Path, data: bytes, sync: bool = True) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fdatasync(f.fileno())
    os.replace(temporary, path)
    if sync:
        _sync_dir(path.parent)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
