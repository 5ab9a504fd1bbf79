"""What the portal reads from rating's database: customers, their contracts, and what was rated per period."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Sequence

from sqlalchemy import Date, DateTime, Integer, Numeric, String, Uuid, cast, column, func, select, table, true, tuple_
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by, array_agg
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.portal.listing import Page, PageRequest, Sort, fetch_page

customers = table(
    "customers",
    column("customer_id", String), column("name", String), column("country", String), column("vat_id", String),
    column("email", String), column("address_lines", JSONB),
    column("created_at", DateTime(timezone=True)), column("updated_at", DateTime(timezone=True)),
)
contracts = table(
    "contracts",
    column("contract_id", String), column("customer_id", String), column("currency", String),
    column("starts_on", Date), column("ends_on", Date), column("status", String), column("revision", Integer),
    column("billing_cycle", String), column("period_months", Integer), column("alignment_date", Date),
    column("time_zone", String),
)
contract_items = table(
    "contract_items",
    column("contract_id", String), column("item_code", String), column("description", String),
    column("unit_price", Numeric), column("tax_category", String), column("kind", String),
    # The item as it was specified (rating's ContractItemSpec, defaults left out): its price plan.
    column("terms", JSONB),
)
billable_items = table(
    "billable_items",
    column("contract_id", String), column("item_code", String), column("quantity", Numeric),
    column("free_quantity", Numeric), column("billable_quantity", Numeric), column("unit_price", Numeric),
    column("net", Numeric), column("discount", Numeric), column("period_start", Date),
    column("occurred_at", DateTime(timezone=True)), column("previous_reading", Numeric),
    column("current_reading", Numeric),
    # What the item added to each band of its period (rating's PriceBand list, decimal strings).
    column("price_breakdown", JSONB),
)
# Every rated usage event and the billable item it is billed in: the usage behind a schedule row.
rated_usage = table(
    "rated_usage",
    column("event_id", Uuid), column("billable_item_id", Uuid), column("contract_id", String),
    column("item_code", String), column("period_start", Date), column("occurred_at", DateTime(timezone=True)),
    column("quantity", Numeric), column("meter_reading", Numeric),
)

CUSTOMER_SORTS = {"customer_id": customers.c.customer_id, "name": customers.c.name}
CONTRACT_SORTS = {"contract_id": contracts.c.contract_id, "starts_on": contracts.c.starts_on,
                  "ends_on": contracts.c.ends_on, "status": contracts.c.status}


async def customers_page(connection: AsyncConnection, *, search: str | None, sort: Sort,
                         page: PageRequest) -> Page[Row[Any]]:
    contract_count = (select(func.count()).select_from(contracts)
                      .where(contracts.c.customer_id == customers.c.customer_id).scalar_subquery())
    query = select(customers, contract_count.label("contracts"))
    if search:
        pattern = f"%{search}%"
        query = query.where(customers.c.customer_id.ilike(pattern) | customers.c.name.ilike(pattern))
    return await fetch_page(connection, query, sort=sort, sortable=CUSTOMER_SORTS,
                            tiebreak=[customers.c.customer_id], page=page)


async def customer(connection: AsyncConnection, customer_id: str) -> Row[Any] | None:
    return (await connection.execute(select(customers).where(customers.c.customer_id == customer_id))).first()


async def contracts_page(connection: AsyncConnection, customer_id: str, *, status: str | None, sort: Sort,
                         page: PageRequest) -> Page[Row[Any]]:
    query = select(contracts).where(contracts.c.customer_id == customer_id)
    if status:
        query = query.where(contracts.c.status == status)
    return await fetch_page(connection, query, sort=sort, sortable=CONTRACT_SORTS,
                            tiebreak=[contracts.c.contract_id], page=page)


async def contract(connection: AsyncConnection, customer_id: str, contract_id: str) -> Row[Any] | None:
    return (await connection.execute(select(contracts).where(
        contracts.c.customer_id == customer_id, contracts.c.contract_id == contract_id))).first()


async def items_of(connection: AsyncConnection, contract_ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """Each contract's priced items (what usage can be recorded for), by item code."""
    found: dict[str, list[Row[Any]]] = {contract_id: [] for contract_id in contract_ids}
    rows = await connection.execute(
        select(contract_items).where(contract_items.c.contract_id.in_(contract_ids))
        .order_by(contract_items.c.contract_id, contract_items.c.item_code))
    for row in rows:
        found[row.contract_id].append(row)
    return found


