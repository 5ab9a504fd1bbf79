"""Payments' repository: open items, payments and their assignments, webhook receipts, payment accounts."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date
from typing import Any, Iterable, Sequence

from sqlalchemy import Row, exists, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.domain import (
    CREDIT_NOTE,
    Assignment,
    Credit,
    Held,
    ItemType,
    MandateStatus,
    OpenItem,
    PaymentAccount,
    PaymentMethod,
)
from services.payments.tables import open_items, payment_accounts, payment_assignments, payments, webhook_receipts
from shared.db import advisory_lock_key
from shared.errors import Rejected
from shared.events import DocumentCreated, PaymentReceived
from shared.money import Money


async def lock_contract(session: AsyncSession, contract_id: str) -> None:
    """Until commit, nothing else changes the contract's items and credit.

    Its invoices and its payments arrive on two topics, applied concurrently: without this, a
    payment and a new invoice could each miss the other and leave credit beside an open item.
    """
    await lock_contracts(session, [contract_id])


# The keys in the order given, each lock taken as its row is produced.
_lock_in_order = text("SELECT pg_advisory_xact_lock(key)"
                      " FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS locks(key, position) ORDER BY position")


async def lock_contracts(session: AsyncSession, contract_ids: Iterable[str]) -> None:
    """`lock_contract` for several contracts in one statement, in key order, so concurrent batches never deadlock."""
    keys = sorted({advisory_lock_key(f"payments:contract:{contract_id}") for contract_id in contract_ids})
    await session.execute(_lock_in_order, {"keys": keys})


async def contracts_holding_credit(session: AsyncSession, contract_ids: Iterable[str]) -> set[str]:
    """Those of the contracts that have money not yet assigned (payments or credit notes)."""
    rows = await session.scalars(
        select(payments.c.contract_id.distinct())
        .where(payments.c.contract_id.in_(set(contract_ids)), payments.c.unassigned_amount > 0)
    )
    return set(rows)


async def open_item_currencies(session: AsyncSession, contract_ids: Iterable[str]) -> dict[str, set[str]]:
    """The currencies of each contract's open items."""
    currencies: dict[str, set[str]] = defaultdict(set)
    for contract_id, currency in await session.execute(
        select(open_items.c.contract_id, open_items.c.currency).distinct()
        .where(open_items.c.contract_id.in_(set(contract_ids)), open_items.c.open_amount > 0)
    ):
        currencies[contract_id].add(currency)
    return currencies


# --- open items ----------------------------------------------------------------------------------


async def add_invoice_items(session: AsyncSession, invoices: Sequence[DocumentCreated]) -> None:
    if invoices:
        await session.execute(insert(open_items), [
            _item_row(document.document_id, ItemType.INVOICE, document.contract_id, document.customer_id,
                      Money.of(document.gross_total, document.currency), document.due_date,
                      invoice_number=document.number)
            for document in invoices
        ])


async def add_own_item(session: AsyncSession, document_id: uuid.UUID, item_type: ItemType, opened_by: uuid.UUID,
                       event: PaymentReceived, amount: Money, due_date: date) -> None:
    """An item payments opens itself (a chargeback fee, a debit), owed by the customer of `event`."""
    await session.execute(insert(open_items).values(_item_row(
        document_id, item_type, event.contract_id, event.customer_id, amount, due_date, opened_by=opened_by)))


def _item_row(document_id: uuid.UUID, item_type: ItemType, contract_id: str, customer_id: str, amount: Money,
              due_date: date, **references) -> dict[str, Any]:
    return dict(document_id=document_id, item_type=item_type.value, contract_id=contract_id, customer_id=customer_id,
                currency=amount.currency, amount=amount.amount, open_amount=amount.amount, due_date=due_date,
                **references)


def open_item(row: Row) -> OpenItem:
    return OpenItem(row.document_id, row.invoice_number, Money(row.amount, row.currency),
                    Money(row.open_amount, row.currency), row.due_date, ItemType(row.item_type))


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
    return [open_item(row) for row in rows]


