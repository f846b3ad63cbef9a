from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregator.ranking import Ranking, rank


@settings(max_examples=200, deadline=None)
@given(
    updates=st.lists(
        st.lists(st.tuples(st.sampled_from([f"w{i}" for i in range(40)]), st.integers(1, 5)), max_size=20), max_size=30
    ),
    keep=st.integers(1, 8),
    k=st.integers(1, 12),
)
def test_top_k_equals_ranking_everything(updates, keep, k):
    totals, ranking = Counter(), Ranking(keep)
    for batch in updates:
        changed = {}
        for word, n in batch:
            totals[word] += n
            changed[word] = totals[word]
        ranking.update(changed)
        assert ranking.top(k, lambda: totals) == rank(totals, k)


def test_rank_breaks_ties_by_word():
    assert rank({"b": 2, "a": 2, "c": 3}, 3) == [("c", 3), ("a", 2), ("b", 2)]
