"""What `wordpipe run` and `wordpipe reference` print: every word ranked as the results API
ranks them (most frequent first, ties in word order), as JSON or a table."""

import gc
import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregator.ranking import rank
from pipeline.cli.counting import format_counts


@settings(max_examples=200, deadline=None)
@given(counts=st.dictionaries(st.text(min_size=1, max_size=4), st.integers(1, 6), max_size=60), top=st.integers(1, 70))
def test_ranked_as_the_results_api_ranks(counts, top):
    counts = Counter(counts)
    printed = json.loads(format_counts(counts, None, True))
    assert list(printed["counts"].items()) == rank(counts, len(counts))
    assert printed["total_words"] == sum(counts.values()) and printed["distinct_words"] == len(counts)
    shown = json.loads(format_counts(counts, top, True))["counts"]
    assert list(shown.items()) == rank(counts, top)


def test_a_table_ranks_ties_by_word():
    lines = format_counts(Counter({"b": 2, "a": 2, "c": 3}), None, False).splitlines()
    assert [line.split()[1:] for line in lines[1:4]] == [["c", "3"], ["a", "2"], ["b", "2"]]
    assert lines[-1] == "7 words, 3 distinct"


def test_the_collector_is_left_as_it_was():
    format_counts(Counter({"a": 1}), None, True)
    assert gc.isenabled()
    gc.disable()
    try:
        format_counts(Counter({"a": 1}), None, True)
        assert not gc.isenabled()
    finally:
        gc.enable()
