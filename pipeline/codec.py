"""The one place messages are encoded and decoded. Schemas: schemas/*.v1.json.

Every value is a msgpack map with a schema version `v`. Decoders check shape and
types and raise CodecError naming what was wrong; callers dead-letter the record.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import msgpack

from pipeline.assignment import Assignment
from pipeline.errors import UsageError

VERSION = 1
DEADLETTER_PAYLOAD_LIMIT = 64 * 1024
# chunk_size is at most 960 KiB (config.py); the rest is room for the envelope, generously.
CHUNK_MAX_RECORD_BYTES = 1024 * 1024 + 64 * 1024


class CodecError(UsageError):
    """A record that does not match its schema; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ChunkMessage:
    doc: str
    seq: int
    source: str
    offset: int
    text: bytes
    tokenizer: str  # the id of the tokenizer that must count it (pipeline/tokenize.py)
    # A held chunk belongs to a document that counts only once its DocumentEnd commits
    # it (uploads over HTTP); the others count at once (`wordpipe run`).
    held: bool = False


@dataclass(frozen=True, slots=True)
class FlushMarker:
    """Ingest has nothing more to send for now: workers close their open window here."""


@dataclass(frozen=True, slots=True)
class DocumentEnd:
    """The verdict on a held document, written after all its chunks, on their partition."""

    doc: str
    chunks: int  # how many chunks the document has
    commit: bool  # False: an abort, the document counts nothing


Buckets = dict[int, dict[str, int]]  # state bucket -> {word: count}


@dataclass(frozen=True, slots=True)
class HeldPart:
    """A held document's counts from one window, parked by the aggregator until its verdict."""

    first: int  # offset of the document's first chunk in the window
    chunks: int
    buckets: Buckets


@dataclass(frozen=True, slots=True)
class PartialMessage:
    # (input, first offset, end offset): the window. The input is a chunks partition, or a
    # source topic's partition as "topic:partition" (pipeline/source_topics.py).
    source: tuple[int | str, int, int]
    shard: int
    buckets: Buckets  # counted at once
    held: dict[str, HeldPart]  # document id -> its parked counts
    ends: dict[str, tuple[int, int, bool, int]]  # document id -> (marker offset, chunks, commit, marker timestamp ms)
    at: int = 0  # timestamp (ms) of the window's last record: the event time of `buckets`


@dataclass(frozen=True, slots=True)
class TotalMessage:
    word: str
    count: int


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A worker's report of itself, keyed by worker id on the status topic."""

    worker: str
    partitions: tuple[int, ...]  # chunks partitions assigned to it now
    chunks: int  # chunks counted since it started
    busy_seconds: float  # time spent counting and publishing: rate while busy = chunks / busy_seconds
    started_at: float  # Unix time
    first_chunk_at: float | None  # Unix time it counted its first chunk
    peak_rss_kb: int
    at: float  # Unix time of this report
    inputs: tuple[str, ...] = ()  # the inputs it reads now ("chunks.g3:5", "tweets:0")
    epoch: int = 0  # the assignment it follows (pipeline/assignment.py)


@dataclass(frozen=True, slots=True)
class WriterLease:
    """A chunks writer's claim on the generations it may still write (an upload in
    progress), keyed `writer:<id>` on the status topic; it lapses unless renewed
    (pipeline/ingest/chunk_topics.py)."""

    writer: str
    generations: tuple[int, ...]
    at: float  # Unix time of this report


@dataclass(frozen=True, slots=True)
class CrashReport:
    """A supervisor's report of one role's crashes (the rule: pipeline/supervisor.py), keyed
    by `crashes:<role>` on the status topic: one record per role, the last one wins."""

    role: str  # workers, aggregator, ingest, autoscaler
    crashes: int  # counted since its supervisor started
    in_a_row: int  # crashes without a healthy spell between them
    restarts: int  # every exit relaunched, counted as a crash or not
    looping: bool  # in a crash loop now
    backoff_seconds: float  # how long the last crash's relaunch is held back
    restart_at: float | None  # Unix time a held-back relaunch is due; None: none waiting
    last_exit: str  # how the last exit ended ("exit status 3", "killed by SIGSEGV"); "" before any
    last_crash_at: float | None  # Unix time
    at: float  # Unix time of this report


