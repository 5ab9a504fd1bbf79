"""The benchmark's one big period: a contract with a million usage events in one month, through
rating, settlement and the period's close to its one invoice, with the time and peak memory of
each stage and the size of the largest message on the way.

What it shows is that a run, its receivables.posted and its document follow the contract (one
line for the item and period), not the number of events.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable, Iterator

from sqlalchemy import func, select

from ops.observe import Databases, read_events, wait_until
from services.invoicing.tables import documents
from services.rating.contracts import ContractSpec, save_contracts
from services.rating.scheduler import close_due
from services.rating.tables import billable_items as rated_items
from services.rating.tables import rated_usage
from services.settlement.tables import billable_items as settled_items
from shared import topics
from shared.events import DocumentCreated, ReceivablesPosted, UsageRecorded, derive_id, encode_event
from shared.money import Money
from shared.settings import KafkaSettings

CONTRACT = "BIG-00001"
MONTH_STARTS = datetime.fromisoformat("2026-10-01T00:00:00+02:00")  # Berlin, the contract's time zone
CLOSES_AT = datetime.fromisoformat("2026-11-04T12:00:00+00:00")  # October's close, three grace days on
CHUNK = 50_000


def big_contract() -> ContractSpec:
    return ContractSpec.model_validate({
        "contract_id": CONTRACT, "currency": "EUR", "starts_on": "2026-10-01", "time_zone": "Europe/Berlin",
        "customer": {"customer_id": "BIGC-00001", "name": "Big user", "country": "DE"},
        "items": [{"item_code": "api-calls", "description": "API calls", "unit_price": "0.0125"}],
    })


def events_of_the_month(count: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """`count` events of 1 to 9 calls spread evenly over October, as (key, value) chunks."""
    spacing = timedelta(days=31) / count
    for first in range(0, count, CHUNK):
        yield [(CONTRACT.encode(), encode_event(UsageRecorded(
            event_id=derive_id("bench:period", str(number)), occurred_at=MONTH_STARTS + spacing * number,
            contract_id=CONTRACT, item_code="api-calls", quantity=Decimal(1 + number % 9))))
            for number in range(first, min(first + CHUNK, count))]


def expected_quantity(count: int) -> int:
    return sum(1 + number % 9 for number in range(count))


async def one_big_period(kafka: KafkaSettings, databases: Databases, count: int, produce: Callable,
                         add: Callable[[str, str], None]) -> None:
    """Publish the month's events, let rating and settlement work them off, close the month and wait
    for its invoice; `add` reports each figure. Rating, settlement and invoicing must be running."""
    await save_contracts(databases["rating"], [big_contract()])
    started = time.perf_counter()
    for chunk in events_of_the_month(count):
        await produce(kafka, topics.USAGE_RECORDED, chunk)
    published_s = time.perf_counter() - started
    add(f"one period: {count:,} usage events published", f"{published_s:,.1f} s ({count / published_s:,.0f} ev/s)")

    await wait_until(lambda: _held(databases, "rating", rated_usage, count), timeout_s=7200,
                     what="rating the month's events", poll_s=1.0)
    rated_s = time.perf_counter() - started
    add("one period: rated (from the first event published)", f"{rated_s:,.1f} s ({count / rated_s:,.0f} ev/s)")
    items = await databases.count("rating", select(func.count()).select_from(rated_items)
                                  .where(rated_items.c.contract_id == CONTRACT))
    await wait_until(lambda: _held(databases, "settlement", settled_items, items), timeout_s=7200,
                     what="settlement holding the month's items", poll_s=1.0)
    held_s = time.perf_counter() - started
    add("one period: held by settlement", f"{held_s:,.1f} s ({count / held_s:,.0f} ev/s)")

    closing = time.perf_counter()
    await close_due(databases["rating"], CLOSES_AT, grace_days=3, contract_ids=[CONTRACT])
    await wait_until(lambda: _held(databases, "invoicing", documents, 1), timeout_s=1800,
                     what="the month's invoice", poll_s=0.2)
    add("one period: close -> settled -> invoiced", f"{time.perf_counter() - closing:,.1f} s")

    [posted] = [event for event in await read_events(kafka.bootstrap_servers, topics.RECEIVABLES_POSTED,
                                                     ReceivablesPosted) if event.contract_id == CONTRACT]
    [line] = posted.items
    quantity = expected_quantity(count)
    net = Money.round(Decimal(quantity) * Decimal("0.0125"), "EUR").amount
    # The line sums the items rating made of the month's polls (at most 1,000 events each).
    assert (line.item_count, line.quantity, line.net) == (items, quantity, net), (line, quantity, net)
    add("one period: its invoice", f"1 line: {int(line.quantity):,} calls x 0.0125 = {line.net:,} EUR "
        f"over {count:,} events in {line.item_count:,} items")
    [created] = [event for event in await read_events(kafka.bootstrap_servers, topics.DOCUMENTS_CREATED,
                                                      DocumentCreated) if event.contract_id == CONTRACT]
    add("one period: largest message, receivables.posted / documents.created",
        f"{len(encode_event(posted)):,} / {len(encode_event(created)):,} bytes")


async def _held(databases: Databases, service: str, table, target: int) -> bool:
    where = table.c.contract_id == CONTRACT
    return await databases.count(service, select(func.count()).select_from(table).where(where)) >= target
