"""Pure: the read side of the aggregator, computed over the states of the shards it owns.

Every view takes `shards`, the owned and recovered shards' states by shard (partials
partition); the faust app (app.py) hands them over and the results API (api.py) serves
what these return. No faust, no Kafka, no I/O: unit tests build ShardState objects and
drive the views directly.

With several aggregator instances, an answer is gathered from parts: each instance's
`*_part` over the shards it owns, and a `merged_*` of the parts (api.py asks the peers).
Shards hold disjoint words, so every merge is exact: a word's total comes from its one
shard, top k of the whole is top k of the parts' top k, a page of the whole is the first
of the parts' pages merged (in paging order: paging.py).
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence

from pipeline.aggregator import paging
from pipeline.aggregator.ranking import Ranking, rank
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


def top_part(shards: Shards, ranking: Ranking, k: int) -> dict:
    """The k most frequent words of `shards`; `ranking` must have folded in every change
    applied to them."""
    shown = ranking.top(k, lambda: totals(shards))
    return {"total_words": total_words(shards), "distinct_words": distinct_words(shards), "counts": shown}


def merged_top(parts: list[dict], k: int) -> dict:
    """The k most frequent words of the whole, shaped like `wordpipe run --json`."""
    return {
        "total_words": sum(p["total_words"] for p in parts),
        "distinct_words": sum(p["distinct_words"] for p in parts),
        "counts": dict(rank({word: n for p in parts for word, n in p["counts"]}, k)),
    }


def page_part(words: Sequence[str], shards: Shards, router: Router, after: str, limit: int) -> dict:
    """The first `limit` of `words` (the owned shards' vocabulary, in paging order) after the
    cursor `after`, with their totals, and whether more follow."""
    start = paging.position(words, after)
    page = words[start : start + limit]
    # Each word's total from its shard's table, by C loops: a page may hold 100,000 words.
    tables = {shard: state.counts for shard, state in shards.items()}
    totals = map(operator.getitem, map(tables.__getitem__, router.shards_of(page)), page)
    return {"totals": list(zip(page, totals, strict=True)), "more": start + limit < len(words)}


def merged_page(parts: list[dict], limit: int) -> dict:
    """A page of the whole, shaped as GET /v1/totals answers, from the parts' pages (each in
    paging order)."""
    pages = [p["totals"] for p in parts]
    if len(pages) == 1:  # one instance's: in paging order already
        items = pages[0][: limit + 1]
    else:
        longest = max(max(map(len, map(operator.itemgetter(0), page)), default=0) for page in pages)
        # Without a long word, paging order is word order: merged on the word itself, in C.
        order = (lambda item: paging.key(item[0])) if longest > paging.CURSOR_CHARS else operator.itemgetter(0)
        items = list(itertools.islice(heapq.merge(*pages, key=order), limit + 1))
    more = len(items) > limit or any(p["more"] for p in parts)
    page = items[:limit]
    return {"totals": dict(page), "next": paging.cursor(page[-1][0]) if more and page else None}


def vocabulary(shards: Shards) -> tuple[str, ...]:
    """Every word of the owned shards, in paging order. A tuple: the garbage collector
    stops tracking a tuple of strings, where it walks a list of a million at every full
    collection, and a page's tuples set off several (1.7 s of 6 s reading back a million
    totals, measured)."""
    return tuple(paging.ordered(itertools.chain.from_iterable(state.counts for state in shards.values())))


def window_starts(shards: Shards) -> list[int]:
    """Every kept window's start, oldest first."""
    return sorted({start for state in shards.values() for start in state.window_starts()})


def window_top(shards: Shards, start: int) -> dict[str, int]:
    """Every word's total in the window starting at `start` (the caller ranks them)."""
    out: dict[str, int] = {}
    for state in shards.values():
        out.update(state.windowed(start))
    return out


def window_part(shards: Shards, start: int | None, k: int) -> dict:
    """The kept windows' starts, and (given a start) the top k of that window and its words."""
    part: dict = {"starts": window_starts(shards)}
    if start is not None:
        counts = window_top(shards, start)
        part |= {"total_words": sum(counts.values()), "counts": rank(counts, k)}
    return part


def merged_starts(parts: Iterable[dict]) -> list[int]:
    return sorted({start for p in parts for start in p["starts"]})


def progress_part(shards: Shards) -> dict:
    return {str(s): {str(p): r.to_list() for p, r in shards[s].progress().items()} for s in sorted(shards)}


def merged_progress(parts: list[dict], partitions: int) -> dict:
    counted = {shard: offsets for p in parts for shard, offsets in p.items()}
    return {"partitions": partitions, "shards": dict(sorted(counted.items(), key=lambda item: int(item[0])))}


def ledger_part(shards: Shards) -> dict:
    """Per owned shard: documents committed, their chunks, documents aborted, documents open."""
    return {
        str(s): [d.committed, d.committed_chunks, d.aborted, len(d.open)]
        for s, d in ((s, shards[s].documents) for s in sorted(shards))
    }


def merged_status(parts: list[dict], partitions: int, ingested: tuple[int, int], pipeline: dict) -> dict:
    ledgers = {int(shard): ledger for p in parts for shard, ledger in p.items()}
    owned = sorted(ledgers)
    documents, chunks = ingested
    return {
        "documents_ingested": documents,
        "chunks_ingested": chunks,
        "documents_counted": min((ledger[0] for ledger in ledgers.values()), default=0),
        "chunks_counted": min((ledger[1] for ledger in ledgers.values()), default=0),
        "documents_aborted": min((ledger[2] for ledger in ledgers.values()), default=0),
        "documents_open": max((ledger[3] for ledger in ledgers.values()), default=0),
        "shards": {"owned": owned, "total": partitions},
        "complete": len(owned) == partitions,
        "pipeline": pipeline,
    }
