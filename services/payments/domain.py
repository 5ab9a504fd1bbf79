"""Open items (OPOS), the assignment of payments to them, and payment accounts. Pure, no I/O.

The rules:
- Money that arrives (a succeeded payment, a credit note) pays the invoice it names first, then
  the oldest due item; what is left is the customer's credit and pays the next item that opens.
- Money that goes back (a chargeback, a refund) is taken out of credit first, then out of the
  assignments it made, newest first, which reopens those items. Whatever neither covers (money
  paid back beyond what the customer had paid) becomes an item of its own, a debit, due at once.
- A chargeback's fee is passed on to the customer as an item of its own, due at once.
- An operator may move credit by hand: assign a payment's credit to an item of their choice, or
  undo an assignment, which makes its money credit again (paying the next item that opens).
So the customer's position, open items minus credit, always moves by exactly the amount of each
event, like the ledger does, and not at all when an operator moves credit.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Sequence

from stdnum import bic as bic_numbers
from stdnum import iban as iban_numbers
from stdnum import luhn
from stdnum.exceptions import ValidationError as NumberInvalid

from shared.errors import Rejected
from shared.events import DefaultPaymentAccount, PaymentMethod, PaymentStatus
from shared.money import Money

# The kind a credit note is recorded under among payments: money in the customer's favour like
# a payment, but from invoicing rather than a provider.
CREDIT_NOTE = "credit_note"


class ItemType(StrEnum):
    INVOICE = "invoice"
    CHARGEBACK_FEE = "chargeback_fee"
    # Money paid back (refunded, charged back) beyond what the customer had paid or held as credit.
    DEBIT = "debit"


@dataclass(frozen=True, slots=True)
class OpenItem:
    document_id: uuid.UUID
    invoice_number: str | None
    amount: Money
    open_amount: Money
    due_date: date
    item_type: ItemType = ItemType.INVOICE


@dataclass(frozen=True, slots=True)
class Assignment:
    document_id: uuid.UUID
    amount: Money


@dataclass(frozen=True, slots=True)
class Credit:
    """Money of one payment (or credit note) that no item holds yet."""

    payment_event_id: uuid.UUID
    amount: Money


@dataclass(frozen=True, slots=True)
class Held:
    """What one payment has paid of one item, net of what was taken back."""

    payment_event_id: uuid.UUID
    document_id: uuid.UUID
    amount: Money


@dataclass(frozen=True, slots=True)
class CreditUse:
    payment_event_id: uuid.UUID
    assignments: list[Assignment]
    left: Money


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """Where money going back to the customer comes from."""

    taken_credit: list[Credit]
    reopened: list[Held]
    # Neither credit nor assignments covered it: the customer owes it as a debit item.
    uncovered: Money


def assignment_order(items: Sequence[OpenItem], referenced_invoice: str | None) -> list[OpenItem]:
    """The invoice the payer named comes first, then the oldest due (ties by number, own items first)."""
    return sorted(
        items,
        key=lambda item: (
            referenced_invoice is None or item.invoice_number != referenced_invoice,
            item.due_date,
            item.invoice_number or "",
            str(item.document_id),
        ),
    )


def assign(
    available: Money, items: Sequence[OpenItem], referenced_invoice: str | None = None
) -> tuple[list[Assignment], list[OpenItem], Money]:
    """Spend `available` on the open items.

    Returns the assignments, every item as it stands afterwards (in assignment order), and what
    is left over, which the customer keeps as credit for the next open item.
    """
    assignments: list[Assignment] = []
    after: list[OpenItem] = []
    remaining = available
    for item in assignment_order(items, referenced_invoice):
        amount = min(remaining, item.open_amount)
        if not amount.is_zero():
            assignments.append(Assignment(item.document_id, amount))
            item = replace(item, open_amount=item.open_amount - amount)
            remaining = remaining - amount
        after.append(item)
    return assignments, after, remaining


def reinstate(available: Money, items: Sequence[OpenItem], reopened: Sequence[uuid.UUID],
              referenced_invoice: str | None = None) -> tuple[list[Assignment], Money]:
    """Spend money a won dispute gave back: on the items its chargeback reopened first (in the order it
    reopened them), then like any payment; returns the assignments and what is left as credit."""
    by_id = {item.document_id: item for item in items}
    first = [by_id[document_id] for document_id in dict.fromkeys(reopened) if document_id in by_id]
    assignments, _, left = assign(available, first)
    others = [item for item in items if item.document_id not in {item.document_id for item in first}]
    rest, _, left = assign(left, others, referenced_invoice)
    return assignments + rest, left


def apply_credits(credits: Sequence[Credit], items: Sequence[OpenItem]) -> list[CreditUse]:
    """Credit pays the open items: the oldest credit first, each on the oldest due item first."""
    uses: list[CreditUse] = []
    for credit in credits:
        assignments, items, left = assign(credit.amount, items)
        if assignments:
            uses.append(CreditUse(credit.payment_event_id, assignments, left))
    return uses


def withdraw(amount: Money, credits: Sequence[Credit], held: Sequence[Held]) -> Withdrawal:
    """Take `amount` back: out of `credits`, then out of `held` (each in the order given)."""
    remaining = amount
    taken: list[Credit] = []
    for credit in credits:
        part = min(remaining, credit.amount)
        if not part.is_zero():
            taken.append(Credit(credit.payment_event_id, part))
            remaining = remaining - part
    reopened: list[Held] = []
    for assignment in held:
        part = min(remaining, assignment.amount)
        if not part.is_zero():
            reopened.append(Held(assignment.payment_event_id, assignment.document_id, part))
            remaining = remaining - part
    return Withdrawal(taken, reopened, remaining)


def assignment_by_hand(credit: Credit, item: OpenItem, amount: Money | None = None) -> Assignment:
    """An operator's choice of item for a payment's credit: `amount` of it, or as much as both allow.

    The customer's position does not move (credit and open items fall by as much); never more than
    the credit holds or the item has open.
    """
    wanted = amount if amount is not None else min(credit.amount, item.open_amount)
    if not wanted > Money.zero(wanted.currency):
        raise Rejected(f"nothing to assign: the credit holds {credit.amount}, the item has {item.open_amount} open, "
                       f"{wanted} was asked for")
    if wanted > credit.amount:
        raise Rejected(f"the payment's credit is {credit.amount}, less than {wanted}")
    if wanted > item.open_amount:
        raise Rejected(f"the item has {item.open_amount} open, less than {wanted}")
    return Assignment(item.document_id, wanted)


class StatusChange(StrEnum):
    NEW = "new"  # the first report of the transaction
    SETTLED = "settled"  # a pending (or failed, then retried) payment reached a new outcome
    NONE = "none"  # a repeat, or a pending report that arrives after the outcome


def status_change(held: PaymentStatus | None, reported: PaymentStatus) -> StatusChange:
    """What a report on a provider transaction changes, given the status already recorded.

    Succeeded is final: money that moved is only taken back by a chargeback or a refund. A failed
    payment may still succeed (the provider retries the same transaction).
    """
    if held is None:
        return StatusChange.NEW
    if reported is held or reported is PaymentStatus.PENDING:
        return StatusChange.NONE
    if held is PaymentStatus.SUCCEEDED:
        raise Rejected("a succeeded payment cannot fail afterwards; it is taken back by a chargeback")
    return StatusChange.SETTLED


# --- payment accounts ----------------------------------------------------------------------------


class MandateStatus(StrEnum):
    """Where a direct-debit mandate stands, as its provider reports it: only an active one can be collected from."""

    ACTIVE = "active"
    CANCELLED = "cancelled"
    FAILED = "failed"
    EXPIRED = "expired"


def as_default_account(account: PaymentAccount | None) -> DefaultPaymentAccount | None:
    """A customer's default account as invoicing's payment means need it (payment-accounts.changed)."""
    if account is None:
        return None
    return DefaultPaymentAccount(
        account_id=account.account_id, method=account.method, mandate_reference=account.mandate_reference,
        iban=account.iban.replace(" ", "").upper() if account.iban else None,
        mandate_active=account.method is PaymentMethod.SEPA_DIRECT_DEBIT
        and account.mandate_status in (None, MandateStatus.ACTIVE))


def mandate_status_after(held: MandateStatus | None, reported: MandateStatus) -> MandateStatus:
    """A mandate that ended (cancelled, failed, expired) stays ended: a late or redelivered report of it
    being active, which providers may send out of order, does not revive it (a provider that
    reinstates a mandate says so with an event of its own)."""
    if held is not None and held is not MandateStatus.ACTIVE and reported is MandateStatus.ACTIVE:
        return held
    return reported


class InvalidPaymentAccount(ValueError):
    """Account details that cannot make a payment account."""


# EPC rules for a mandate reference: at most 35 of these characters, no leading "/", no "//".
_MANDATE_REFERENCE = re.compile(r"^(?!/)(?!.*//)[A-Za-z0-9/?:().,'+-]{1,35}$")
_PROVIDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


@dataclass(frozen=True, slots=True)
class PaymentAccount:
    account_id: uuid.UUID
    customer_id: str
    method: PaymentMethod
    is_default: bool
    holder_name: str | None = None
    iban: str | None = None
    bic: str | None = None
    mandate_reference: str | None = None
    mandate_signed_on: date | None = None
    # A card's token at its provider; a direct debit's mandate id at the provider that collects it.
    provider: str | None = None
    provider_token: str | None = None
    mandate_status: MandateStatus | None = None

    def describe(self) -> str:
        """How the account is shown: enough to recognise it, never the whole IBAN or token."""
        if self.method is PaymentMethod.SEPA_DIRECT_DEBIT:
            assert self.iban is not None
            return (f"SEPA direct debit {self.iban[:4]} …{self.iban[-4:]}, mandate {self.mandate_reference} "
                    f"({self.mandate_status or MandateStatus.ACTIVE})")
        if self.method is PaymentMethod.CARD:
            assert self.provider_token is not None
            return f"card via {self.provider}, token …{self.provider_token[-4:]}"
        return "bank transfer"


def new_payment_account(
    account_id: uuid.UUID,
    customer_id: str,
    method: PaymentMethod,
    *,
    first_of_customer: bool,
    make_default: bool = False,
    holder_name: str | None = None,
    iban: str | None = None,
    bic: str | None = None,
    mandate_reference: str | None = None,
    mandate_signed_on: date | None = None,
    provider: str | None = None,
    provider_token: str | None = None,
) -> PaymentAccount:
    """A validated account; a customer's first account is the default, so there always is one."""
    given = {name for name, value in (("iban", iban), ("bic", bic), ("mandate_reference", mandate_reference),
                                      ("mandate_signed_on", mandate_signed_on), ("provider", provider),
                                      ("provider_token", provider_token)) if value is not None}
    allowed = {
        PaymentMethod.SEPA_DIRECT_DEBIT: {"iban", "bic", "mandate_reference", "mandate_signed_on", "provider",
                                          "provider_token"},
        PaymentMethod.CARD: {"provider", "provider_token"},
        PaymentMethod.BANK_TRANSFER: set(),
    }[method]
    if given - allowed:
        raise InvalidPaymentAccount(f"{method} accounts do not take {', '.join(sorted(given - allowed))}")
    if method is PaymentMethod.SEPA_DIRECT_DEBIT:
        iban, bic = _sepa_details(iban, bic, mandate_reference, mandate_signed_on)
        if (provider is None) != (provider_token is None):
            raise InvalidPaymentAccount("a direct debit collected by a provider names the provider and its mandate id")
        if provider is not None and not _PROVIDER.match(provider):
            raise InvalidPaymentAccount(f"provider {provider!r} is not an identifier")
    elif method is PaymentMethod.CARD:
        _card_details(provider, provider_token)
    return PaymentAccount(account_id, customer_id, method, make_default or first_of_customer, holder_name,
                          iban, bic, mandate_reference, mandate_signed_on, provider, provider_token,
                          MandateStatus.ACTIVE if method is PaymentMethod.SEPA_DIRECT_DEBIT else None)


