"""Pure: chunks and partials kept as series of topics, each superseding the one before, so
that what is counted goes by deleting whole topics (the one way the embedded broker frees
memory; on Apache Kafka, retention would do, and deleting does no harm).

    chunks.g1, chunks.g2, ...       writers rotate to a new one every `generation_bytes`
    partials.g1, partials.g2, ...   the partials of the windows of chunks.gN go to partials.gN
    chunks.g1.retiring              chunks.g1 is counted and no writer holds it: readers let go

The life of generation N (who does what: pipeline/assigner.py, pipeline/worker/worker.py,
pipeline/aggregator/partials_topics.py):

1. writers create partials.gN, then chunks.gN, and write to it until they rotate; a
   writer lists in its lease every generation it may still write (an upload in progress);
   while source windows are published, the assigner also starts one every
   SOURCE_ROTATE_SECONDS: their windows' partials go to the newest partials generation,
   which without uploads no writer would ever supersede;
2. once a newer generation exists, no writer's lease names N, no open receipt points
   into it and the workers' group has committed it to its end, the assigner marks it
   retiring; workers let go of it (a librdkafka consumer, from 2.5, crashes when a topic
   it reads is deleted under it: measured on Tansu), and once every live worker has
   reported that it holds none of it, the assigner deletes chunks.gN and then the marker;
3. with chunks.gN gone, no window of it can come again: once the aggregator has
   acknowledged all of partials.gN (acks follow durable flushes), it unsubscribes,
   forgets chunks.gN's applied windows, and deletes partials.gN.

A crash anywhere in this leaves a state one of the steps starts from again: each step
checks facts of the log (topics, markers, committed offsets), never a memory of its own.

The status topic goes the same way, by time rather than by what is counted, since its
reports repeat every second:

    workers.g1, workers.g2, ...     writers report to the newest, readers read the newest two

The assigner starts the next generation every STATUS_ROTATE_SECONDS, copying into it what is
said once (crash reports); a report in an older generation is superseded by any report of
the same key in a newer one; a generation older than the newest two is read by no one, and
the assigner deletes it STATUS_DELETE_AFTER seconds later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_GENERATION = re.compile(r"(.+)\.g(\d+)")
RETIRING = ".retiring"
SOURCE_ROTATE_SECONDS = 60.0  # while source windows are published (pipeline/assigner.py): what the broker holds of them
# Every live status report also keeps the broker from giving back the memory of what was
# written around it (measured on Tansu: ~17 KB a report beside a growing source topic), so
# the reports a generation gathers stay few: a minute's.
STATUS_ROTATE_SECONDS = 60.0
STATUS_DELETE_AFTER = 60.0  # readers and writers look at the topics every few seconds
# A writer's lease on the generations it may still write (step 1 above): its key on the
# status topic, and how long a lease not renewed still holds them.
LEASE_PREFIX = "writer:"
LEASE_SECONDS = 30.0


def topic(base: str, n: int) -> str:
    return f"{base}.g{n}"


def of(name: str) -> tuple[str, int] | None:
    """(base, N) of a generation's topic; None for any other topic."""
    match = _GENERATION.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def number(name: str) -> int:
    """N of a generation's topic (ValueError for another topic)."""
    found = of(name)
    if found is None:
        raise ValueError(f"{name!r} is not a topic generation")
    return found[1]


def numbers(topics: Iterable[str], base: str) -> list[int]:
    """The generations of `base` among `topics`, oldest first."""
    return sorted(found[1] for name in topics if (found := of(name)) is not None and found[0] == base)


def live(topics: Iterable[str], base: str) -> list[int]:
    """The generations of `base` not retiring, oldest first."""
    names = set(topics)
    return [n for n in numbers(names, base) if marker(topic(base, n)) not in names]


def newest(topics: Iterable[str], base: str) -> int | None:
    found = numbers(topics, base)
    return found[-1] if found else None


def superseded(topics: Iterable[str]) -> set[str]:
    """The generations, of any base, of which a newer one exists."""
    found = [(base, n, name) for name in topics if (base_n := of(name)) is not None for base, n in [base_n]]
    newest: dict[str, int] = {}
    for base, n, _ in found:
        newest[base] = max(newest.get(base, 0), n)
    return {name for base, n, name in found if n < newest[base]}


def marker(name: str) -> str:
    """The topic that says generation `name` is retiring."""
    return name + RETIRING


def is_marker(name: str) -> bool:
    return name.endswith(RETIRING)


def partials_of(chunks_topic: str, partials_base: str) -> str:
    """Where the partials of windows of `chunks_topic` (a chunks generation) go."""
    return topic(partials_base, number(chunks_topic))


def status_current(topics: Iterable[str], base: str) -> str:
    """The status generation to report to: the newest (the first, before any exists)."""
    return topic(base, newest(topics, base) or 1)


def status_read(topics: Iterable[str], base: str) -> list[str]:
    """The status generations to read: the newest two, oldest first."""
    return [topic(base, n) for n in numbers(topics, base)[-2:]]


def status_unread(topics: Iterable[str], base: str) -> list[str]:
    """The status generations no one reads any more: older than the newest two."""
    return [topic(base, n) for n in numbers(topics, base)[:-2]]
