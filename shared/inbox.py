"""The inbox: every consumed message is applied exactly once, or refused, or parked; never stuck.

Applying a poll of messages (`Consumer.consume_batch`; a single message is a batch of one):
  1. decode and validate each against its schema; bad input goes to the dead-letter topic;
  2. in ONE database transaction: claim the event ids in the inbox (already there: a duplicate,
     dropped), apply the service's use case to the new events, write the events it emits to the
     outbox, and record the events it cannot apply yet as parked;
  3. hand its offsets over, to be committed behind it (shared.offsets); a batch that fails is
     rewound and redelivered.
Step 1 of the next poll runs while step 2 of this one waits for the database (shared.offsets).
A crash before 2 commits leaves no trace and the messages are redelivered; a crash after it makes
the redelivery a no-op thanks to the inbox. Offsets are never committed before the effect is
durable. What a use case does with each event is one of three outcomes:
  - applied: its effects and outgoing events are committed;
  - refused (`Rejected`): nothing of it is written, it is dead-lettered with the reason, and its
    inbox claim is removed so that a replay after a fix is applied;
  - parked (`DependencyNotReady`): it needs something that has not arrived (a payment a chargeback
    takes back, a contract snapshot). It is stored in the service's `parked` table with what it
    waits for, its offset is committed so the partition moves on, and it is re-driven through this
    same path: at once when a message of the same key (contract) is applied, and otherwise on a
    backoff schedule; after `<SERVICE>_PARK_TIMEOUT_S` it is dead-lettered with its reason.
Infrastructure failures (database or broker unreachable, serialization failures) are retried with
capped backoff and then rewound, never skipped. A message that breaks the use case makes the batch
fall back to one transaction per message, so that only that one is dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar

import asyncpg
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from faststream.kafka import KafkaBroker
from sqlalchemy import String, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_exponential

from shared import metrics, topics
from shared.db import (
    COPY_FROM_ROWS,
    CompiledOnce,
    Database,
    MessagingTables,
    any_of,
    column_arrays,
    insert_rows,
    unnested,
)
from shared.errors import DependencyNotReady, Rejected
from shared.events import DeadLetter, InvalidMessage, Message, derive_id, encode_event, parse_event
from shared.logs import about_message
from shared.loop import BackgroundLoop
from shared.outbox import Outgoing, write_outbox
from shared.settings import ServiceSettings

E = TypeVar("E", bound=Message)

# What the inbox records of each event it claims (besides the consumer's name).
CLAIMED_COLUMNS = ("event_id", "payload_digest")

# Dead letters keep the offending payload whole up to this size (as text, or base64 when it is not
# UTF-8), so that any message a consumer can have read is replayable: the dead letter itself must
# stay below the broker's default message limit of 1 MiB.
DEAD_LETTER_PAYLOAD_LIMIT = 768 * 1024


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a use case did with a batch of events.

    `rejected` maps the event ids it refused to why, `parked` those it cannot apply yet to what
    they wait for; none of their effects may have been written (decide in the pure domain first,
    then write), since the others' commit.
    """

    outgoing: Sequence[Outgoing] = ()
    rejected: Mapping[uuid.UUID, Rejected] = field(default_factory=dict)
    parked: Mapping[uuid.UUID, DependencyNotReady] = field(default_factory=dict)


Apply = Callable[[AsyncSession, E], Awaitable[Sequence[Outgoing]]]
# A polled record, the event it holds (validated) and the digest of the event's content.
Decoded = tuple[ConsumerRecord, Message, str]
# Applies new (not yet applied) events of one topic, in offset order, in one transaction.
ApplyBatch = Callable[[AsyncSession, Sequence[E]], Awaitable[BatchOutcome]]


