import io
from collections import Counter

import pytest
import regex
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pipeline import tokenize
from pipeline.chunking import BREAKS, Chunker, iter_chunks, safe_cut
from tests.chinese import OTHER_SCRIPTS, chinese_bytes, mixed_bytes, sentences
from tests.hostile import PIECES, hostile_bytes


def count_bytes(data: bytes) -> Counter:
    return tokenize.count(tokenize.decode(data).text)


def chunked_counts(data: bytes, size: int, cuts: list | None = None) -> Counter:
    total = Counter()
    for chunk in iter_chunks(
        io.BytesIO(data), size, on_forced_cut=(cuts.append if cuts is not None else None), read_size=97
    ):
        assert len(chunk.data) <= size
        total.update(count_bytes(chunk.data))
    return total


def test_chunks_reassemble_with_offsets():
    data = hostile_bytes(1, 50_000)
    chunks = list(iter_chunks(io.BytesIO(data), 1000, read_size=333))
    assert b"".join(c.data for c in chunks) == data
    assert [c.offset for c in chunks] == [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]


piece = st.one_of(st.sampled_from(PIECES), st.text(max_size=30), st.sampled_from([" ", "\n", "\r\n", "\t", "\u00a0"]))
text_pieces = st.lists(piece, max_size=60)


