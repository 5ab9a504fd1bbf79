"""Prometheus metrics: FastStream's own per-message metrics and the pipeline's (README, "Operating it").

FastStream's `KafkaPrometheusMiddleware` counts what each consumer received and processed, how
long it took and what raised (`faststream_*`, by `handler` = topic). The project's `billing_*`
metrics say what those cannot: how far each consumer is behind, what waits in the outbox and the
parked table, what was dead-lettered or retried, and what invoicing issued. Everything is in the
default registry, which `GET /metrics` serves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable, Sequence

from fastapi import APIRouter
from fastapi.responses import Response
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest

from shared.backlog import committed_lag, read_backlog
from shared.db import Database, MessagingTables
from shared.events import DocumentCreated
from shared.loop import BackgroundLoop
from shared.outbox import Outgoing

CONSUMER_LAG = Gauge("billing_consumer_lag", "Messages on a partition assigned to this process that its group has "
                     "not committed (the partition's end offset minus the group's committed offset)",
                     ["consumer", "topic", "partition"])
OUTBOX_PENDING = Gauge("billing_outbox_pending_rows", "Outbox rows not published yet", ["service"])
OUTBOX_OLDEST_AGE = Gauge("billing_outbox_oldest_pending_age_seconds",
                          "How long the oldest unpublished outbox row has waited", ["service"])
OUTBOX_QUARANTINED = Gauge("billing_outbox_quarantined_rows", "Outbox rows the broker refused for good", ["service"])
PARKED = Gauge("billing_parked_messages", "Messages parked until what they wait for arrives",
               ["service", "consumer"])
DEAD_LETTERS = Counter("billing_dead_letters", "Messages dead-lettered, by consumer and the error's type",
                       ["consumer", "reason"])
RETRIES = Counter("billing_retries", "Batches retried after a transient failure (database or broker away)",
                  ["consumer"])
EMITTED = Counter("billing_events_emitted", "Events committed to the outbox, by topic", ["service", "topic"])
DOCUMENTS_ISSUED = Counter("billing_documents_issued", "Invoices and credit notes issued",
                           ["document_type", "currency"])
DOCUMENTS_AMOUNT = Counter("billing_documents_amount", "Gross amount of the documents issued",
                           ["document_type", "currency"])

# A broker that does not answer must not hold the other gauges back for a request timeout (40 s).
LAG_TIMEOUT_S = 5.0

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def instrument(broker: KafkaBroker, app_name: str) -> None:
    """FastStream's received/processed/duration/exception metrics for every subscriber of `broker`.
    Once per process: the middleware registers its metrics in the default registry."""
    broker.add_middleware(KafkaPrometheusMiddleware(registry=REGISTRY, app_name=app_name))


def count_emitted(service: str, outgoing: Sequence[Outgoing]) -> None:
    """Called after the transaction that wrote `outgoing` committed, so nothing is counted twice."""
    for message in outgoing:
        EMITTED.labels(service, message.topic).inc()
        event = message.event
        if isinstance(event, DocumentCreated):
            DOCUMENTS_ISSUED.labels(event.document_type, event.currency).inc()
            DOCUMENTS_AMOUNT.labels(event.document_type, event.currency).inc(float(event.gross_total))


async def consumer_lag(broker: KafkaBroker) -> dict[tuple[str, str, int], int]:
    """Per (group, topic, partition) this process is assigned: what its group has not committed yet."""
    lag: dict[tuple[str, str, int], int] = {}
    for subscriber in broker.subscribers:
        consumer = subscriber.consumer
        assigned = sorted(consumer.assignment()) if consumer is not None else []
        if assigned:
            behind = await asyncio.wait_for(committed_lag(consumer, assigned), LAG_TIMEOUT_S)
            lag.update({(subscriber.group_id, tp.topic, tp.partition): count for tp, count in behind.items()})
    return lag


class PipelineGauges:
    """Refreshes the gauges a scrape cannot compute by itself: lag from the consumers' state, outbox
    and parked backlog from the database (every replica reports the same backlog: take the max)."""

    def __init__(self, service: str, broker: KafkaBroker, database: Database, tables: MessagingTables,
                 consumers: Iterable[str], interval_s: float) -> None:
        self.service = service
        self.broker = broker
        self.database = database
        self.tables = tables
        self.consumers = list(consumers)
        self.loop = BackgroundLoop(f"{service}-metrics", self._tick, interval_s,
                                   logging.getLogger(f"billing.{service}.metrics"))

    async def _tick(self) -> bool:
        lag = await consumer_lag(self.broker)
        CONSUMER_LAG.clear()  # partitions revoked since the last tick disappear
        for (group, topic, partition), behind in lag.items():
            CONSUMER_LAG.labels(group, topic, str(partition)).set(behind)
        backlog = await read_backlog(self.database, self.tables)
        OUTBOX_PENDING.labels(self.service).set(backlog.outbox_pending)
        OUTBOX_OLDEST_AGE.labels(self.service).set(backlog.outbox_oldest_age_s)
        OUTBOX_QUARANTINED.labels(self.service).set(backlog.outbox_quarantined)
        for consumer in self.consumers:
            PARKED.labels(self.service, consumer).set(backlog.parked.get(consumer, 0))
        return False
