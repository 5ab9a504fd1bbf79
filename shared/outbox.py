"""The outbox: what a service emits is written in the transaction of the change that caused it,
and a relay publishes it afterwards.

`write_outbox` adds the rows inside the caller's transaction and notifies the database's relays
(PostgreSQL delivers a NOTIFY when the transaction commits, to every process listening, whichever
process wrote the rows). `OutboxRelay` (one active per service database, by advisory lock) reads
unpublished rows in id order, publishes them with acks=all and marks them published. A crash
between publishing and marking republishes the same event ids, which every consumer's inbox drops.
A row the broker can never take (larger than the producer's request limit, or refused by the
broker for good) is quarantined with its reason, so it does not hold up the rows behind it;
operators see it in `billing status`/`reconcile`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable, NamedTuple, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, KafkaError, OutOfOrderSequenceNumber, UnknownProducerId
from sqlalchemy import BigInteger, Integer, Table, bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.access.domain import ACTOR_HEADER
from shared.access.store import Change, record
from shared.db import (
    COPY_FROM_ROWS,
    CompiledOnce,
    Database,
    MessagingTables,
    advisory_lock_key,
    among,
    any_of,
    column_arrays,
    insert_rows,
    inserting,
)
from shared.events import Message, encode_event
from shared.loop import BackgroundLoop
from shared.settings import KafkaSettings, ServiceSettings


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    event: Message


# The channel each service database's relays listen on (NOTIFY is per database).
OUTBOX_CHANNEL = "outbox"


async def write_outbox(session: AsyncSession, tables: MessagingTables, outgoing: Sequence[Outgoing],
                       actor: str | None = None) -> None:
    """Add the rows in the caller's transaction; `actor` (who caused them) travels as a header."""
    if not outgoing:
        return
    rows = [(message.event.event_id, message.topic, message.event.key, encode_event(message.event), actor)
            for message in outgoing]
    if len(rows) < COPY_FROM_ROWS:
        await _writing(tables.outbox).execute(session, **column_arrays(_OUTBOX_COLUMNS, rows))
        return
    # Many rows go with COPY, which sends them in chunks: as one array parameter, the 5,000 payloads
    # of a rating batch over 5,000 contracts (about 7 MB) were encoded into one message at once,
    # which set the worker's peak memory.
    await insert_rows(session, tables.outbox, _OUTBOX_COLUMNS, rows)
    await session.execute(select(func.pg_notify(OUTBOX_CHANNEL, "")))


_OUTBOX_COLUMNS = ("event_id", "topic", "key", "payload", "actor")


@functools.cache
def _writing(outbox: Table) -> CompiledOnce:
    """The rows and the relays' notification in one statement: one round trip for a small batch."""
    written = inserting(outbox, _OUTBOX_COLUMNS).returning(outbox.c.id).cte("written")
    return CompiledOnce(select(func.pg_notify(OUTBOX_CHANNEL, "")).where(exists(select(written.c.id))))


async def operate(database: Database, tables: MessagingTables, use_case: Callable[..., Awaitable[list[Outgoing]]],
                  *args, audit: Table | None = None, change: Change | None = None) -> list[Outgoing]:
    """Run an operator's or an API's use case in one transaction with its events in the outbox and,
    when a person or token asked for it, `change` in the `audit` trail and its actor on the events."""
    async with database.transaction() as session:
        outgoing = await _not_written_before(session, tables, await use_case(session, *args))
        await write_outbox(session, tables, outgoing, change.actor.label if change else None)
        # A request sent again (the same request id, a resubmitted form) changes nothing: no record.
        if change is not None and outgoing:
            assert audit is not None, "a change is recorded in the database's audit trail"
            await record(session, audit, change)
    return outgoing


async def _not_written_before(session: AsyncSession, tables: MessagingTables,
                              outgoing: list[Outgoing]) -> list[Outgoing]:
    """The events whose ids are not in the outbox yet: a request's events derive their ids from its
    request id, so a repeated request finds them there (published or not)."""
    if not outgoing:
        return outgoing
    # One array parameter: a batch of contracts loaded at once has more events than PostgreSQL
    # takes parameters.
    written = set((await session.execute(select(tables.outbox.c.event_id).where(
        among(tables.outbox.c.event_id, [message.event.event_id for message in outgoing])))).scalars())
    return [message for message in outgoing if message.event.event_id not in written]


class _Pending(NamedTuple):
    """An outbox row to publish: the columns the relay reads, in this order."""

    id: int
    event_id: uuid.UUID
    topic: str
    key: str
    payload: bytes
    actor: str | None


# What the broker answers an idempotent producer whose sequence numbers are out of step with its
# own: the producer's state is wrong, not the row, so these quarantine nothing.
PRODUCER_OUT_OF_STEP = (OutOfOrderSequenceNumber, InvalidProducerEpoch, UnknownProducerId)


def is_permanent(error: BaseException) -> bool:
    """A send the broker will refuse however often it is retried (too large, invalid, not authorized)."""
    return isinstance(error, KafkaError) and not error.retriable and not isinstance(error, PRODUCER_OUT_OF_STEP)


