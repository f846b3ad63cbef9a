import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.sharding import Router, bucket_of, shard_of


def test_hash_is_stable_crc32_of_utf8():
    # Pinned: changing the hash reroutes every word and breaks running state.
    assert shard_of("the", 8) == zlib.crc32(b"the") % 8 == 6
    assert bucket_of("caf\u00e9", 8, 16) == (zlib.crc32("caf\u00e9".encode()) // 8) % 16


def test_router_agrees_with_functions():
    router = Router(8, 16)
    words = [f"w{i}" for i in range(100)]
    assert [router.route(w) for w in words] == [(shard_of(w, 8), bucket_of(w, 8, 16)) for w in words]


def test_words_spread_over_all_shards():
    router = Router(8, 16)
    assert {router.route(f"word{i}")[0] for i in range(1000)} == set(range(8))


@pytest.mark.parametrize("shards, buckets", [(0, 1), (1, 0)])
def test_router_rejects_empty_layouts(shards, buckets):
    with pytest.raises(ValueError, match="must be >= 1"):
        Router(shards, buckets)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), st.integers(1, 9), max_size=60), st.integers(1, 9), st.integers(1, 17))
def test_many_words_route_as_each_word_does(counts, shards, buckets):
    router = Router(shards, buckets)
    expected: list[dict[int, dict[str, int]]] = [{} for _ in range(shards)]
    for word, n in counts.items():
        shard, bucket = router.route(word)
        expected[shard].setdefault(bucket, {})[word] = n
    assert router.split(counts) == expected
    assert list(router.shards_of(counts)) == [router.route(w)[0] for w in counts]
    assert list(router.routes(counts)) == [router.route(w) for w in counts]
