"""Pure: the read side of the aggregator, computed over the states of the shards it owns.

Every view takes `shards`, the owned and recovered shards' states by shard (partials
partition); the faust app (app.py) hands them over and the results API (api.py) serves
what these return. No faust, no Kafka, no I/O: unit tests build ShardState objects and
drive the views directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.aggregator.ranking import Ranking
from pipeline.aggregator.state import ShardState
from pipeline.sharding import Router

Shards = Mapping[int, ShardState]


def totals(shards: Shards) -> dict[str, int]:
    out: dict[str, int] = {}
    for state in shards.values():
        out.update(state.totals())
    return out


def counts(shards: Shards, router: Router, words: list[str]) -> dict[str, int]:
    """The totals of `words`, 0 for a word not counted or not owned here."""
    out = {}
    for word, shard in zip(words, router.shards_of(words), strict=True):
        state = shards.get(shard)
        out[word] = state.count(word) if state is not None else 0
    return out


def total_words(shards: Shards) -> int:
    return sum(state.total_words for state in shards.values())


def distinct_words(shards: Shards) -> int:
    return sum(state.distinct_words for state in shards.values())


def vocabulary_version(shards: Shards) -> tuple[tuple[int, ...], int]:
    """Changes whenever the set of words known here may have."""
    return tuple(sorted(shards)), distinct_words(shards)


def top(shards: Shards, ranking: Ranking, k: int) -> dict:
    """The k most frequent words, shaped like `wordpipe run --json`; `ranking` must have
    folded in every change applied to `shards`."""
    shown = ranking.top(k, lambda: totals(shards))
    return {"total_words": total_words(shards), "distinct_words": distinct_words(shards), "counts": dict(shown)}


def window_starts(shards: Shards) -> list[int]:
    """Every kept window's start, oldest first."""
    return sorted({start for state in shards.values() for start in state.window_starts()})


def window_top(shards: Shards, start: int) -> dict[str, int]:
    """Every word's total in the window starting at `start` (the caller ranks them)."""
    out: dict[str, int] = {}
    for state in shards.values():
        out.update(state.windowed(start))
    return out


def progress(shards: Shards, partitions: int) -> dict:
    """Counted source offsets per shard (`wordpipe run` waits on them)."""
    counted = {str(s): {str(p): r.to_list() for p, r in shards[s].progress().items()} for s in sorted(shards)}
    return {"partitions": partitions, "shards": counted}


def status(shards: Shards, partitions: int, ingested: tuple[int, int], pipeline: dict) -> dict:
    """Documents and chunks counted in every owned shard beside `ingested` (documents,
    chunks), so a client can wait for completeness; `pipeline` is the lag watch's view."""
    owned = sorted(shards)
    ledgers = [shards[s].documents for s in owned]
    documents, chunks = ingested
    return {
        "documents_ingested": documents,
        "chunks_ingested": chunks,
        "documents_counted": min((d.committed for d in ledgers), default=0),
        "chunks_counted": min((d.committed_chunks for d in ledgers), default=0),
        "documents_aborted": min((d.aborted for d in ledgers), default=0),
        "documents_open": max((len(d.open) for d in ledgers), default=0),
        "shards": {"owned": owned, "total": partitions},
        "complete": len(owned) == partitions,
        "pipeline": pipeline,
    }
