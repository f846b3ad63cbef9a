"""How every wordpipe client reaches Kafka: librdkafka configs from the one `Connection`, and
the builders of producers, consumers and admin clients (the only place they are built)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from pipeline.config import Connection, KafkaSettings
from pipeline.errors import UnavailableError


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
    # Its metrics are not pushed to the broker (KIP-714): wordpipe's own go to Prometheus, and
    # asking for a subscription cost the embedded broker ~9 requests a second.
    return {
        "bootstrap.servers": connection.bootstrap,
        "client.id": "wordpipe",
        "logger": LIBRDKAFKA_LOG,
        "enable.metrics.push": False,
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


def producer(connection: Connection, **extra: Any) -> Producer:
    made = Producer(producer_config(connection, **extra))
    if extra.get("enable.idempotence", True):  # idempotent unless asked otherwise (producer_config)
        threading.Thread(target=_connect_for_producer_id, args=(made,), name="producer-id", daemon=True).start()
    return made


def _connect_for_producer_id(made: Producer) -> None:
    """Have a broker connected before the idempotent producer asks for its id (~50 ms, on a
    thread of its own: the caller goes on).

    librdkafka looks for a connected broker to ask every 500 ms, the first time just after
    the bootstrap connection gave way to the cluster's own brokers, when none is connected
    yet: a producer's first record waited 0.5-1 s (a `wordpipe run`'s first chunk, a new
    worker's first partials). Two metadata requests connect one: the second goes to a
    broker of the cluster, and the id follows at once. Best effort: unreachable now, the
    id comes when the broker does."""
    for _ in range(2):
        try:
            made.list_topics(timeout=1.0)
        except KafkaException:
            return


def consumer(connection: Connection, group: str, **extra: Any) -> Consumer:
    """A consumer of `group`'s, which may also be only assigned partitions (the group a name)."""
    return Consumer(consumer_config(connection, group, **extra))


def admin(connection: Connection) -> AdminClient:
    return AdminClient(client_config(connection))
