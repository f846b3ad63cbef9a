import json
import re
from pathlib import Path

import jsonschema
import msgpack
import pytest

from pipeline import codec, config, tokenize
from pipeline.observe import crash_reports

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def as_json(obj):
    """msgpack data in JSON terms: bytes -> str, map keys -> str (what the schemas describe)."""
    if isinstance(obj, dict):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_json(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    return obj


def conforms(data: bytes, schema: str) -> None:
    jsonschema.validate(
        as_json(msgpack.unpackb(data, raw=False, strict_map_key=False)), json.loads((SCHEMAS / schema).read_text())
    )


def test_chunk_round_trip_and_schema():
    for held in (False, True):
        msg = codec.ChunkMessage("doc1", 3, "a.txt", 65536, b"bytes \xff kept raw", tokenize.DEFAULT.id, held)
        data = codec.encode_chunk(msg)
        conforms(data, "chunk.v1.json")
        assert codec.decode_chunk(data) == msg


def test_document_end_round_trip_and_schema():
    for commit in (True, False):
        msg = codec.DocumentEnd("0f" * 16, 12, commit)
        data = codec.encode_end(msg)
        conforms(data, "end.v1.json")
        assert codec.decode_chunk(data) == msg


def test_flush_marker_round_trip_and_schema():
    data = codec.encode_flush()
    conforms(data, "flush.v1.json")
    assert isinstance(codec.decode_chunk(data), codec.FlushMarker)


def test_partials_round_trip_split_and_schema():
    parts = [
        codec.PartialMessage(
            (1, 16 * i, 16 * i + 16),
            2,
            {3: {f"w{i}-{j}": j + 1 for j in range(200)}},
            {"held": codec.HeldPart(16 * i + 3, 2, {1: {"x": 2}})},
            {"other": (16 * i + 9, 4, i % 2 == 0, 1_700_000_000_000 + i)},
            1_700_000_000_000 + i,
        )
        for i in range(50)
    ]
    records = codec.encode_partials(2, parts, max_bytes=20_000)
    assert len(records) > 1 and all(len(r) < 25_000 for r in records)
    for r in records:
        conforms(r, "partials.v1.json")
    assert [p for r in records for p in codec.decode_partials(r)] == parts


def test_a_part_too_large_for_a_record_travels_in_fragments_and_comes_back_whole():
    huge = codec.PartialMessage((4, 0, 256), 1, {0: {"w" * 2_500_000: 1, "small": 2}}, {}, {}, 1_700_000_000_000)
    small = codec.PartialMessage((5, 0, 256), 1, {0: {"a": 1}}, {}, {}, 1_700_000_000_000)
    records = codec.encode_partials(1, [small, huge, small])
    assert max(map(len, records)) < 1_000_000
    assembler, decoded = codec.Fragments(), []
    for record in records:
        conforms(record, "partials.v1.json")
        got = codec.decode_partials(record, 1)
        if isinstance(got, codec.Fragment):
            blob = assembler.add(got)
            decoded += [codec.decode_part(blob, 1)] if blob is not None else []
        else:
            decoded += got
    assert sorted(decoded, key=lambda p: p.source) == [huge, small, small]


def test_changelog_batches_conform_and_come_back_whole():
    blob = bytes(range(256)) * 10_000
    records = codec.encode_batch(7, blob)
    assembler = codec.Fragments()
    for record in records:
        conforms(record, "batch.v1.json")
        got = assembler.add(codec.decode_batch_fragment(record))
    assert got == blob and len(records) == 3


def test_total_and_deadletter_schemas():
    totals = {"word": 3, "ünïcode": 2**40}
    records = list(codec.encode_totals(totals))
    for record in records:
        conforms(record, "total.v1.json")
    assert [codec.decode_total(r) for r in records] == [codec.TotalMessage(w, n) for w, n in totals.items()]
    as_json = list(codec.encode_totals(totals, "json"))
    schema = json.loads((SCHEMAS / "total-json.v1.json").read_text())
    for record in as_json:
        jsonschema.validate(json.loads(record), schema)
    assert as_json[1] == '{"word":"ünïcode","count":1099511627776}'.encode()  # UTF-8, not \u escapes
    letter = codec.DeadLetter("chunks", 1, 2, "bad", b"x" * 100_000)
    data = codec.encode_deadletter(letter)
    conforms(data, "deadletter.v1.json")
    assert len(codec.decode_deadletter(data).payload) == codec.DEADLETTER_PAYLOAD_LIMIT


def test_status_round_trip_and_schema():
    for first in (None, 1700000001.5):
        status = codec.WorkerStatus("worker-1", (0, 3), 12, 0.25, 1700000000.0, first, 61_000, 1700000002.0)
        data = codec.encode_status(status)
        conforms(data, "status.v1.json")
        assert codec.decode_status(data) == status
    assert codec.decode_status(pack({**good_status, "at": 2})).at == 2.0  # any JSON number will do


def test_crash_report_round_trip_and_schema():
    for restart_at, last_crash_at in ((None, None), (1700000003.5, 1700000002.0)):
        report = codec.CrashReport("aggregator", 3, 2, 4, True, 1.0, restart_at, "exit status 3", last_crash_at, 1.7e9)
        data = codec.encode_crashes(report)
        conforms(data, "crashes.v1.json")
        assert codec.decode_crashes(data) == report
    assert codec.decode_crashes(pack({**good_crashes, "at": 2})).at == 2.0  # any JSON number will do


def test_the_status_apis_show_crash_reports_with_the_record_s_fields():
    record = json.loads((SCHEMAS / "crashes.v1.json").read_text())
    report = codec.CrashReport("workers", 2, 2, 3, True, 1.0, 1.7e9, "exit status 1", 1.7e9, 1.7e9)
    shown = crash_reports.view({"workers": report})
    for spec in ("results.openapi.json", "autoscaler.openapi.json"):
        crashes = json.loads((SCHEMAS / spec).read_text())["components"]["schemas"]["Crashes"]
        entry = crashes["additionalProperties"]
        assert set(entry["properties"]) == set(entry["required"]) == set(record["properties"]) - {"v", "role"}
        jsonschema.validate(shown, crashes)


good_crashes = {
    "v": 1,
    "role": "workers",
    "crashes": 0,
    "in_a_row": 0,
    "restarts": 1,
    "looping": False,
    "backoff_seconds": 0.0,
    "restart_at": None,
    "last_exit": "killed by SIGKILL (from outside: not counted)",
    "last_crash_at": None,
    "at": 2.0,
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"role": ""}, "crashes.role: must name the role"),
        ({"role": "x" * 201}, "crashes.role: at most 200 characters, got 201"),
        ({"in_a_row": -1}, "crashes.in_a_row: must be >= 0"),
        ({"looping": 1}, "crashes.looping: expected bool, got int"),
        ({"restart_at": "soon"}, "crashes.restart_at: expected a non-negative number, got 'soon'"),
        ({"backoff_seconds": None}, "crashes.backoff_seconds: expected a non-negative number, got None"),
        ({"last_exit": b"bytes"}, "crashes.last_exit: expected str, got bytes"),
        ({"extra": 1}, "crashes: unknown field(s) extra"),
    ],
)
def test_bad_crash_report_names_what_is_wrong(change, message):
    with pytest.raises(codec.CodecError, match=re.escape(message)):
        codec.decode_crashes(pack({**good_crashes, **change}))


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


