"""Thin adapters over confluent-kafka: client configs, topic creation, delivery checks."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline import generations
from pipeline.config import Connection, KafkaSettings, TopicSettings
from pipeline.errors import UnavailableError
from pipeline.source_topics import input_of

log = logging.getLogger(__name__)


class KafkaUnavailable(UnavailableError):
    pass


LIBRDKAFKA_LOG = logging.getLogger("wordpipe.librdkafka")
# The one record limit, set on both sides: every producer's message.max.bytes (librdkafka's
# default) and every topic's max.message.bytes (Kafka's default). No record wordpipe writes
# passes it, whatever the words: what could (a changelog batch, a window's part) travels
# in fragments (pipeline/codec.py: FRAGMENT_BYTES), and a total that could is not published.
PRODUCER_MAX_BYTES = 1_000_000
TOPIC_MAX_BYTES = 1_048_588


def security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka's security settings from ours: every client of the pipeline takes them."""
    out: dict[str, Any] = {"security.protocol": kafka.security_protocol}
    for key, value in (
        ("sasl.mechanism", kafka.sasl_mechanism),
        ("sasl.username", kafka.sasl_username),
        ("sasl.password", kafka.sasl_password),
        ("ssl.ca.location", kafka.ssl_ca_location),
        ("ssl.certificate.location", kafka.ssl_certificate_location),
        ("ssl.key.location", kafka.ssl_key_location),
        ("ssl.key.password", kafka.ssl_key_password),
    ):
        if value is not None:
            out[key] = value
    return out


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The same security settings for the faust aggregator (aiokafka): None for PLAINTEXT."""
    import ssl

    import faust

    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
        if kafka.ssl_certificate_location:
            context.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location, kafka.ssl_key_password)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password,
        ssl_context=context,
        mechanism=kafka.sasl_mechanism,
    )


def client_config(connection: Connection, **extra: Any) -> dict[str, Any]:
    # librdkafka's own messages go through logging, so a CLI can quiet them (it reports errors itself).
    return {
        "bootstrap.servers": connection.bootstrap,
        "client.id": "wordpipe",
        "logger": LIBRDKAFKA_LOG,
        **security_config(connection.kafka),
        **extra,
    }


def producer_config(connection: Connection, **extra: Any) -> dict[str, Any]:
    # Idempotence keeps each producer's records in order and without gaps per partition. A
    # topic that does not exist is an error, never created by a write (a deleted generation).
    return client_config(
        connection,
        **{
            "enable.idempotence": True,
            "linger.ms": 5,
            "acks": "all",
            "message.max.bytes": PRODUCER_MAX_BYTES,
            "allow.auto.create.topics": False,
            **extra,
        },
    )


def consumer_config(connection: Connection, group: str, **extra: Any) -> dict[str, Any]:
    """A group member's: offsets committed by hand, and the session and fetch wait that fit the broker."""
    return client_config(
        connection,
        **{
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": connection.session_timeout_ms,
            "heartbeat.interval.ms": max(100, connection.session_timeout_ms // 6),
            "fetch.wait.max.ms": connection.fetch_max_wait_ms,
            **extra,
        },
    )


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
    admin = AdminClient(client_config(connection))
    wanted = {t.topic: t for t in topic_specs(topics)}
    existing = describe_partitions(admin, timeout)
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
    create(admin, [spec for name, spec in wanted.items() if name not in existing], timeout)


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


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    partition: int,
    key: bytes | None = None,
    on_delivery: Any = None,
    poll: float = 0.01,
    **record: Any,
) -> None:
    """Queue a record (`record`: its timestamp, headers), waiting for room while the local
    queue is full (deliveries drain it)."""
    while True:
        try:
            producer.produce(topic, value, key=key, partition=partition, on_delivery=on_delivery, **record)
            return
        except BufferError:
            producer.poll(poll)


def read_partition(
    connection: Connection, topic: str, partition: int = 0, timeout: float = 30.0, limit: int | None = None
) -> list[Any]:
    """The records of one partition, oldest first, up to its end now or the first `limit` (blocking)."""
    consumer = Consumer(consumer_config(connection, "wordpipe-reader", **{"enable.partition.eof": True}))
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if error := msg.error():
                if error.code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaUnavailable(f"reading {topic}: {error.str()}")
            out.append(msg)
            if len(out) == limit:
                return out
        raise KafkaUnavailable(f"could not read {topic} to its end within {timeout:.0f} s")
    finally:
        consumer.close()