@st.composite
def text_and_chunk_size(draw) -> tuple[bytes, int]:
    """Text, and a chunk size above its longest run without whitespace (where the contract
    promises exact counts) yet at most half its length: several chunks, so cuts are tested."""
    pieces = draw(st.lists(piece, min_size=4, max_size=60))  # fewer are seldom twice as long as their longest run
    data = "".join(pieces).encode("utf-8", "surrogatepass") + draw(st.binary(max_size=20))
    longest_run = max((len(run) for run in data.split()), default=0)
    return data, draw(st.integers(min_value=longest_run + 1, max_value=max(longest_run + 1, len(data) // 2)))


@settings(max_examples=300, deadline=None)
@given(text_and_size=text_and_chunk_size())
def test_counts_of_chunks_equal_counts_of_whole(text_and_size):
    data, size = text_and_size
    cuts: list[int] = []
    chunks = list(iter_chunks(io.BytesIO(data), size, on_forced_cut=cuts.append, read_size=97))
    # How many examples span several chunks: pytest --hypothesis-show-statistics (over 90%).
    event("chunks: " + ("1" if len(chunks) == 1 else "2-4" if len(chunks) <= 4 else "5 or more"))
    assert all(len(chunk.data) <= size for chunk in chunks)
    assert not cuts  # every run is shorter than the chunk size: no cut inside a word
    assert sum((count_bytes(chunk.data) for chunk in chunks), Counter()) == count_bytes(data)


def test_long_run_is_cut_at_a_character_boundary_and_reported():
    data = b"start " + "\u00e9".encode() * 1000 + b" end"
    cuts: list[int] = []
    chunks = list(iter_chunks(io.BytesIO(data), 301, on_forced_cut=cuts.append))
    assert cuts and all(c > 6 for c in cuts)
    for chunk in chunks:
        chunk.data.decode("utf-8")  # no chunk splits a character
    assert b"".join(c.data for c in chunks) == data


def test_hostile_text_chunks_exactly_at_default_size():
    data = hostile_bytes(3, 400_000)
    assert chunked_counts(data, 64 * 1024) == count_bytes(data)


def streamed(chunker: Chunker, data: bytes, cuts: list[int], takes: list[bool]) -> list:
    """`data` fed in blocks ending at `cuts`, what is whole taken after the blocks `takes` marks, then the rest."""
    chunks, position = [], 0
    for cut, take in zip(sorted(cuts) + [len(data)], takes, strict=False):
        chunks += chunker.feed(data[position : max(cut, position)])
        position = max(cut, position)
        if take:
            chunks += chunker.take_whole()
            assert safe_cut(chunker.buf, 0, len(chunker.buf)) == -1, "only an unfinished word stays behind"
    chunks += chunker.feed(data[position:]) + chunker.finish()
    assert b"".join(c.data for c in chunks) == data
    return chunks


@settings(max_examples=200, deadline=None)
@given(
    pieces=text_pieces,
    size=st.integers(min_value=64, max_value=400),
    cuts=st.lists(st.integers(0, 300), max_size=8),
    takes=st.lists(st.booleans(), min_size=10, max_size=10),
)
def test_a_stream_cut_into_segments_counts_like_the_whole(pieces, size, cuts, takes):
    """Blocks of any size, segments committed at any moment (take_whole), then the rest."""
    data = "".join(pieces).encode("utf-8", "surrogatepass")
    chunks = streamed(Chunker(size), data, cuts, takes)
    assert [c.offset for c in chunks] == [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]
    if max((len(run) for run in data.split()), default=0) < size:
        assert sum((count_bytes(c.data) for c in chunks), Counter()) == count_bytes(data)


# -- scripts without spaces: cut after CJK punctuation ---------------------------------------

# Clauses of the seed's sentences, each ending in the punctuation a chunk may be cut after.
clauses = [c for s in sentences()[:80] for c in regex.findall(r"[^\u3002\uff0c\uff01\uff1f\u3001\uff1b\uff1a]+.", s)]
cjk_pieces = st.lists(
    st.one_of(
        st.sampled_from([*clauses, *OTHER_SCRIPTS, *PIECES]),
        st.sampled_from(BREAKS).map(bytes.decode),
        st.sampled_from(["…", "\u0301", "'", "ｶﾅ", "数据"]),
        st.text(max_size=5),
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(pieces=cjk_pieces, size=st.integers(min_value=128, max_value=400))
def test_chinese_japanese_and_mixed_chunks_count_as_the_whole(pieces, size):
    data = "".join(pieces).encode("utf-8", "surrogatepass")
    cuts: list[int] = []
    counted = chunked_counts(data, size, cuts)
    if not cuts:  # every cut was a safe one (most examples: clauses and pieces are shorter than a chunk)
        assert counted == count_bytes(data)


@pytest.mark.parametrize("make", [chinese_bytes, mixed_bytes])
def test_prose_without_spaces_is_cut_after_punctuation_never_forced(make):
    data = make(4, 400_000).replace(b"\n", b"")  # not one whitespace left in the Chinese
    cuts: list[int] = []
    chunks = list(iter_chunks(io.BytesIO(data), 16 * 1024, on_forced_cut=cuts.append))
    assert not cuts and len(chunks) > 20
    assert chunked_counts(data, 16 * 1024) == count_bytes(data)


@pytest.mark.parametrize(
    "text, cut",
    [
        ("数据处理。容器", len("数据处理。".encode())),  # after the full stop
        ("数据，处理", len("数据，".encode())),
        ("数据\u3000处理", len("数据\u3000".encode())),  # ideographic space
        ("a b数据处理", 2),  # after the whitespace
        ("a b数据。处理", len("a b数据。".encode())),  # after the punctuation that follows it
        ("数据…处理", -1),  # NFKC turns the ellipsis into "...": not a place to cut
        ("数据处理", -1),
    ],
)
def test_safe_cut(text, cut):
    data = text.encode()
    assert safe_cut(data, 0, len(data)) == cut


@settings(max_examples=200, deadline=None)
@given(
    pieces=cjk_pieces,
    size=st.integers(min_value=128, max_value=400),
    cuts=st.lists(st.integers(0, 3000), max_size=8),
    takes=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_a_chinese_stream_cut_into_segments_counts_like_the_whole(pieces, size, cuts, takes):
    """Streams commit what is whole at any moment (take_whole): after punctuation too, never inside a run."""
    data = "".join(pieces).encode("utf-8", "surrogatepass")
    forced: list[int] = []
    chunks = streamed(Chunker(size, forced.append), data, cuts, takes)
    if not forced:
        assert sum((count_bytes(c.data) for c in chunks), Counter()) == count_bytes(data)
