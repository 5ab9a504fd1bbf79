"""Payments' use cases, each inside one transaction: a consumer's, the bridge's or an operator's."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Sequence

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import domain, store
from services.payments.domain import ItemType, PaymentAccount, PaymentMethod, StatusChange
from services.payments.providers import MandateChange, Notification, Transaction, received_event_id
from services.payments.tables import messaging
from shared import topics
from shared.errors import DependencyNotReady, Rejected
from shared.events import (
    DocumentCreated,
    DocumentType,
    PaymentAccountsChanged,
    PaymentKind,
    PaymentReceived,
    PaymentStatus,
    derive_id,
)
from shared.inbox import BatchOutcome, each_in_savepoint
from shared.outbox import Outgoing, write_outbox
from shared.money import Money

log = logging.getLogger("billing.payments")


async def record_documents(session: AsyncSession, events: Sequence[DocumentCreated]) -> BatchOutcome:
    """`record_document` for a batch. A contract whose documents in it are all invoices in the currency
    of its open items, and that has no credit to spend, just gets an open item for each, in one
    statement; the documents of other contracts are recorded one by one, in order."""
    contract_ids = {event.contract_id for event in events}
    await store.lock_contracts(session, contract_ids)
    holding_credit = await store.contracts_holding_credit(session, contract_ids)
    currencies = await store.open_item_currencies(session, contract_ids)
    for event in events:
        currencies[event.contract_id].add(event.currency)
    involved = {event.contract_id for event in events if event.document_type is not DocumentType.INVOICE}
    involved |= holding_credit | {contract_id for contract_id in contract_ids if len(currencies[contract_id]) > 1}
    await store.add_invoice_items(session, [event for event in events if event.contract_id not in involved])
    return await each_in_savepoint(record_document)(
        session, [event for event in events if event.contract_id in involved])


async def record_document(session: AsyncSession, event: DocumentCreated) -> list[Outgoing]:
    """An invoice opens an item; a credit note pays the invoice it corrects. Credit then pays what is open."""
    await store.lock_contract(session, event.contract_id)
    if event.document_type is DocumentType.INVOICE:
        await store.add_invoice_items(session, [event])
    else:
        await _record_credit_note(session, event)
    await _apply_credits(session, event.contract_id, event.currency, caused_by=event.event_id)
    return []


async def _record_credit_note(session: AsyncSession, event: DocumentCreated) -> None:
    """Pays the invoice it corrects first, then the oldest due item; the rest is the customer's credit.

    A credit note that names no invoice is credit from the start.
    """
    if event.corrects_number is not None:
        corrected = await store.find_invoice_item(session, event.corrects_number)
        if corrected is None:
            raise DependencyNotReady(f"credit note {event.number} corrects invoice {event.corrects_number}, "
                                     "which has not arrived")
        if corrected.contract_id != event.contract_id:
            raise Rejected(f"credit note {event.number} of {event.contract_id} corrects invoice "
                           f"{event.corrects_number} of {corrected.contract_id}")
    await store.add_credit_note(session, event)
    await _spend(session, event.event_id, Money.of(event.gross_total, event.currency), event.contract_id,
                 event.corrects_number, caused_by=event.event_id)


async def record_payment(session: AsyncSession, event: PaymentReceived) -> list[Outgoing]:
    await store.lock_contract(session, event.contract_id)
    if event.kind is not PaymentKind.PAYMENT and event.status is not PaymentStatus.SUCCEEDED:
        raise Rejected(f"a {event.kind} is reported once it happened; it cannot be {event.status}")
    recorded = await store.find_payment(session, event.payment_id, event.kind.value)
    change = domain.status_change(PaymentStatus(recorded.status) if recorded else None, event.status)
    if change is StatusChange.NONE:
        log.info("%s %s is already recorded as %s; nothing to do for %s (%s)", event.kind, event.payment_id,
                 recorded.status, event.event_id, event.status)
        return []
    if recorded is not None and recorded.contract_id != event.contract_id:
        raise Rejected(f"{event.kind} {event.payment_id} was recorded for {recorded.contract_id}, "
                       f"not {event.contract_id}")
    if event.kind is PaymentKind.PAYMENT:
        await _record_incoming(session, event, recorded)
    elif event.kind is PaymentKind.CHARGEBACK_REVERSAL:
        await _reinstate(session, event)
    else:
        await _take_back(session, event)
    return []


async def _record_incoming(session: AsyncSession, event: PaymentReceived, recorded: Row | None) -> None:
    """Only a succeeded payment is assigned; a pending or failed one is kept with its status."""
    if recorded is None:
        payment_event_id = event.event_id
        await store.add_payment(session, event)
    else:
        payment_event_id = recorded.payment_event_id
        await store.settle_payment(session, payment_event_id, event)
    if event.status is PaymentStatus.SUCCEEDED:
        await _spend(session, payment_event_id, Money.of(event.amount, event.currency), event.contract_id,
                     event.invoice_number, caused_by=event.event_id)


async def _take_back(session: AsyncSession, event: PaymentReceived) -> None:
    """A chargeback or refund: money goes back to the customer, who owes again what it had paid.

    A chargeback takes back its payment's credit, then that payment's assignments, newest first.
    A refund is paid out of the customer's credit (the refunded payment's own first), then takes
    back the refunded payment's assignments (any payment's, when it names none), newest first.
    The rest, if any, is a debit item; a chargeback's fee is an item too. Other credit then pays
    what was reopened, as it would any open item.
    """
    taken_back = await _payment_taken_back(session, event)
    await store.add_payment(session, event, reverses=taken_back)
    credits = await store.credits_of(session, event.contract_id)
    if event.kind is PaymentKind.CHARGEBACK:
        credits = [credit for credit in credits if credit.payment_event_id == taken_back]
    else:
        credits.sort(key=lambda credit: credit.payment_event_id != taken_back)
    held = await store.held_by(session, event.contract_id, taken_back)
    withdrawal = domain.withdraw(Money.of(event.amount, event.currency), credits, held)
    await store.take_credit(session, withdrawal.taken_credit)
    await store.reopen(session, withdrawal.reopened, caused_by=event.event_id)
    due = event.occurred_at.date()
    if not withdrawal.uncovered.is_zero():
        await store.add_own_item(session, derive_id(event.event_id, "debit"), ItemType.DEBIT, event.event_id,
                                 event, withdrawal.uncovered, due)
    if event.fee is not None:
        if event.kind is not PaymentKind.CHARGEBACK:
            raise Rejected(f"refund {event.payment_id} carries a fee; only chargebacks do")
        await store.add_own_item(session, derive_id(event.event_id, "chargeback-fee"), ItemType.CHARGEBACK_FEE,
                                 event.event_id, event, Money.of(event.fee, event.currency), due)
    log.info("%s %s of %s: %s from credit, %s reopened, %s as a debit", event.kind, event.payment_id, event.amount,
             sum(credit.amount.amount for credit in withdrawal.taken_credit),
             sum(part.amount.amount for part in withdrawal.reopened), withdrawal.uncovered.amount)
    await _apply_credits(session, event.contract_id, event.currency, caused_by=event.event_id)


async def _reinstate(session: AsyncSession, event: PaymentReceived) -> None:
    """A chargeback reversal (a dispute the merchant won): the money the chargeback took is the customer's
    payment again, and pays back first what the chargeback reopened, then what is open as a payment does."""
    assert event.reverses_payment_id is not None  # the schema requires it
    chargeback = await store.find_payment(session, event.reverses_payment_id, PaymentKind.CHARGEBACK.value)
    if chargeback is None:
        raise DependencyNotReady(f"chargeback reversal {event.payment_id} undoes chargeback "
                                 f"{event.reverses_payment_id}, which has not arrived")
    if chargeback.contract_id != event.contract_id:
        raise Rejected(f"chargeback reversal {event.payment_id} of {event.contract_id} undoes chargeback "
                       f"{event.reverses_payment_id} of {chargeback.contract_id}")
    if event.amount > chargeback.amount:
        raise Rejected(f"chargeback reversal {event.payment_id} gives back {event.amount}, more than chargeback "
                       f"{event.reverses_payment_id} took ({chargeback.amount})")
    await store.add_payment(session, event, reverses=chargeback.payment_event_id)
    items = await store.open_items_of(session, event.contract_id, event.currency)
    reopened = await store.documents_reopened_by(session, chargeback.payment_event_id)
    assignments, left = domain.reinstate(Money.of(event.amount, event.currency), items, reopened,
                                         event.invoice_number or chargeback.invoice_number)
    await store.assign(session, event.event_id, assignments, event.event_id)
    await store.set_unassigned(session, event.event_id, left)


async def _payment_taken_back(session: AsyncSession, event: PaymentReceived) -> uuid.UUID | None:
    """The recorded payment a chargeback or refund takes back (a chargeback naming none, its own id's)."""
    payment_id = event.reverses_payment_id
    if payment_id is None and event.kind is PaymentKind.CHARGEBACK:
        payment_id = event.payment_id
    if payment_id is None:
        return None
    payment = await store.find_payment(session, payment_id, PaymentKind.PAYMENT.value)
    if payment is None:
        raise DependencyNotReady(f"{event.kind} {event.payment_id} takes back payment {payment_id}, "
                                 "which has not arrived")
    if payment.contract_id != event.contract_id:
        raise Rejected(f"{event.kind} {event.payment_id} of {event.contract_id} takes back payment {payment_id} "
                       f"of {payment.contract_id}")
    if payment.status != PaymentStatus.SUCCEEDED:
        raise Rejected(f"{event.kind} {event.payment_id} takes back payment {payment_id}, which is "
                       f"{payment.status}; only money that moved can go back")
    return payment.payment_event_id


async def _spend(session: AsyncSession, payment_event_id: uuid.UUID, amount: Money, contract_id: str,
                 referenced_invoice: str | None, caused_by: uuid.UUID) -> None:
    items = await store.open_items_of(session, contract_id, amount.currency)
    assignments, _, left = domain.assign(amount, items, referenced_invoice)
    await store.assign(session, payment_event_id, assignments, caused_by)
    await store.set_unassigned(session, payment_event_id, left)


async def _apply_credits(session: AsyncSession, contract_id: str, currency: str, caused_by: uuid.UUID) -> None:
    items = await store.open_items_of(session, contract_id, currency)
    if not items:
        return
    for use in domain.apply_credits(await store.credits_of(session, contract_id), items):
        await store.assign(session, use.payment_event_id, use.assignments, caused_by)
        await store.set_unassigned(session, use.payment_event_id, use.left)


# --- credit moved by hand (an operator, the portal) ------------------------------------------------


async def _payment_locked(session: AsyncSession, payment_event_id: uuid.UUID) -> Row:
    """The payment (or credit note), its contract locked, as it stands once the lock is held."""
    payment = await store.find_payment_event(session, payment_event_id)
    if payment is None:
        raise Rejected(f"there is no payment {payment_event_id}")
    await store.lock_contract(session, payment.contract_id)
    return await store.find_payment_event(session, payment_event_id)


async def assign_by_hand(session: AsyncSession, payment_event_id: uuid.UUID, document_id: uuid.UUID,
                         amount: Decimal | None, request_id: uuid.UUID) -> domain.Assignment | None:
    """Assign credit of one payment to one open item of its contract (`amount`, in the payment's currency,
    or as much as both allow); None if `request_id` was carried out before."""
    payment = await _payment_locked(session, payment_event_id)
    if await store.has_caused(session, request_id):
        return None
    item = await store.find_item(session, document_id)
    if item is None or item.contract_id != payment.contract_id:
        raise Rejected(f"contract {payment.contract_id} has no open item {document_id}")
    credit = next((credit for credit in await store.credits_of(session, payment.contract_id)
                   if credit.payment_event_id == payment_event_id), None)
    if credit is None:
        raise Rejected(f"{payment.kind} {payment.payment_id} has no credit left to assign")
    wanted = None if amount is None else Money.of(amount, payment.currency)
    assignment = domain.assignment_by_hand(credit, store.open_item(item), wanted)
    await store.assign(session, payment_event_id, [assignment], request_id)
    await store.set_unassigned(session, payment_event_id, credit.amount - assignment.amount)
    log.info("%s %s: %s assigned by hand to item %s", payment.kind, payment.payment_id, assignment.amount, document_id)
    return assignment


async def undo_assignment(session: AsyncSession, payment_event_id: uuid.UUID, document_id: uuid.UUID,
                          request_id: uuid.UUID) -> domain.Held | None:
    """Take back what one payment pays of one item: the item is open again by as much and the money is the
    payment's credit; None if `request_id` was carried out before."""
    payment = await _payment_locked(session, payment_event_id)
    if await store.has_caused(session, request_id):
        return None
    held = next((held for held in await store.held_by(session, payment.contract_id, payment_event_id)
                 if held.document_id == document_id), None)
    if held is None:
        raise Rejected(f"{payment.kind} {payment.payment_id} pays nothing of item {document_id}")
    await store.reopen(session, [held], request_id)
    await store.set_unassigned(session, payment_event_id, Money(payment.unassigned_amount, payment.currency) + held.amount)
    log.info("%s %s: %s of item %s undone by hand", payment.kind, payment.payment_id, held.amount, document_id)
    return held


# --- payment accounts (operator commands, or an API) ----------------------------------------------


async def add_payment_account(session: AsyncSession, customer_id: str, method: PaymentMethod, *,
                              make_default: bool = False, **details) -> PaymentAccount:
    """Add an account; the customer's first one, or one added with `make_default`, becomes the default."""
    await store.lock_accounts_of(session, customer_id)
    existing = await store.accounts_of(session, customer_id)
    account = domain.new_payment_account(uuid.uuid4(), customer_id, method, first_of_customer=not existing,
                                         make_default=make_default, **details)
    if not await store.add_account(session, account):
        # Either unique detail may be the one taken (a provider's direct debit has both).
        held = [f"mandate reference {account.mandate_reference}"] if account.mandate_reference else []
        held += [f"{account.provider} token {account.provider_token}"] if account.provider_token else []
        raise domain.InvalidPaymentAccount(f"{' or '.join(held)} belongs to another payment account already")
    await _announce_default_account(session, customer_id)
    return account


async def set_default_payment_account(session: AsyncSession, customer_id: str, account_id: uuid.UUID) -> None:
    await store.lock_accounts_of(session, customer_id)
    if account_id not in {account.account_id for account in await store.accounts_of(session, customer_id)}:
        raise domain.InvalidPaymentAccount(f"customer {customer_id} has no payment account {account_id}")
    await store.make_default(session, customer_id, account_id)
    await _announce_default_account(session, customer_id)


async def _announce_default_account(session: AsyncSession, customer_id: str) -> None:
    """payment-accounts.changed with the customer's default account as it now is, into the outbox."""
    default = next((account for account in await store.accounts_of(session, customer_id) if account.is_default), None)
    event = PaymentAccountsChanged(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), customer_id=customer_id,
                                   default_account=domain.as_default_account(default))
    await write_outbox(session, messaging, [Outgoing(topics.PAYMENT_ACCOUNTS_CHANGED, event)])