async def rated_periods(connection: AsyncConnection, contract_id: str,
                        period_starts: Sequence[date]) -> dict[tuple[str, date], Row[Any]]:
    """Per (item, period start): what rating billed into the period, summed over its billable items.

    The readings are the first item's previous one and the last item's current one; the unit price
    is the last item's (the band the period's quantity reached). One grouped query over the
    line index, however many usage events the items stand for.
    """
    if not period_starts:
        return {}
    items = billable_items.c
    rows = await connection.execute(
        select(items.item_code, items.period_start,
               func.sum(items.quantity).label("quantity"), func.sum(items.free_quantity).label("free_quantity"),
               func.sum(items.billable_quantity).label("billable_quantity"), func.sum(items.net).label("net"),
               func.sum(items.discount).label("discount"),
               array_agg(aggregate_order_by(items.previous_reading, items.occurred_at.asc()))[1]
               .label("previous_reading"),
               array_agg(aggregate_order_by(items.current_reading, items.occurred_at.desc()))[1]
               .label("current_reading"),
               array_agg(aggregate_order_by(items.unit_price, items.occurred_at.desc()))[1].label("unit_price"))
        .where(items.contract_id == contract_id, items.period_start.in_(period_starts))
        .group_by(items.item_code, items.period_start))
    return {(row.item_code, row.period_start): row for row in rows}


async def price_detail(connection: AsyncConnection, contract_id: str, item_code: str,
                       period_start: date) -> list[Row[Any]]:
    """The period's price detail, band by band: (from, to, unit price) and the quantity charged in it.

    Each billable item's breakdown is what it added to its period's bands, so their sums are the
    bands of the period's total quantity (a volume band the period moved beyond sums to zero and is
    left out). Per-unit and package plans have one band without bounds.
    """
    band = func.jsonb_array_elements(billable_items.c.price_breakdown).table_valued(column("value", JSONB)).alias("band")

    def field(name: str) -> Any:
        return cast(band.c.value[name].astext, Numeric)

    from_quantity, to_quantity, unit_price = field("from_quantity"), field("to_quantity"), field("unit_price")
    quantity = func.sum(field("quantity"))
    rows = await connection.execute(
        select(from_quantity.label("from_quantity"), to_quantity.label("to_quantity"),
               unit_price.label("unit_price"), quantity.label("quantity"))
        .select_from(billable_items.join(band, true()))
        .where(billable_items.c.contract_id == contract_id, billable_items.c.item_code == item_code,
               billable_items.c.period_start == period_start)
        .group_by(from_quantity, to_quantity, unit_price)
        .having(quantity != 0)
        .order_by(from_quantity.asc().nulls_first(), unit_price))
    return list(rows)


async def usage_events(connection: AsyncConnection, contract_id: str, item_code: str, period_start: date,
                       after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[Row[Any]]:
    """The usage events billed in the period, in the order they were used, `limit` after `after` (the
    last row's occurred_at and event_id): keyset-paged over rating's line index, so a page costs the
    same however many events the period has and however deep the page is."""
    events = rated_usage.c
    query = (select(events.event_id, events.billable_item_id, events.occurred_at, events.quantity,
                    events.meter_reading)
             .where(events.contract_id == contract_id, events.item_code == item_code,
                    events.period_start == period_start)
             .order_by(events.occurred_at, events.event_id)
             .limit(limit))
    if after is not None:
        query = query.where(tuple_(events.occurred_at, events.event_id) > after)
    return list(await connection.execute(query))


async def time_zones(connection: AsyncConnection, contract_ids: Sequence[str]) -> dict[str, str]:
    """Each contract's business time zone: the days its instants fall on."""
    if not contract_ids:
        return {}
    rows = await connection.execute(select(contracts.c.contract_id, contracts.c.time_zone)
                                    .where(contracts.c.contract_id.in_(contract_ids)))
    return {row.contract_id: row.time_zone for row in rows}
