"""Payments' use cases, each inside the consumer's transaction."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import domain, store
from shared.events import DocumentCreated, DocumentType, PaymentKind, PaymentReceived
from shared.messaging import Outgoing
from shared.money import Money

log = logging.getLogger("billing.payments")


async def open_item_for_invoice(session: AsyncSession, event: DocumentCreated) -> list[Outgoing]:
    """One open item per invoice; credit the customer already has on the contract pays it first."""
    if event.document_type is not DocumentType.INVOICE:
        return []
    await store.add_open_item(session, event)
    items = await store.open_items_of(session, event.contract_id, event.currency)
    for payment_event_id, credit in await store.credits_of(session, event.contract_id):
        assignments, items, left = domain.assign(credit, items)
        await store.save_assignments(session, payment_event_id, assignments, items, left)
    return []


async def record_payment(session: AsyncSession, event: PaymentReceived) -> list[Outgoing]:
    if await store.payment_recorded(session, event):
        log.warning("%s %s was already recorded under another event id; ignoring %s",
                    event.kind, event.payment_id, event.event_id)
        return []
    amount = Money.of(event.amount, event.currency)
    await store.add_payment(session, event, unassigned=Money.zero(event.currency))
    if event.kind is PaymentKind.PAYMENT:
        items = await store.open_items_of(session, event.contract_id, event.currency)
        assignments, items, left = domain.assign(amount, items, event.invoice_number)
        await store.save_assignments(session, event.event_id, assignments, items, left)
    return []
