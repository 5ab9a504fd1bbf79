"""The messaging edge every service reuses: consume exactly once, publish through an outbox.

Consuming one message (`Consumer.consume`):
  1. decode and validate it against its schema; bad input goes to the dead-letter topic;
  2. in ONE database transaction: claim the event id in the inbox (already there: nothing to
     do), apply the service's effect, and write the events it emits to the outbox;
  3. return, after which FastStream commits the offset (AckPolicy.NACK_ON_ERROR).
A crash before 2 commits leaves no trace and the message is redelivered; a crash after it
commits makes the redelivery a no-op thanks to the inbox. Offsets are never committed before
the effect is durable. Batch consumers (`Consumer.consume_batch`) do the same for a whole poll
of messages in one transaction, which is what makes a stage fast: one commit per batch.

Publishing (`OutboxRelay`): one relay per service database at a time (an advisory lock) reads
unpublished outbox rows in id order, publishes them with acks=all and marks them published.
A crash between publishing and marking republishes the same event ids, which every consumer's
inbox drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from shared import topics
from shared.errors import DependencyNotReady, Rejected
from shared.db import Database, MessagingTables, advisory_lock_key, migrate
from shared.events import DeadLetter, Event, InvalidMessage, derive_id, encode_event, parse_event
from shared.settings import KafkaSettings, ServiceSettings

E = TypeVar("E", bound=Event)

# Dead letters keep this much of the offending payload; enough to see what was wrong.
DEAD_LETTER_PAYLOAD_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    event: Event


Apply = Callable[[AsyncSession, E], Awaitable[Sequence[Outgoing]]]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch handler did with its events.

    `rejected` maps the event ids it refused to why; none of a refused event's effects may have
    been written (decide in the pure domain first, then write), since the others' commit.
    """

    outgoing: Sequence[Outgoing] = ()
    rejected: Mapping[uuid.UUID, Rejected] = field(default_factory=dict)


# Applies new (not yet applied) events of one topic, in offset order, in one transaction.
ApplyBatch = Callable[[AsyncSession, Sequence[E]], Awaitable[BatchOutcome]]


def each_in_savepoint(apply: Apply[E]) -> ApplyBatch[E]:
    """A per-event use case as a batch handler: the batch shares one commit, and each event runs in
    a savepoint of its own, so an event it refuses leaves no trace while the others stay applied."""

    async def apply_each(session: AsyncSession, events: Sequence[E]) -> BatchOutcome:
        outgoing: list[Outgoing] = []
        rejected: dict[uuid.UUID, Rejected] = {}
        for event in events:
            try:
                async with session.begin_nested():
                    outgoing += await apply(session, event)
            except Rejected as refusal:
                rejected[event.event_id] = refusal
        return BatchOutcome(outgoing, rejected)

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
    DependencyNotReady,
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


def retrying_transient(max_delay_s: float = 120.0) -> AsyncRetrying:
    """Retry transient failures with capped exponential backoff; anything else raises at once.

    After `max_delay_s` the error propagates and FastStream nacks, so the message is redelivered
    and retried again: a long database outage stalls the partition instead of losing messages.
    """
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.1, max=5),
        stop=stop_after_delay(max_delay_s),
        reraise=True,
    )