@dataclass(frozen=True, slots=True)
class Receipt:
    """Ingest's record of an upload, keyed by its Idempotency-Key (or document id)."""

    document: str
    key: str | None  # the Idempotency-Key it came with
    state: str  # "open": sending its end marker; "committed"; "aborted"
    partition: int  # of its chunks generation
    first: int  # offset of its first chunk (of its end marker, for an empty document)
    chunks: int
    bytes: int
    at: float  # Unix time
    topic: str = ""  # its chunks generation ("chunks.g3")


RECEIPT_STATES = ("open", "committed", "aborted")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    reason: str
    payload: bytes


def _pack(obj: dict) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(
    data: bytes | None,
    kind: str,
    fields: tuple[str, ...],
    hints: dict[str, str] | None = None,
    optional: tuple[str, ...] = (),
) -> dict:
    if data is None:
        raise CodecError(f"{kind}: empty value")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"{kind}: not msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise CodecError(f"{kind}: expected a map, got {type(obj).__name__}")
    version = obj.get("v")
    if version != VERSION:
        raise CodecError(f"{kind}: unsupported schema version {version!r} (expected {VERSION})")
    missing = [f for f in fields if f not in obj]
    if missing:
        why = "".join(f" ({hints[f]})" for f in missing if hints and f in hints)
        raise CodecError(f"{kind}: missing field(s) {', '.join(missing)}{why}")
    extra = set(obj) - set(fields) - set(optional) - {"v"}
    if extra:
        raise CodecError(f"{kind}: unknown field(s) {', '.join(sorted(map(str, extra)))}")
    return obj


def _check(kind: str, field: str, value: object, typ: type, *, minimum: int | None = None) -> None:
    if type(value) is not typ:
        raise CodecError(f"{kind}.{field}: expected {typ.__name__}, got {type(value).__name__}")
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise CodecError(f"{kind}.{field}: must be >= {minimum}, got {value}")


# -- chunk -------------------------------------------------------------------

_INPUT = re.compile(r"[A-Za-z0-9._-]{1,249}:\d+")  # a source topic's partition (pipeline/source_topics.py)
_CHUNK_FIELDS = ("doc", "seq", "source", "offset", "text", "tok", "held")
_END_FIELDS = ("end", "chunks", "commit")


def encode_chunk(msg: ChunkMessage) -> bytes:
    return _pack(
        {
            "v": VERSION,
            "doc": msg.doc,
            "seq": msg.seq,
            "source": msg.source,
            "offset": msg.offset,
            "text": msg.text,
            "tok": msg.tokenizer,
            "held": msg.held,
        }
    )


def encode_flush() -> bytes:
    return _pack({"v": VERSION, "flush": True})


def encode_end(msg: DocumentEnd) -> bytes:
    return _pack({"v": VERSION, "end": msg.doc, "chunks": msg.chunks, "commit": msg.commit})


def decode_chunk(data: bytes | None) -> ChunkMessage | FlushMarker | DocumentEnd:
    """A record of the chunks topic: a chunk, a flush marker or a document's end."""
    if data is not None and len(data) > CHUNK_MAX_RECORD_BYTES:  # refused before it costs an unpack
        raise CodecError(f"chunk: {len(data):,} bytes, more than a chunk record may have ({CHUNK_MAX_RECORD_BYTES:,})")
    if data is not None and len(data) < 16:  # a flush marker is 11 bytes; a chunk is longer
        obj = _unpack(data, "flush marker", ("flush",))
        if obj["flush"] is not True:
            raise CodecError(f"flush marker: flush must be true, got {obj['flush']!r}")
        return FlushMarker()
    if data is not None and b"\xa3end" in data[:8]:  # the "end" key comes right after "v"
        obj = _unpack(data, "document end", _END_FIELDS)
        _check("document end", "end", obj["end"], str)
        if not obj["end"]:
            raise CodecError("document end.end: the document id must not be empty")
        _check("document end", "chunks", obj["chunks"], int, minimum=0)
        _check("document end", "commit", obj["commit"], bool)
        return DocumentEnd(obj["end"], obj["chunks"], obj["commit"])
    obj = _unpack(
        data, "chunk", _CHUNK_FIELDS, hints={"tok": "written by a wordpipe whose tokenizer predates version 2"}
    )
    _check("chunk", "doc", obj["doc"], str)
    if not obj["doc"]:
        raise CodecError("chunk.doc: must not be empty")
    _check("chunk", "seq", obj["seq"], int, minimum=0)
    _check("chunk", "source", obj["source"], str)
    _check("chunk", "offset", obj["offset"], int, minimum=0)
    _check("chunk", "text", obj["text"], bytes)
    _check("chunk", "tok", obj["tok"], str)
    if not obj["tok"]:
        raise CodecError("chunk.tok: must name the tokenizer")
    _check("chunk", "held", obj["held"], bool)
    return ChunkMessage(obj["doc"], obj["seq"], obj["source"], obj["offset"], obj["text"], obj["tok"], obj["held"])


