from pipeline.worker.windows import Windows


def test_windows_close_at_aligned_offsets_and_flush_markers():
    w = Windows(4)
    closed = []
    for offset in range(0, 10):
        closed += w.add(0, offset, ["a"], flush=(offset == 5))
    assert [(x.start, x.end) for x in closed] == [(0, 4), (4, 6), (6, 8)]
    assert w.open[0].start == 8 and w.open[0].counts == {"a": 2}


def test_a_gap_past_the_boundary_closes_the_window_there():
    w = Windows(4)
    w.add(0, 1, ["a"])
    closed = w.add(0, 9, ["b"])
    assert [(x.start, x.end, dict(x.counts)) for x in closed] == [(1, 4, {"a": 1})]
    assert w.open[0].start == 9


def test_partitions_are_independent_and_drop_forgets():
    w = Windows(2)
    w.add(0, 0, ["a"])
    w.add(1, 0, ["b"])
    w.drop([0])
    assert list(w.open) == [1]
    assert [(x.partition, dict(x.counts)) for x in w.add(1, 1, ["c"])] == [(1, {"b": 1, "c": 1})]


def test_a_window_closes_at_max_words_deterministically():
    log = [[f"w{i}", f"w{i + 1}"] for i in range(0, 40, 2)]
    first = Windows(100, max_words=7)
    closed = [w for offset, toks in enumerate(log) for w in first.add(0, offset, toks)]
    assert [(w.start, w.end) for w in closed] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20)]
    # A replayer resuming at a committed window end rebuilds the same windows.
    replay = Windows(100, max_words=7)
    again = [w for offset, toks in enumerate(log[8:], start=8) for w in replay.add(0, offset, toks)]
    assert [(w.start, w.end, w.counts) for w in again] == [(w.start, w.end, w.counts) for w in closed[2:]]


def test_held_documents_are_counted_apart_with_their_first_offset_and_verdict():
    w = Windows(8)
    w.add(0, 0, ["a"])
    w.add(0, 1, ["a", "b"], held_by="d1")
    w.add(0, 2, ["b"], held_by="d2")
    w.add(0, 3, ["c"], held_by="d1")
    w.add(0, 4, end=("d1", 2, True), at=1000)
    w.add(0, 5, end=("d1", 2, False), at=1001)  # a second verdict changes nothing
    (window,) = w.add(0, 6, end=("d2", 1, False), flush=True, at=1002)
    assert window.counts == {"a": 1}
    assert {d: (h.first, h.chunks, dict(h.counts)) for d, h in window.held.items()} == {
        "d1": (1, 2, {"a": 1, "b": 1, "c": 1}),
        "d2": (2, 1, {"b": 1}),
    }
    assert window.ends == {"d1": (4, 2, True, 1000), "d2": (6, 1, False, 1002)}
    assert window.at == 1002
    assert window.words == 5  # a, then a b c for d1, then b for d2: what the partials will carry


def test_a_recorded_end_closes_the_first_window_there_and_only_that_one():
    """A successor resuming a source partition at its committed offset is told where its
    predecessor closed an idle window: it rebuilds that window, then goes on by the rules."""
    first = Windows(8)
    first.add("t:0", 3, ["a"])
    first.add("t:0", 4, ["b"])
    (idle,) = first.close(["t:0"])
    assert (idle.start, idle.end) == (3, 5)
    replay = Windows(8)
    replay.end_at("t:0", 5)
    closed = [w for offset in range(3, 10) for w in replay.add("t:0", offset, ["a" if offset == 3 else "b"])]
    assert [(w.start, w.end, dict(w.counts)) for w in closed] == [(3, 5, {"a": 1, "b": 1}), (5, 8, {"b": 3})]
    assert replay.open["t:0"].start == 8 and not replay.ends


def test_a_gap_past_a_recorded_end_closes_the_window_at_it():
    w = Windows(100)
    w.end_at("t:1", 6)
    w.add("t:1", 4, ["a"])
    (closed,) = w.add("t:1", 9, ["b"])
    assert (closed.start, closed.end) == (4, 6) and w.open["t:1"].start == 9
    stale = Windows(100)
    stale.end_at("t:1", 6)
    assert stale.add("t:1", 7, ["a"]) == [] and not stale.ends, "an end behind the first record is stale"
    stale.drop(["t:1"])
    assert not stale.open