# --- the webhook bridge --------------------------------------------------------------------------


class Outcome(StrEnum):
    PUBLISHED = "published"  # its payments.received is in the outbox
    HELD = "held"  # recorded; published once the transaction it refers to arrives (or an operator matches it)
    MANDATE_UPDATED = "mandate_updated"
    DUPLICATE = "duplicate"  # recorded before: nothing written
    IGNORED = "ignored"  # an event billing does not use, or about nothing billing knows


@dataclass(frozen=True, slots=True)
class Receipt:
    provider_event_id: str
    outcome: Outcome
    event_id: uuid.UUID | None = None
    detail: str | None = None


async def accept_notifications(session: AsyncSession, provider: str, notifications: Sequence[Notification],
                               body_sha256: str) -> list[Receipt]:
    """Record each provider event once and act on it, all in the caller's one transaction.

    A transaction's payments.received goes to the outbox (the payments worker's relay publishes it)
    once the bridge knows whose it is (`_whose`); until then it is held in its receipt, and the
    transaction it refers to releases it when it arrives, whatever the order the provider sent
    them in. A redelivered event records nothing, so nothing is published twice.
    """
    transactions = [notification.change for notification in notifications
                    if isinstance(notification.change, Transaction)]
    await store.lock_provider_payments(session, provider, [
        payment_id for transaction in transactions
        for payment_id in (transaction.payment_id, transaction.reverses_payment_id) if payment_id is not None])
    receipts = []
    for notification in notifications:
        change = notification.change
        if change is None:
            receipts.append(Receipt(notification.provider_event_id, Outcome.IGNORED,
                                    detail=notification.ignored_because))
            continue
        event_id = received_event_id(provider, notification.provider_event_id)
        if not await store.record_webhook(session, provider, notification.provider_event_id, event_id, body_sha256):
            receipts.append(Receipt(notification.provider_event_id, Outcome.DUPLICATE, event_id))
        elif isinstance(change, MandateChange):
            receipts.append(await _change_mandate(session, provider, notification.provider_event_id, change))
        elif (whose := await _whose(session, provider, change)) is None:
            await store.hold_receipt(session, provider, notification.provider_event_id, change.model_dump(mode="json"),
                                     waiting_for=change.reverses_payment_id)
            detail = (f"waits for {change.reverses_payment_id}" if change.reverses_payment_id
                      else "names no contract, invoice or customer billing knows; held for an operator")
            log.warning("%s event %s (%s %s) is held: %s", provider, notification.provider_event_id, change.kind,
                        change.payment_id, detail)
            receipts.append(Receipt(notification.provider_event_id, Outcome.HELD, event_id, detail))
        else:
            await _publish(session, provider, notification.provider_event_id, change, *whose)
            receipts.append(Receipt(notification.provider_event_id, Outcome.PUBLISHED, event_id))
    return receipts


