"""A caught-up source partition rests before it is fetched again; one with a backlog never
does (pipeline/worker/pacing.py)."""

from pipeline.worker.pacing import Pacing, caught_up

A, B, C = ("tweets", 0), ("tweets", 1), ("logs", 0)


def test_caught_up_is_read_up_to_the_last_fetchs_high_watermark():
    read = {A: 10, B: 7, C: 3}
    assert caught_up(read, {A: 10, B: 9}) == [A]  # B has a backlog; C's high watermark is unknown
    assert caught_up({A: 12}, {A: 10}) == [A]  # past it: Tansu's mark is the last batch's base offset + 1
    assert caught_up({A: 0}, {A: -1}) == []  # librdkafka's "no offset"


def test_a_partition_rests_once_then_is_due():
    pacing = Pacing(0.25)
    assert pacing.rest([A, B], now=100.0) == [A, B]
    assert pacing.rest([A, C], now=100.1) == [C]  # A rests already: its rest is not extended
    assert pacing.due(100.2) == []
    assert pacing.due(100.25) == [A, B]
    assert pacing.due(100.35) == [C]
    assert pacing.due(200.0) == []
    assert pacing.rest([A], now=200.0) == [A]  # rests again once woken


def test_a_partition_let_go_of_rests_no_more():
    pacing = Pacing(0.25)
    pacing.rest([A, B], now=0.0)
    assert pacing.drop([A, C]) == [A]
    assert pacing.due(1.0) == [B]