class Consumer:
    """Applies messages of one consumer group to one service database, each exactly once."""

    def __init__(self, name: str, database: Database, tables: MessagingTables, broker: KafkaBroker,
                 settings: ServiceSettings, relay: OutboxRelay) -> None:
        self.name = name
        self.database = database
        self.tables = tables
        self.broker = broker
        self.relay = relay
        self.retry_window_s = settings.retry_window_s
        self.max_future_skew = timedelta(seconds=settings.max_future_skew_s)
        self.log = logging.getLogger(f"billing.{name}")

    async def consume(self, message: KafkaMessage, schema: type[E], apply: Apply[E]) -> None:
        try:
            event = self._parse(schema, message.body)
            async for attempt in retrying_transient(self.retry_window_s):
                with attempt:
                    await self._apply_once(event, apply)
        except Exception as error:
            if is_transient(error) and not isinstance(error, DependencyNotReady):
                raise  # nack: redelivered and retried, never skipped
            await self._park(message.raw_message, error)

    async def _apply_once(self, event: E, apply: Apply[E]) -> None:
        async with self.database.transaction() as session:
            if not await self._claim(session, event):
                return
            outgoing = await apply(session, event)
            await write_outbox(session, self.tables, outgoing)
        if outgoing:
            self.relay.wake()

    async def _claim(self, session: AsyncSession, event: Event) -> bool:
        inbox = self.tables.inbox
        digest = _digest(event)
        claimed = await session.execute(
            pg_insert(inbox)
            .values(consumer=self.name, event_id=event.event_id, payload_digest=digest)
            .on_conflict_do_nothing()
            .returning(inbox.c.event_id)
        )
        if claimed.first() is not None:
            return True
        applied_digest = await session.scalar(
            select(inbox.c.payload_digest).where(
                inbox.c.consumer == self.name, inbox.c.event_id == event.event_id
            )
        )
        if applied_digest != digest:
            raise _reused_id(event)
        self.log.info("event %s already applied; skipping the duplicate", event.event_id)
        return False

    async def consume_batch(self, records: Sequence[ConsumerRecord], schema: type[E],
                            apply_batch: ApplyBatch[E]) -> None:
        """Apply a polled batch in ONE transaction: one commit (and fsync) for hundreds of messages.

        Bad messages are dead-lettered and the rest go on; duplicates (within the batch or applied
        before) are dropped; events the handler refuses are dead-lettered and their inbox claims
        removed, so a replay after a fix applies them. A message that breaks the handler makes the
        batch fall back to one transaction per message, so that only it is dead-lettered.
        """
        parsed: list[tuple[ConsumerRecord, E]] = []
        for record in records:
            try:
                parsed.append((record, self._parse(schema, record.value or b"")))
            except (InvalidMessage, Rejected) as error:
                await self.dead_letter_record(record, error)
        if parsed:
            await self._apply_parsed(parsed, apply_batch)

    async def _apply_parsed(self, parsed: Sequence[tuple[ConsumerRecord, E]], apply_batch: ApplyBatch[E]) -> None:
        try:
            async for attempt in retrying_transient(self.retry_window_s):
                with attempt:
                    refused = await self._apply_batch_once(parsed, apply_batch)
        except Exception as error:
            if is_transient(error) and not isinstance(error, DependencyNotReady):
                raise  # nack: the whole batch is redelivered and retried, never skipped
            if len(parsed) == 1:
                await self._park(parsed[0][0], error)
                return
            self.log.warning("a batch of %d failed (%s); applying its messages one by one", len(parsed), error)
            for one in parsed:
                await self._apply_parsed([one], apply_batch)
            return
        for record, reason in refused:
            await self.dead_letter_record(record, reason)

    async def _park(self, record: ConsumerRecord, error: BaseException) -> None:
        """Dead-letter a message that cannot be applied now, so the partition behind it moves on."""
        if isinstance(error, DependencyNotReady):
            # Waiting longer would block every message behind this one on the partition.
            error = DependencyNotReady(
                f"{error} (still missing after {self.retry_window_s:.0f}s; replay this once it exists)")
        elif not isinstance(error, (InvalidMessage, Rejected)):
            # A message that breaks the code must not block the partition behind it: park it with
            # the error so it can be replayed once the defect is fixed.
            self.log.error("unexpected error applying a message; dead-lettering it", exc_info=error)
        await self.dead_letter_record(record, error)

    def _parse(self, schema: type[E], payload: bytes) -> E:
        event = parse_event(schema, payload)
        if event.occurred_at > datetime.now(UTC) + self.max_future_skew:
            raise Rejected(f"occurred_at {event.occurred_at.isoformat()} is too far in the future")
        return event

    async def _apply_batch_once(self, parsed: Sequence[tuple[ConsumerRecord, E]],
                                apply_batch: ApplyBatch[E]) -> list[tuple[ConsumerRecord, Rejected]]:
        """One transaction; returns the records refused (their effects were not written)."""
        inbox = self.tables.inbox
        refused: list[tuple[ConsumerRecord, Rejected]] = []
        first: dict[uuid.UUID, tuple[ConsumerRecord, E, str]] = {}
        for record, event in parsed:
            digest = _digest(event)
            seen = first.get(event.event_id)
            if seen is None:
                first[event.event_id] = (record, event, digest)
            elif seen[2] != digest:
                refused.append((record, _reused_id(event)))
        async with self.database.transaction() as session:
            claimed = set((await session.execute(
                pg_insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id),
                [{"consumer": self.name, "event_id": event_id, "payload_digest": digest}
                 for event_id, (_, _, digest) in first.items()],
            )).scalars())
            earlier = [event_id for event_id in first if event_id not in claimed]
            if earlier:
                applied = dict((await session.execute(
                    select(inbox.c.event_id, inbox.c.payload_digest)
                    .where(inbox.c.consumer == self.name, inbox.c.event_id.in_(earlier))
                )).all())
                for event_id in earlier:
                    record, event, digest = first[event_id]
                    if applied.get(event_id) != digest:
                        refused.append((record, _reused_id(event)))
                self.log.info("%d event(s) already applied; skipping the duplicates", len(earlier))
            new = [(record, event) for record, event, _ in first.values() if event.event_id in claimed]
            if not new:
                return refused
            outcome = await apply_batch(session, [event for _, event in new])
            if outcome.rejected:
                # Unclaimed, so that a replay after a fix is applied rather than dropped as a duplicate.
                await session.execute(delete(inbox).where(inbox.c.consumer == self.name,
                                                          inbox.c.event_id.in_(list(outcome.rejected))))
                refused += [(record, outcome.rejected[event.event_id]) for record, event in new
                            if event.event_id in outcome.rejected]
            await write_outbox(session, self.tables, outcome.outgoing)
        if outcome.outgoing:
            self.relay.wake()
        return refused

    async def dead_letter_record(self, record: ConsumerRecord, error: BaseException) -> None:
        payload = bytes(record.value or b"")
        key = record.key.decode(errors="replace") if record.key else None
        letter = DeadLetter(
            event_id=derive_id(f"{record.topic}:{record.partition}:{record.offset}", f"dead-letter:{self.name}"),
            occurred_at=datetime.now(UTC),
            consumer=self.name,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            reason=str(error)[:2000] or type(error).__name__,
            error_type=type(error).__name__,
            payload=payload[:DEAD_LETTER_PAYLOAD_LIMIT].decode("utf-8", errors="backslashreplace"),
            payload_truncated=len(payload) > DEAD_LETTER_PAYLOAD_LIMIT,
        )
        self.log.warning(
            "dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset, letter.reason
        )
        # Published directly rather than through the outbox: there is no database effect to keep
        # atomic with it, and if publishing fails the message is not acked and comes back.
        async for attempt in retrying_transient():
            with attempt:
                await self.broker.publish(
                    encode_event(letter), topics.DEAD_LETTERS, key=key.encode() if key else None
                )