async def find_invoice_item(session: AsyncSession, invoice_number: str) -> Row | None:
    return (await session.execute(select(open_items).where(open_items.c.invoice_number == invoice_number))).first()


async def find_item(session: AsyncSession, document_id: uuid.UUID) -> Row | None:
    return (await session.execute(select(open_items).where(open_items.c.document_id == document_id))).first()


async def items_of(session: AsyncSession, *, contract_id: str | None = None, customer_id: str | None = None,
                   open_only: bool = False) -> list[Row]:
    """Items for display, oldest due first: a contract's, or every contract's of a customer."""
    query = select(open_items).order_by(open_items.c.contract_id, open_items.c.due_date, open_items.c.created_at)
    if contract_id is not None:
        query = query.where(open_items.c.contract_id == contract_id)
    if customer_id is not None:
        query = query.where(open_items.c.customer_id == customer_id)
    if open_only:
        query = query.where(open_items.c.open_amount > 0)
    return list((await session.execute(query)).all())


async def assignments_of_item(session: AsyncSession, document_id: uuid.UUID) -> list[Row]:
    """Every assignment to the item and every reversal of one, in the order they were made."""
    return list(
        (
            await session.execute(
                select(payment_assignments.c.assignment_id, payment_assignments.c.amount,
                       payment_assignments.c.caused_by, payment_assignments.c.assigned_at,
                       payments.c.payment_id, payments.c.kind, payments.c.currency)
                .join(payments, payments.c.payment_event_id == payment_assignments.c.payment_event_id)
                .where(payment_assignments.c.document_id == document_id)
                .order_by(payment_assignments.c.assignment_id)
            )
        ).all()
    )


# --- payments and credit notes -------------------------------------------------------------------


async def find_payment(session: AsyncSession, payment_id: str, kind: str) -> Row | None:
    return (
        await session.execute(
            select(payments).where(payments.c.payment_id == payment_id, payments.c.kind == kind).with_for_update()
        )
    ).first()


async def find_payment_event(session: AsyncSession, payment_event_id: uuid.UUID) -> Row | None:
    """A payment or credit note by the id of the event that recorded it."""
    return (await session.execute(select(payments).where(payments.c.payment_event_id == payment_event_id))).first()


async def has_caused(session: AsyncSession, caused_by: uuid.UUID) -> bool:
    """Whether some assignment (or reversal of one) was made by `caused_by`: a request carried out before."""
    return await session.scalar(select(exists().where(payment_assignments.c.caused_by == caused_by))) or False


async def add_payment(session: AsyncSession, payment: PaymentReceived, reverses: uuid.UUID | None = None) -> None:
    """Recorded with nothing unassigned: what is left after assigning it is set afterwards."""
    await session.execute(
        insert(payments).values(
            payment_event_id=payment.event_id,
            payment_id=payment.payment_id,
            kind=payment.kind.value,
            status=payment.status.value,
            provider=payment.provider,
            contract_id=payment.contract_id,
            customer_id=payment.customer_id,
            currency=payment.currency,
            amount=payment.amount,
            invoice_number=payment.invoice_number,
            reverses=reverses,
            fee=payment.fee,
            unassigned_amount=0,
            received_at=payment.occurred_at,
        )
    )


async def settle_payment(session: AsyncSession, payment_event_id: uuid.UUID, payment: PaymentReceived) -> None:
    """A pending payment's outcome: its amount and time are the provider's final ones."""
    await session.execute(
        update(payments)
        .where(payments.c.payment_event_id == payment_event_id)
        .values(status=payment.status.value, amount=payment.amount, received_at=payment.occurred_at,
                invoice_number=payment.invoice_number)
    )