def each_in_savepoint(apply: Apply[E]) -> ApplyBatch[E]:
    """A per-event use case as a batch handler: the batch shares one commit, and each event runs in
    a savepoint of its own, so an event it refuses or parks leaves no trace while the others stay."""

    async def apply_each(session: AsyncSession, events: Sequence[E]) -> BatchOutcome:
        outgoing: list[Outgoing] = []
        rejected: dict[uuid.UUID, Rejected] = {}
        parked: dict[uuid.UUID, DependencyNotReady] = {}
        for event in events:
            try:
                with about_message(event_id=event.event_id):
                    async with session.begin_nested():
                        outgoing += await apply(session, event)
            except Rejected as refusal:
                rejected[event.event_id] = refusal
            except DependencyNotReady as waiting:
                parked[event.event_id] = waiting
        return BatchOutcome(outgoing, rejected, parked)

    apply_each.__name__ = apply.__name__
    return apply_each


# SQLSTATEs that mean "try again later", not "this message is bad": connection failures (08),
# serialization failures and deadlocks (40), server shutting down or starting (57P), resources (53).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "57P", "53")
_TRANSIENT_TYPES = (
    OSError,
    asyncio.TimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # The client's protocol with a connection out of step, never the message: a pooled connection
    # the server terminated while it shut down, taken before asyncpg saw the socket close ("cannot
    # switch to state 15; another operation (2) is in progress"), or a statement cache gone stale.
    asyncpg.exceptions.InternalClientError,
)


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what it wraps: SQLAlchemy's `.orig` and explicit `raise ... from` causes."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return chain


def is_transient(error: BaseException) -> bool:
    """Whether retrying later may succeed (infrastructure), as opposed to a bad message or a bug.

    asyncpg errors reach us both wrapped in SQLAlchemy's DBAPIError and raw (connection setup),
    so every error in the chain is asked for its type and SQLSTATE.
    """
    for cause in _causes(error):
        if isinstance(cause, _TRANSIENT_TYPES):
            return True
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return True
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return True
    return False


def retrying_transient(max_delay_s: float = 120.0,
                       before_sleep: Callable[[RetryCallState], None] | None = None) -> AsyncRetrying:
    """Retry transient failures with capped exponential backoff; anything else raises at once.

    After `max_delay_s` the error propagates and the batch is rewound, so the message is redelivered
    and retried again: a long database outage stalls the partition instead of losing messages.
    """
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.1, max=5),
        stop=stop_after_delay(max_delay_s),
        before_sleep=before_sleep,
        reraise=True,
    )


# A parked message is tried again after 2, 4, 8 ... seconds, at most this far apart (and at once
# when a message of its key is applied).
MAX_PARK_BACKOFF_S = 60


@dataclass
class _Applied:
    """What one transaction over a batch decided, per record."""

    refused: list[tuple[ConsumerRecord, Rejected]] = field(default_factory=list)
    parked: list[ConsumerRecord] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)


