"""Pure: when a source partition that is caught up is fetched again. No I/O.

A source topic is the user's: it only grows, on the embedded broker too (which honours no
retention). Tansu 0.6 lists every stored batch of a partition for each fetch that finds
data there, so a worker that fetches the tail of a source topic every 50 ms (the fetch
wait) costs the broker CPU in proportion to the topic's size at every fetch, and its heap
grows with it. So a source partition that is caught up rests a while before it is fetched
again; one with a backlog never rests, so catching up is as fast as ever. Chunks partitions
are never paced: their generations are deleted, and an upload is counted at once.
Measured (`wordpipe up --source`, 2 MB/s of records into 12 partitions, to 1 GB): the
broker spent 436 CPU-seconds without rests, 289 with rests of 0.25 s (per MB fed at 600 MB:
0.44 -> 0.25 CPU-s; at 1 GB: 0.62 -> 0.50); its RSS beyond what the records cost a broker of
their own, fed them flat out after the run, grew ~100 MB a GB without, ~77 MB a GB with.
"""

from __future__ import annotations

from collections.abc import Iterable

Partition = tuple[str, int]  # (topic, partition)


def caught_up(read: dict[Partition, int], highs: dict[Partition, int]) -> list[Partition]:
    """The partitions whose next offset to read (`read`) reaches the high watermark the
    last fetch reported (`highs`; a partition without one is not caught up)."""
    return [p for p, offset in read.items() if p in highs and offset >= highs[p] >= 0]


class Pacing:
    """The source partitions resting now, and until when (monotonic seconds)."""

    def __init__(self, rest_seconds: float) -> None:
        self.rest_seconds = rest_seconds
        self.resting: dict[Partition, float] = {}

    def rest(self, partitions: Iterable[Partition], now: float) -> list[Partition]:
        """Rest `partitions` from `now`; returns those not resting already (to pause)."""
        fresh = [p for p in partitions if p not in self.resting]
        for p in fresh:
            self.resting[p] = now + self.rest_seconds
        return fresh

    def due(self, now: float) -> list[Partition]:
        """The partitions whose rest is over (to resume); they rest no more."""
        over = [p for p, until in self.resting.items() if until <= now]
        for p in over:
            del self.resting[p]
        return over

    def drop(self, partitions: Iterable[Partition]) -> list[Partition]:
        """Stop resting `partitions` (let go of); returns those that were resting."""
        return [p for p in partitions if self.resting.pop(p, None) is not None]
