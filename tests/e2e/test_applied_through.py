"""`AppliedThrough` against the real broker: a consumer group has applied what was published to its
topic before a moment once it committed past it, whatever was published after the moment."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.backlog import AppliedThrough

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def publish(kafka, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all")
    await producer.start()
    try:
        for number in range(count):
            await producer.send_and_wait(topic, f"message {number}".encode())
    finally:
        await producer.stop()


async def commit(kafka, group: str, partition: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.commit({partition: offset})
    finally:
        await consumer.stop()


async def test_a_group_has_applied_what_was_published_before_a_moment_once_it_committed_past_it(pipeline):
    kafka = pipeline.kafka
    topic, group = f"applied-through-{uuid.uuid4().hex[:8]}", f"applied-through-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    partition = TopicPartition(topic, 0)
    await publish(kafka, topic, 3)
    await asyncio.sleep(0.01)  # the moment falls after the three messages' timestamps (milliseconds)
    moment = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await publish(kafka, topic, 2)

    applied = AppliedThrough(kafka, group, topic, poll_s=0.01)
    try:
        assert await applied.wait(moment, timeout_s=0.2) == 3  # nothing committed yet
        await commit(kafka, group, partition, 2)
        assert await applied.wait(moment, timeout_s=0.2) == 1
        await commit(kafka, group, partition, 3)
        # The two published after the moment are not waited for.
        assert await applied.wait(moment, timeout_s=0.2) == 0
    finally:
        await applied.stop()
