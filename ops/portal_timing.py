"""Timing of the portal's pages for a big customer: 200 contracts and 1,000,000 usage events behind one
customer, written straight into fresh databases with COPY (the pipeline's throughput is the benchmark's
business, not this), then the server time of the customer page, a contract page, its schedule API and
a schedule row's billing detail, each asked several times in process (ASGI, no network in between).

    python -m ops.portal_timing [--root DIR] [--repeat 5]

Half of the events are one contract's November (one schedule row of 500,000 events), the other
half spread over the other contracts' months, so both a wide and a deep customer are seen. Rating's
and settlement's tables are filled as rating and settlement would (one billable item per 1,000
events of a line at most); invoicing and payments stay empty. It is not a test: it asserts
nothing, it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

from ops.stack import SERVICES, _pgserver

CUSTOMER = "BIG-CUSTOMER"
CONTRACTS = 200
EVENTS = 1_000_000
DEEP_CONTRACT = "BIGP-0001"  # its November holds half of the events
UNIT_PRICE = Decimal("0.0125")
EVENTS_PER_ITEM = 1_000  # as rating bills a poll's events of one period: at most 1,000 an item
DEEP_PAGES = 999  # pages of 500 followed into the deep row before its page is timed
MONTHS = [date(2026, month, 1) for month in range(1, 12)]  # January to November 2026


def contract_id(number: int) -> str:
    return f"BIGP-{number:04d}"


def month_end(start: date) -> date:
    return date(start.year + start.month // 12, start.month % 12 + 1, 1) - timedelta(days=1)


def lines() -> list[tuple[str, date, int]]:
    """(contract, period start, events): the deep line, then the rest spread over the other contracts' months."""
    rest = [(contract_id(number), month) for number in range(2, CONTRACTS + 1) for month in MONTHS]
    share, extra = divmod(EVENTS - EVENTS // 2, len(rest))
    return [(DEEP_CONTRACT, date(2026, 11, 1), EVENTS // 2)] + [
        (contract, month, share + (1 if index < extra else 0)) for index, (contract, month) in enumerate(rest)]


def start_postgres(root: Path) -> dict[str, str]:
    """A fresh embedded PostgreSQL with one database per service, stopped and deleted when the script
    ends (the figures are all it leaves); each service's URL."""
    root.mkdir(parents=True, exist_ok=True)
    server = _pgserver().get_server(root / "pg", cleanup_mode="delete")
    existing = server.psql("SELECT datname FROM pg_database;")
    for service in SERVICES:
        if f" {service}\n" not in existing:
            server.psql(f"CREATE DATABASE {service};")
    socket_dir = server.get_uri().split("host=", 1)[1]
    return {service: f"postgresql+asyncpg://postgres@/{service}?host={socket_dir}" for service in SERVICES}


async def seed(urls: dict[str, str]) -> None:
    from services.rating.contracts import ContractSpec, save_contracts
    from shared.db import Database

    database = Database(urls["rating"])
    await save_contracts(database, [ContractSpec.model_validate({
        "contract_id": contract_id(number), "currency": "EUR", "starts_on": "2026-01-01",
        "customer": {"customer_id": CUSTOMER, "name": "Big customer", "country": "DE"},
        "items": [{"item_code": "api-calls", "description": "API calls", "unit_price": str(UNIT_PRICE)},
                  {"item_code": "storage", "description": "Storage", "unit_price": "0.10"}],
    }) for number in range(1, CONTRACTS + 1)])
    await database.dispose()

    rating = await asyncpg.connect(urls["rating"].replace("+asyncpg", ""))
    settlement = await asyncpg.connect(urls["settlement"].replace("+asyncpg", ""))
    written = items = 0
    try:
        for contract, start, count in lines():
            events, rated, held = _line_rows(contract, start, count)
            await rating.copy_records_to_table("rated_usage", records=events, columns=[
                "event_id", "billable_item_id", "contract_id", "item_code", "period_start", "occurred_at",
                "quantity", "meter_reading"])
            await rating.copy_records_to_table("billable_items", records=rated, columns=[
                "billable_item_id", "source_event_id", "contract_id", "customer_id", "item_code", "currency",
                "quantity", "free_quantity", "billable_quantity", "unit_price", "net", "period_start", "period_end",
                "occurred_at", "charge_kind", "tax_category", "discount", "price_breakdown"])
            await settlement.copy_records_to_table("billable_items", records=held, columns=[
                "billable_item_id", "contract_id", "customer_id", "item_code", "description", "currency", "quantity",
                "unit_price", "net", "period_start", "period_end", "occurred_at", "charge_kind", "tax_category"])
            written, items = written + len(events), items + len(rated)
        for connection in (rating, settlement):
            await connection.execute("VACUUM ANALYZE")
    finally:
        await rating.close()
        await settlement.close()
    print(f"seeded {CONTRACTS} contracts, {written:,} usage events, {items:,} billable items")


def _line_rows(contract: str, start: date, count: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """A schedule row's usage events spread over its month, and their billable items in rating and settlement."""
    events, rated, held = [], [], []
    end = month_end(start)
    spacing = timedelta(days=(end - start).days + 1) / count
    first = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    for batch in range(0, count, EVENTS_PER_ITEM):
        item_id, numbers = uuid.uuid4(), range(batch, min(batch + EVENTS_PER_ITEM, count))
        quantity = sum(Decimal(1 + number % 9) for number in numbers)
        net = (quantity * UNIT_PRICE).quantize(Decimal("0.01"))
        last = first + spacing * numbers[-1]
        source_event_id = uuid.uuid4()
        events.extend((source_event_id if number == batch else uuid.uuid4(), item_id, contract, "api-calls", start,
                       first + spacing * number, Decimal(1 + number % 9), None) for number in numbers)
        breakdown = json.dumps([{"from_quantity": None, "to_quantity": None, "quantity": str(quantity),
                                 "unit_price": str(UNIT_PRICE), "amount": str(net)}])
        rated.append((item_id, source_event_id, contract, CUSTOMER, "api-calls", "EUR", quantity, Decimal(0), quantity,
                      UNIT_PRICE, net, start, end, last, "usage", "standard", Decimal(0), breakdown))
        held.append((item_id, contract, CUSTOMER, "api-calls", "API calls", "EUR", quantity, UNIT_PRICE, net,
                     start, end, last, "usage", "standard"))
    return events, rated, held


async def measure(repeat: int) -> None:
    from services.portal.actions import Actions
    from services.portal.app import app
    from services.portal.reads import Sources
    from services.portal.settings import PortalSettings

    sources = Sources.of(PortalSettings())
    async with httpx.AsyncClient(base_url="http://rating.invalid") as unused_api:
        app.state.sources = sources
        # No action is taken and no estimate asked for: the services' APIs and the broker are never called.
        app.state.actions = Actions(sources, None, unused_api, unused_api, unused_api)  # type: ignore[arg-type]
        base = f"/customers/{CUSTOMER}"
        line = f"/api{base}/contracts/{DEEP_CONTRACT}/schedule/api-calls/2026-11-01"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as client:
            deep_cursor = await _cursor_after(client, line, DEEP_PAGES)
            for what, path, params in [
                ("customer page", base, {}),
                ("contract page (500,000-event row on it)", f"{base}/contracts/{DEEP_CONTRACT}", {}),
                ("contract page, whole schedule (limit 500)", f"{base}/contracts/{DEEP_CONTRACT}", {"schedule.limit": 500}),
                ("schedule API, 25 rows", f"/api{base}/contracts/{DEEP_CONTRACT}/schedule", {}),
                ("schedule API, whole schedule (limit 500)", f"/api{base}/contracts/{DEEP_CONTRACT}/schedule", {"limit": 500}),
                ("billing detail API, first 25 events of 500,000", line, {}),
                (f"billing detail API, 25 events {DEEP_PAGES * 500:,} deep", line, {"after": deep_cursor}),
                ("billing detail page, first 25 events", f"{base}/contracts/{DEEP_CONTRACT}/schedule/api-calls/2026-11-01",
                 {}),
            ]:
                times = []
                for attempt in range(repeat + 1):  # the first warms up the pools and caches
                    started = time.perf_counter()
                    answer = await client.get(path, params=params)
                    elapsed = time.perf_counter() - started
                    answer.raise_for_status()
                    if attempt:
                        times.append(elapsed * 1000)
                print(f"{what:<50} median {statistics.median(times):8.1f} ms   max {max(times):8.1f} ms")
    await sources.dispose()


async def _cursor_after(client: httpx.AsyncClient, line: str, pages: int) -> str:
    """The cursor after `pages` pages of 500 events, followed page by page as a client would."""
    after = None
    for _ in range(pages):
        page = (await client.get(line, params={"limit": 500, **({"after": after} if after else {})})).json()
        after = page["next"]
    assert after is not None
    return after


async def main(root: Path, repeat: int) -> None:
    urls = start_postgres(root)
    for service, url in urls.items():
        os.environ[f"{service.upper()}_DATABASE_URL"] = url
    from shared.db import migrate

    for service, url in urls.items():
        await migrate(service, url)
    started = time.perf_counter()
    await seed(urls)
    print(f"seeding took {time.perf_counter() - started:,.0f} s")
    await measure(repeat)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/portal-timing"),
                        help="where the embedded PostgreSQL keeps its data while it runs (an empty directory)")
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.root, arguments.repeat))
