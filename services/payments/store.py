"""Payments' repository: open items, payments and their assignments."""

from __future__ import annotations

import uuid
from typing import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.domain import Assignment, OpenItem
from services.payments.tables import open_items, payment_assignments, payments
from shared.errors import Rejected
from shared.events import DocumentCreated, PaymentReceived
from shared.money import Money


async def add_open_item(session: AsyncSession, document: DocumentCreated) -> None:
    await session.execute(
        insert(open_items).values(
            document_id=document.document_id,
            invoice_number=document.number,
            contract_id=document.contract_id,
            customer_id=document.customer_id,
            currency=document.currency,
            amount=document.gross_total,
            open_amount=document.gross_total,
            due_date=document.due_date,
        )
    )


async def open_items_of(session: AsyncSession, contract_id: str, currency: str) -> list[OpenItem]:
    rows = (
        await session.execute(
            select(open_items)
            .where(open_items.c.contract_id == contract_id, open_items.c.open_amount > 0)
            .order_by(open_items.c.due_date, open_items.c.invoice_number)
            .with_for_update()
        )
    ).all()
    if any(row.currency != currency for row in rows):
        raise Rejected(f"contract {contract_id} has open items in another currency than {currency}")
    return [
        OpenItem(row.document_id, row.invoice_number, Money(row.amount, row.currency),
                 Money(row.open_amount, row.currency), row.due_date)
        for row in rows
    ]


async def payment_recorded(session: AsyncSession, payment: PaymentReceived) -> bool:
    found = await session.scalar(
        select(payments.c.payment_event_id).where(
            payments.c.payment_id == payment.payment_id, payments.c.kind == payment.kind.value
        )
    )
    return found is not None


async def add_payment(session: AsyncSession, payment: PaymentReceived, unassigned: Money) -> None:
    await session.execute(
        insert(payments).values(
            payment_event_id=payment.event_id,
            payment_id=payment.payment_id,
            kind=payment.kind.value,
            provider=payment.provider,
            contract_id=payment.contract_id,
            customer_id=payment.customer_id,
            currency=payment.currency,
            amount=payment.amount,
            invoice_number=payment.invoice_number,
            unassigned_amount=unassigned.amount,
            received_at=payment.occurred_at,
        )
    )


async def credits_of(session: AsyncSession, contract_id: str) -> list[tuple[uuid.UUID, Money]]:
    """Payments of the contract with money not yet assigned, oldest first, locked."""
    rows = (
        await session.execute(
            select(payments.c.payment_event_id, payments.c.unassigned_amount, payments.c.currency)
            .where(payments.c.contract_id == contract_id, payments.c.unassigned_amount > 0)
            .order_by(payments.c.received_at, payments.c.payment_event_id)
            .with_for_update()
        )
    ).all()
    return [(row.payment_event_id, Money(row.unassigned_amount, row.currency)) for row in rows]


async def save_assignments(
    session: AsyncSession,
    payment_event_id: uuid.UUID,
    assignments: Sequence[Assignment],
    items_after: Sequence[OpenItem],
    unassigned: Money,
) -> None:
    open_amounts = {item.document_id: item.open_amount for item in items_after}
    for assignment in assignments:
        await session.execute(
            update(open_items)
            .where(open_items.c.document_id == assignment.document_id)
            .values(open_amount=open_amounts[assignment.document_id].amount)
        )
    if assignments:
        await session.execute(
            insert(payment_assignments),
            [
                {"payment_event_id": payment_event_id, "document_id": a.document_id, "amount": a.amount.amount}
                for a in assignments
            ],
        )
    await session.execute(
        update(payments)
        .where(payments.c.payment_event_id == payment_event_id)
        .values(unassigned_amount=unassigned.amount)
    )
