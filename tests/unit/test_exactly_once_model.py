"""Model test of the exactly-once design, without a broker.

Workers (workers/windows.py) and the aggregator (pipeline/aggregator/state.py) run
over in-memory logs and crash at random instants: a worker between publishing and
committing, the aggregator between writing bucket snapshots, the progress record and
acking. Whatever happens, the totals equal a straight count of the input.
"""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregator.state import ShardState
from pipeline.codec import PartialMessage
from pipeline.sharding import Router
from workers.counting import split_by_shard
from workers.windows import Windows

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h"]
record = st.one_of(
    st.lists(st.sampled_from(WORDS), max_size=6).map(lambda toks: ("chunk", toks)),
    st.just(("flush", None)),
    st.just(("poison", None)),
)


def run_workers(logs, window, router, rng):
    """Publish every partition's windows, crashing between publish and commit at random."""
    partials = [[] for _ in range(router.shards)]
    for partition, log in enumerate(logs):
        committed = 0
        while committed < len(log):
            windows = Windows(window)
            position = committed
            while position < len(log):
                batch = log[position : position + rng.randint(1, 5)]
                closed = []
                for i, (kind, toks) in enumerate(batch):
                    closed += windows.add(partition, position + i, toks if kind == "chunk" else None,
                                          "doc" if kind == "chunk" else None, flush=kind == "flush")
                position += len(batch)
                for w in closed:
                    for shard, buckets in enumerate(split_by_shard(w.counts, router)):
                        partials[shard].append(PartialMessage((partition, w.start, w.end), dict(w.docs), shard, buckets))
                if closed and rng.random() < 0.3:
                    break  # crash after publishing, before committing: the next owner replays
                if closed:
                    committed = closed[-1].end
            else:
                break
    return partials


def run_aggregator(shard, partials, rng):
    """Consume one shard's partials, crashing between the steps of a flush at random."""
    durable: dict[str, bytes] = {}
    acked = 0
    state = ShardState(shard)
    position = 0
    while position < len(partials) or acked < len(partials):
        if position < len(partials):
            state.apply(partials[position])
            position += 1
        if rng.random() < 0.4 or position == len(partials):  # flush
            buckets, progress = state.snapshot()
            crash = rng.random()
            durable.update(buckets if crash > 0.1 else dict(list(buckets.items())[: len(buckets) // 2]))
            if crash > 0.2:
                durable.update(progress)
            if crash > 0.3:
                acked = position
            else:  # crashed somewhere in the flush: recover, replay from the last ack
                state = ShardState.load(shard, durable)
                position = acked
                check_progress_is_backed(state, partials)
    return state


def check_progress_is_backed(state, partials):
    """Recovered progress never claims a window whose counts a recovered bucket lacks."""
    for partial in partials:
        partition, start, end = partial.source
        claimed = state.recovered_progress.get(partition)
        if claimed is None or start not in claimed:
            continue
        for bucket_id in partial.buckets:
            applied = state.buckets[bucket_id].applied.get(partition)
            assert applied is not None and start in applied, f"progress claims {partial.source} but bucket {bucket_id} lacks it"


@settings(max_examples=200, deadline=None)
@given(
    logs=st.lists(st.lists(record, max_size=25), min_size=1, max_size=3),
    window=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_totals_are_exact_whatever_crashes(logs, window, seed):
    import random

    rng = random.Random(seed)
    logs = [log + [("flush", None)] for log in logs]  # ingest ends every batch with a flush marker
    router = Router(shards=3, buckets=2)
    partials = run_workers(logs, window, router, rng)
    totals = Counter()
    for shard in range(router.shards):
        state = run_aggregator(shard, partials[shard], rng)
        totals.update(state.totals())
        for partition, log in enumerate(logs):
            assert (0, len(log)) in list(state.progress().get(partition, [])), "every offset counted"
    expected = Counter(t for log in logs for kind, toks in log if kind == "chunk" for t in toks)
    assert totals == expected