async def add_credit_note(session: AsyncSession, document: DocumentCreated) -> None:
    await session.execute(
        insert(payments).values(
            payment_event_id=document.event_id,
            payment_id=document.number,
            kind=CREDIT_NOTE,
            provider="invoicing",
            contract_id=document.contract_id,
            customer_id=document.customer_id,
            currency=document.currency,
            amount=document.gross_total,
            invoice_number=document.corrects_number,
            unassigned_amount=0,
            received_at=document.occurred_at,
        )
    )


async def credits_of(session: AsyncSession, contract_id: str) -> list[Credit]:
    """Payments of the contract with money not yet assigned, oldest first, locked."""
    rows = (
        await session.execute(
            select(payments.c.payment_event_id, payments.c.unassigned_amount, payments.c.currency)
            .where(payments.c.contract_id == contract_id, payments.c.unassigned_amount > 0)
            .order_by(payments.c.received_at, payments.c.payment_event_id)
            .with_for_update()
        )
    ).all()
    return [Credit(row.payment_event_id, Money(row.unassigned_amount, row.currency)) for row in rows]


async def held_by(session: AsyncSession, contract_id: str, payment_event_id: uuid.UUID | None = None) -> list[Held]:
    """What the contract's payments (or one of them) pay of each item, newest assignment first."""
    net = func.sum(payment_assignments.c.amount)
    newest = func.max(payment_assignments.c.assignment_id).filter(payment_assignments.c.amount > 0)
    query = (
        select(payment_assignments.c.payment_event_id, payment_assignments.c.document_id, payments.c.currency,
               net.label("net"))
        .join(payments, payments.c.payment_event_id == payment_assignments.c.payment_event_id)
        .where(payments.c.contract_id == contract_id)
        .group_by(payment_assignments.c.payment_event_id, payment_assignments.c.document_id, payments.c.currency)
        .having(net > 0)
        .order_by(newest.desc())
    )
    if payment_event_id is not None:
        query = query.where(payment_assignments.c.payment_event_id == payment_event_id)
    rows = (await session.execute(query)).all()
    return [Held(row.payment_event_id, row.document_id, Money(row.net, row.currency)) for row in rows]


async def assign(session: AsyncSession, payment_event_id: uuid.UUID, assignments: Sequence[Assignment],
                 caused_by: uuid.UUID) -> None:
    for assignment in assignments:
        await session.execute(
            update(open_items)
            .where(open_items.c.document_id == assignment.document_id)
            .values(open_amount=open_items.c.open_amount - assignment.amount.amount)
        )
    if assignments:
        await session.execute(
            insert(payment_assignments),
            [{"payment_event_id": payment_event_id, "document_id": a.document_id, "amount": a.amount.amount,
              "caused_by": caused_by} for a in assignments],
        )


async def reopen(session: AsyncSession, reopened: Sequence[Held], caused_by: uuid.UUID) -> None:
    """Take assignments back: a negative journal row each, and the items are open again by as much."""
    for part in reopened:
        await session.execute(
            update(open_items)
            .where(open_items.c.document_id == part.document_id)
            .values(open_amount=open_items.c.open_amount + part.amount.amount)
        )
    if reopened:
        await session.execute(
            insert(payment_assignments),
            [{"payment_event_id": p.payment_event_id, "document_id": p.document_id, "amount": -p.amount.amount,
              "caused_by": caused_by} for p in reopened],
        )


async def documents_reopened_by(session: AsyncSession, caused_by: uuid.UUID) -> list[uuid.UUID]:
    """The items an event (a chargeback, a refund) reopened, in the order it reopened them."""
    return list(await session.scalars(
        select(payment_assignments.c.document_id)
        .where(payment_assignments.c.caused_by == caused_by, payment_assignments.c.amount < 0)
        .order_by(payment_assignments.c.assignment_id)))


async def set_unassigned(session: AsyncSession, payment_event_id: uuid.UUID, unassigned: Money) -> None:
    await session.execute(
        update(payments)
        .where(payments.c.payment_event_id == payment_event_id)
        .values(unassigned_amount=unassigned.amount)
    )