class OutboxRelay:
    """Publishes a service's outbox to Kafka, in order, at least once.

    It has a plain aiokafka producer of its own: it only forwards bytes that were encoded when
    they were written, so the broker's per-message middleware would be pure overhead here.
    """

    def __init__(self, name: str, database: Database, tables: MessagingTables, kafka: KafkaSettings,
                 settings: ServiceSettings) -> None:
        self.database = database
        self.outbox = tables.outbox
        self.kafka = kafka
        self.client_id = f"{name}-outbox-relay"
        self.batch_size = settings.outbox_batch_size
        self.partition_batch_bytes = settings.outbox_partition_batch_bytes
        self.lock_key = advisory_lock_key(f"outbox-relay:{name}")
        self.log = logging.getLogger(f"billing.{name}.relay")
        self._producer: AIOKafkaProducer | None = None
        # Compiled once: a relay's transaction per consumer batch at a few dozen rows a batch, where
        # building, caching and compiling each statement cost as much CPU as its round trip.
        outbox = tables.outbox
        self._lock = CompiledOnce(select(func.pg_try_advisory_xact_lock(bindparam("lock_key", type_=BigInteger))))
        self._pending = CompiledOnce(
            select(*(outbox.c[name] for name in _Pending._fields))
            .where(outbox.c.published_at.is_(None), outbox.c.quarantined_at.is_(None))
            .order_by(outbox.c.id)
            .limit(bindparam("batch_size", type_=Integer)))
        self._published = CompiledOnce(update(outbox).where(any_of(outbox.c.id)).values(published_at=func.now()))
        # Woken by the database's notification when rows are committed, by any process (this
        # worker's consumers, the APIs, the webhook bridge, operators' commands), so they are
        # published at once. The poll only catches what arrived while the listener was reconnecting.
        self._listener: AsyncConnection | None = None
        self.loop = BackgroundLoop(self.client_id, self._tick, settings.outbox_poll_interval_s, self.log)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        await self._disconnect()
        await self._stop_listening()

    async def _disconnect(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _tick(self) -> bool:
        await self._listen()
        return await self.publish_pending() >= self.batch_size

    async def _listen(self) -> None:
        """Listen for committed rows on a connection of its own, again after it was lost."""
        if self._listener is not None and not self._listener.invalidated \
                and not (await self._listener.get_raw_connection()).driver_connection.is_closed():
            return
        await self._stop_listening()
        listener = await self.database.engine.connect()
        raw = (await listener.get_raw_connection()).driver_connection
        await raw.add_listener(OUTBOX_CHANNEL, lambda *_: self.loop.wake())
        self._listener = listener

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def _connected(self) -> AIOKafkaProducer:
        if self._producer is None:
            # Idempotent where the broker has it: a send retried after a lost acknowledgement is not
            # written twice. A batch resent after a crash still is; the consumers' inboxes drop that.
            producer = AIOKafkaProducer(**self.kafka.client_options(), client_id=self.client_id,
                                        acks="all", enable_idempotence=self.kafka.idempotent_producer, linger_ms=2,
                                        max_batch_size=self.partition_batch_bytes)
            await producer.start()
            self._producer = producer
        return self._producer

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows it took care of (0 if another relay is active)."""
        try:
            return await self._publish_batch(await self._connected())
        except Exception:
            # The batch is sent again, by a new producer: a send that failed after it was numbered
            # (timed out while the broker was away) leaves an idempotent producer's sequence ahead of
            # the broker's for good, and all its later sends fail (aio-libs/aiokafka#1017).
            await self._disconnect()
            raise

    async def _publish_batch(self, producer: AIOKafkaProducer) -> int:
        async with self.database.transaction() as session:
            # Held until commit: one relay per database publishes, so a key's rows keep their order.
            [(locked,)] = await self._lock.execute(session, lock_key=self.lock_key)
            if not locked:
                return 0
            rows = [_Pending(*row) for row in await self._pending.execute(session, batch_size=self.batch_size)]
            if not rows:
                return 0
            # send() only queues (in call order, so a key's rows keep their order); every
            # acknowledgement is awaited before the rows are marked published. A transient failure
            # raises, and the whole batch is sent again (the inboxes drop what arrived twice).
            refused: dict[int, BaseException] = {}
            deliveries = {}
            for row in rows:
                try:
                    deliveries[row.id] = await producer.send(
                        row.topic, row.payload, key=row.key.encode(),
                        headers=[(ACTOR_HEADER, row.actor.encode())] if row.actor else None)
                except Exception as error:
                    if not is_permanent(error):
                        raise
                    refused[row.id] = error
            outcomes = await asyncio.gather(*deliveries.values(), return_exceptions=True)
            for row_id, outcome in zip(deliveries, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not is_permanent(outcome):
                        raise outcome
                    refused[row_id] = outcome
            published = [row.id for row in rows if row.id not in refused]
            if published:
                await self._published.execute(session, id_values=published)
            for row in rows:
                if row.id in refused:
                    reason = f"{type(refused[row.id]).__name__}: {refused[row.id]}"[:2000]
                    self.log.error("outbox row %s (event %s to %s, %d bytes) quarantined: %s",
                                   row.id, row.event_id, row.topic, len(row.payload), reason)
                    await session.execute(update(self.outbox).where(self.outbox.c.id == row.id)
                                          .values(quarantined_at=func.now(), quarantine_reason=reason))
        return len(rows)
