"""What the aggregator publishes from its state (the changed totals and (word, window)
counts) and the bucket snapshots it writes."""

import msgpack

from pipeline.aggregator.state import ShardState
from pipeline.codec import PartialMessage


def partial(offset: int, buckets: dict[int, dict[str, int]], at_ms: int) -> PartialMessage:
    return PartialMessage((0, offset, offset + 1), 0, buckets, {}, {}, at_ms)


def test_only_changed_words_are_taken_with_their_current_counts():
    state = ShardState(0, window_seconds=60)
    state.apply(partial(0, {0: {"a": 1, "b": 2}, 3: {"c": 1}}, at_ms=1_000))
    assert state.take_dirty_words() == {"a": 1, "b": 2, "c": 1}
    assert state.take_dirty_words() == {}
    state.apply(partial(1, {0: {"a": 4}}, at_ms=61_000))  # the next window
    assert state.take_dirty_words() == {"a": 5}
    assert state.take_dirty_windowed() == {0: {"a": 1, "b": 2, "c": 1}, 60: {"a": 4}}
    assert state.take_dirty_windowed() == {}


def test_a_loaded_state_publishes_everything_again():
    """A crash may come after a snapshot and before the totals and the mirror caught up."""
    state = ShardState(0, window_seconds=60)
    state.apply(partial(0, {0: {"a": 1}, 5: {"b": 2}}, at_ms=1_000))
    state.apply(partial(1, {5: {"b": 1}}, at_ms=61_000))
    buckets, progress = state.snapshot()
    loaded = ShardState.load(0, {**buckets, **progress}, window_seconds=60)
    assert loaded.take_dirty_words() == {"a": 1, "b": 3}
    assert loaded.take_dirty_windowed() == {0: {"a": 1, "b": 2}, 60: {"b": 1}}


def test_windows_out_of_retention_are_not_published():
    state = ShardState(0, window_seconds=60, windows_kept=1)
    state.apply(partial(0, {0: {"a": 1}}, at_ms=1_000))
    state.apply(partial(1, {0: {"a": 1}}, at_ms=61_000))
    state.snapshot()  # retention applies here
    assert state.take_dirty_windowed() == {60: {"a": 1}}


def test_a_snapshot_reuses_unchanged_windows_and_writes_what_packb_would():
    state = ShardState(0, window_seconds=60, windows_kept=2)
    state.apply(partial(0, {0: {"a": 1, "b": 2}}, at_ms=1_000))
    state.snapshot()
    old = state.buckets[0].packed_windows[0]
    for offset, at_ms in ((1, 61_000), (2, 62_000), (3, 121_000)):  # a new window, the same, then one expires
        state.apply(partial(offset, {0: {"a": 1, "c": 1}}, at_ms=at_ms))
        buckets, _ = state.snapshot()
        bucket = state.buckets[0]
        if offset < 3:
            assert bucket.packed_windows[0] is old, "the unchanged window is not packed again"
        plain = {"v": 2, "counts": bucket.counts, "pending": bucket.pending, "windows": bucket.windows}
        applied = {p: r.to_list() for p, r in bucket.applied.items()}
        assert buckets["0/0"] == msgpack.packb({**plain, "applied": applied}, use_bin_type=True)
    assert set(state.buckets[0].packed_windows) == {60, 120}
