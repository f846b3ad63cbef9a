"""The aggregator's read side over shard states built here, without a broker: what the
results API serves for totals, counts, top-K, windows, progress and status."""

import gc

from pipeline.aggregator import views
from pipeline.aggregator.ranking import Ranking
from pipeline.aggregator.state import Documents, OpenDocument, ShardState
from pipeline.codec import PartialMessage
from pipeline.sharding import Router

ROUTER = Router(2, 4)
WORDS = {"apple": 5, "banana": 3, "cherry": 3, "date": 1, "elder": 2, "fig": 7}


def count(shards: dict[int, ShardState], words: dict[str, int], offset: int, at_ms: int) -> None:
    """Apply one window of chunks partition 0 to every shard, each word in its routed bucket."""
    per_shard: dict[int, dict[int, dict[str, int]]] = {s: {} for s in shards}
    for word, n in words.items():
        shard, bucket = ROUTER.route(word)
        per_shard[shard].setdefault(bucket, {})[word] = n
    for shard, state in shards.items():
        state.apply(PartialMessage((0, offset, offset + 1), shard, per_shard[shard], {}, {}, at_ms))


def both_shards() -> dict[int, ShardState]:
    shards = {0: ShardState(0, window_seconds=60), 1: ShardState(1, window_seconds=60)}
    count(shards, WORDS, offset=0, at_ms=1_000)
    return shards


def test_the_words_fall_in_both_shards():
    """Otherwise the views below would not be tested across shards."""
    assert {ROUTER.route(word)[0] for word in WORDS} == {0, 1}


def test_totals_and_counts_over_every_owned_shard():
    shards = both_shards()
    assert views.totals(shards) == WORDS
    assert views.total_words(shards) == 21
    assert views.distinct_words(shards) == 6
    assert views.counts(shards, ROUTER, ["fig", "apple", "never"]) == {"fig": 7, "apple": 5, "never": 0}


def test_a_word_of_a_shard_not_owned_counts_zero():
    shards = both_shards()
    owned = {1: shards[1]}
    gone = [word for word in WORDS if ROUTER.route(word)[0] == 0]
    assert views.counts(owned, ROUTER, gone) == dict.fromkeys(gone, 0)
    assert views.total_words(owned) == sum(n for word, n in WORDS.items() if word not in gone)
    assert set(views.totals(owned)) == set(WORDS) - set(gone)


def test_the_paging_vocabulary_is_sorted_and_left_alone_by_the_garbage_collector():
    """A million words in a container the collector tracks cost every full collection a walk
    over them, and reading pages back sets off many."""
    words = views.vocabulary(both_shards())
    assert list(words) == sorted(WORDS)
    gc.collect()
    assert not gc.is_tracked(words)


def test_the_vocabulary_version_changes_with_new_words_or_shards_only():
    shards = both_shards()
    version = views.vocabulary_version(shards)
    count(shards, {"apple": 1}, offset=1, at_ms=1_000)
    assert views.vocabulary_version(shards) == version
    count(shards, {"grape": 1}, offset=2, at_ms=1_000)
    assert views.vocabulary_version(shards) != version
    assert views.vocabulary_version({1: shards[1], 0: shards[0]})[0] == (0, 1)


def test_top_k_is_exact_with_ties_in_word_order():
    shards = both_shards()
    ranking = Ranking()
    for state in shards.values():
        ranking.update(state.counts)
    assert views.merged_top([views.top_part(shards, ranking, 4)], 4) == {
        "total_words": 21,
        "distinct_words": 6,
        "counts": {"fig": 7, "apple": 5, "banana": 3, "cherry": 3},
    }


def test_top_k_falls_back_to_the_totals_when_the_ranking_dropped_words():
    shards = both_shards()
    ranking = Ranking(keep=1)
    for word, n in sorted(WORDS.items()):  # one at a time: the ranking trims and raises its floor
        ranking.update({word: n})
    assert ranking.floor > 0
    assert views.merged_top([views.top_part(shards, ranking, 3)], 3)["counts"] == {"fig": 7, "apple": 5, "banana": 3}


