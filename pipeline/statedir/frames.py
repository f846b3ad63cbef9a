"""Pure: the frames of a state directory's files, each checksummed, and the two things
they hold: a topic's records and the cuts that make them durable.

    frame   = length (4 bytes, big-endian) + CRC-32 of the payload (4) + payload (msgpack)
    record  = [partition, offset, key, value, timestamp ms, headers]     (journal/<topic>.log)
    cut     = {"n", "at", "clean", "topics", "ends", "sizes", "groups"}  (cuts.log)

A frame cut short at the end of a file is a write a crash interrupted: it is no frame. A
whole frame whose checksum or shape is wrong is damage, and names its file and position.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgpack

from pipeline.errors import UnavailableError

HEAD = struct.Struct(">II")
MAX_FRAME = 1 << 31  # a record larger than Kafka allows is no frame of ours: damage


class Damaged(UnavailableError):
    """A file of the state directory that does not verify; the message names it and where."""


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Cut:
    """What is durable: each partition's end, each topic's partitions and file size, and the
    stack's groups' offsets, all read so that whatever they vouch for is inside the ends."""

    n: int
    at: float
    clean: bool  # written by a clean stop: nothing after it
    topics: dict[str, int]  # topic -> partitions
    ends: dict[str, int]  # "topic:partition" -> end offset
    sizes: dict[str, int]  # topic -> bytes of its journal file that hold the ends
    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> "topic:partition" -> offset


def frame(payload: object) -> bytes:
    data = msgpack.packb(payload, use_bin_type=True)
    return HEAD.pack(len(data), zlib.crc32(data)) + data


def record_frame(record: Record) -> bytes:
    return frame(
        [record.partition, record.offset, record.key, record.value, record.timestamp, [list(h) for h in record.headers]]
    )


def cut_frame(cut: Cut) -> bytes:
    return frame(
        {
            "n": cut.n,
            "at": cut.at,
            "clean": cut.clean,
            "topics": cut.topics,
            "ends": cut.ends,
            "sizes": cut.sizes,
            "groups": cut.groups,
        }
    )


def payloads(f: BinaryIO, path: Path, limit: int | None = None) -> Iterator[tuple[int, object]]:
    """(position, payload) of each whole frame, up to `limit` bytes; a frame cut short at
    the end ends it quietly; anything else wrong raises Damaged."""
    position = 0
    while limit is None or position < limit:
        head = f.read(HEAD.size)
        if len(head) < HEAD.size:
            return
        length, crc = HEAD.unpack(head)
        if length > MAX_FRAME:
            raise Damaged(f"{path}: at byte {position}, a frame of {length:,} bytes: not a frame of this directory")
        data = f.read(length)
        if len(data) < length:
            return  # cut short by a crash
        if zlib.crc32(data) != crc:
            raise Damaged(f"{path}: at byte {position}, a frame whose checksum does not match: its bytes changed")
        try:
            payload = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise Damaged(f"{path}: at byte {position}, a frame that does not decode ({exc})") from None
        yield position, payload
        position += HEAD.size + length


def as_record(path: Path, position: int, payload: object) -> Record:
    try:
        assert isinstance(payload, list) and len(payload) == 6
        partition, offset, key, value, timestamp, headers = payload
        return Record(partition, offset, key, value, timestamp, [(str(k), bytes(v)) for k, v in headers])
    except (AssertionError, TypeError, ValueError) as exc:
        raise Damaged(f"{path}: at byte {position}, a record of the wrong shape ({exc})") from None


def as_cut(path: Path, position: int, payload: object) -> Cut:
    try:
        assert isinstance(payload, dict)
        return Cut(
            payload["n"],
            payload["at"],
            payload["clean"],
            dict(payload["topics"]),
            dict(payload["ends"]),
            dict(payload["sizes"]),
            {g: dict(o) for g, o in payload["groups"].items()},
        )
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Damaged(f"{path}: at byte {position}, a cut of the wrong shape ({exc!r})") from None
