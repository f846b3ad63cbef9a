"""The shard state's redo log: what a batch carries, and that replaying whole batches
rebuilds exactly the state they were taken from (pipeline/aggregator/state.py), in
records under the limit however large the state or its words (pipeline/codec.py)."""

import random

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import codec
from pipeline.aggregator.changelog import replay
from pipeline.aggregator.state import ShardState, pack, unpack
from pipeline.codec import PartialMessage


def partial(offset: int, buckets: dict[int, dict[str, int]], at_ms: int, partition: int | str = 0) -> PartialMessage:
    return PartialMessage((partition, offset, offset + 1), 0, buckets, {}, {}, at_ms)


def fingerprint(state: ShardState) -> tuple:
    """Everything a state is, as plain values (a copy: later changes do not touch it)."""
    return (
        dict(state.counts),
        {start: dict(counts) for start, counts in state.windows.items()},
        {doc: dict(counts) for doc, counts in state.pending.items()},
        {p: r.to_list() for p, r in state.applied.items()},
        state.documents.to_record(),
        state.total_words,
    )


def test_a_delta_carries_the_changed_words_with_their_totals():
    state = ShardState(0, window_seconds=60)
    state.apply(partial(0, {0: {"a": 1, "b": 2}, 3: {"c": 1}}, at_ms=1_000))
    state.take_batch(checkpoint=True)
    state.apply(partial(1, {0: {"a": 4}}, at_ms=61_000))  # the next window
    delta = state.take_batch()
    assert delta["kind"] == "delta"
    assert delta["counts"] == {"a": 5}, "absolute totals, of the changed words only"
    assert delta["windows"] == {60: {"a": 4}}
    assert delta["applied"] == {0: [[0, 2]]}
    assert not state.dirty, "nothing changed since"


def test_a_replay_changes_nothing_and_is_not_applied():
    state = ShardState(0)
    assert state.apply(partial(0, {0: {"a": 1}}, at_ms=0))
    state.take_batch()
    assert not state.apply(partial(0, {0: {"a": 1}}, at_ms=0))
    assert state.counts == {"a": 1} and not state.dirty


def test_windows_past_retention_are_dropped_and_the_delta_says_so():
    state = ShardState(0, window_seconds=60, windows_kept=1)
    state.apply(partial(0, {0: {"a": 1}}, at_ms=1_000))
    first = state.take_batch(checkpoint=True)
    state.apply(partial(1, {0: {"a": 1}}, at_ms=61_000))
    delta = state.take_batch()
    assert delta["dropped_windows"] == [0] and delta["windows"] == {60: {"a": 1}}
    replayed = ShardState.load(0, [unpack(pack(first)), unpack(pack(delta))], window_seconds=60, windows_kept=1)
    assert replayed.windows == {60: {"a": 1}} and replayed.counts == {"a": 2}


def test_a_late_record_counts_in_the_totals_but_not_in_a_window_past_retention():
    state = ShardState(0, window_seconds=60, windows_kept=2)
    state.apply(partial(0, {0: {"a": 1}}, at_ms=600_000))
    state.apply(partial(1, {0: {"b": 1}}, at_ms=1_000))  # ten windows late
    assert state.counts == {"a": 1, "b": 1} and set(state.windows) == {600}