async def _whose(session: AsyncSession, provider: str, transaction: Transaction) -> tuple[str, str] | None:
    """The contract and customer of a transaction: as its provider's payload names them, else through the
    invoice it names, the earlier transaction of the provider it refers to, or its direct-debit mandate's
    account and that customer's one contract. None while nothing says."""
    reference = transaction.reference
    contract_id, customer_id = reference.contract_id, reference.customer_id
    if contract_id is None and reference.invoice_number is not None:
        invoice = await store.find_invoice_item(session, reference.invoice_number)
        if invoice is not None:
            contract_id, customer_id = invoice.contract_id, customer_id or invoice.customer_id
    if contract_id is None:
        for payment_id in filter(None, (transaction.reverses_payment_id, transaction.payment_id)):
            if (earlier := await store.contract_of_payment(session, provider, payment_id)) is not None:
                contract_id, customer_id = earlier.contract_id, earlier.customer_id
                break
    if customer_id is None and reference.mandate_id is not None:
        account = await store.account_with_mandate(session, provider, reference.mandate_id)
        customer_id = account.customer_id if account is not None else None
    if contract_id is None and customer_id is not None:
        contracts = await store.contracts_of_customer(session, customer_id)
        contract_id = contracts.pop() if len(contracts) == 1 else None
    if contract_id is not None and customer_id is None:
        customer_id = await store.customer_of_contract(session, contract_id)
    return (contract_id, customer_id) if contract_id is not None and customer_id is not None else None


