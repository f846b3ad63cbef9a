"""Topic generations (pipeline/generations.py) and who reads which input
(pipeline/assignment.py): the pure decisions behind dropping what is counted."""

from pipeline import generations
from pipeline.assignment import Assignment, decide

TOPICS = {
    "chunks.g1",
    "chunks.g1.retiring",
    "chunks.g2",
    "chunks.g10",
    "partials.g1",
    "partials.g2",
    "partials.g10",
    "tweets",
    "wordpipe-aggregator.state.0.g3",
    "wordpipe-aggregator.state.0.g4",
}


def test_generations_are_numbered_not_sorted_as_text():
    assert generations.numbers(TOPICS, "chunks") == [1, 2, 10]
    assert generations.newest(TOPICS, "chunks") == 10
    assert generations.newest(TOPICS, "nothing") is None
    assert generations.of("tweets") is None and generations.of("chunks.g1.retiring") is None


def test_a_marked_generation_is_no_longer_live():
    assert generations.live(TOPICS, "chunks") == [2, 10]
    assert generations.live(TOPICS, "partials") == [1, 2, 10]


def test_superseded_generations_of_every_base():
    assert generations.superseded(TOPICS) == {
        "chunks.g1",
        "chunks.g2",
        "partials.g1",
        "partials.g2",
        "wordpipe-aggregator.state.0.g3",
    }


def test_the_partials_of_a_chunks_generation_are_its_own():
    assert generations.partials_of("chunks.g7", "partials") == "partials.g7"


def chunks(n: int) -> list[str]:
    return [f"chunks:{p}" for p in range(n)]


def owned(a: Assignment) -> dict[str, int]:
    return {w: len(a.of(w)) for w in set(a.owners.values())}


def is_source(name: str) -> bool:
    return not name.startswith("chunks:")


def test_inputs_are_spread_evenly():
    a = decide(Assignment(), chunks(12), {"w1": set(), "w2": set(), "w3": set()}, is_source)
    assert owned(a) == {"w1": 4, "w2": 4, "w3": 4} and a.epoch == 1


def test_a_new_worker_takes_only_what_balance_needs_and_nothing_else_moves():
    a = decide(Assignment(), chunks(12), {"w1": set(), "w2": set()}, is_source)
    b = decide(a, chunks(12), {"w1": a.of("w1"), "w2": a.of("w2"), "w3": set()}, is_source)
    moved = {i for i in a.owners if a.owners[i] != b.owners[i]}
    assert len(moved) == 4 and all(b.owners[i] == "w3" for i in moved)
    assert owned(b) == {"w1": 4, "w2": 4, "w3": 4}


def test_a_gone_workers_inputs_go_to_the_others():
    a = decide(Assignment(), chunks(12), {"w1": set(), "w2": set(), "w3": set()}, is_source)
    b = decide(a, chunks(12), {"w1": a.of("w1"), "w3": a.of("w3")}, is_source)
    assert set(b.owners.values()) == {"w1", "w3"} and owned(b) == {"w1": 6, "w3": 6}
    assert all(b.owners[i] == a.owners[i] for i in a.of("w1") | a.of("w3"))  # sticky


def test_each_topic_is_spread_over_every_worker():
    """Uploads and every source topic read by all workers, not one topic per worker."""
    inputs = chunks(12) + [f"tweets:{p}" for p in range(12)]
    a = decide(Assignment(), inputs, {"w1": set(), "w2": set()}, is_source)
    for topic in ("chunks", "tweets"):
        mine = {w: sum(1 for i in a.of(w) if i.startswith(topic + ":")) for w in ("w1", "w2")}
        assert mine == {"w1": 6, "w2": 6}, (topic, mine)


def test_nothing_changes_without_a_change():
    a = decide(Assignment(), chunks(12), {"w1": set(), "w2": set()}, is_source)
    assert decide(a, chunks(12), {"w1": a.of("w1"), "w2": a.of("w2")}, is_source) is a


def test_a_source_input_waits_for_its_holder_to_let_go_and_a_chunks_input_does_not():
    inputs = ["tweets:0", "tweets:1", "chunks:0", "chunks:1"]
    a = decide(Assignment(), inputs, {"w1": set()}, is_source)
    assert a.of("w1") == set(inputs)
    b = decide(a, inputs, {"w1": set(inputs), "w2": set()}, is_source)
    moved = {i for i in inputs if b.owners[i] == "w2"}
    assert moved == {"tweets:1", "chunks:1"}  # one of each topic
    assert b.waiting == {"tweets:1": "w1"} and b.of("w2") == {"chunks:1"}  # two readers of chunks:1 for a moment
    c = decide(b, inputs, {"w1": {"tweets:0", "chunks:0"}, "w2": {"chunks:1"}}, is_source)  # w1 let go
    assert c.waiting == {} and c.of("w2") == moved


def test_a_dead_holder_is_not_waited_for():
    a = decide(Assignment(), ["tweets:0"], {"w1": set()}, is_source)
    b = decide(a, ["tweets:0"], {"w2": set()}, is_source)  # w1 is gone, not merely slow
    assert b.of("w2") == {"tweets:0"} and b.waiting == {}
