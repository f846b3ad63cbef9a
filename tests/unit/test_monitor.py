"""Lag and rates from offsets: the pure part of the monitor."""

import pytest

from pipeline.observe.lag import Sample, Totals, partition_lag, position, rates


@pytest.mark.parametrize(
    "low, high, committed, reset, lag",
    [
        (0, 100, 40, "earliest", 60),
        (0, 100, None, "earliest", 100),  # a group that never committed starts at the beginning...
        (0, 100, -1001, "earliest", 100),  # (librdkafka's OFFSET_INVALID)
        (0, 100, None, "latest", 0),  # ...or at the end
        (50, 100, 10, "earliest", 50),  # committed below retention: only what is left counts
        (0, 100, 100, "earliest", 0),
    ],
)
def test_partition_lag(low, high, committed, reset, lag):
    assert partition_lag(low, high, committed, reset) == lag
    assert position(low, high, committed, reset) == high - lag


def test_rates_need_a_full_window_for_the_trend():
    samples = [Sample(0.0, 0, 0, 0), Sample(10.0, 1000, 800, 200)]
    recent, trend, processing, growth = rates(samples, window=30)
    assert (recent, trend, processing, growth) == (100.0, None, 80.0, 20.0)
    samples += [Sample(20.0, 2000, 1900, 100), Sample(30.0, 3000, 3000, 0)]
    recent, trend, processing, growth = rates(samples, window=30)
    assert (recent, trend, processing, growth) == (100.0, 100.0, 100.0, -10.0)
    assert rates(samples[:1], window=30) == (None, None, None, None)


def test_sums_over_topics_do_not_fall_when_a_counted_generation_is_deleted():
    totals = Totals()
    assert totals.add("ends", {"chunks.g1": 100, "chunks.g2": 10}) == 110
    assert totals.add("ends", {"chunks.g1": 100, "chunks.g2": 50}) == 150
    assert totals.add("ends", {"chunks.g2": 60}) == 160  # chunks.g1 deleted: its 100 stay
    assert totals.add("ends", {"chunks.g2": 60, "chunks.g3": 5}) == 165