class Consumer:
    """Applies messages of one consumer group to one service database, each exactly once."""

    def __init__(self, name: str, schema: type[E], apply_batch: ApplyBatch[E], database: Database,
                 tables: MessagingTables, broker: KafkaBroker, settings: ServiceSettings,
                 on_commit: Callable[[_Applied, Sequence[Outgoing]], None]) -> None:
        self.name = name
        self.schema = schema
        self.apply_batch = apply_batch
        self.database = database
        self.tables = tables
        self.broker = broker
        self.retry_window_s = settings.retry_window_s
        self.max_future_skew = timedelta(seconds=settings.max_future_skew_s)
        self.park_timeout_s = settings.park_timeout_s
        self.redrive_batch = settings.batch_max_records
        self.on_commit = on_commit
        self.log = logging.getLogger(f"billing.{name}")
        # One statement with two array parameters, however big the batch: no per-row parameters.
        inbox = tables.inbox
        self._claim_new = CompiledOnce(
            pg_insert(inbox).from_select([*CLAIMED_COLUMNS, "consumer"], unnested(inbox, CLAIMED_COLUMNS).add_columns(
                bindparam("consumer", type_=String))).on_conflict_do_nothing().returning(inbox.c.event_id))
        # Every batch's statements are compiled once: at a few dozen messages a batch, building,
        # caching and compiling one cost as much CPU as its round trip.
        parked = tables.parked
        self._unpark = CompiledOnce(delete(parked).where(parked.c.consumer == bindparam("consumer", type_=String),
                                                         any_of(parked.c.event_id)))

    async def consume_batch(self, records: Sequence[ConsumerRecord]) -> None:
        """Apply a polled batch in ONE transaction: one commit (and fsync) for hundreds of messages."""
        await self.apply_decoded(records, await self.decode_batch(records))

    async def decode_batch(self, records: Sequence[ConsumerRecord]) -> list[Decoded]:
        """Each record validated against the schema, with its content's digest; what is invalid is
        dead-lettered. The part of a batch that needs no database: a worker does it while the
        previous batch's transaction runs (shared.offsets.AppliedBehind)."""
        latest_accepted = datetime.now(UTC) + self.max_future_skew
        decoded: list[Decoded] = []
        with self._about(records):
            for record in records:
                try:
                    event = self._parse(record.value or b"", latest_accepted)
                except (InvalidMessage, Rejected) as error:
                    await self.dead_letter_record(record, error)
                else:
                    decoded.append((record, event, _digest(event)))
        return decoded

    async def apply_decoded(self, records: Sequence[ConsumerRecord], decoded: Sequence[Decoded]) -> None:
        """Apply the decoded messages of a polled batch (`records`) in one transaction."""
        if decoded:
            with self._about(records):
                await self._apply_parsed(decoded)

    def _about(self, records: Sequence[ConsumerRecord]) -> AbstractContextManager[None]:
        one = records[0] if len(records) == 1 else None
        return about_message(consumer=self.name, topic=records[0].topic if records else None,
                             partition=one and one.partition, offset=one and one.offset)

    def _parse(self, payload: bytes, latest_accepted: datetime) -> Message:
        event = parse_event(self.schema, payload)
        if event.occurred_at > latest_accepted:
            raise Rejected(f"occurred_at {event.occurred_at.isoformat()} is too far in the future")
        return event

    async def _apply_parsed(self, parsed: Sequence[Decoded]) -> None:
        try:
            applied = await self._apply_retrying(parsed)
        except Exception as error:
            if is_transient(error):
                raise  # the whole batch is rewound, redelivered and retried, never skipped
            if len(parsed) > 1:
                self.log.warning("a batch of %d failed (%s); applying its messages one by one", len(parsed), error)
                for one in parsed:
                    await self._apply_parsed([one])
                return
            [(record, event, _)] = parsed
            with about_message(partition=record.partition, offset=record.offset, event_id=event.event_id):
                if isinstance(error, DependencyNotReady):
                    await self._park_alone(record, event, error)
                    return
                if not isinstance(error, (InvalidMessage, Rejected)):
                    # A message that breaks the code must not block the partition behind it: dead-letter
                    # it with the error so it can be replayed once the defect is fixed.
                    self.log.error("unexpected error applying a message; dead-lettering it", exc_info=error)
                await self.dead_letter_record(record, error)
            return
        for record, reason in applied.refused:
            await self.dead_letter_record(record, reason)

    async def _apply_retrying(self, parsed: Sequence[Decoded]) -> _Applied:
        """`_apply_batch_once`, retried while it fails transiently (`retrying_transient`).

        The first attempt goes without the retry machinery: tenacity keeps a retry's state in a
        reference cycle, some thirty objects a batch left for the garbage collector, which freed
        them (with the database sessions' own, since gone) in one pause of about 60 ms every few
        seconds at 1,000 events/s, the slowest percent of the events arriving meanwhile."""
        try:
            return await self._apply_batch_once(parsed)
        except Exception as error:
            if not is_transient(error):
                raise
            self._retried("at once", error)
        async for attempt in retrying_transient(self.retry_window_s, self._retrying):
            with attempt:
                applied = await self._apply_batch_once(parsed)
        return applied

    def _retrying(self, state: RetryCallState) -> None:
        self._retried(f"in {state.upcoming_sleep:.1f}s (attempt {state.attempt_number})",
                      state.outcome.exception() if state.outcome else "")

    def _retried(self, when: str, error: object) -> None:
        metrics.RETRIES.labels(self.name).inc()
        self.log.warning("retrying a batch %s: %s", when, error)

    async def _apply_batch_once(self, parsed: Sequence[Decoded]) -> _Applied:
        """One transaction over the batch; returns what it refused and parked (and the keys it applied)."""
        inbox = self.tables.inbox
        applied = _Applied()
        first: dict[uuid.UUID, Decoded] = {}
        for record, event, digest in parsed:
            seen = first.get(event.event_id)
            if seen is None:
                first[event.event_id] = (record, event, digest)
            elif seen[2] != digest:
                applied.refused.append((record, _reused_id(event)))
        async with self.database.transaction() as session:
            claimed = await self._claim(session, [(event_id, digest) for event_id, (_, _, digest) in first.items()])
            # Mostly every event is new: then no lookup per event (asyncpg's UUIDs hash slowly).
            earlier = [] if len(claimed) == len(first) else [event_id for event_id in first if event_id not in claimed]
            if earlier:
                done = dict((await session.execute(
                    select(inbox.c.event_id, inbox.c.payload_digest)
                    .where(inbox.c.consumer == self.name, inbox.c.event_id.in_(earlier))
                )).all())
                for event_id in earlier:
                    record, event, digest = first[event_id]
                    if done.get(event_id) != digest:
                        applied.refused.append((record, _reused_id(event)))
                self.log.info("%d event(s) already applied; skipping the duplicates", len(earlier))
            new = [(record, event) for record, event, _ in first.values() if not earlier or event.event_id in claimed]
            outcome = await self.apply_batch(session, [event for _, event in new]) if new else BatchOutcome()
            waiting = dict(outcome.parked)
            # Unclaimed, so that a replay after a fix (or the re-drive of a parked one) is applied, not dropped.
            unclaimed = [*outcome.rejected, *waiting]
            if unclaimed:
                await session.execute(delete(inbox).where(inbox.c.consumer == self.name,
                                                          inbox.c.event_id.in_(unclaimed)))
            # Whatever is settled now (applied, refused or a duplicate) is no longer parked.
            await self._unpark.execute(session, consumer=self.name, event_id_values=[
                event_id for event_id in first if event_id not in waiting] if waiting else list(first))
            for record, event in new:
                if event.event_id in outcome.rejected:
                    applied.refused.append((record, outcome.rejected[event.event_id]))
                elif event.event_id in waiting:
                    applied.parked.append(record)
                    await self._park(session, record, event, waiting[event.event_id])
                else:
                    applied.keys.add(event.key)
            await write_outbox(session, self.tables, outcome.outgoing)
        self.on_commit(applied, outcome.outgoing)
        return applied

    async def _claim(self, session: AsyncSession, claims: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
        """Claim (event id, payload digest) pairs in the inbox; returns the ids not claimed before.

        A big batch is nearly always all new, and COPY claims it for about half of what the
        conflict-tolerant INSERT costs (5,000 usage events: 16-35 ms instead of 35-53, and no ids
        sent back), in a savepoint: if one was claimed before, nothing of the COPY stays and the
        INSERT claims the others. A small batch takes the INSERT at once: there the savepoint's
        two round trips would cost more than COPY saves."""
        if len(claims) >= COPY_FROM_ROWS:
            try:
                async with session.begin_nested():
                    await insert_rows(session, self.tables.inbox, (*CLAIMED_COLUMNS, "consumer"),
                                      [(*claim, self.name) for claim in claims])
                return {event_id for event_id, _ in claims}
            except asyncpg.exceptions.UniqueViolationError:
                self.log.info("a batch of %d holds events claimed before; claiming the others", len(claims))
        return {row[0] for row in await self._claim_new.execute(
            session, consumer=self.name, **column_arrays(CLAIMED_COLUMNS, claims))}

    async def _park(self, session: AsyncSession, record: ConsumerRecord, event: Message,
                    waiting: DependencyNotReady) -> None:
        """Record (or, re-driven, record again) a message that waits for something, with when to try next."""
        parked = self.tables.parked
        statement = pg_insert(parked).values(
            consumer=self.name, event_id=event.event_id, topic=record.topic, partition=record.partition,
            offset=record.offset, key=event.key, payload=bytes(record.value or b""), waiting_for=str(waiting)[:2000],
            next_attempt_at=func.now() + timedelta(seconds=2),
        )
        await session.execute(statement.on_conflict_do_update(
            index_elements=[parked.c.consumer, parked.c.event_id],
            set_={"attempts": parked.c.attempts + 1, "waiting_for": statement.excluded.waiting_for,
                  "next_attempt_at": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, func.least(
                      func.power(2, parked.c.attempts + 2), MAX_PARK_BACKOFF_S))},
        ))
        with about_message(consumer=self.name, topic=record.topic, partition=record.partition, offset=record.offset,
                           event_id=event.event_id):
            self.log.info("parked %s %s[%s]@%s: %s", event.event_id, record.topic, record.partition, record.offset,
                          waiting)

    async def _park_alone(self, record: ConsumerRecord, event: Message, waiting: DependencyNotReady) -> None:
        async with self.database.transaction() as session:
            await self._park(session, record, event, waiting)
        self.on_commit(_Applied(parked=[record]), ())

    async def redrive(self, keys: Iterable[str]) -> bool:
        """Apply again the parked messages that are due, or whose key (contract) just saw a message
        applied; dead-letter those that waited past the timeout. True if more may be due at once."""
        parked = self.tables.parked
        expiry = parked.c.parked_at <= func.now() - timedelta(seconds=self.park_timeout_s)
        async with self.database.transaction() as session:
            await session.execute(text("SET TRANSACTION READ ONLY"))
            rows = (await session.execute(
                select(parked.c.event_id, parked.c.topic, parked.c.partition, parked.c.offset, parked.c.key,
                       parked.c.payload, parked.c.waiting_for, expiry.label("expired"))
                .where(parked.c.consumer == self.name,
                       (parked.c.next_attempt_at <= func.now()) | parked.c.key.in_(list(keys)) | expiry)
                .order_by(parked.c.parked_at)
                .limit(self.redrive_batch)
            )).all()
        if not rows:
            return False
        expired = [row for row in rows if row.expired]
        for row in expired:
            await self.dead_letter_record(_record(row), DependencyNotReady(
                f"still parked after {self.park_timeout_s:.0f}s, waiting for: {row.waiting_for}; "
                "replay it once that exists"))
        if expired:
            async with self.database.transaction() as session:
                await session.execute(delete(parked).where(parked.c.consumer == self.name,
                                                           parked.c.event_id.in_([row.event_id for row in expired])))
        await self.consume_batch([_record(row) for row in rows if not row.expired])
        return len(rows) >= self.redrive_batch

    async def dead_letter_record(self, record: ConsumerRecord, error: BaseException) -> None:
        letter = dead_letter(self.name, record, error)
        with about_message(consumer=self.name, topic=record.topic, partition=record.partition, offset=record.offset):
            self.log.warning("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset,
                             letter.reason)
        # Published directly rather than through the outbox: there is no database effect to keep
        # atomic with it, and if publishing fails the message is not acked and comes back.
        async for attempt in retrying_transient():
            with attempt:
                await self.broker.publish(encode_event(letter), topics.DEAD_LETTERS,
                                          key=letter.key.encode() if letter.key else None)
        metrics.DEAD_LETTERS.labels(self.name, letter.error_type).inc()


