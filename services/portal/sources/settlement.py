"""What the portal reads from settlement's database: billable items to settle, runs and the ledger."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Date, DateTime, Integer, Numeric, String, Uuid, column, func, select, table
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