good_status = {
    "v": 1,
    "worker": "w",
    "partitions": [0],
    "chunks": 0,
    "busy_seconds": 0.0,
    "started_at": 1.0,
    "first_chunk_at": None,
    "peak_rss_kb": 1,
    "at": 2.0,
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"partitions": [-1]}, "status.partitions: expected a list of non-negative ints"),
        ({"chunks": -1}, "status.chunks: must be >= 0"),
        ({"first_chunk_at": "soon"}, "status.first_chunk_at: expected a non-negative number, got 'soon'"),
        ({"at": -2}, "status.at: expected a non-negative number, got -2"),
    ],
)
def test_bad_status_names_what_is_wrong(change, message):
    with pytest.raises(codec.CodecError, match=message.replace("(", r"\(")):
        codec.decode_status(pack({**good_status, **change}))


good_part = {"source": [0, 0, 16], "buckets": {1: {"a": 1}}, "held": {}, "ends": {}, "at": 0}


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc1garbage", "partials: not msgpack"),
        (pack([1, 2]), "expected a map, got list"),
        (pack({"v": 2, "shard": 0, "parts": []}), "unsupported schema version 2"),
        (pack({"v": 1, "shard": 0}), "expected either parts or a fragment"),
        (pack({"v": 1, "shard": 0, "parts": [], "x": 1}), "unknown field(s) x"),
        (pack({"v": 1, "shard": -1, "parts": []}), "partials.shard: must be >= 0"),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "source": [0, 5]}]}),
            'parts[0].source: expected [partition or "topic:partition", start, end]',
        ),
        (pack({"v": 1, "shard": 0, "parts": [{**good_part, "source": [0, 5, 5]}]}), "empty offset range"),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "buckets": {1: {"a": 0}}}]}),
            "counts must be positive ints",
        ),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "buckets": {1: {"a": "1"}}}]}),
            "counts must be positive ints",
        ),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "buckets": {1: {b"a": 1}}}]}),
            "words must be non-empty strings",
        ),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "buckets": {"1": {"a": 1}}}]}),
            "bucket ids must be non-negative ints",
        ),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "held": {"d": [0, 0, {}]}}]}),
            "held['d']: expected [first offset, chunks >= 1",
        ),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "held": {"d": [0, 1, {1: {"a": 0}}]}}]}),
            "held['d'].buckets[1]: counts must be positive",
        ),
        (
            pack({"v": 1, "shard": 0, "parts": [{**good_part, "ends": {"d": [3, 1, True]}}]}),
            "ends['d']: expected [marker offset, chunks, commit, timestamp",
        ),
        (pack({"v": 1, "shard": 0, "parts": [{**good_part, "at": -1}]}), "parts[0].at: expected a timestamp in ms"),
        (pack({"v": 1, "shard": 0, "parts": [{**good_part, "ends": []}]}), "held and ends must be maps"),
    ],
)
def test_bad_partials_name_what_is_wrong(data, message):
    with pytest.raises(codec.CodecError) as info:
        codec.decode_partials(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "data, message",
    [
        (None, "chunk: empty value"),
        (pack({"v": 1, "flush": "yes"}), "flush must be true"),
        (
            pack({"v": 1, "doc": "", "seq": 0, "source": "s", "offset": 0, "text": b"", "tok": "t", "held": True}),
            "chunk.doc: must not be empty",
        ),
        (
            pack(
                {
                    "v": 1,
                    "doc": "d",
                    "seq": 0,
                    "source": "s",
                    "offset": 0,
                    "text": "not bytes",
                    "tok": "t",
                    "held": True,
                }
            ),
            "chunk.text: expected bytes",
        ),
        (
            pack({"v": 1, "doc": "d", "seq": -1, "source": "s", "offset": 0, "text": b"", "tok": "t", "held": True}),
            "chunk.seq: must be >= 0",
        ),
        (
            pack({"v": 1, "doc": "d", "seq": 0, "source": "s", "offset": 0, "text": b"", "tok": "t"}),
            "chunk: missing field(s) held",
        ),
        (
            pack({"v": 1, "doc": "d", "seq": 0, "source": "s", "offset": 0, "text": b"", "held": True}),
            "chunk: missing field(s) tok (written by a wordpipe whose tokenizer predates version 2)",
        ),
        (
            pack({"v": 1, "doc": "d", "seq": 0, "source": "s", "offset": 0, "text": b"", "tok": "", "held": True}),
            "chunk.tok: must name the tokenizer",
        ),
        (
            pack({"v": 1, "doc": "d", "seq": 0, "source": "s", "offset": 0, "text": b"", "tok": "t", "held": 1}),
            "chunk.held: expected bool",
        ),
        (pack({"v": 1, "end": "d", "chunks": 2, "commit": "yes"}), "document end.commit: expected bool"),
        (pack({"v": 1, "end": "", "chunks": 2, "commit": True}), "document end.end: the document id must not be empty"),
        (pack({"v": 1, "end": "doc", "chunks": -1, "commit": True}), "document end.chunks: must be >= 0"),
        (
            pack(
                {
                    "v": 1,
                    "doc": "d",
                    "seq": 0,
                    "source": "s",
                    "offset": 0,
                    "text": b"x" * 1200 * 1024,
                    "tok": "t",
                    "held": False,
                }
            ),
            "chunk: 1,228,854 bytes, more than a chunk record may have (1,114,112)",
        ),
    ],
)
def test_bad_chunks_name_what_is_wrong(data, message):
    with pytest.raises(codec.CodecError) as info:
        codec.decode_chunk(data)
    assert message in str(info.value)


def test_the_largest_chunk_the_settings_allow_still_decodes():
    text = b"x" * config.MAX_CHUNK_SIZE
    chunk = codec.ChunkMessage("d" * 64, 0, "s" * 4096, 0, text, "unicode/2/" + "f" * 16, True)
    assert codec.decode_chunk(codec.encode_chunk(chunk)) == chunk


def test_receipt_round_trip_schema_and_errors():
    for key in (None, "retry-me"):
        receipt = codec.Receipt("ab" * 16, key, "committed", 3, 120, 4, 65_000, 1700000000.5)
        data = codec.encode_receipt(receipt)
        conforms(data, "receipt.v1.json")
        assert codec.decode_receipt(data) == receipt
    bad = msgpack.packb(
        {
            "v": 1,
            "document": "d",
            "key": None,
            "state": "maybe",
            "partition": 0,
            "first": 0,
            "chunks": 0,
            "bytes": 0,
            "at": 0,
        }
    )
    with pytest.raises(codec.CodecError, match="receipt.state: expected one of open, committed, aborted"):
        codec.decode_receipt(bad)
