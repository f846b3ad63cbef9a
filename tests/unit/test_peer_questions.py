"""What one aggregator instance may ask another (POST /v1/shards): each bad question is
refused with what is wrong, before any view is computed."""

import pytest

from pipeline.aggregator.api import checked


@pytest.mark.parametrize(
    "question",
    [
        {"view": "top", "k": 10},
        {"view": "counts", "words": ["a", "的"]},
        {"view": "page", "after_limit": ["", 1000]},
        {"view": "windows"},
        {"view": "windows", "start": 120, "k": 3},
        {"view": "word_windows", "word": "a"},
        {"view": "ledgers"},
        {"view": "progress"},
    ],
)
def test_questions_instances_ask(question):
    checked(question)


@pytest.mark.parametrize(
    "question, says",
    [
        ([1], "expected"),
        ({"view": "everything"}, "expected"),
        ({"view": "top"}, "missing k"),
        ({"view": "top", "k": 0}, "'k'"),
        ({"view": "top", "k": -1}, "'k'"),
        ({"view": "top", "k": True}, "'k'"),
        ({"view": "counts", "words": "abc"}, "'words'"),
        ({"view": "counts", "words": [1]}, "'words'"),
        ({"view": "page", "after_limit": [1, 2]}, "'after_limit'"),
        ({"view": "page", "after_limit": ["", 0]}, "'after_limit'"),
        ({"view": "windows", "start": -5}, "'start'"),
        ({"view": "ledgers", "extra": 1}, "'extra'"),
    ],
)
def test_bad_questions_are_refused_with_what_is_wrong(question, says):
    with pytest.raises(ValueError, match=says):
        checked(question)
