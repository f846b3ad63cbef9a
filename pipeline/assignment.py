"""Pure: which worker reads which input, decided by one assigner (pipeline/assigner.py) and
followed by every worker (pipeline/worker/worker.py), so that inputs change owner without stopping
anyone: no consumer-group rebalance, and the inputs that do not move are read on.

An input is a chunks partition ("chunks:5": partition 5 of every chunks generation, see
pipeline/generations.py) or a source topic's partition ("tweets:0"). An input moves only
when its owner is gone or balance needs it (sticky: of each topic, at most one more input
on one worker than on another, so that uploads and every source topic are read by all). A chunks input moves at once: its windows are facts of the log, so two
owners for a moment publish identical windows, which the aggregator recognises. A source
input waits until its previous owner let go of it (or died): an owner closes a quiet
source window where it stands, which another owner could not know.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Assignment:
    epoch: int = 0
    owners: dict[str, str] = field(default_factory=dict)  # input -> the worker that reads it
    waiting: dict[str, str] = field(default_factory=dict)  # input -> the worker that must let go of it first

    def of(self, worker: str) -> set[str]:
        """The inputs `worker` may read now."""
        return {i for i, w in self.owners.items() if w == worker and i not in self.waiting}


def decide(
    current: Assignment,
    inputs: list[str],
    holding: Mapping[str, set[str]],
    exclusive: Callable[[str], bool],
) -> Assignment:
    """The next assignment of `inputs` to the live workers (`holding`: each live worker and
    the inputs it holds now, by its own report); `exclusive(input)`: it waits for its
    previous owner to let go. The epoch grows only when something changed."""
    wanted = set(inputs)
    owners = {i: w for i, w in current.owners.items() if i in wanted and w in holding}
    for topic in sorted({_topic(i) for i in wanted}):
        _balance(owners, sorted(i for i in wanted if _topic(i) == topic), sorted(holding))
    holders = {i: w for w, held in holding.items() for i in held}
    waiting = {i: holders[i] for i, w in owners.items() if exclusive(i) and holders.get(i, w) != w}
    if (owners, waiting) == (current.owners, current.waiting):
        return current
    return Assignment(current.epoch + 1, owners, waiting)


def _balance(owners: dict[str, str], names: list[str], workers: list[str]) -> None:
    """Give one topic's unowned `names` out, then move the fewest so that no worker has more
    than one more of them than another; ties go to the worker with the fewest inputs in all."""
    if not workers:
        return
    total = Counter(dict.fromkeys(workers, 0))
    total.update(owners.values())
    load = Counter(dict.fromkeys(workers, 0))
    load.update(owners[i] for i in names if i in owners)

    def least() -> str:
        return min(workers, key=lambda w: (load[w], total[w], w))

    def most() -> str:
        return max(workers, key=lambda w: (load[w], total[w], w))

    for name in names:
        if name not in owners:
            owners[name] = worker = least()
            load[worker] += 1
            total[worker] += 1
    while load[most()] - load[least()] > 1:
        giver, taker = most(), least()
        moved = max(i for i in names if owners[i] == giver)  # the same choice every time
        owners[moved] = taker
        for counter in (load, total):
            counter[giver] -= 1
            counter[taker] += 1


def _topic(name: str) -> str:
    return name.rpartition(":")[0]