async def _undecoded(message: KafkaMessage) -> Any:
    """The raw payloads: batch handlers validate them against their schema themselves, so
    FastStream's JSON decoding of every message would only be thrown away."""
    return message.body


def _digest(event: Event) -> str:
    return hashlib.sha256(encode_event(event)).hexdigest()


def _reused_id(event: Event) -> Rejected:
    return Rejected(f"event {event.event_id} was already applied with different content; "
                    "an event id must never be reused for a changed event")


async def write_outbox(session: AsyncSession, tables: MessagingTables, outgoing: Sequence[Outgoing]) -> None:
    if not outgoing:
        return
    await session.execute(
        insert(tables.outbox),
        [
            {
                "event_id": message.event.event_id,
                "topic": message.topic,
                "key": message.event.key,
                "payload": encode_event(message.event),
            }
            for message in outgoing
        ],
    )


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
        self.poll_interval_s = settings.outbox_poll_interval_s
        self.batch_size = settings.outbox_batch_size
        self.lock_key = advisory_lock_key(f"outbox-relay:{name}")
        self.log = logging.getLogger(f"billing.{name}.relay")
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        # Set by this process's consumers when they commit outbox rows, so those are published at
        # once; polling remains for rows written elsewhere (the webhook bridge, operators' commands).
        self._woken = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()

    def wake(self) -> None:
        """New rows were committed: publish them now rather than at the next poll."""
        self._woken.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._woken.clear()
            try:
                published = await self.publish_pending()
                failures = 0
            except Exception:
                failures += 1
                self.log.exception("outbox relay failed; retrying")
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self.poll_interval_s)

    async def _connected(self) -> AIOKafkaProducer:
        if self._producer is None:
            # Idempotence off as everywhere: duplicates are dropped by the consumers' inboxes.
            producer = AIOKafkaProducer(bootstrap_servers=self.kafka.bootstrap_servers, client_id=self.client_id,
                                        acks="all", enable_idempotence=False, linger_ms=2)
            await producer.start()
            self._producer = producer
        return self._producer

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows it published (0 if another relay is active)."""
        producer = await self._connected()
        async with self.database.transaction() as session:
            # Held until commit: one relay per database publishes, so a key's rows keep their order.
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(self.lock_key))):
                return 0
            rows = (
                await session.execute(
                    select(self.outbox.c.id, self.outbox.c.topic, self.outbox.c.key, self.outbox.c.payload)
                    .where(self.outbox.c.published_at.is_(None))
                    .order_by(self.outbox.c.id)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                return 0
            # send() only queues (in call order, so a key's rows keep their order); every
            # acknowledgement is awaited before the rows are marked published.
            deliveries = [await producer.send(row.topic, row.payload, key=row.key.encode()) for row in rows]
            await asyncio.gather(*deliveries)
            await session.execute(
                update(self.outbox)
                .where(self.outbox.c.id.in_([row.id for row in rows]))
                .values(published_at=func.now())
            )
        return len(rows)


def create_broker(settings: KafkaSettings, client_id: str) -> KafkaBroker:
    # Idempotent producers and transactions are deliberately off: exactly-once effects come from
    # the inbox and outbox in PostgreSQL, which works on every Kafka (and on the local broker).
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        graceful_timeout=15.0,
    )


def consumer_options(group_id: str, settings: KafkaSettings) -> dict[str, Any]:
    """Subscriber options for a pipeline consumer: commit only after the handler succeeded."""
    return {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    group_id: str
    schema: type[Event]


@dataclass
class ServiceRuntime:
    """What a service's app module wires together: settings, database, broker, consumers, relay."""

    name: str
    settings: ServiceSettings
    kafka: KafkaSettings
    database: Database
    tables: MessagingTables
    broker: KafkaBroker
    relay: OutboxRelay
    # The topics this service emits to (besides dead letters); checked on every emit.
    publishes: frozenset[str]
    subscriptions: list[Subscription] = field(default_factory=list)

    @classmethod
    def create(
        cls, name: str, settings: ServiceSettings, tables: MessagingTables, *, publishes: Sequence[str] = ()
    ) -> ServiceRuntime:
        kafka = KafkaSettings()
        database = Database(settings.database_url)
        broker = create_broker(kafka, client_id=name)
        relay = OutboxRelay(name, database, tables, kafka, settings)
        return cls(name, settings, kafka, database, tables, broker, relay, frozenset(publishes))

    def subscribe(self, topic: str, schema: type[E], apply: Apply[E]) -> None:
        """Apply every `topic` message with `apply`, in a consumer group of this service's own."""
        consumer = Consumer(f"{self.name}.{topic}", self.database, self.tables, self.broker, self.settings,
                            self.relay)

        async def apply_declared(session: AsyncSession, event: E) -> Sequence[Outgoing]:
            outgoing = await apply(session, event)
            self._check_declared(outgoing)
            return outgoing

        async def handle(message: KafkaMessage) -> None:
            await consumer.consume(message, schema, apply_declared)

        self.broker.subscriber(
            topic, **consumer_options(consumer.name, self.kafka), title=consumer.name,
            description=f"{schema.__name__} -> {apply.__name__}",
        )(handle)
        self.subscriptions.append(Subscription(topic, consumer.name, schema))

    def subscribe_batch(self, topic: str, schema: type[E], apply_batch: ApplyBatch[E]) -> None:
        """Like `subscribe`, for handlers that apply many events per transaction: each poll of up to
        `<SERVICE>_BATCH_MAX_RECORDS` messages is applied in one transaction (`Consumer.consume_batch`)."""
        consumer = Consumer(f"{self.name}.{topic}", self.database, self.tables, self.broker, self.settings,
                            self.relay)

        async def apply_declared(session: AsyncSession, events: Sequence[E]) -> BatchOutcome:
            outcome = await apply_batch(session, events)
            self._check_declared(outcome.outgoing)
            return outcome

        async def handle(message: KafkaMessage) -> None:
            await consumer.consume_batch(message.raw_message, schema, apply_declared)

        self.broker.subscriber(
            topic, **consumer_options(consumer.name, self.kafka), batch=True, decoder=_undecoded,
            max_records=self.settings.batch_max_records, batch_timeout_ms=self.settings.batch_timeout_ms,
            title=consumer.name, description=f"{schema.__name__} -> {apply_batch.__name__} (batches)",
        )(handle)
        self.subscriptions.append(Subscription(topic, consumer.name, schema))

    def _check_declared(self, outgoing: Sequence[Outgoing]) -> None:
        undeclared = {message.topic for message in outgoing} - self.publishes
        if undeclared:
            raise RuntimeError(f"{self.name} emitted to undeclared topics {sorted(undeclared)}")

    def app(self) -> FastStream:
        app = FastStream(self.broker)

        @app.on_startup
        async def _migrate() -> None:
            await migrate(self.name, self.database.url)

        @app.after_startup
        async def _start_relay() -> None:
            self.relay.start()

        @app.on_shutdown
        async def _stop() -> None:
            await self.relay.stop()
            await self.database.dispose()

        return app


async def publish_event(broker: KafkaBroker, topic: str, event: BaseModel, key: str) -> None:
    """Publish one event directly: for producers outside a service transaction (demo, tests, bridges)."""
    await broker.publish(encode_event(event), topic, key=key.encode())