# -- fragments -----------------------------------------------------------------
# A blob of any size (a changelog batch, pipeline/aggregator/state.py; a window's part too
# large for one partials record) travels as fragments of at most FRAGMENT_BYTES, in order on
# one partition; the last says how many there are and the blob's checksum. A reader uses a
# blob only once its last fragment arrived and every fragment matches: one cut short by a
# crash is never used in part, and no record is larger than Kafka's default limit, whatever
# the vocabulary or a word's length.

FRAGMENT_BYTES = 900 * 1024  # under librdkafka's and Kafka's default 1,000,000-byte limits, with room to spare
FragmentKey = int | tuple[int | str, int, int]  # a changelog batch id, or a part's window


@dataclass(frozen=True, slots=True)
class Fragment:
    key: FragmentKey
    piece: int
    data: bytes
    pieces: int | None = None  # set on the last fragment
    crc: int | None = None


def fragments(key: FragmentKey, blob: bytes, max_bytes: int = FRAGMENT_BYTES) -> list[dict]:
    """`blob` as fragment maps, in order (each becomes a record's `fragment` field)."""
    slices = [blob[i : i + max_bytes] for i in range(0, len(blob), max_bytes)] or [b""]
    wire = list(key) if isinstance(key, tuple) else key
    out: list[dict] = [{"key": wire, "piece": i, "data": s} for i, s in enumerate(slices[:-1])]
    return out + [
        {"key": wire, "piece": len(slices) - 1, "data": slices[-1], "pieces": len(slices), "crc": zlib.crc32(blob)}
    ]


def _decode_fragment(where: str, raw: object) -> Fragment:
    if not isinstance(raw, dict) or not {"key", "piece", "data"} <= set(raw) <= {
        "key",
        "piece",
        "data",
        "pieces",
        "crc",
    }:
        raise CodecError(f"{where}: expected a map of key, piece, data (and pieces, crc on the last)")
    key = raw["key"]
    if isinstance(key, list):
        key = _window_of(f"{where}.key", key)
    elif type(key) is not int or key < 0:
        raise CodecError(f"{where}.key: expected a batch id or a window, got {key!r:.40}")
    _check(where, "piece", raw["piece"], int, minimum=0)
    _check(where, "data", raw["data"], bytes)
    if ("pieces" in raw) != ("crc" in raw):
        raise CodecError(f"{where}: the last fragment has both pieces and crc")
    if "pieces" in raw:
        _check(where, "pieces", raw["pieces"], int, minimum=1)
        _check(where, "crc", raw["crc"], int, minimum=0)
    return Fragment(key, raw["piece"], raw["data"], raw.get("pieces"), raw.get("crc"))


