"""Sets of Kafka offsets kept as sorted half-open ranges: compact when offsets are contiguous."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator


class OffsetRanges:
    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in sorted(ranges):
            self.add_range(start, end)

    def __contains__(self, offset: int) -> bool:
        i = bisect_right(self._starts, offset) - 1
        return i >= 0 and offset < self._ends[i]

    def add(self, offset: int) -> None:
        # Fast path: offsets mostly arrive in order.
        if self._ends and self._ends[-1] == offset:
            self._ends[-1] = offset + 1
            return
        self.add_range(offset, offset + 1)

    def add_range(self, start: int, end: int) -> None:
        if start >= end:
            return
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] >= start:  # overlaps or touches the range before
            start = self._starts[i]
        else:
            i += 1
        j = i
        while j < len(self._starts) and self._starts[j] <= end:
            end = max(end, self._ends[j])
            j += 1
        if i < len(self._starts) and i < j:
            end = max(end, self._ends[i])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def update(self, other: OffsetRanges) -> None:
        for start, end in other:
            self.add_range(start, end)

    def covers(self, other: OffsetRanges) -> bool:
        return all(self._covers_range(s, e) for s, e in other)

    def _covers_range(self, start: int, end: int) -> bool:
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def intersection(self, other: OffsetRanges) -> OffsetRanges:
        out = OffsetRanges()
        a, b = list(self), list(other)
        i = j = 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo < hi:
                out.add_range(lo, hi)
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return out

    def difference(self, other: OffsetRanges) -> OffsetRanges:
        out = OffsetRanges()
        for start, end in self:
            for lo, hi in other:
                if hi <= start or lo >= end:
                    continue
                if lo > start:
                    out.add_range(start, lo)
                start = max(start, hi)
            out.add_range(start, end)
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=False))

    def __len__(self) -> int:
        return sum(e - s for s, e in self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OffsetRanges) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"OffsetRanges({list(self)!r})"

    def to_list(self) -> list[list[int]]:
        return [[s, e] for s, e in self]

    @classmethod
    def from_list(cls, ranges: Iterable[Iterable[int]]) -> OffsetRanges:
        return cls((int(s), int(e)) for s, e in ranges)
