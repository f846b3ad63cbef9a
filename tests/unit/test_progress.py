from pipeline.offsets import OffsetRanges
from pipeline.progress import all_counted, uncounted


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
