"""Model test of the exactly-once design, without a broker.

Workers (pipeline/worker/windows.py, pipeline/worker/partials.py) and the aggregator
(pipeline/aggregator/state.py) run over in-memory logs and crash at random instants:
a worker between publishing and committing, the aggregator in the middle of writing a
batch of its changelog (a delta, or a new generation's checkpoint) and before acking. The logs interleave chunks that count at
once with held documents (uploads) that commit, abort, or are cut off and never end.
Whatever happens, the totals equal a straight count of the input under the
data-defined rule: a held document counts iff its end marker commits it less than
MAX_SPAN offsets after its first chunk.
"""

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import codec
from pipeline.aggregator.changelog import replay
from pipeline.aggregator.state import ShardState, pack
from pipeline.sharding import Router
from pipeline.worker.partials import partials_of
from pipeline.worker.windows import Windows

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h"]
MAX_SPAN = 12
tokens = st.lists(st.sampled_from(WORDS), max_size=6)
loose = st.one_of(
    tokens.map(lambda toks: ("chunk", toks)),
    st.just(("flush", None)),
    st.just(("poison", None)),
)
document = st.tuples(st.lists(tokens, max_size=5), st.sampled_from(["commit", "abort", "cut"]))


def build_log(partition, loose_records, documents, rng):
    """Interleave loose records and each document's chunks (then its end) at random."""
    streams = [[r] for r in loose_records]
    for i, (chunks, fate) in enumerate(documents):
        doc = f"p{partition}-doc{i}"
        records = [("held", (doc, toks)) for toks in chunks]
        if fate != "cut":
            records.append(("end", (doc, len(chunks), fate == "commit")))
        streams.append(records)
    log = []
    while any(streams):
        stream = rng.choice([s for s in streams if s])
        log.append(stream.pop(0))
    return log + [("flush", None)]  # ingest ends every batch with a flush marker


def expected_counts(logs):
    """The rule, straight from the logs."""
    out = Counter()
    committed = 0
    for log in logs:
        first, tokens_of, decided = {}, {}, set()
        for offset, (kind, value) in enumerate(log):
            if kind == "chunk":
                out.update(value)
            elif kind == "held":
                doc, toks = value
                first.setdefault(doc, offset)
                tokens_of.setdefault(doc, []).extend(toks)
            elif kind == "end":
                doc, chunks, commit = value
                if doc in decided:
                    continue
                decided.add(doc)
                if commit and (chunks == 0 or offset - first[doc] < MAX_SPAN):
                    out.update(tokens_of.get(doc, []))
                    committed += 1
    return out, committed


def feed(windows, partition, offset, record):
    kind, value = record
    at = offset * 700  # ms: records a little under a second apart, so windows of 1 s vary
    if kind == "chunk":
        return windows.add(partition, offset, value, at=at)
    if kind == "held":
        return windows.add(partition, offset, value[1], held_by=value[0], at=at)
    if kind == "end":
        return windows.add(partition, offset, end=value, at=at)
    return windows.add(partition, offset, flush=kind == "flush", at=at)  # poison: dead-lettered, takes its offset


def run_workers(logs, window, router, rng, max_words=100):
    """Publish every partition's windows, crashing between publish and commit at random."""
    partials = [[] for _ in range(router.shards)]
    for partition, log in enumerate(logs):
        committed = 0
        while committed < len(log):
            windows = Windows(window, max_words=max_words)
            position = committed
            while position < len(log):
                batch = log[position : position + rng.randint(1, 5)]
                closed = []
                for i, record in enumerate(batch):
                    closed += feed(windows, partition, position + i, record)
                position += len(batch)
                for w in closed:
                    for part in partials_of(w, router):
                        partials[part.shard].append(part)
                if closed and rng.random() < 0.3:
                    break  # crash after publishing, before committing: the next owner replays
                if closed:
                    committed = closed[-1].end
            else:
                break
    return partials


