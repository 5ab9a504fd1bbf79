"""What the portal reads from settlement's database: billable items to settle, runs and the ledger."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Sequence

from sqlalchemy import Date, DateTime, Integer, Numeric, String, Uuid, column, func, select, table, tuple_
from sqlalchemy.dialects.postgresql import array_agg
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.portal.listing import Page, PageRequest, Period, Sort, fetch_page

billable_items = table(
    "billable_items",
    column("billable_item_id", Uuid), column("contract_id", String), column("customer_id", String),
    column("item_code", String), column("description", String), column("currency", String),
    column("quantity", Numeric), column("unit_price", Numeric), column("net", Numeric),
    column("period_start", Date), column("period_end", Date), column("occurred_at", DateTime(timezone=True)),
    column("settlement_run_id", Uuid), column("charge_kind", String),
)
settlement_runs = table(
    "settlement_runs",
    column("settlement_run_id", Uuid), column("contract_id", String), column("customer_id", String),
    column("currency", String), column("cutoff", DateTime(timezone=True)), column("status", String),
    column("total", Numeric), column("credit_total", Numeric), column("requested_by", String),
    column("period_start", Date), column("period_end", Date), column("created_at", DateTime(timezone=True)),
    column("settled_at", DateTime(timezone=True)),
)
credits = table(
    "credits",
    column("credit_id", Uuid), column("billable_item_id", Uuid), column("reason", String), column("net", Numeric),
    column("settlement_run_id", Uuid),
)
contract_accounts = table(
    "contract_accounts",
    column("contract_id", String), column("customer_id", String), column("currency", String),
    column("balance", Numeric), column("last_sequence", Integer),
)
ledger_entries = table(
    "ledger_entries",
    column("entry_id", Uuid), column("contract_id", String), column("customer_id", String),
    column("sequence", Integer), column("entry_type", String), column("amount", Numeric),
    column("currency", String), column("balance", Numeric), column("description", String),
    column("settlement_run_id", Uuid), column("payment_id", String), column("booked_at", DateTime(timezone=True)),
    column("document_number", String), column("reverses_entry_id", Uuid),
)

ITEM_SORTS = {"occurred_at": billable_items.c.occurred_at, "net": billable_items.c.net,
              "quantity": billable_items.c.quantity, "item_code": billable_items.c.item_code,
              "contract_id": billable_items.c.contract_id}
RUN_SORTS = {"cutoff": settlement_runs.c.cutoff, "total": settlement_runs.c.total,
             "created_at": settlement_runs.c.created_at, "status": settlement_runs.c.status}
LEDGER_SORTS = {"booked_at": ledger_entries.c.booked_at, "amount": ledger_entries.c.amount,
                "sequence": ledger_entries.c.sequence}


async def billable_items_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                              period: Period | None, billed: bool | None, charge_kind: str | None, sort: Sort,
                              page: PageRequest) -> Page[Row[Any]]:
    items = billable_items.c
    query = select(billable_items).where(items.customer_id == customer_id)
    if contract_id:
        query = query.where(items.contract_id == contract_id)
    if period:
        query = query.where(period.where(items.occurred_at, timestamp=True))
    if billed is not None:
        query = query.where(items.settlement_run_id.is_not(None) if billed else items.settlement_run_id.is_(None))
    if charge_kind:
        query = query.where(items.charge_kind == charge_kind)
    return await fetch_page(connection, query, sort=sort, sortable=ITEM_SORTS,
                            tiebreak=[items.billable_item_id], page=page)


async def runs_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                    period: Period | None, status: str | None, sort: Sort, page: PageRequest) -> Page[Row[Any]]:
    runs = settlement_runs.c
    query = select(settlement_runs).where(runs.customer_id == customer_id)
    if contract_id:
        query = query.where(runs.contract_id == contract_id)
    if period:
        query = query.where(period.where(runs.cutoff, timestamp=True))
    if status:
        query = query.where(runs.status == status)
    return await fetch_page(connection, query, sort=sort, sortable=RUN_SORTS,
                            tiebreak=[runs.settlement_run_id], page=page)


async def ledger_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                      period: Period | None, entry_type: str | None, sort: Sort, page: PageRequest) -> Page[Row[Any]]:
    entries = ledger_entries.c
    query = select(ledger_entries).where(entries.customer_id == customer_id)
    if contract_id:
        query = query.where(entries.contract_id == contract_id)
    if period:
        query = query.where(period.where(entries.booked_at, timestamp=True))
    if entry_type:
        query = query.where(entries.entry_type == entry_type)
    # Within a contract the sequence is the order the running balance follows.
    return await fetch_page(connection, query, sort=sort, sortable=LEDGER_SORTS,
                            tiebreak=[entries.contract_id, entries.sequence], page=page)


async def ledger_accounts(connection: AsyncConnection, customer_id: str) -> list[Row[Any]]:
    """Each of the customer's contract accounts with its balance and entry count."""
    return list((await connection.execute(
        select(contract_accounts).where(contract_accounts.c.customer_id == customer_id)
        .order_by(contract_accounts.c.currency, contract_accounts.c.contract_id))).all())