def topic_extents(connection: Connection, topics: list[str], timeout: float = 30.0) -> dict[str, tuple[int, int]]:
    """ "topic:partition" -> (first offset, end offset) of every partition of `topics` now.

    The end is read, not asked for: Tansu reports the base offset of a partition's last
    record batch + 1 as its high watermark, so the last batch is fetched to see where it
    ends. Raises KafkaUnavailable naming a topic that does not exist."""
    admin = AdminClient(client_config(connection))
    partitions = describe_partitions(admin, timeout)
    missing = [t for t in topics if t not in partitions]
    if missing:
        raise KafkaUnavailable(f"no topic {', '.join(map(repr, missing))} on {connection.bootstrap}")
    consumer = Consumer(consumer_config(connection, "wordpipe-reader", **{"enable.partition.eof": True}))
    try:
        extents: dict[str, tuple[int, int]] = {}
        tail = []
        for topic in topics:
            for p in range(partitions[topic]):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                extents[input_of(topic, p)] = (low, high)
                if high > low:
                    tail.append(TopicPartition(topic, p, high - 1))
        consumer.assign(tail)
        waiting = {input_of(tp.topic, tp.partition) for tp in tail}
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read the ends of {sorted(waiting)} within {timeout:.0f} s")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            at_topic, at_partition = msg.topic(), msg.partition()
            if at_topic is None or at_partition is None:  # an error of the consumer's, not a partition's
                name = "the consumer"
            else:
                name = input_of(at_topic, at_partition)
            if error := msg.error():
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaUnavailable(f"reading {name}: {error.str()}")
                waiting.discard(name)
                continue
            low, end = extents[name]
            extents[name] = (low, max(end, (msg.offset() or 0) + 1))
        return extents
    finally:
        consumer.close()


def describe_partitions(admin: AdminClient, timeout: float) -> dict[str, int]:
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka unreachable: {exc.args[0].str() if exc.args else exc}") from None
    return {name: len(t.partitions) for name, t in meta.topics.items() if not t.error}


def check_reachable(connection: Connection, timeout: float = 10.0, admin: AdminClient | None = None) -> None:
    """Raises KafkaUnavailable unless a broker answers a metadata request within `timeout`."""
    try:
        (admin or AdminClient(client_config(connection))).list_topics(timeout=timeout)
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
        admin = AdminClient(client_config(connection))  # one client: no connection churn every second

        def watch() -> None:
            while not self._stop.is_set():
                try:
                    check_reachable(connection, timeout, admin)
                    self.problem = None
                except KafkaUnavailable as exc:
                    if self.problem is None:
                        log.warning("%s", exc)
                    self.problem = str(exc)
                self._stop.wait(interval)

        threading.Thread(target=watch, name="broker-watch", daemon=True).start()

    def close(self) -> None:
        self._stop.set()


class Follower:
    """The newest record of a one-partition topic, read from its start (a compacted topic of
    one key: the assignment)."""

    def __init__(self, connection: Connection, topic: str) -> None:
        # A group id that is never joined nor committed: the partition is assigned.
        self.consumer = Consumer(consumer_config(connection, "wordpipe-follower"))
        self.consumer.assign([TopicPartition(topic, 0, 0)])

    def latest(self) -> bytes | None:
        """The value of the newest record that arrived since the last call; None if none did."""
        newest = None
        while batch := self.consumer.consume(num_messages=100, timeout=0):
            for msg in batch:
                if not msg.error() and msg.value() is not None:
                    newest = msg.value()
        return newest

    def close(self) -> None:
        self.consumer.close()


class DeliveryTracker:
    """Collects the delivery failures of one producer."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")


class Saturated(UnavailableError):
    """The producer's local queue stayed full: Kafka takes records slower than they come."""


class AsyncProducer:
    """confluent-kafka's producer for asyncio: `send` resolves to the record's offset.

    A thread serves delivery reports and hands each to the event loop. A send that finds
    the local queue full waits up to `saturation_timeout` for room, then raises Saturated.
    """

    def __init__(self, config: dict[str, Any], saturation_timeout: float = 5.0) -> None:
        self.producer = Producer(config)
        self.saturation_timeout = saturation_timeout
        self.loop = asyncio.get_running_loop()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self.producer.poll(0.1)

    async def send(self, topic: str, value: bytes, key: bytes | None, partition: int) -> int:
        """Queue a record and wait until Kafka acknowledged it; returns its offset."""
        return await (await self.enqueue(topic, value, key, partition))

    async def enqueue(self, topic: str, value: bytes, key: bytes | None, partition: int) -> asyncio.Future[int]:
        """Queue a record; the returned future resolves to its offset once Kafka acknowledged it."""
        future: asyncio.Future[int] = self.loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            self.loop.call_soon_threadsafe(_settle, future, err, msg)

        deadline = time.monotonic() + self.saturation_timeout
        while True:
            try:
                self.producer.produce(topic, value, key=key, partition=partition, on_delivery=on_delivery)
                return future
            except BufferError:
                if time.monotonic() > deadline:
                    raise Saturated(f"Kafka producer queue full for {self.saturation_timeout:.0f} s") from None
                await asyncio.sleep(0.01)

    def close(self, timeout: float = 10.0) -> None:
        self._closed.set()
        self._poller.join()
        self.producer.flush(timeout)


def _settle(future: asyncio.Future[int], err: KafkaError | None, msg: Any) -> None:
    if future.done():
        return
    if err is not None:
        future.set_exception(KafkaUnavailable(f"{msg.topic()}[{msg.partition()}]: {err.str()}"))
    else:
        future.set_result(msg.offset())