words = st.text(alphabet="abcdef", min_size=1, max_size=3)
parts = st.lists(
    st.tuples(
        st.dictionaries(st.integers(0, 3), st.dictionaries(words, st.integers(1, 5), min_size=1), max_size=3),
        st.integers(0, 300_000),  # event time, ms: several windows of 60 s
        st.sampled_from(["delta", "checkpoint", "none"]),  # what the flush after this part writes
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(parts=parts, cut=st.integers(0, 10**6), fragment=st.integers(8, 64))
def test_replaying_the_log_cut_anywhere_rebuilds_the_state_of_its_last_whole_batch(parts, cut, fragment):
    """Batches in fragments as small as a few bytes; the log cut at any record (a crash)
    replays to exactly the state its last whole batch was taken from."""
    state = ShardState(0, window_seconds=60, windows_kept=3)
    records: list[bytes] = []
    taken: list[tuple[int, tuple]] = []  # (records in the log once a batch is written, the state it was taken from)
    for i, (buckets, at_ms, flush) in enumerate(parts):
        state.apply(partial(i, buckets, at_ms))
        if flush == "none" and i < len(parts) - 1:
            continue
        if flush == "checkpoint" or not taken:
            records, taken = [], []  # a new generation starts with its checkpoint
            blob = pack(state.take_batch(checkpoint=True))
        else:
            blob = pack(state.take_batch())
        records += [codec._pack({"v": 1, "fragment": f}) for f in codec.fragments(len(taken), blob, fragment)]
        taken.append((len(records), fingerprint(state)))
    kept = records[: cut % (len(records) + 1)]
    batches, _ = replay(kept)
    whole = [state for written, state in taken if written <= len(kept)]
    assert len(batches) == len(whole), "every whole batch is replayed, none cut short"
    if whole:
        assert fingerprint(ShardState.load(0, batches, window_seconds=60, windows_kept=3)) == whole[-1]


def test_a_huge_state_and_a_huge_word_travel_in_records_under_the_limit():
    state = ShardState(0)
    rng = random.Random(7)
    state.apply(partial(0, {0: {"w" * 3_000_000: 1}}, at_ms=0))  # one word of 3 MB
    state.apply(partial(1, {0: {f"{rng.random():.15f}": 1 for _ in range(200_000)}}, at_ms=0))
    records = codec.encode_batch(0, pack(state.take_batch(checkpoint=True)))
    assert len(records) > 5 and max(map(len, records)) < 1_000_000
    batches, unread = replay(records)
    assert unread == 0 and ShardState.load(0, batches).counts == state.counts


def test_a_batch_damaged_on_the_way_is_never_replayed():
    state = ShardState(0)
    state.apply(partial(0, {0: {"a": 1}}, at_ms=0))
    good = codec.encode_batch(0, pack(state.take_batch(checkpoint=True)))
    state.apply(partial(1, {0: {"a": 1}}, at_ms=0))
    (record,) = codec.encode_batch(1, pack(state.take_batch()))
    fragment = msgpack.unpackb(record)
    data = bytearray(fragment["fragment"]["data"])
    data[len(data) // 2] ^= 0xFF  # a byte flipped on the way: the checksum tells
    fragment["fragment"]["data"] = bytes(data)
    batches, unread = replay(good + [msgpack.packb(fragment)])
    assert len(batches) == 1 and unread == 1


def test_replay_stops_at_the_first_batch_cut_short():
    """Nothing after a batch cut short was acknowledged: a whole batch after it is not replayed."""
    state = ShardState(0)
    records = codec.encode_batch(0, pack(state.take_batch(checkpoint=True)))
    for batch, word in ((1, "a" * 2_000_000), (2, "b")):  # the first of these in several fragments
        state.apply(partial(batch, {0: {word: 1}}, at_ms=0))
        encoded = codec.encode_batch(batch, pack(state.take_batch()))
        records += encoded[:-1] if batch == 1 else encoded  # batch 1 lost its last fragment
    batches, unread = replay(records)
    assert len(batches) == 1 and unread == len(records) - 1


def test_forgetting_a_deleted_generation_drops_its_windows_and_abandons_its_open_documents():
    state = ShardState(0)
    state.apply(partial(0, {0: {"kept": 1}}, 0, "chunks.g1:0"))
    state.apply(partial(0, {0: {"kept": 1}}, 0, "chunks.g2:0"))
    state.apply(partial(0, {0: {"kept": 1}}, 0, "tweets:0"))
    open_doc = codec.HeldPart(first=1, chunks=1, buckets={0: {"parked": 2}})
    state.apply(PartialMessage(("chunks.g1:3", 1, 2), 0, {}, {"doc": open_doc}, {}, 0))
    state.take_batch()
    state.forget({"chunks.g1"})
    assert set(state.applied) == {"chunks.g2:0", "tweets:0"}
    assert state.documents.open == {} and state.documents.aborted == 1 and state.pending == {}
    assert state.counts == {"kept": 3}  # what was counted stays counted
    assert state.dirty
    replayed = ShardState.load(0, [unpack(pack(state.take_batch(checkpoint=True)))])
    assert fingerprint(replayed) == fingerprint(state)
    state.forget({"chunks.g1"})
    assert not state.dirty  # once is enough
