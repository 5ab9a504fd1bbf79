"""What is not done yet: messages on a partition a consumer group has not committed (its lag),
and what a service database holds: outbox rows still to publish (and those quarantined) and
parked messages per consumer. Read by the workers' metrics and `billing status`; and whether a
consumer group has applied what was published before a moment (`AppliedThrough`), which a use
case that must see it waits for."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnsupportedVersionError
from sqlalchemy import func, select

from shared.db import Database, MessagingTables
from shared.settings import KafkaSettings


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


class AppliedThrough:
    """Whether a consumer group has applied every message published to its topic before a moment,
    by the messages' timestamps and the offsets the group committed (which follow its commits to
    the database). Asked of the broker, so it holds whichever worker owns a partition.

    Settlement bills a run requested at a moment once it holds every item rating had published by
    then: a run requested right after usage was rated bills that usage, however long settlement's
    fetches linger. Its own client: a plain consumer that never joins the group.
    """

    def __init__(self, kafka: KafkaSettings, group_id: str, topic: str, poll_s: float = 0.05) -> None:
        self.kafka, self.group_id, self.topic, self.poll_s = kafka, group_id, topic, poll_s
        self._consumer: AIOKafkaConsumer | None = None
        # Everything published before it (ms since the epoch) is known to be applied: most
        # requests then ask the broker nothing (a run over many contracts is requested at once).
        self._through_ms = 0

    async def wait(self, moment: datetime, timeout_s: float) -> int:
        """Wait until the group applied what was published before `moment`, at most `timeout_s`;
        returns how many messages it had still to apply then (0: all of them are applied)."""
        moment_ms = int(moment.timestamp() * 1000)
        if moment_ms <= self._through_ms:
            return 0
        consumer = await self._connected()
        asked_ms = int(time.time() * 1000)
        targets = await self._offsets_before(consumer, moment_ms)
        deadline = time.monotonic() + timeout_s
        while True:
            behind = 0
            for partition, target in targets.items():
                if target:  # nothing was published to it before the moment: nothing to apply
                    behind += max(target - (await consumer.committed(partition) or 0), 0)
            if not behind:
                # A moment still ahead is known to be covered only up to when the offsets were read.
                self._through_ms = max(self._through_ms, min(moment_ms, asked_ms))
                return 0
            if time.monotonic() >= deadline:
                return behind
            await asyncio.sleep(self.poll_s)

    async def _offsets_before(self, consumer: AIOKafkaConsumer, moment_ms: int) -> dict[TopicPartition, int]:
        """Per partition, the offset of the first message published at or after the moment: the
        end of the partition if there is none yet, or if the broker cannot look timestamps up."""
        partitions = await self._partitions()
        ends = await consumer.end_offsets(partitions)
        try:
            found = await consumer.offsets_for_times({partition: moment_ms for partition in partitions})
        except UnsupportedVersionError:
            found = {}
        return {partition: found[partition].offset if found.get(partition) is not None else ends[partition]
                for partition in partitions}

    async def _partitions(self) -> list[TopicPartition]:
        """Asked of the broker each time: a consumer that subscribed to nothing has no topic's
        metadata on Apache Kafka. None of a topic that does not exist: nothing was published to it."""
        admin = AIOKafkaAdminClient(**self.kafka.client_options(), client_id=f"{self.group_id}-applied-through")
        await admin.start()
        try:
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        return [TopicPartition(self.topic, partition["partition"])
                for found in described if found["topic"] == self.topic for partition in found["partitions"]]

    async def _connected(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self.kafka.client_options(), group_id=self.group_id,
                                        client_id=f"{self.group_id}-applied-through", enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
