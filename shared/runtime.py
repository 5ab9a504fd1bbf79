"""A service worker's runtime: its broker, its consumers (shared.inbox), its outbox relay
(shared.outbox), the re-drive of its parked messages, and the FastStream app that runs them.

Each service's app module creates one `ServiceRuntime`, subscribes its use cases to their topics
and exports `runtime.app()` for `faststream run`.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.db import Database, MessagingTables, migrate
from shared.events import Message, encode_event
from shared.health import Readiness, broker_reachable, database_reachable, schema_at_head
from shared.http import OperationsEndpoint
from shared.inbox import Apply, ApplyBatch, BatchOutcome, Consumer, ParkedRedrive, each_in_savepoint
from shared.logs import configure_logging
from shared.offsets import AppliedBehind, OffsetsBehind, rewind
from shared.outbox import OutboxRelay, Outgoing
from shared.settings import KafkaSettings, ServiceSettings

E = TypeVar("E", bound=Message)


def create_broker(settings: KafkaSettings, client_id: str) -> KafkaBroker:
    # No transactions: exactly-once effects come from the inbox and outbox in PostgreSQL, which works
    # on every Kafka. Not idempotent either, unlike the outbox relays: FastStream keeps one producer
    # for good, and aiokafka's idempotent producer fails every send after one that failed once it
    # was numbered (a timeout while the broker restarts; aio-libs/aiokafka#1017). What this one
    # sends (dead letters, operators' and tests' events) is deduplicated by the inboxes.
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        security=settings.broker_security(),
        acks="all",
        enable_idempotence=False,
        graceful_timeout=15.0,
    )


# What a lingering fetch waits for (ServiceSettings.fetch_linger_ms): a few hundred messages.
FETCH_LINGER_MIN_BYTES = 256 * 1024


def consumer_options(group_id: str, settings: KafkaSettings, linger_ms: int = 0) -> dict[str, Any]:
    """Subscriber options for a pipeline consumer. Acknowledged by hand: a failed batch is rewound
    (and redelivered), an applied one's offsets committed behind it (shared.offsets)."""
    return {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.MANUAL,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": linger_ms or settings.fetch_max_wait_ms,
        "fetch_min_bytes": FETCH_LINGER_MIN_BYTES if linger_ms else 1,
    }


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    group_id: str
    schema: type[Message]


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
    parked: ParkedRedrive
    # The topics this service emits to (besides dead letters); checked on every emit.
    publishes: frozenset[str]
    subscriptions: list[Subscription] = field(default_factory=list)
    behind: list[AppliedBehind] = field(default_factory=list)

    @classmethod
    def create(
        cls, name: str, settings: ServiceSettings, tables: MessagingTables, *, publishes: Sequence[str] = ()
    ) -> ServiceRuntime:
        kafka = KafkaSettings()
        database = Database(settings.database_url)
        broker = create_broker(kafka, client_id=name)
        relay = OutboxRelay(name, database, tables, kafka, settings)
        parked = ParkedRedrive(name, settings.parked_redrive_interval_s)
        return cls(name, settings, kafka, database, tables, broker, relay, parked, frozenset(publishes))

    def subscribe(self, topic: str, schema: type[E], apply: Apply[E]) -> None:
        """Apply every `topic` message with a per-event use case (each in a savepoint of the batch)."""
        self.subscribe_batch(topic, schema, each_in_savepoint(apply))

    def subscribe_batch(self, topic: str, schema: type[E], apply_batch: ApplyBatch[E]) -> None:
        """Apply every `topic` message, in a consumer group of this service's own: each poll of up to
        `<SERVICE>_BATCH_MAX_RECORDS` messages in one transaction (`Consumer.consume_batch`), each
        applied while the next is polled and decoded (shared.offsets)."""

        async def apply_declared(session: AsyncSession, events: Sequence[E]) -> BatchOutcome:
            outcome = await apply_batch(session, events)
            self._check_declared(outcome.outgoing)
            return outcome

        def committed(applied, outgoing: Sequence[Outgoing]) -> None:
            if outgoing:
                metrics.count_emitted(self.name, outgoing)
            self.parked.committed(applied)

        consumer = Consumer(f"{self.name}.{topic}", schema, apply_declared, self.database, self.tables, self.broker,
                            self.settings, committed)
        self.parked.consumers.append(consumer)

        behind = AppliedBehind(OffsetsBehind(consumer.log), consumer.log)
        self.behind.append(behind)

        async def handle(message: KafkaMessage) -> None:
            records = message.raw_message
            try:
                decoded = await consumer.decode_batch(records)
            except BaseException:
                rewind(message.consumer, records)
                raise
            await behind.follow(message.consumer, records, lambda: consumer.apply_decoded(records, decoded))

        # A consumer whose fetches linger gets what arrived meanwhile with its next fetch anyway.
        top_up_ms = 0 if self.settings.fetch_linger_ms else self.kafka.batch_top_up_ms or 0
        self.broker.subscriber(
            topic, **consumer_options(consumer.name, self.kafka, self.settings.fetch_linger_ms), batch=True,
            parser=topping_up(self.settings.batch_max_records, top_up_ms), decoder=_undecoded,
            max_records=self.settings.batch_max_records, batch_timeout_ms=self.settings.batch_timeout_ms,
            title=consumer.name, description=f"{schema.__name__} -> {apply_batch.__name__}",
        )(handle)
        self.subscriptions.append(Subscription(topic, consumer.name, schema))

    def group_of(self, topic: str) -> str:
        """The consumer group this service reads `topic` in."""
        [group_id] = [subscription.group_id for subscription in self.subscriptions if subscription.topic == topic]
        return group_id

    def _check_declared(self, outgoing: Sequence[Outgoing]) -> None:
        undeclared = {message.topic for message in outgoing} - self.publishes
        if undeclared:
            raise RuntimeError(f"{self.name} emitted to undeclared topics {sorted(undeclared)}")

    def app(self) -> FastStream:
        app = FastStream(self.broker)

        @app.on_startup
        async def _migrate() -> None:
            configure_logging()
            await migrate(self.name, self.database.url)

        @app.after_startup
        async def _start_loops() -> None:
            settle_heap()
            self.relay.start()
            self.parked.loop.start()

        @app.on_shutdown
        async def _stop() -> None:
            for behind in self.behind:
                await behind.drain()
            await self.parked.loop.stop()
            await self.relay.stop()
            await self.database.dispose()

        self._operate(app)
        return app

    def _operate(self, app: FastStream) -> None:
        """Health and metrics over HTTP when `<SERVICE>_HTTP_PORT` is set (shared.http)."""
        if not self.settings.http_port:
            return
        readiness = Readiness({
            "database": database_reachable(self.database.engine),
            "migrations": schema_at_head(self.name, self.database.engine),
            "broker": broker_reachable(self.broker),
        })
        gauges = metrics.PipelineGauges(self.name, self.broker, self.database, self.tables,
                                        [subscription.group_id for subscription in self.subscriptions],
                                        self.settings.metrics_interval_s)
        endpoint = OperationsEndpoint(f"{self.name} worker", readiness, self.settings.http_host)

        @app.on_startup
        async def _serve_operations(worker_id: int | None = None) -> None:
            # Before the broker starts, so that its subscribers take the middleware.
            metrics.instrument(self.broker, self.name)
            await endpoint.start(self.settings.http_port + (worker_id or 0))

        @app.after_startup
        async def _refresh_gauges() -> None:
            gauges.loop.start()

        @app.on_shutdown
        async def _stop_operations() -> None:
            await gauges.loop.stop()
            await endpoint.stop()


