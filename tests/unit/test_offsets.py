from hypothesis import given
from hypothesis import strategies as st

from pipeline.offsets import OffsetRanges

ranges = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12)).map(lambda t: (t[0], t[0] + t[1])), max_size=12)


def as_set(r: OffsetRanges) -> set[int]:
    return {o for s, e in r for o in range(s, e)}


@given(ranges, st.lists(st.integers(0, 80), max_size=20))
def test_matches_a_set(rs, singles):
    model: set[int] = set()
    r = OffsetRanges()
    for s, e in rs:
        r.add_range(s, e)
        model.update(range(s, e))
    for o in singles:
        r.add(o)
        model.add(o)
    assert as_set(r) == model
    assert all((o in r) == (o in model) for o in range(90))
    spans = list(r)
    assert all(s < e for s, e in spans) and all(
        a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)
    )  # merged, sorted
    assert OffsetRanges.from_list(r.to_list()) == r


@given(ranges, ranges)
def test_intersection_and_covers(a, b):
    ra, rb = OffsetRanges(a), OffsetRanges(b)
    assert as_set(ra.intersection(rb)) == as_set(ra) & as_set(rb)
    assert as_set(ra.difference(rb)) == as_set(ra) - as_set(rb)
    assert ra.covers(rb) == (as_set(rb) <= as_set(ra))
    assert len(ra) == len(as_set(ra))