class Fragments:
    """Reassembles blobs from their fragments; fragments of several keys may interleave,
    each key's in order."""

    def __init__(self) -> None:
        self.open: dict[FragmentKey, list[bytes]] = {}
        self.broken = 0  # blobs cut short or damaged: never used

    def add(self, fragment: Fragment) -> bytes | None:
        """The whole blob once `fragment` completes it, else None."""
        parts = self.open.get(fragment.key)
        if fragment.piece == 0:  # a start, or a start over (a replay of what was cut short)
            parts = self.open[fragment.key] = []
        elif parts is None or fragment.piece != len(parts):
            self.open.pop(fragment.key, None)
            self.broken += 1
            return None
        parts.append(fragment.data)
        if fragment.pieces is None:
            return None
        del self.open[fragment.key]
        blob = b"".join(parts)
        if len(parts) != fragment.pieces or zlib.crc32(blob) != fragment.crc:
            self.broken += 1
            return None
        return blob


def encode_batch(batch: int, blob: bytes) -> list[bytes]:
    """A changelog batch's records (schemas/batch.v1.json)."""
    return [_pack({"v": VERSION, "fragment": f}) for f in fragments(batch, blob)]


def decode_batch_fragment(data: bytes | None) -> Fragment:
    fragment = _decode_fragment("batch.fragment", _unpack(data, "batch", ("fragment",))["fragment"])
    if not isinstance(fragment.key, int):
        raise CodecError("batch.fragment.key: a changelog batch's key is its id")
    return fragment


# -- partials --------------------------------------------------------------
# One record carries, for one shard, the parts of several windows (see pipeline/worker/windows.py):
# faust's cost is per record, and each part is a deterministic function of its window. A
# part too large for a record (a window of huge words) travels as fragments instead, keyed
# by its window; the aggregator applies it once whole.

PARTIALS_MAX_BYTES = FRAGMENT_BYTES


def encode_partials(shard: int, parts: list[PartialMessage], max_bytes: int = PARTIALS_MAX_BYTES) -> list[bytes]:
    """The parts as partials records of at most ~max_bytes each."""
    records: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for part in parts:
        item = _pack(_part(part))
        if len(item) > max_bytes:
            records += [
                _pack({"v": VERSION, "shard": shard, "fragment": f}) for f in fragments(part.source, item, max_bytes)
            ]
            continue
        if group and size + len(item) > max_bytes:
            records.append(_partials_record(shard, group))
            group, size = [], 0
        group.append(item)
        size += len(item)
    if group:
        records.append(_partials_record(shard, group))
    return records


def _part(p: PartialMessage) -> dict:
    return {
        "source": list(p.source),
        "buckets": p.buckets,
        "held": {doc: [h.first, h.chunks, h.buckets] for doc, h in p.held.items()},
        "ends": {doc: list(end) for doc, end in p.ends.items()},
        "at": p.at,
    }


def _partials_record(shard: int, encoded_parts: list[bytes]) -> bytes:
    # Same bytes as packing {"v", "shard", "parts": [...]}, without packing the parts twice.
    packer = msgpack.Packer(use_bin_type=True)
    head = (
        packer.pack_map_header(3) + packer.pack("v") + packer.pack(VERSION) + packer.pack("shard") + packer.pack(shard)
    )
    return head + packer.pack("parts") + packer.pack_array_header(len(encoded_parts)) + b"".join(encoded_parts)


def decode_partials(data: bytes | None, partition: int | None = None) -> list[PartialMessage] | Fragment:
    """The parts of a partials record, or the fragment of one part it carries; with
    `partition`, the record's shard must equal it."""
    obj = _unpack(data, "partials", ("shard",), optional=("parts", "fragment"))
    shard = obj["shard"]
    _check("partials", "shard", shard, int, minimum=0)
    if partition is not None and shard != partition:
        raise CodecError(f"partials.shard: {shard} arrived on partition {partition}")
    if ("parts" in obj) == ("fragment" in obj):
        raise CodecError("partials: expected either parts or a fragment")
    if "fragment" in obj:
        fragment = _decode_fragment("partials.fragment", obj["fragment"])
        if isinstance(fragment.key, int):
            raise CodecError("partials.fragment.key: a part's key is its window")
        return fragment
    parts = obj["parts"]
    if not isinstance(parts, list):
        raise CodecError(f"partials.parts: expected a list, got {type(parts).__name__}")
    return [_decode_part(f"partials.parts[{i}]", part, shard) for i, part in enumerate(parts)]