# A young collection every this many allocations instead of CPython's 700: a poll of thousands
# of events allocates hundreds of thousands of short-lived objects, freed by reference counting.
YOUNG_COLLECTION_THRESHOLD = 50_000


def settle_heap() -> None:
    """Take the worker's startup objects (modules, schemas, table metadata: about 150,000) out of
    the cycle collector's reach and collect young objects less often. With CPython's defaults a
    rating worker working off 100,000 events spent 2.3 s of about 9 s in the collector (2,000
    young and 16 full collections, each of those stopping the event loop); with this, 0.3 s."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def topping_up(max_records: int, wait_ms: int) -> Callable[..., Awaitable[KafkaMessage]] | None:
    """FastStream's parser of a polled batch, topped up (`topped_up`); in the parser, so that the
    message FastStream counts in its metrics, and the consumer rewinds if it fails, is the whole batch."""
    if wait_ms <= 0:
        return None

    async def parse_topped_up(records: tuple[ConsumerRecord, ...],
                              parse_polled: Callable[..., Awaitable[KafkaMessage]]) -> KafkaMessage:
        polled = await parse_polled(records)
        batch = await topped_up(polled.consumer, records, max_records, wait_ms)
        return polled if batch is records else await parse_polled(batch)

    return parse_topped_up


async def topped_up(consumer: AIOKafkaConsumer, records: tuple[ConsumerRecord, ...], max_records: int,
                    wait_ms: int) -> tuple[ConsumerRecord, ...]:
    """A polled batch with what arrived while the previous batch was applied, waiting at most
    `wait_ms` for it. aiokafka fetches a partition again only once the application has taken what
    it fetched before, so a poll hands over what was fetched as the previous batch began: at 1,000
    events/s its events were one to two batches old before their batch started. Taking the fetch
    that the poll set off as well makes a batch reach up to its own start. A batch polled whole
    (`max_records`) is left as it is: what follows it is already waiting in the fetcher."""
    room = max_records - len(records)
    if wait_ms <= 0 or room <= 0:
        return records
    try:
        fresh = await consumer.getmany(timeout_ms=wait_ms, max_records=room)
    except KafkaError as error:
        # The polled records must not be lost with it: the partition stays where the error is,
        # so the next poll meets it again.
        logging.getLogger("billing.runtime").warning("a batch went without its top-up: %r", error)
        return records
    return records + tuple(chain.from_iterable(fresh.values()))


async def _undecoded(message: KafkaMessage) -> Any:
    """The raw payloads: consumers validate them against their schema themselves, so FastStream's
    JSON decoding of every message would only be thrown away."""
    return message.body


async def publish_event(broker: KafkaBroker, topic: str, event: BaseModel, key: str) -> None:
    """Publish one event directly: for producers outside a service transaction (demo, tests, bridges)."""
    await broker.publish(encode_event(event), topic, key=key.encode())
