"""Writing to Kafka: the one place a full local queue (BufferError) is met, the blocking and
asyncio producers built on it, and delivery failures collected."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, Producer

from pipeline.config import Connection
from pipeline.errors import UnavailableError
from pipeline.kafka.clients import KafkaUnavailable
from pipeline.kafka.clients import producer as new_producer  # `producer` names the argument below


def try_produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    partition: int,
    key: bytes | None = None,
    on_delivery: Any = None,
    **record: Any,
) -> bool:
    """Queue a record (`record`: its timestamp, headers) if the local queue has room; False if
    it is full. A periodic report that finds it full is simply sent again next time."""
    try:
        producer.produce(topic, value, key=key, partition=partition, on_delivery=on_delivery, **record)
    except BufferError:
        return False
    return True


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
    """Queue a record, waiting for room while the local queue is full (deliveries drain it)."""
    while not try_produce(producer, topic, value, partition, key, on_delivery, **record):
        producer.poll(poll)


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

    def __init__(self, connection: Connection, extra: dict[str, Any], saturation_timeout: float = 5.0) -> None:
        self.producer = new_producer(connection, **extra)  # `extra`: librdkafka settings over the shared ones
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
        while not try_produce(self.producer, topic, value, partition, key, on_delivery):
            if time.monotonic() > deadline:
                raise Saturated(f"Kafka producer queue full for {self.saturation_timeout:.0f} s")
            await asyncio.sleep(0.01)
        return future

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