def decode_part(blob: bytes, shard: int) -> PartialMessage:
    """A part reassembled from its fragments."""
    try:
        part = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"partials part: not msgpack ({type(exc).__name__}: {exc})") from None
    return _decode_part("partials part", part, shard)


def _window_of(where: str, source: object) -> tuple[int | str, int, int]:
    """[partition or "topic:partition", start, end), checked."""
    if not (
        isinstance(source, list)
        and len(source) == 3
        and all(type(x) is int and x >= 0 for x in source[1:])
        and (
            (type(source[0]) is int and source[0] >= 0) or (isinstance(source[0], str) and _INPUT.fullmatch(source[0]))
        )
    ):
        raise CodecError(
            f'{where}: expected [partition or "topic:partition", start, end] with non-negative offsets, '
            f"got {source!r:.80}"
        )
    if source[1] >= source[2]:
        raise CodecError(f"{where}: empty offset range {source[1]}..{source[2]}")
    return source[0], source[1], source[2]


def _decode_part(where: str, part: object, shard: int) -> PartialMessage:
    if not isinstance(part, dict) or set(part) != {"source", "buckets", "held", "ends", "at"}:
        raise CodecError(f"{where}: expected a map with exactly source, buckets, held, ends, at")
    if type(part["at"]) is not int or part["at"] < 0:
        raise CodecError(f"{where}.at: expected a timestamp in ms, got {part['at']!r:.40}")
    source = _window_of(f"{where}.source", part["source"])
    held, ends = part["held"], part["ends"]
    if not isinstance(held, dict) or not isinstance(ends, dict):
        raise CodecError(f"{where}: held and ends must be maps keyed by document id")
    out_held = {}
    for doc, entry in held.items():
        if not (
            type(doc) is str
            and isinstance(entry, list)
            and len(entry) == 3
            and type(entry[0]) is int
            and type(entry[1]) is int
            and entry[0] >= 0
            and entry[1] >= 1
        ):
            raise CodecError(f"{where}.held[{doc!r:.40}]: expected [first offset, chunks >= 1, buckets]")
        out_held[doc] = HeldPart(entry[0], entry[1], _decode_buckets(f"{where}.held[{doc!r:.40}]", entry[2]))
    out_ends = {}
    for doc, end in ends.items():
        if not (
            type(doc) is str
            and isinstance(end, list)
            and len(end) == 4
            and type(end[0]) is int
            and type(end[1]) is int
            and type(end[2]) is bool
            and type(end[3]) is int
            and min(end[0], end[1], end[3]) >= 0
        ):
            raise CodecError(f"{where}.ends[{doc!r:.40}]: expected [marker offset, chunks, commit, timestamp ms]")
        out_ends[doc] = (end[0], end[1], end[2], end[3])
    buckets = _decode_buckets(where, part["buckets"])
    return PartialMessage(source, shard, buckets, out_held, out_ends, part["at"])


def _decode_buckets(where: str, buckets: object) -> Buckets:
    if not isinstance(buckets, dict):
        raise CodecError(f"{where}.buckets: expected a map, got {type(buckets).__name__}")
    for bucket, counts in buckets.items():
        if type(bucket) is not int or bucket < 0:
            raise CodecError(f"{where}.buckets: bucket ids must be non-negative ints, got {bucket!r:.40}")
        if not isinstance(counts, dict) or not counts:
            raise CodecError(f"{where}.buckets[{bucket}]: expected a non-empty map of word -> count")
        # Type checks through map/set run in C: this is the aggregator's hot path.
        if set(map(type, counts.values())) != {int} or min(counts.values()) < 1:
            raise CodecError(f"{where}.buckets[{bucket}]: counts must be positive ints")
        if set(map(type, counts)) != {str} or "" in counts:
            raise CodecError(f"{where}.buckets[{bucket}]: words must be non-empty strings")
    return buckets


# -- total -------------------------------------------------------------------