async def take_credit(session: AsyncSession, taken: Sequence[Credit]) -> None:
    for credit in taken:
        await session.execute(
            update(payments)
            .where(payments.c.payment_event_id == credit.payment_event_id)
            .values(unassigned_amount=payments.c.unassigned_amount - credit.amount.amount)
        )


# --- webhook receipts ----------------------------------------------------------------------------


async def record_webhook(session: AsyncSession, provider: str, provider_event_id: str, event_id: uuid.UUID,
                         body_sha256: str) -> bool:
    """Whether this is the first delivery of the provider's event (a concurrent second one waits, then loses)."""
    recorded = await session.execute(
        pg_insert(webhook_receipts)
        .values(provider=provider, provider_event_id=provider_event_id, event_id=event_id, body_sha256=body_sha256)
        .on_conflict_do_nothing()
        .returning(webhook_receipts.c.event_id)
    )
    return recorded.first() is not None


async def lock_provider_payments(session: AsyncSession, provider: str, payment_ids: Iterable[str]) -> None:
    """Until commit, no other request records or holds a transaction of these provider payment ids.

    Without it a refund and its payment arriving at once could miss each other: the refund finding no
    payment yet and being held, the payment finding nothing held yet, each before the other commits.
    """
    keys = sorted({advisory_lock_key(f"payments:provider-payment:{provider}:{payment_id}")
                   for payment_id in payment_ids})
    if keys:
        await session.execute(_lock_in_order, {"keys": keys})


async def receipt_whose(session: AsyncSession, provider: str, provider_event_id: str, payment_id: str,
                        contract_id: str, customer_id: str) -> None:
    """The receipt's transaction was found to be the contract's (and is no longer held, if it was)."""
    await session.execute(
        update(webhook_receipts)
        .where(webhook_receipts.c.provider == provider, webhook_receipts.c.provider_event_id == provider_event_id)
        .values(payment_id=payment_id, contract_id=contract_id, customer_id=customer_id, held_transaction=None,
                waiting_for=None)
    )


async def hold_receipt(session: AsyncSession, provider: str, provider_event_id: str, held: dict,
                       waiting_for: str | None) -> None:
    await session.execute(
        update(webhook_receipts)
        .where(webhook_receipts.c.provider == provider, webhook_receipts.c.provider_event_id == provider_event_id)
        .values(held_transaction=held, waiting_for=waiting_for)
    )


async def held_receipt(session: AsyncSession, provider: str, provider_event_id: str) -> Row | None:
    return (await session.execute(
        select(webhook_receipts)
        .where(webhook_receipts.c.provider == provider, webhook_receipts.c.provider_event_id == provider_event_id,
               webhook_receipts.c.held_transaction.is_not(None))
        .with_for_update())).first()


async def contract_of_payment(session: AsyncSession, provider: str, payment_id: str) -> Row | None:
    """The contract and customer an earlier transaction of the provider with that id was found to be for."""
    return (
        await session.execute(
            select(webhook_receipts.c.contract_id, webhook_receipts.c.customer_id)
            .where(webhook_receipts.c.provider == provider, webhook_receipts.c.payment_id == payment_id,
                   webhook_receipts.c.contract_id.is_not(None))
            .limit(1)
        )
    ).first()


async def held_for(session: AsyncSession, provider: str, payment_id: str) -> list[Row]:
    """The receipts held until the provider's transaction `payment_id` arrived, in the order they came, locked."""
    return list(
        (
            await session.execute(
                select(webhook_receipts.c.provider_event_id, webhook_receipts.c.held_transaction)
                .where(webhook_receipts.c.provider == provider, webhook_receipts.c.waiting_for == payment_id,
                       webhook_receipts.c.held_transaction.is_not(None))
                .order_by(webhook_receipts.c.received_at, webhook_receipts.c.provider_event_id)
                .with_for_update()
            )
        ).all()
    )


