"""What the portal reads from payments' database: open items with their assignments, payment accounts."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Numeric, String, Uuid, column, select, table
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.portal.listing import Page, PageRequest, Period, Sort, fetch_page

open_items = table(
    "open_items",
    column("document_id", Uuid), column("invoice_number", String), column("item_type", String),
    column("contract_id", String), column("customer_id", String), column("currency", String),
    column("amount", Numeric), column("open_amount", Numeric), column("due_date", Date),
    column("created_at", DateTime(timezone=True)),
)
payments = table(
    "payments",
    column("payment_event_id", Uuid), column("payment_id", String), column("kind", String),
    column("status", String), column("provider", String), column("currency", String),
    column("received_at", DateTime(timezone=True)), column("contract_id", String), column("customer_id", String),
    column("amount", Numeric), column("unassigned_amount", Numeric),
)
payment_assignments = table(
    "payment_assignments",
    column("assignment_id", BigInteger), column("payment_event_id", Uuid), column("document_id", Uuid),
    column("amount", Numeric), column("assigned_at", DateTime(timezone=True)),
)
payment_accounts = table(
    "payment_accounts",
    column("account_id", Uuid), column("customer_id", String), column("method", String),
    column("holder_name", String), column("iban", String), column("bic", String),
    column("mandate_reference", String), column("mandate_signed_on", Date), column("provider", String),
    column("mandate_status", String), column("is_default", Boolean), column("created_at", DateTime(timezone=True)),
)

OPEN_ITEM_SORTS = {"due_date": open_items.c.due_date, "amount": open_items.c.amount,
                   "open_amount": open_items.c.open_amount, "created_at": open_items.c.created_at}
CREDIT_SORTS = {"received_at": payments.c.received_at, "unassigned_amount": payments.c.unassigned_amount}
ACCOUNT_SORTS = {"created_at": payment_accounts.c.created_at, "method": payment_accounts.c.method}


async def open_items_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                          period: Period | None, still_open: bool | None, item_type: str | None, sort: Sort,
                          page: PageRequest) -> Page[Row[Any]]:
    items = open_items.c
    query = select(open_items).where(items.customer_id == customer_id)
    if contract_id:
        query = query.where(items.contract_id == contract_id)
    if period:
        query = query.where(period.where(items.due_date))
    if still_open is not None:
        query = query.where(items.open_amount != 0 if still_open else items.open_amount == 0)
    if item_type:
        query = query.where(items.item_type == item_type)
    return await fetch_page(connection, query, sort=sort, sortable=OPEN_ITEM_SORTS,
                            tiebreak=[items.document_id], page=page)


async def assignments_of(connection: AsyncConnection, document_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row[Any]]]:
    """The payments assigned to each item, oldest first; reversals (chargebacks, refunds) as negative rows."""
    found: dict[uuid.UUID, list[Row[Any]]] = {}
    if not document_ids:
        return found
    rows = await connection.execute(
        select(payment_assignments.c.document_id, payment_assignments.c.amount, payment_assignments.c.assigned_at,
               payment_assignments.c.payment_event_id, payments.c.payment_id, payments.c.kind, payments.c.provider, payments.c.status, payments.c.currency)
        .join_from(payment_assignments, payments,
                   payment_assignments.c.payment_event_id == payments.c.payment_event_id)
        .where(payment_assignments.c.document_id.in_(document_ids))
        .order_by(payment_assignments.c.assignment_id))
    for row in rows:
        found.setdefault(row.document_id, []).append(row)
    return found


async def accounts_page(connection: AsyncConnection, customer_id: str, *, method: str | None, sort: Sort,
                        page: PageRequest) -> Page[Row[Any]]:
    accounts = payment_accounts.c
    query = select(payment_accounts).where(accounts.customer_id == customer_id)
    if method:
        query = query.where(accounts.method == method)
    return await fetch_page(connection, query, sort=sort, sortable=ACCOUNT_SORTS,
                            tiebreak=[accounts.is_default.desc(), accounts.account_id], page=page)


async def open_item(connection: AsyncConnection, document_id: uuid.UUID) -> Row[Any] | None:
    """The OPOS item a document opened (an invoice's), if any."""
    return (await connection.execute(select(open_items).where(open_items.c.document_id == document_id))).first()


async def credits_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None, sort: Sort,
                       page: PageRequest) -> Page[Row[Any]]:
    """Payments and credit notes with money no open item holds: the customer's credit."""
    paid = payments.c
    query = select(payments).where(paid.customer_id == customer_id, paid.unassigned_amount > 0)
    if contract_id:
        query = query.where(paid.contract_id == contract_id)
    return await fetch_page(connection, query, sort=sort, sortable=CREDIT_SORTS,
                            tiebreak=[paid.payment_event_id], page=page)


async def payment(connection: AsyncConnection, payment_event_id: uuid.UUID) -> Row[Any] | None:
    return (await connection.execute(select(payments).where(payments.c.payment_event_id == payment_event_id))).first()


async def open_items_of_contracts(connection: AsyncConnection, contract_ids: Sequence[str]) -> list[Row[Any]]:
    """The items still open of these contracts, oldest due first: where credit can be assigned."""
    if not contract_ids:
        return []
    items = open_items.c
    return list((await connection.execute(
        select(open_items).where(items.contract_id.in_(contract_ids), items.open_amount > 0)
        .order_by(items.contract_id, items.due_date, items.invoice_number))).all())
