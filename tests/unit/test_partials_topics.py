from pipeline.aggregator.partials_topics import assigned_shards


def test_the_shards_of_an_assignment_are_partials_partitions_only():
    # What faust hands the group's leader: its own topics beside the partials generations.
    assigned = [
        ("partials.g1", 3),
        ("partials.g2", 3),
        ("partials.g2", 5),
        ("wordpipe-aggregator-__assignor-__leader", 0),
        ("wordpipe-aggregator-windowed-changelog", 7),
        ("partials", 6),  # not a generation
        ("chunks.g1", 1),
    ]
    assert assigned_shards(assigned, "partials") == [3, 5]