async def ledger_sums(connection: AsyncConnection, customer_id: str) -> list[Row[Any]]:
    """(contract_id, entry_type, amount, entries): the signed sums that moved each contract's balance."""
    entries = ledger_entries.c
    return list((await connection.execute(
        select(entries.contract_id, entries.entry_type, func.sum(entries.amount).label("amount"),
               func.count().label("entries"))
        .where(entries.customer_id == customer_id)
        .group_by(entries.contract_id, entries.entry_type))).all())



TERMINATION = "termination"  # shared.events.CreditReason: prepaid fees credited beyond a cancellation
ORDER_CANCELLED = "order_cancelled"


async def settled_periods(connection: AsyncConnection, contract_id: str,
                          period_starts: Sequence[date]) -> dict[tuple[str, date], Row[Any]]:
    """Per (item, period start): how many of its billable items settlement holds and has settled,
    the runs that settled them, and what was credited on them (termination credits apart)."""
    if not period_starts:
        return {}
    items, credited = billable_items.c, credits.c
    credit_sums = (select(credited.billable_item_id,
                          func.sum(credited.net).filter(credited.reason != TERMINATION).label("credit"),
                          func.sum(credited.net).filter(credited.reason == TERMINATION).label("termination_credit"))
                   .group_by(credited.billable_item_id).subquery())
    rows = await connection.execute(
        select(items.item_code, items.period_start, func.count().label("items"),
               func.count(items.settlement_run_id).label("settled"),
               array_agg(items.settlement_run_id.distinct()).label("run_ids"),
               func.coalesce(func.sum(credit_sums.c.credit), 0).label("credit"),
               func.coalesce(func.sum(credit_sums.c.termination_credit), 0).label("termination_credit"))
        .select_from(billable_items.outerjoin(credit_sums, credit_sums.c.billable_item_id == items.billable_item_id))
        .where(items.contract_id == contract_id, items.period_start.in_(period_starts))
        .group_by(items.item_code, items.period_start))
    return {(row.item_code, row.period_start): row for row in rows}


ORDER_SORTS = {"ordered_at": billable_items.c.occurred_at, "contract_id": billable_items.c.contract_id}


async def orders_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                      period: Period | None, sort: Sort, page: PageRequest) -> Page[Row[Any]]:
    """The customer's orders: its contracts' one-time purchases, one order per contract and purchase
    day (rating dates a purchase at the start of its day, so the day's purchases share the instant)."""
    items = billable_items.c
    query = (select(items.contract_id, items.occurred_at, items.currency, func.count().label("items"),
                    func.sum(items.net).label("net"))
             .where(items.customer_id == customer_id, items.charge_kind == "one_time")
             .group_by(items.contract_id, items.occurred_at, items.currency))
    if contract_id:
        query = query.where(items.contract_id == contract_id)
    if period:
        query = query.where(period.where(items.occurred_at, timestamp=True))
    return await fetch_page(connection, query, sort=sort, sortable=ORDER_SORTS,
                            tiebreak=[items.contract_id, items.occurred_at], page=page)


async def order_items(connection: AsyncConnection, orders: Sequence[tuple[str, datetime]]) -> list[Row[Any]]:
    """The purchases of each (contract, instant) order, each with its order-cancellation credit and
    the run that posted it, if it was cancelled (at most once per item: settlement's unique index)."""
    if not orders:
        return []
    items, credited = billable_items.c, credits.c
    rows = await connection.execute(
        select(billable_items, credited.net.label("cancelled_net"),
               credited.settlement_run_id.label("credit_run_id"))
        .select_from(billable_items.outerjoin(credits, (credited.billable_item_id == items.billable_item_id)
                                              & (credited.reason == ORDER_CANCELLED)))
        .where(items.charge_kind == "one_time", tuple_(items.contract_id, items.occurred_at).in_(list(orders)))
        .order_by(items.contract_id, items.occurred_at, items.item_code, items.billable_item_id))
    return list(rows.all())