def test_windows_over_every_owned_shard():
    shards = both_shards()
    count(shards, {"apple": 2, "fig": 1}, offset=1, at_ms=125_000)  # the window starting at 120
    assert views.window_starts(shards) == [0, 120]
    assert views.window_top(shards, 0) == WORDS
    assert views.window_top(shards, 120) == {"apple": 2, "fig": 1}
    assert views.window_top(shards, 60) == {}


def test_progress_lists_the_counted_offsets_per_shard():
    shards = both_shards()
    count(shards, {"apple": 1}, offset=1, at_ms=1_000)
    progress = views.merged_progress([views.progress_part({1: shards[1], 0: shards[0]})], 2)
    assert progress == {"partitions": 2, "shards": {"0": {"0": [[0, 2]]}, "1": {"0": [[0, 2]]}}}
    assert list(progress["shards"]) == ["0", "1"]  # in shard order, whatever order they came in
    assert views.merged_progress([views.progress_part({})], 2) == {"partitions": 2, "shards": {}}


def test_status_counts_a_document_once_every_owned_shard_counted_it():
    shards = both_shards()
    shards[0].documents = Documents({}, committed=3, committed_chunks=9, aborted=1)
    shards[1].documents = Documents({"d": OpenDocument(0, 5, 1)}, committed=2, committed_chunks=7, aborted=1)
    pipeline = {"lag": 0, "workers": 2, "arrival_rate": None, "processing_rate": None}
    assert views.merged_status([views.ledger_part(shards)], 2, (4, 12), pipeline) == {
        "documents_ingested": 4,
        "chunks_ingested": 12,
        "documents_counted": 2,
        "chunks_counted": 7,
        "documents_aborted": 1,
        "documents_open": 1,
        "shards": {"owned": [0, 1], "total": 2},
        "complete": True,
        "pipeline": pipeline,
    }


def test_status_while_rebalancing_owns_nothing_and_is_incomplete():
    status = views.merged_status([views.ledger_part({})], 2, (0, 0), {})
    assert status["shards"] == {"owned": [], "total": 2}
    assert status["complete"] is False
    assert status["documents_counted"] == status["documents_open"] == 0


def ranking_of(shards: dict[int, ShardState]) -> Ranking:
    ranking = Ranking(keep=1)  # keeps 1 word past 2: the ranking's fallback to the totals is in play
    for state in shards.values():
        ranking.update(state.counts)
    return ranking


def test_parts_of_two_instances_merge_into_the_whole():
    """Each instance's part covers its shards; merged, they answer as one instance owning both."""
    shards = both_shards()
    parts = [{0: shards[0]}, {1: shards[1]}]
    for k in (1, 2, 3, 6):
        merged = views.merged_top([views.top_part(p, ranking_of(p), k) for p in parts], k)
        assert merged == views.merged_top([views.top_part(shards, ranking_of(shards), k)], k)
    whole_words = sorted(WORDS)
    for limit in (1, 2, 4, 10):
        after, pages = "", []
        while True:  # a whole walk of the pages, as GET /v1/totals pages
            page = views.merged_page(
                [views.page_part(sorted(views.totals(p)), p, ROUTER, after, limit) for p in parts], limit
            )
            pages.append(page["totals"])
            if page["next"] is None:
                break
            after = page["next"]
        assert [w for page in pages for w in page] == whole_words
        assert all(len(page) == limit for page in pages[:-1])
    assert views.merged_progress([views.progress_part(p) for p in parts], 2) == views.merged_progress(
        [views.progress_part(shards)], 2
    )
    ledgers = [views.ledger_part(p) for p in parts]
    assert views.merged_status(ledgers, 2, (4, 12), {}) == views.merged_status(
        [views.ledger_part(shards)], 2, (4, 12), {}
    )
    assert views.merged_status(ledgers[:1], 2, (4, 12), {})["complete"] is False
    assert views.merged_starts([views.window_part(p, None, 3) for p in parts]) == views.window_starts(shards)