def dead_letter(consumer: str, record: ConsumerRecord, error: BaseException) -> DeadLetter:
    """The dead letter of `record`: where it came from, why, and its payload, whole where it fits."""
    payload = bytes(record.value or b"")
    try:
        kept, encoding = payload.decode("utf-8"), "utf-8"
        truncated = len(payload) > DEAD_LETTER_PAYLOAD_LIMIT
        if truncated:
            kept = payload[:DEAD_LETTER_PAYLOAD_LIMIT].decode("utf-8", errors="ignore")
    except UnicodeDecodeError:
        raw_limit = DEAD_LETTER_PAYLOAD_LIMIT // 4 * 3  # base64 grows by a third
        kept, encoding = base64.b64encode(payload[:raw_limit]).decode(), "base64"
        truncated = len(payload) > raw_limit
    return DeadLetter(
        event_id=derive_id(f"{record.topic}:{record.partition}:{record.offset}", f"dead-letter:{consumer}"),
        occurred_at=datetime.now(UTC),
        consumer=consumer,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode(errors="replace") if record.key else None,
        reason=str(error)[:2000] or type(error).__name__,
        error_type=type(error).__name__,
        payload=kept,
        payload_encoding=encoding,
        payload_truncated=truncated,
    )


def _record(row) -> ConsumerRecord:
    """A parked message as the record it was consumed as, so it goes down the same path again."""
    payload = bytes(row.payload)
    key = row.key.encode() if row.key else None
    return ConsumerRecord(topic=row.topic, partition=row.partition, offset=row.offset, timestamp=0,
                          timestamp_type=0, key=key, value=payload, checksum=None,
                          serialized_key_size=len(key or b""), serialized_value_size=len(payload), headers=())


