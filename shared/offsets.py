"""A consumer's work behind its polls: each batch applied while the next one is polled and
decoded, and its offsets committed behind it, off the path of the next poll.

A worker has one core for itself and PostgreSQL another: while a batch's statements run in the
server, the worker's core would idle. So the next poll is fetched, validated and digested meanwhile
(`AppliedBehind`); its transaction still starts only once the one before it is committed, so the
batches of a partition are applied one at a time and in order, as before.

A batch's offsets are handed over only once its transaction is committed in PostgreSQL, so an
offset never runs ahead of a durable effect. The commit to the group coordinator (about 10 ms a
batch on Kafka) then runs in the background while the next poll is fetched and applied, instead of
in front of it. Whatever is lost on the way (a crash, a rebalance that revokes the partition) is
redelivered, and the inbox drops what was applied before: nothing twice, nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence

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


# A poll of fewer records is applied before the next poll, as without the overlap. The overlap pays
# where a consumer works off a backlog: full polls, whose statements take a while. At low traffic a
# poll holds the few events that arrived since the one before, its statements take a few
# milliseconds, and a poll right behind it mostly comes back empty, after which FastStream sleeps
# for its batch timeout before polling again: time the events arriving meanwhile would wait.
APPLIED_BEHIND_FROM_RECORDS = 100


class NotApplied(Exception):
    """A batch was not applied because the one before it failed; both are rewound."""


class AppliedBehind:
    """A consumer's batches applied one behind its polls (see the module's docstring).

    A batch whose transaction fails (the database away for longer than the retry window) is
    rewound: its partitions are sought back to its first records, so that the next poll delivers
    it again. The batch polled behind it meanwhile is not applied: it is rewound too, and where
    both have records of a partition, the earlier batch's first record wins. Nothing is skipped and
    the order holds.
    """

    def __init__(self, offsets: OffsetsBehind, log: logging.Logger,
                 behind_from: int = APPLIED_BEHIND_FROM_RECORDS) -> None:
        self.offsets = offsets
        self.log = log
        self.behind_from = behind_from
        self._applying: tuple[asyncio.Task[bool], Sequence[ConsumerRecord]] | None = None
        self._draining = False

    async def follow(self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord],
                     apply: Callable[[], Awaitable[None]]) -> None:
        """Apply `records` with `apply` once the batch before them is applied; returns when that one
        is and this one has begun, or, for a small batch or while draining, when this one is applied
        too (or has failed and rewound itself)."""
        if self._applying is not None:
            previous, previous_records = self._applying
            try:
                applied = await asyncio.shield(previous)
            except asyncio.CancelledError:
                rewind(consumer, records)  # the worker stops: this batch has not begun
                raise
            self._applying = None
            if not applied:
                rewind(consumer, previous_records, records)
                raise NotApplied(f"a batch of {len(records)} polled behind one that failed: both are rewound")
        task = asyncio.create_task(self._apply(consumer, records, apply))
        self._applying = (task, records)
        if self._draining or len(records) < self.behind_from:
            await asyncio.shield(task)
            self._applying = None  # done before the next poll: no batch was polled behind it

    async def drain(self) -> None:
        """Let the batch being applied finish and its offsets be committed; from now on, apply each
        batch before the next poll (the worker is stopping)."""
        self._draining = True
        if self._applying is not None:
            await asyncio.shield(self._applying[0])
        await self.offsets.flush()

    async def _apply(self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord],
                     apply: Callable[[], Awaitable[None]]) -> bool:
        try:
            await apply()
        except BaseException as error:
            rewind(consumer, records)
            if isinstance(error, Exception):
                self.log.error("a batch of %d was not applied; rewound, it is delivered again", len(records),
                               exc_info=error)
                return False
            raise
        self.offsets.applied(consumer, records)
        return True


def rewind(consumer: AIOKafkaConsumer, *batches: Sequence[ConsumerRecord]) -> None:
    """Seek each partition (still assigned) of `batches` back to its earliest record in them, so
    that the next poll delivers them again."""
    earliest: dict[TopicPartition, int] = {}
    for records in batches:
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            earliest[partition] = min(earliest.get(partition, record.offset), record.offset)
    assigned = consumer.assignment()
    for partition, offset in earliest.items():
        if partition in assigned:  # a revoked one is redelivered to its new owner from its committed offset
            consumer.seek(partition, offset)
