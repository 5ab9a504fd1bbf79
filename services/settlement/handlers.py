"""Settlement's use cases, each inside the consumer's transaction."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from services.settlement import domain, store
from services.settlement.domain import EntryType
from shared import topics
from shared.errors import Rejected
from shared.events import (
    BillingRunRequested,
    PaymentKind,
    PaymentReceived,
    RatedItem,
    ReceivablesPosted,
    SettlementItem,
    derive_id,
)
from shared.messaging import Outgoing
from shared.money import Money

log = logging.getLogger("billing.settlement")

ENTRY_TYPE_OF_PAYMENT = {
    PaymentKind.PAYMENT: EntryType.PAYMENT,
    PaymentKind.CHARGEBACK: EntryType.CHARGEBACK,
    PaymentKind.REFUND: EntryType.REFUND,
}


async def record_rated_item(session: AsyncSession, event: RatedItem) -> list[Outgoing]:
    account = await store.account_for(session, event.contract_id, event.customer_id, event.currency)
    if account.balance.currency != event.currency:
        raise Rejected(
            f"item {event.billable_item_id} is in {event.currency}, "
            f"but contract {event.contract_id} is kept in {account.balance.currency}"
        )
    await store.add_billable_item(session, event)
    return []


async def run_billing(session: AsyncSession, event: BillingRunRequested) -> list[Outgoing]:
    account = await store.lock_account(session, event.contract_id)
    if account is None:
        log.info("billing run for %s: nothing was ever rated for it", event.contract_id)
        return []
    items = await store.unsettled_items(session, account, event.cutoff)
    run = domain.settle(derive_id(event.event_id, "settlement-run"), account, event.cutoff, items)
    if run is None:
        log.info("billing run for %s: nothing to settle before %s", event.contract_id, event.cutoff)
        return []
    account, entry = domain.post(
        account,
        EntryType.RECEIVABLE,
        run.total,
        entry_id=derive_id(run.settlement_run_id, "receivable"),
        description=f"Settlement run {run.settlement_run_id}",
        booked_at=event.occurred_at,
        settlement_run_id=run.settlement_run_id,
    )
    await store.add_run(session, run)
    await store.save_posting(session, account, entry)
    posted = ReceivablesPosted(
        event_id=derive_id(run.settlement_run_id, "receivables.posted"),
        occurred_at=event.occurred_at,
        contract_id=run.contract_id,
        settlement_run_id=run.settlement_run_id,
        customer_id=run.customer_id,
        currency=run.total.currency,
        cutoff=run.cutoff,
        items=[
            SettlementItem(
                billable_item_id=item.billable_item_id,
                item_code=item.item_code,
                description=item.description,
                quantity=item.quantity,
                unit_price=item.unit_price,
                net=item.net.amount,
                period_start=item.period_start,
                period_end=item.period_end,
            )
            for item in run.items
        ],
        total=run.total.amount,
        ledger_balance=account.balance.amount,
    )
    return [Outgoing(topics.RECEIVABLES_POSTED, posted)]


async def post_payment(session: AsyncSession, event: PaymentReceived) -> list[Outgoing]:
    entry_type = ENTRY_TYPE_OF_PAYMENT[event.kind]
    if await store.payment_already_posted(session, event.payment_id, entry_type):
        log.warning("%s %s was already posted under another event id; ignoring %s",
                    entry_type, event.payment_id, event.event_id)
        return []
    account = await store.account_for(session, event.contract_id, event.customer_id, event.currency)
    account, entry = domain.post(
        account,
        entry_type,
        Money.of(event.amount, event.currency),
        entry_id=derive_id(event.event_id, "ledger-entry"),
        description=f"Transaction: {event.payment_id}",
        booked_at=event.occurred_at,
        payment_id=event.payment_id,
    )
    await store.save_posting(session, account, entry)
    return []