def encode_totals(totals: Mapping[str, int], fmt: str = "msgpack") -> Iterator[bytes]:
    """A total record per (word, count), in order. msgpack (`total.v1`): one Packer reused
    for all of them costs a quarter of a packb per record (a publication may hold a million
    words). json (`total-json.v1`): `{"word": ..., "count": ...}`, for consumers without a
    msgpack decoder (a JDBC sink, a console consumer, ksqlDB)."""
    if fmt == "json":
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        return (dumps({"word": word, "count": count}).encode() for word, count in totals.items())
    pack = msgpack.Packer(use_bin_type=True).pack
    return (pack({"v": VERSION, "word": word, "count": count}) for word, count in totals.items())


def decode_total(data: bytes | None) -> TotalMessage:
    obj = _unpack(data, "total", ("word", "count"))
    _check("total", "word", obj["word"], str)
    _check("total", "count", obj["count"], int, minimum=1)
    return TotalMessage(obj["word"], obj["count"])


# -- worker status -----------------------------------------------------------

_STATUS_FIELDS = ("worker", "partitions", "chunks", "busy_seconds", "started_at", "first_chunk_at", "peak_rss_kb", "at")


def encode_status(msg: WorkerStatus) -> bytes:
    return _pack(
        {
            "v": VERSION,
            **{f: getattr(msg, f) for f in _STATUS_FIELDS},
            "partitions": list(msg.partitions),
            "inputs": list(msg.inputs),
            "epoch": msg.epoch,
        }
    )


def decode_status(data: bytes | None) -> WorkerStatus:
    obj = _unpack(data, "status", _STATUS_FIELDS, optional=("inputs", "epoch"))
    _check("status", "worker", obj["worker"], str)
    partitions = obj["partitions"]
    if not (isinstance(partitions, list) and all(type(p) is int and p >= 0 for p in partitions)):
        raise CodecError(f"status.partitions: expected a list of non-negative ints, got {partitions!r:.80}")
    _check("status", "chunks", obj["chunks"], int, minimum=0)
    _check("status", "peak_rss_kb", obj["peak_rss_kb"], int, minimum=0)
    for name in ("busy_seconds", "started_at", "at") + (
        ("first_chunk_at",) if obj["first_chunk_at"] is not None else ()
    ):
        if type(obj[name]) not in (int, float) or obj[name] < 0:
            raise CodecError(f"status.{name}: expected a non-negative number, got {obj[name]!r:.40}")
        obj[name] = float(obj[name])
    inputs, epoch = obj.get("inputs", []), obj.get("epoch", 0)
    if not (isinstance(inputs, list) and all(isinstance(i, str) and _INPUT.fullmatch(i) for i in inputs)):
        raise CodecError(f'status.inputs: expected a list of "topic:partition", got {inputs!r:.80}')
    _check("status", "epoch", epoch, int, minimum=0)
    fields = {f: obj[f] for f in _STATUS_FIELDS if f != "partitions"}
    return WorkerStatus(**fields, partitions=tuple(partitions), inputs=tuple(inputs), epoch=epoch)


# -- assignment --------------------------------------------------------------


def encode_assignment(assignment: Assignment) -> bytes:
    return _pack(
        {
            "v": VERSION,
            "epoch": assignment.epoch,
            "owners": assignment.owners,
            "waiting": assignment.waiting,
        }
    )


def decode_assignment(data: bytes | None) -> Assignment:
    obj = _unpack(data, "assignment", ("epoch", "owners", "waiting"))
    _check("assignment", "epoch", obj["epoch"], int, minimum=0)
    for name in ("owners", "waiting"):
        held = obj[name]
        if not (
            isinstance(held, dict)
            and all(isinstance(i, str) and _INPUT.fullmatch(i) and isinstance(w, str) for i, w in held.items())
        ):
            raise CodecError(f'assignment.{name}: expected a map of "topic:partition" to a worker id')
    return Assignment(obj["epoch"], obj["owners"], obj["waiting"])


# -- writer lease --------------------------------------------------------------


def encode_lease(msg: WriterLease) -> bytes:
    return _pack({"v": VERSION, "writer": msg.writer, "generations": list(msg.generations), "at": msg.at})