async def _publish(session: AsyncSession, provider: str, provider_event_id: str, transaction: Transaction,
                   contract_id: str, customer_id: str) -> None:
    """Into the outbox, and with it what was held waiting for this transaction: its contract's too."""
    event = transaction.event(provider, provider_event_id, contract_id, customer_id)
    await store.receipt_whose(session, provider, provider_event_id, transaction.payment_id, contract_id, customer_id)
    await write_outbox(session, messaging, [Outgoing(topics.PAYMENTS_RECEIVED, event)])
    for held in await store.held_for(session, provider, transaction.payment_id):
        log.info("%s event %s is released by %s %s", provider, held.provider_event_id, transaction.kind,
                 transaction.payment_id)
        await _publish(session, provider, held.provider_event_id, Transaction.model_validate(held.held_transaction),
                       contract_id, customer_id)


async def place_held(session: AsyncSession, provider: str, provider_event_id: str, contract_id: str,
                     customer_id: str) -> PaymentReceived:
    """An operator's answer for a held transaction: whose it is. It is published as if its provider had
    said so (and releases what waited for it); a receipt that holds nothing is refused."""
    held = await store.held_receipt(session, provider, provider_event_id)
    if held is None:
        raise Rejected(f"{provider} event {provider_event_id} is not held")
    transaction = Transaction.model_validate(held.held_transaction)
    await store.lock_provider_payments(session, provider, [transaction.payment_id])
    await _publish(session, provider, provider_event_id, transaction, contract_id, customer_id)
    return transaction.event(provider, provider_event_id, contract_id, customer_id)


async def _change_mandate(session: AsyncSession, provider: str, provider_event_id: str,
                          change: MandateChange) -> Receipt:
    account = await store.account_with_mandate(session, provider, change.mandate_id)
    if account is None:
        log.warning("%s event %s: no payment account has mandate %s", provider, provider_event_id, change.mandate_id)
        return Receipt(provider_event_id, Outcome.IGNORED, detail=f"no payment account has mandate {change.mandate_id}")
    status = domain.mandate_status_after(account.mandate_status, change.status)
    await store.set_mandate_status(session, account.account_id, status)
    await _announce_default_account(session, account.customer_id)
    log.info("%s mandate %s of %s is %s", provider, change.mandate_id, account.customer_id, status)
    return Receipt(provider_event_id, Outcome.MANDATE_UPDATED, detail=f"mandate {change.mandate_id} is {status}")
