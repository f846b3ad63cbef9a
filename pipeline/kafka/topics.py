"""wordpipe's topics on Kafka: their specs (retention and compaction), creation, deletion,
what the cluster holds, and whether it answers."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline import generations
from pipeline.config import Connection, TopicSettings
from pipeline.kafka.clients import TOPIC_MAX_BYTES, KafkaUnavailable, admin

log = logging.getLogger("pipeline.kafka")


# On Apache Kafka: compacted topics roll a segment an hour (only closed segments are
# compacted, and the default week would keep a week of status reports); receipts are also
# deleted after RECEIPTS_KEPT. Chunks and partials keep everything until their generation
# is counted and deleted (pipeline/generations.py), as Kafka Streams keeps a repartition
# topic until it purges what is committed.
HOUR_MS = 3_600_000
RECEIPTS_KEPT_MS = 7 * 24 * HOUR_MS
DEADLETTERS_KEPT_MS = 30 * 24 * HOUR_MS
COMPACTED = {"cleanup.policy": "compact", "segment.ms": str(HOUR_MS)}
UNTIL_COUNTED = {"retention.ms": "-1", "retention.bytes": "-1"}


def topic_specs(topics: TopicSettings) -> list[NewTopic]:
    """wordpipe's topics but the generations of chunks and partials (`generation_specs`)."""
    rf = topics.replication_factor
    return [
        new_topic(topics.totals, topics.partial_partitions, rf, COMPACTED),
        new_topic(topics.deadletter, 1, rf, {"retention.ms": str(DEADLETTERS_KEPT_MS)}),
        new_topic(
            topics.documents,
            1,
            rf,
            {**COMPACTED, "cleanup.policy": "compact,delete", "retention.ms": str(RECEIPTS_KEPT_MS)},
        ),
        new_topic(topics.assignments, 1, rf, COMPACTED),
    ]


def status_spec(topics: TopicSettings, n: int) -> NewTopic:
    """Generation `n` of the status topic (pipeline/generations.py)."""
    return new_topic(generations.topic(topics.status, n), 1, topics.replication_factor, COMPACTED)


def generation_specs(topics: TopicSettings, n: int) -> list[NewTopic]:
    """Generation `n` of partials and of chunks, in the order they must be created: the
    partials of a generation's windows have somewhere to go before any chunk is written."""
    rf = topics.replication_factor
    return [
        new_topic(generations.topic(topics.partials, n), topics.partial_partitions, rf, UNTIL_COUNTED),
        new_topic(generations.topic(topics.chunks, n), topics.chunk_partitions, rf, UNTIL_COUNTED),
    ]


def new_topic(name: str, partitions: int, replication_factor: int, config: dict[str, str] | None = None) -> NewTopic:
    return NewTopic(
        name, partitions, replication_factor, config={"max.message.bytes": str(TOPIC_MAX_BYTES), **(config or {})}
    )


def topic_names(admin: AdminClient, timeout: float = 10.0) -> set[str]:
    return set(describe_partitions(admin, timeout))


def create(admin: AdminClient, specs: list[NewTopic], timeout: float = 30.0) -> None:
    """Create `specs` in order, each once its predecessor exists; one that exists already is
    fine (another writer made it), and each is in the metadata on return."""
    for spec in specs:
        for name, future in admin.create_topics([spec], request_timeout=timeout).items():
            try:
                future.result()
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaUnavailable(f"could not create topic {name}: {exc.args[0].str()}") from None
        wait_for_topics(admin, {spec.topic: spec.num_partitions}, timeout)


def create_generation(admin: AdminClient, topics: TopicSettings, n: int, timeout: float = 30.0) -> None:
    create(admin, generation_specs(topics, n), timeout)


def ensure_topics(
    connection: Connection, topics: TopicSettings, timeout: float = 30.0, with_sources: bool = False
) -> None:
    """Create wordpipe's topics, the first generation of chunks and partials and of status
    where there is none (and, `with_sources`, the source topics, as many partitions as a
    chunks generation has); existing ones must have the configured partition counts."""
    client = admin(connection)
    wanted = {t.topic: t for t in topic_specs(topics)}
    existing = describe_partitions(client, timeout)
    if generations.newest(existing, topics.chunks) is None:
        wanted |= {t.topic: t for t in generation_specs(topics, 1)}
    if generations.newest(existing, topics.status) is None:
        wanted[generations.topic(topics.status, 1)] = status_spec(topics, 1)
    if with_sources:  # a source topic that exists is taken as it is
        wanted |= {
            s.topic: NewTopic(s.topic, topics.chunk_partitions, topics.replication_factor)
            for s in topics.source_list
            if s.topic not in existing
        }
    for name, spec in wanted.items():
        have = existing.get(name)
        if have is not None and have != spec.num_partitions:
            raise ValueError(
                f"topic {name!r} exists with {have} partitions but settings ask for {spec.num_partitions}; "
                "change the setting or the topic"
            )
    create(client, [spec for name, spec in wanted.items() if name not in existing], timeout)


def delete(admin: AdminClient, names: list[str], timeout: float = 30.0) -> None:
    """Delete topics; one already gone is fine."""
    if not names:
        return
    for name, future in admin.delete_topics(names, operation_timeout=timeout).items():
        try:
            future.result()
            log.info("deleted topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaUnavailable(f"could not delete topic {name}: {exc.args[0].str()}") from None


def wait_for_topics(admin: AdminClient, partitions: dict[str, int], timeout: float = 30.0) -> None:
    """Until metadata shows every partition of `partitions` (topic -> count), so that no
    producer races a topic's creation."""
    deadline = time.monotonic() + timeout
    while True:
        described = describe_partitions(admin, timeout)
        if all(described.get(name) == count for name, count in partitions.items()):
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailable(f"topics {sorted(partitions)} did not appear in metadata within {timeout:.0f} s")
        time.sleep(0.05)


def describe_partitions(admin: AdminClient, timeout: float) -> dict[str, int]:
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka unreachable: {exc.args[0].str() if exc.args else exc}") from None
    return {name: len(t.partitions) for name, t in meta.topics.items() if not t.error}


def check_reachable(connection: Connection, timeout: float = 10.0, client: AdminClient | None = None) -> None:
    """Raises KafkaUnavailable unless a broker answers a metadata request within `timeout`."""
    try:
        (client if client is not None else admin(connection)).list_topics(timeout=timeout)  # a client is falsy: len() 0
    except KafkaException:
        raise KafkaUnavailable(f"no Kafka broker answers at {connection.bootstrap} (waited {timeout:.0f} s)") from None


class BrokerWatch:
    """Whether Kafka answers, asked every `interval` seconds on a daemon thread.

    A frozen or partitioned broker makes requests hang rather than fail, so a live
    client notices only after its socket timeout (a minute); a fresh metadata request
    with a short timeout tells within seconds. Services report it in their health."""

    def __init__(self, connection: Connection, interval: float = 1.0, timeout: float = 2.0) -> None:
        self.problem: str | None = None  # None while Kafka answers
        self._stop = threading.Event()
        client = admin(connection)  # one client: no connection churn every second

        def watch() -> None:
            while not self._stop.is_set():
                try:
                    check_reachable(connection, timeout, client)
                    self.problem = None
                except KafkaUnavailable as exc:
                    if self.problem is None:
                        log.warning("%s", exc)
                    self.problem = str(exc)
                self._stop.wait(interval)

        threading.Thread(target=watch, name="broker-watch", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