class ModelChangelog:
    """A shard's changelog as generations of records in memory (pipeline/aggregator/changelog.py)."""

    def __init__(self):
        self.generations: list[list[bytes]] = []

    def write(self, records: list[bytes], cut: int | None = None) -> None:
        """Append a batch's records to the newest generation; `cut`: only that many land."""
        self.generations[-1].extend(records[:cut])

    def recover(self) -> list[dict]:
        for records in reversed(self.generations):
            batches, _ = replay(records)
            if batches and batches[0]["kind"] == "checkpoint":
                return batches
        return []


def batch_records(batch: int, state: ShardState, checkpoint: bool = False) -> list[bytes]:
    blob = pack(state.take_batch(checkpoint))
    return [codec._pack({"v": 1, "fragment": f}) for f in codec.fragments(batch, blob, max_bytes=16)]


def run_aggregator(shard, partials, rng):
    """Consume one shard's partials, crashing in the middle of writing a batch (a delta
    or a new generation's checkpoint) at random, then recovering from the changelog."""
    changelog = ModelChangelog()
    acked, position, batch = 0, 0, 0
    state = None
    while state is None or position < len(partials) or acked < len(partials):
        if state is None:  # (re)start: recover, then a generation of our own
            state = ShardState.load(shard, changelog.recover(), MAX_SPAN, window_seconds=1, windows_kept=10**6)
            changelog.generations.append([])
            records = batch_records(0, state, checkpoint=True)
            if rng.random() < 0.1:  # died writing its checkpoint
                changelog.write(records, cut=rng.randrange(len(records)))
                state, position = None, acked
                continue
            changelog.write(records)
            changelog.generations[:-1] = []  # the older ones retired
            batch = 1
        if position < len(partials):
            state.apply(partials[position])
            position += 1
        if rng.random() < 0.4 or position == len(partials):  # flush
            records = batch_records(batch, state)
            if rng.random() < 0.15:  # died in the flush: part of its batch landed, nothing acked
                changelog.write(records, cut=rng.randrange(len(records)))
                state, position = None, acked
                continue
            changelog.write(records)
            batch += 1
            acked = position
    return state


@settings(max_examples=300, deadline=None)
@given(
    partitions=st.lists(
        st.tuples(st.lists(loose, max_size=15), st.lists(document, max_size=4)), min_size=1, max_size=3
    ),
    window=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_totals_are_exact_whatever_crashes(partitions, window, seed):
    rng = random.Random(seed)
    logs = [build_log(p, loose_records, docs, rng) for p, (loose_records, docs) in enumerate(partitions)]
    router = Router(shards=3, buckets=2)
    partials = run_workers(logs, window, router, rng, rng.choice([3, 100]))
    totals = Counter()
    expected, committed = expected_counts(logs)
    for shard in range(router.shards):
        state = run_aggregator(shard, partials[shard], rng)
        totals.update(state.totals())
        assert state.documents.committed == committed, "every shard decides alike"
        for partition, log in enumerate(logs):
            assert (0, len(log)) in list(state.progress().get(partition, [])), "every offset counted"
        assert not (state.pending and not state.documents.open), "nothing parked once all is decided"
        windowed = sum((Counter(state.windowed(start)) for start in state.window_starts()), Counter())
        assert windowed == Counter(state.totals()), "every counted word is in exactly one window"
    assert totals == expected


def test_a_document_ending_past_the_span_is_abandoned_everywhere():
    log = [("held", ("d", ["a"]))] + [("chunk", ["b"])] * MAX_SPAN + [("end", ("d", 1, True)), ("flush", None)]
    router = Router(shards=2, buckets=2)
    partials = run_workers([log], 4, router, random.Random(0))
    states = [run_aggregator(shard, partials[shard], random.Random(1)) for shard in range(2)]
    assert sum((Counter(s.totals()) for s in states), Counter()) == {"b": MAX_SPAN}
    assert [(s.documents.committed, s.documents.aborted) for s in states] == [(0, 1), (0, 1)]