def decode_lease(data: bytes | None) -> WriterLease:
    obj = _unpack(data, "lease", ("writer", "generations", "at"))
    _check("lease", "writer", obj["writer"], str)
    held = obj["generations"]
    if not (isinstance(held, list) and all(type(n) is int and n >= 0 for n in held)):
        raise CodecError(f"lease.generations: expected a list of non-negative ints, got {held!r:.80}")
    if type(obj["at"]) not in (int, float):
        raise CodecError(f"lease.at: expected a number, got {type(obj['at']).__name__}")
    return WriterLease(obj["writer"], tuple(held), float(obj["at"]))


# -- crash report --------------------------------------------------------------

_CRASH_FIELDS = (
    "role",
    "crashes",
    "in_a_row",
    "restarts",
    "looping",
    "backoff_seconds",
    "restart_at",
    "last_exit",
    "last_crash_at",
    "at",
)
CRASH_TEXT_LIMIT = 200  # a role's name or a last exit: a line, never a log


def encode_crashes(msg: CrashReport) -> bytes:
    return _pack({"v": VERSION, **{f: getattr(msg, f) for f in _CRASH_FIELDS}})


def decode_crashes(data: bytes | None) -> CrashReport:
    obj = _unpack(data, "crashes", _CRASH_FIELDS)
    for name in ("role", "last_exit"):
        _check("crashes", name, obj[name], str)
        if len(obj[name]) > CRASH_TEXT_LIMIT:
            raise CodecError(f"crashes.{name}: at most {CRASH_TEXT_LIMIT} characters, got {len(obj[name])}")
    if not obj["role"]:
        raise CodecError("crashes.role: must name the role")
    for name in ("crashes", "in_a_row", "restarts"):
        _check("crashes", name, obj[name], int, minimum=0)
    _check("crashes", "looping", obj["looping"], bool)
    times = tuple(name for name in ("restart_at", "last_crash_at") if obj[name] is not None)  # null: none
    for name in ("backoff_seconds", "at", *times):
        if type(obj[name]) not in (int, float) or not obj[name] >= 0:
            raise CodecError(f"crashes.{name}: expected a non-negative number, got {obj[name]!r:.40}")
        obj[name] = float(obj[name])
    return CrashReport(**{f: obj[f] for f in _CRASH_FIELDS})


# -- receipt -----------------------------------------------------------------

_RECEIPT_FIELDS = ("document", "key", "state", "partition", "first", "chunks", "bytes", "at")


def encode_receipt(msg: Receipt) -> bytes:
    return _pack({"v": VERSION, **{f: getattr(msg, f) for f in _RECEIPT_FIELDS}, "topic": msg.topic})


def decode_receipt(data: bytes | None) -> Receipt:
    obj = _unpack(data, "receipt", _RECEIPT_FIELDS, optional=("topic",))
    _check("receipt", "topic", obj.get("topic", ""), str)
    _check("receipt", "document", obj["document"], str)
    if obj["key"] is not None:
        _check("receipt", "key", obj["key"], str)
    if obj["state"] not in RECEIPT_STATES:
        raise CodecError(f"receipt.state: expected one of {', '.join(RECEIPT_STATES)}, got {obj['state']!r:.40}")
    for name in ("partition", "first", "chunks", "bytes"):
        _check("receipt", name, obj[name], int, minimum=0)
    if type(obj["at"]) not in (int, float):
        raise CodecError(f"receipt.at: expected a number, got {type(obj['at']).__name__}")
    return Receipt(**{f: obj[f] for f in _RECEIPT_FIELDS}, topic=obj.get("topic", ""))


# -- dead letter -------------------------------------------------------------


def encode_deadletter(msg: DeadLetter) -> bytes:
    return _pack(
        {
            "v": VERSION,
            "topic": msg.topic,
            "partition": msg.partition,
            "offset": msg.offset,
            "reason": msg.reason,
            "payload": bytes(msg.payload[:DEADLETTER_PAYLOAD_LIMIT]),
        }
    )


def decode_deadletter(data: bytes | None) -> DeadLetter:
    obj = _unpack(data, "deadletter", ("topic", "partition", "offset", "reason", "payload"))
    return DeadLetter(obj["topic"], obj["partition"], obj["offset"], obj["reason"], obj["payload"])
