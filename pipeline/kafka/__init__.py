"""The Kafka edge: the only package that imports confluent_kafka (faust's aggregator has
its own client). Every other module reaches Kafka through what this one exports.

    clients.py    configs from the one `Connection`; producer(), consumer(), admin() build them
    producing.py  try_produce (the one place a full queue is met), produce, AsyncProducer
    reading.py    a partition to its end, partitions' extents, the first record from an offset,
                  a topic's newest record
    topics.py     wordpipe's topic specs, creation and deletion, reachability
    broker.py     the embedded Tansu broker, and start_kafka for `run` and `up`
"""

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from pipeline.kafka.clients import (
    PRODUCER_MAX_BYTES,
    KafkaUnavailable,
    admin,
    client_config,
    consumer,
    consumer_config,
    faust_credentials,
    producer,
    producer_config,
    security_config,
)
from pipeline.kafka.producing import AsyncProducer, DeliveryTracker, Saturated, produce, try_produce
from pipeline.kafka.reading import Follower, first_offset_from, read_partition, topic_extents
from pipeline.kafka.topics import (
    BrokerWatch,
    create,
    create_generation,
    delete,
    describe_partitions,
    ensure_topics,
    generation_specs,
    new_topic,
    status_spec,
    topic_names,
    topic_specs,
    wait_for_topics,
)

__all__ = [
    "PRODUCER_MAX_BYTES",
    "AdminClient",
    "AsyncProducer",
    "BrokerWatch",
    "Consumer",
    "DeliveryTracker",
    "Follower",
    "KafkaError",
    "KafkaException",
    "KafkaUnavailable",
    "NewTopic",
    "OffsetSpec",
    "Producer",
    "Saturated",
    "TopicPartition",
    "admin",
    "client_config",
    "consumer",
    "consumer_config",
    "create",
    "create_generation",
    "delete",
    "describe_partitions",
    "ensure_topics",
    "faust_credentials",
    "first_offset_from",
    "generation_specs",
    "new_topic",
    "producer",
    "producer_config",
    "produce",
    "read_partition",
    "security_config",
    "status_spec",
    "topic_extents",
    "topic_names",
    "topic_specs",
    "try_produce",
    "wait_for_topics",
]
