"""What is not done yet: messages on a partition a consumer group has not committed (its lag),
and what a service database holds: outbox rows still to publish (and those quarantined) and
parked messages per consumer. Read by the workers' metrics and `billing status`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from shared.db import Database, MessagingTables


@dataclass(frozen=True, slots=True)
class Backlog:
    outbox_pending: int
    # How long the oldest unpublished row has waited; 0 when there is none.
    outbox_oldest_age_s: float
    outbox_quarantined: int
    parked: dict[str, int] = field(default_factory=dict)  # by consumer


async def read_backlog(database: Database, tables: MessagingTables) -> Backlog:
    outbox, parked = tables.outbox, tables.parked
    pending = outbox.c.published_at.is_(None) & outbox.c.quarantined_at.is_(None)
    async with database.transaction() as session:
        rows, oldest, quarantined = (await session.execute(select(
            func.count().filter(pending),
            func.extract("epoch", func.now() - func.min(outbox.c.created_at).filter(pending)),
            func.count().filter(outbox.c.quarantined_at.is_not(None)),
        ).where(outbox.c.published_at.is_(None)))).one()
        by_consumer = dict((await session.execute(
            select(parked.c.consumer, func.count()).group_by(parked.c.consumer))).all())
    return Backlog(rows, float(oldest or 0), quarantined, by_consumer)


async def committed_lag(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """Per partition: its end offset minus the offset `consumer`'s group committed, i.e. what the
    group has still to apply (what KEDA's Kafka scaler scales on). Asked of the broker: the local
    broker's fetch responses carry no true high watermark, so the client's own figure cannot be used."""
    ends = await consumer.end_offsets(list(partitions))
    # Nothing committed yet: the group starts from the beginning (auto_offset_reset="earliest").
    return {partition: max(ends[partition] - (await consumer.committed(partition) or 0), 0)
            for partition in partitions}
