"""Consumer offsets committed behind the batches already applied, off the path of the next poll.

A batch's offsets are handed over only once its transaction is committed in PostgreSQL, so an
offset never runs ahead of a durable effect. The commit to the group coordinator (about 10 ms a
batch on Kafka) then runs in the background while the next poll is fetched and applied, instead of
in front of it. Whatever is lost on the way (a crash, a rebalance that revokes the partition) is
redelivered, and the inbox drops what was applied before: nothing twice, nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError


class OffsetsBehind:
    """One consumer's applied offsets, committed one request at a time, newest merged in."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._consumer: AIOKafkaConsumer | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._committing: asyncio.Task[None] | None = None

    def applied(self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord]) -> None:
        """`records` are durably applied: their offsets may be committed."""
        self._consumer = consumer
        # By plain (topic, partition) pairs: a batch holds thousands of records of a few partitions.
        last: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            if last.get(key, -1) < record.offset:
                last[key] = record.offset
        for (topic, number), offset in last.items():
            partition = TopicPartition(topic, number)
            self._pending[partition] = max(self._pending.get(partition, 0), offset + 1)
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_pending())

    async def flush(self) -> None:
        """Wait until what was handed over is committed (or given up on)."""
        if self._committing is not None:
            await self._committing

    async def _commit_pending(self) -> None:
        # One request in flight at a time, so a later commit is never overtaken by an earlier one.
        while self._pending and self._consumer is not None:
            offsets, self._pending = self._pending, {}
            assigned = self._consumer.assignment()
            offsets = {partition: offset for partition, offset in offsets.items() if partition in assigned}
            if not offsets:
                continue
            try:
                await self._consumer.commit(offsets)
            except KafkaError as error:
                # Revoked in a rebalance, or the coordinator away: the next batch's commit carries
                # higher offsets; the partition's new owner redelivers the rest to its inbox.
                self.log.warning("offsets %s not committed (%s): redelivered unless a later commit covers them",
                                 {f"{p.topic}[{p.partition}]": o for p, o in offsets.items()}, error)
