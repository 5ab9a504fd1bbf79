"""Kafka with SASL/SCRAM, as production runs it: the clients the services create from
BILLING_KAFKA_* (the outbox relays' producers, the operators' admin and consumers, FastStream's
broker) authenticate on the local node's SCRAM listener, and a wrong password is refused."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from ops import local_kafka
from shared.runtime import create_broker
from shared.settings import KafkaSettings, local_stack_state

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def scram_servers(pipeline) -> str:
    servers = local_stack_state().get("scram_bootstrap_servers")
    if not servers:
        pytest.skip("the local broker is Tansu, which has no SASL listener")
    return servers


def scram_settings(servers: str, password: str = local_kafka.SCRAM_PASSWORD) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=servers, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="SCRAM-SHA-512", sasl_username=local_kafka.SCRAM_USER,
                         sasl_password=password)


async def test_clients_authenticate_with_scram_and_a_wrong_password_is_refused(scram_servers):
    kafka = scram_settings(scram_servers)
    topic = f"test.sasl.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(**kafka.client_options(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"by the relay's producer", key=b"C-1")
    finally:
        await producer.stop()
    async with create_broker(kafka, client_id="test-sasl") as broker:
        await broker.publish(b"by FastStream's broker", topic=topic, key=b"C-1")

    consumer = AIOKafkaConsumer(topic, **kafka.client_options(), group_id=f"test-sasl-{uuid.uuid4()}",
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        received: list[bytes] = []
        while len(received) < 2:
            for records in (await consumer.getmany(timeout_ms=5000)).values():
                received.extend(record.value for record in records)
    finally:
        await consumer.stop()
    assert received == [b"by the relay's producer", b"by FastStream's broker"]

    refused = AIOKafkaProducer(**scram_settings(scram_servers, password="not-the-password").client_options())
    with pytest.raises(KafkaError):
        await refused.start()
    await refused.stop()
