"""Read-only views on the pipeline for the demo, tests and operators."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel, ValidationError
from sqlalchemy import MetaData, Table, func, select

from ops.stack import database_urls
from shared import topics
from shared.db import Database, messaging_tables
from shared.events import DeadLetter
from shared.settings import kafka_client

E = TypeVar("E", bound=BaseModel)

MESSAGING = messaging_tables(MetaData())  # every service database has these tables, of this shape
OUTBOX = MESSAGING.outbox


async def read_topic(bootstrap_servers: str, topic: str, *, timeout_s: float = 60.0) -> list[bytes]:
    """Every message on `topic` when it is called, from the beginning, without joining a consumer
    group; raises TimeoutError rather than return part of them."""
    # Without a group nothing is committed, so an assigned partition starts at auto_offset_reset.
    # (Not seek_to_beginning() after assign(): the reset that assign() starts may land after it.)
    consumer = AIOKafkaConsumer(**kafka_client(bootstrap_servers), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap_servers, topic)
        consumer.assign(partitions)
        end_offsets = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while not all([await consumer.position(tp) >= end_offsets[tp] for tp in partitions]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(values)} messages of {topic} in {timeout_s}s, not all of them")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                values.extend(record.value for record in records)
        return values
    finally:
        await consumer.stop()


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    """Asked of the broker: a consumer that subscribed to nothing has no topic's metadata on Apache
    Kafka (Tansu sends every topic's unasked)."""
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap_servers))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(TopicPartition(topic, partition["partition"]) for found in described if found["topic"] == topic
                  for partition in found["partitions"])


async def read_events(bootstrap_servers: str, topic: str, schema: type[E]) -> list[E]:
    """The valid events on `topic`; anything else there is a consumer's problem (dead letters), not ours."""
    events = []
    for value in await read_topic(bootstrap_servers, topic):
        try:
            events.append(schema.model_validate_json(value))
        except ValidationError:
            continue
    return events


async def dead_letters(bootstrap_servers: str) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(value) for value in await read_topic(bootstrap_servers, topics.DEAD_LETTERS)]


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, poll_s: float = 0.2
) -> None:
    """Wait for an outcome, never a fixed sleep; fails loudly with what was awaited."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)


class Databases:
    """Each service's own database, for reports, checks and that service's own admin commands."""

    def __init__(self) -> None:
        self.urls = database_urls()
        self.by_service = {service: Database(url, pool_size=2) for service, url in self.urls.items()}

    def __getitem__(self, service: str) -> Database:
        return self.by_service[service]

    async def count(self, service: str, statement) -> int:
        async with self[service].transaction() as session:
            return (await session.execute(statement)).scalar_one()

    async def has_exactly(self, service: str, table: Table, expected: int, *where) -> bool:
        return await self.count(service, select(func.count()).select_from(table).where(*where)) == expected

    async def outbox_drained(self, service: str) -> bool:
        """Whether everything `service` wrote to its outbox has been published."""
        return not await self.count(service, select(func.count()).select_from(OUTBOX)
                                    .where(OUTBOX.c.published_at.is_(None)))

    async def outboxes_drained(self) -> bool:
        return all([await self.outbox_drained(service) for service in self.by_service])

    async def dispose(self) -> None:
        for database in self.by_service.values():
            await database.dispose()
