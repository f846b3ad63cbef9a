"""Fuzzing the edges that take untrusted input: every decoder, the tokenizer and the chunker.

Arbitrary bytes and arbitrary msgpack structures never crash a decoder (each either
decodes or raises CodecError, which dead-letters the record); arbitrary bytes never
crash the tokenizer; and no way of feeding or cutting a stream changes its counts.
"""

from __future__ import annotations

from collections import Counter

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import codec, tokenize
from pipeline.chunking import Chunker

DECODERS = [
    codec.decode_chunk,
    codec.decode_partials,
    codec.decode_total,
    codec.decode_status,
    codec.decode_crashes,
    codec.decode_receipt,
    codec.decode_deadletter,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(0, 20)), inner, max_size=6),
    ),
    max_leaves=30,
)
# Maps shaped like the real records, with any value in any field: the checks past the first one.
shaped = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1"])},
    optional={
        name: structures
        for name in (
            "doc",
            "seq",
            "source",
            "offset",
            "text",
            "held",
            "flush",
            "end",
            "chunks",
            "commit",
            "shard",
            "parts",
            "word",
            "count",
            "worker",
            "partitions",
            "busy_seconds",
            "started_at",
            "first_chunk_at",
            "peak_rss_kb",
            "at",
            "document",
            "key",
            "state",
            "partition",
            "first",
            "bytes",
            "topic",
            "reason",
            "payload",
            "role",
            "crashes",
            "in_a_row",
            "restarts",
            "looping",
            "backoff_seconds",
            "restart_at",
            "last_exit",
            "last_crash_at",
        )
    },
)


def decodes_or_says_why(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except codec.CodecError as exc:
            assert str(exc), "a CodecError always says what was wrong"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_a_decoder(data):
    decodes_or_says_why(data)


@settings(max_examples=500, deadline=None)
@given(st.one_of(structures, shaped))
def test_arbitrary_msgpack_never_crashes_a_decoder(obj):
    decodes_or_says_why(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=300, deadline=None)
@given(
    shard=st.integers(0, 7),
    parts=st.lists(
        st.fixed_dictionaries(
            {"source": structures, "buckets": structures, "held": structures, "ends": structures, "at": structures}
        ),
        max_size=3,
    ),
)
def test_partials_with_any_field_values_never_crash(shard, parts):
    decodes_or_says_why(msgpack.packb({"v": 1, "shard": shard, "parts": parts}, use_bin_type=True))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_the_tokenizer_takes_any_bytes(data):
    decoded = tokenize.decode(data)
    tokens = tokenize.tokens(decoded.text)
    assert all(tokens) and decoded.invalid_bytes >= 0
    assert not any(ch.isspace() for token in tokens for ch in token), "a token never holds whitespace"


whitespace = st.sampled_from([b" ", b"\n", b"\t", b"\r\n", b"\x0b", b"\x0c"])
pieces = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=12),
        whitespace,
        st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(
    pieces=pieces,
    size=st.integers(16, 200),
    splits=st.lists(st.integers(0, 1000), max_size=10),
    takes=st.lists(st.booleans(), min_size=11, max_size=11),
)
def test_no_feeding_or_cutting_changes_the_counts(pieces, size, splits, takes):
    data = b"".join(pieces)
    chunker, chunks, position = Chunker(size), [], 0
    for split, take in zip([*sorted(s % (len(data) + 1) for s in splits), len(data)], takes, strict=False):
        chunks += chunker.feed(data[position : max(position, split)])
        position = max(position, split)
        if take:
            chunks += chunker.take_whole()
    chunks += chunker.finish()
    assert b"".join(c.data for c in chunks) == data
    assert all(0 < len(c.data) <= size for c in chunks)
    if max((len(run) for run in data.split()), default=0) < size:
        whole = tokenize.count(tokenize.decode(data).text)
        assert sum((tokenize.count(tokenize.decode(c.data).text) for c in chunks), Counter()) == whole