class ParkedRedrive:
    """The worker's loop that re-drives its consumers' parked messages (`Consumer.redrive`).

    Consumers tell it what they committed: a parked message makes it look again, an applied
    message wakes it for that message's key, since what a parked message waits for is nearly
    always a message of the same contract. Rows parked by other workers are found by polling.
    """

    def __init__(self, name: str, interval_s: float) -> None:
        self.consumers: list[Consumer] = []
        self.log = logging.getLogger(f"billing.{name}.parked")
        self.loop = BackgroundLoop(f"{name}-parked-redrive", self._tick, interval_s, self.log)
        self._keys: set[str] = set()
        # Whether any consumer may hold parked rows; until a tick has looked, assume so.
        self._maybe_parked = True

    def committed(self, applied: _Applied) -> None:
        # A message parked in the same batch as what it waits for (a chargeback just before its
        # payment) is re-driven at once too.
        if applied.parked:
            self._maybe_parked = True
        if self._maybe_parked and applied.keys:
            self._keys |= applied.keys
            self.loop.wake()

    async def _tick(self) -> bool:
        keys, self._keys = self._keys, set()
        more = False
        found = False
        for consumer in self.consumers:
            due = await consumer.redrive(keys)
            more = more or due
            found = found or await _has_parked(consumer)
        self._maybe_parked = found
        return more


async def _has_parked(consumer: Consumer) -> bool:
    parked = consumer.tables.parked
    async with consumer.database.transaction() as session:
        return await session.scalar(select(select(parked.c.event_id).where(parked.c.consumer == consumer.name)
                                           .exists())) or False


def _digest(event: Message) -> str:
    return hashlib.sha256(encode_event(event)).hexdigest()


def _reused_id(event: Message) -> Rejected:
    return Rejected(f"event {event.event_id} was already applied with different content; "
                    "an event id must never be reused for a changed event")