async def contracts_of_customer(session: AsyncSession, customer_id: str) -> set[str]:
    """The contracts payments knows of a customer: from its open items and from transactions found to be theirs."""
    items = select(open_items.c.contract_id).where(open_items.c.customer_id == customer_id)
    receipts = select(webhook_receipts.c.contract_id).where(webhook_receipts.c.customer_id == customer_id)
    return set(await session.scalars(items.union(receipts)))


async def customer_of_contract(session: AsyncSession, contract_id: str) -> str | None:
    items = select(open_items.c.customer_id).where(open_items.c.contract_id == contract_id).limit(1)
    receipts = (select(webhook_receipts.c.customer_id).where(webhook_receipts.c.contract_id == contract_id)
                .limit(1))
    return (await session.scalars(items)).first() or (await session.scalars(receipts)).first()


# --- payment accounts ----------------------------------------------------------------------------


async def lock_accounts_of(session: AsyncSession, customer_id: str) -> None:
    """Until commit, nothing else adds or re-defaults the customer's accounts."""
    await session.execute(select(func.pg_advisory_xact_lock(advisory_lock_key(f"payments:accounts:{customer_id}"))))


def _account(row: Row) -> PaymentAccount:
    return PaymentAccount(row.account_id, row.customer_id, PaymentMethod(row.method), row.is_default,
                          row.holder_name, row.iban, row.bic, row.mandate_reference, row.mandate_signed_on,
                          row.provider, row.provider_token,
                          MandateStatus(row.mandate_status) if row.mandate_status else None)


async def account_with_mandate(session: AsyncSession, provider: str, mandate_id: str) -> PaymentAccount | None:
    """The direct-debit account whose mandate the provider knows by `mandate_id`, locked."""
    row = (await session.execute(
        select(payment_accounts)
        .where(payment_accounts.c.method == PaymentMethod.SEPA_DIRECT_DEBIT.value,
               payment_accounts.c.provider == provider, payment_accounts.c.provider_token == mandate_id)
        .with_for_update())).first()
    return _account(row) if row else None


async def set_mandate_status(session: AsyncSession, account_id: uuid.UUID, status: MandateStatus) -> None:
    await session.execute(update(payment_accounts).where(payment_accounts.c.account_id == account_id)
                          .values(mandate_status=status.value))


async def accounts_of(session: AsyncSession, customer_id: str) -> list[PaymentAccount]:
    """The customer's accounts, the default first, then in the order they were added."""
    rows = (
        await session.execute(
            select(payment_accounts)
            .where(payment_accounts.c.customer_id == customer_id)
            .order_by(payment_accounts.c.is_default.desc(), payment_accounts.c.created_at,
                      payment_accounts.c.account_id)
        )
    ).all()
    return [_account(row) for row in rows]


async def add_account(session: AsyncSession, account: PaymentAccount) -> bool:
    """False, and nothing added, if another account holds its mandate reference or provider token."""
    if account.is_default:
        await _clear_default(session, account.customer_id)
    added = await session.execute(
        pg_insert(payment_accounts).values(
            account_id=account.account_id,
            customer_id=account.customer_id,
            method=account.method.value,
            holder_name=account.holder_name,
            iban=account.iban,
            bic=account.bic,
            mandate_reference=account.mandate_reference,
            mandate_signed_on=account.mandate_signed_on,
            provider=account.provider,
            provider_token=account.provider_token,
            mandate_status=account.mandate_status.value if account.mandate_status else None,
            is_default=account.is_default,
        ).on_conflict_do_nothing()
    )
    return added.rowcount == 1


async def make_default(session: AsyncSession, customer_id: str, account_id: uuid.UUID) -> None:
    await _clear_default(session, customer_id)
    await session.execute(
        update(payment_accounts).where(payment_accounts.c.account_id == account_id).values(is_default=True)
    )


async def _clear_default(session: AsyncSession, customer_id: str) -> None:
    # Its own statement before the new default is set: the partial unique index allows one at a time.
    await session.execute(
        update(payment_accounts)
        .where(payment_accounts.c.customer_id == customer_id, payment_accounts.c.is_default)
        .values(is_default=False)
    )
