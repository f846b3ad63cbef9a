from pipeline.offsets import OffsetRanges
from pipeline.progress import all_counted, in_deleted_generations, uncounted


def test_a_wait_that_ends_says_which_shard_lacks_which_offsets():
    produced = {"chunks.g1:0": OffsetRanges([(0, 10)]), "chunks.g1:1": OffsetRanges([(0, 4)])}
    progress = {
        "partitions": 2,
        "shards": {"0": {"chunks.g1:0": [[0, 10]], "chunks.g1:1": [[0, 4]]}, "1": {"chunks.g1:0": [[0, 3], [5, 10]]}},
    }
    assert not all_counted(progress, produced)
    assert uncounted(progress, produced) == "shard 1 lacks chunks.g1:0 [(3, 5)]; shard 1 lacks chunks.g1:1 [(0, 4)]"
    progress["shards"]["1"] = progress["shards"]["0"]
    assert all_counted(progress, produced) and uncounted(progress, produced) == "nothing"
    del progress["shards"]["1"]
    assert uncounted(progress, produced) == "shards answering: ['0']"
    assert uncounted(None, produced) == "shards answering: none"


def test_chunks_in_generations_deleted_with_their_partials_are_counted():
    produced = {name: OffsetRanges([(0, 5)]) for name in ("chunks.g1:0", "chunks.g2:0", "chunks.g3:1", "tweets:0")}
    topics = {"chunks.g3", "partials.g2", "partials.g3", "partials.g4", "tweets"}
    # chunks.g2 is gone, but its partials are still read: not yet
    assert in_deleted_generations(produced, topics, "chunks", "partials") == ["chunks.g1:0"]