def _sepa_details(iban: str | None, bic: str | None, mandate_reference: str | None,
                  mandate_signed_on: date | None) -> tuple[str, str | None]:
    if iban is None or mandate_reference is None or mandate_signed_on is None:
        raise InvalidPaymentAccount("a SEPA direct debit needs an IBAN, a mandate reference and the mandate's date")
    try:
        iban = iban_numbers.validate(iban)
        bic = bic_numbers.validate(bic) if bic is not None else None
    except NumberInvalid as error:
        raise InvalidPaymentAccount(f"invalid bank details: {error}") from None
    if not _MANDATE_REFERENCE.match(mandate_reference):
        raise InvalidPaymentAccount(
            f"mandate reference {mandate_reference!r} is not a SEPA mandate reference "
            "(1-35 of A-Z a-z 0-9 / - ? : ( ) . , ' +, not starting with / nor containing //)"
        )
    return iban, bic


def _card_details(provider: str | None, provider_token: str | None) -> None:
    if provider is None or provider_token is None:
        raise InvalidPaymentAccount("a card account needs the provider and the provider's token for the card")
    if not _PROVIDER.match(provider):
        raise InvalidPaymentAccount(f"provider {provider!r} is not an identifier")
    digits = re.sub(r"[ -]", "", provider_token)
    if digits.isdigit() and 12 <= len(digits) <= 19 and luhn.is_valid(digits):
        raise InvalidPaymentAccount("that looks like a card number; store the provider's token, never the card number")
    if not 4 <= len(provider_token) <= 255:
        raise InvalidPaymentAccount("a provider token has 4 to 255 characters")
