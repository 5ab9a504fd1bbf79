"""The benchmark's load generator and latency reader, on librdkafka (confluent-kafka).

Upstream products and the acceptance checks speak to the pipeline through librdkafka, the C
client behind most Kafka clients outside the JVM. It is also what a load generator sharing two
cores with what it measures should be: publishing 1,000 events/s through aiokafka took about a
quarter of a core (Python per message), librdkafka a few percent. And its consumer fetches every
partition it is assigned whatever the application has not read yet, where aiokafka leaves a
partition out of the next fetch while its last records are unread, so that a reader of a topic
written in bursts can wait for the next fetch to time out: that is the reader's delay, not the
pipeline's. The aiokafka baselines (plain produce and consume) stay as they are.

Both sides run with librdkafka's defaults but for what a billing producer must have (acks=all,
idempotence where the broker has it, as the relays) and the Java client's partitioner; linger.ms
is its default 5 ms.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Sequence

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from shared.settings import KafkaSettings

# How long one call may wait for the broker before the load generator gives up (a stalled broker).
TIMEOUT_S = 600.0


def _connection(kafka: KafkaSettings) -> dict[str, object]:
    # The benchmark runs on its own local stack: plaintext, one node.
    return {"bootstrap.servers": kafka.bootstrap_servers}


class LoadProducer:
    """Publishes (key, value) messages with acks=all; `flush` waits for every acknowledgement and
    raises if the broker refused any."""

    def __init__(self, kafka: KafkaSettings) -> None:
        # murmur2: a key lands on the partition the Java client, aiokafka and so the services' own
        # producers put it on (librdkafka's default hashes keys with CRC32).
        self._producer = Producer({**_connection(kafka), "acks": "all",
                                   "enable.idempotence": kafka.idempotent_producer,
                                   "partitioner": "murmur2_random",
                                   "queue.buffering.max.messages": 1_000_000})
        self._failures: list[str] = []

    def _delivered(self, error, _message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self) -> None:
        if self._producer.flush(TIMEOUT_S):
            raise TimeoutError(f"messages still unacknowledged after {TIMEOUT_S:.0f} s")
        if self._failures:
            raise KafkaException(f"{len(self._failures)} message(s) refused: {self._failures[0]}")


async def publish(kafka: KafkaSettings, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> float:
    """Publish every (key, value) and wait for their acknowledgements; returns the seconds taken."""

    def send_all() -> float:
        producer = LoadProducer(kafka)
        started = time.perf_counter()
        for key, value in messages:
            producer.send(topic, key, value)
        producer.flush()
        return time.perf_counter() - started

    return await asyncio.to_thread(send_all)


class TopicReader:
    """Reads what is written to a topic from the moment it was created (its partitions' ends then),
    in a thread of its own, handing each message with the time it arrived to `on_message`."""

    def __init__(self, kafka: KafkaSettings, topic: str, on_message: Callable[[bytes, float], None]) -> None:
        # The broker's fetch wait as the services' consumers have it: Tansu answers a fetch only when
        # its wait runs out, and librdkafka's own default (500 ms) was then every item's delay.
        self._consumer = Consumer({**_connection(kafka), "group.id": "bench-reader", "enable.auto.commit": False,
                                   "fetch.wait.max.ms": kafka.fetch_max_wait_ms})
        partitions = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, partition,
                                              self._consumer.get_watermark_offsets(
                                                  TopicPartition(topic, partition), timeout=30)[1])
                               for partition in partitions])
        self._on_message = on_message
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"read-{topic}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stopping.is_set():
            # poll returns at the first message; consume(n, timeout) would wait for n messages or the
            # whole timeout, and every message of the batch would seem to arrive that late.
            first = self._consumer.poll(0.2)
            if first is None:
                continue
            arrived = time.perf_counter()
            # What librdkafka has fetched by now: it arrived no later than the first was handed over.
            for message in [first, *self._consumer.consume(num_messages=10_000, timeout=0)]:
                if message.error() is None:
                    self._on_message(message.value(), arrived)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._consumer.close()
