"""Settlement's rules: what a billing run settles, what is credited, and how entries move a balance.

The balance is what the customer owes on the contract: receivables, chargebacks and refunds
raise it; credit memos and payments lower it. Entries are never changed: a correction is a new
entry of the same type with the opposite amount (`reverse`).

Billing runs (`RunStatus`) settle every unsettled item of a contract that was used before the
run's cutoff, each item exactly once, and post the credits that are due with them. A scheduled
run belongs to a contract and a billing period and has the id `scheduled_run_id` derives from
both, so any number of schedulers (and retries after a crash) record and settle the same run.
Usage that arrives after its period's scheduled run is settled by the contract's next run (the
next period's, or one requested on demand); it is never dropped and never settled twice.

Credits give back part of what billed items charged, never more than an item's net in all:
granted by an operator, for a cancelled order (what is left of the item's net), and on
termination (the prepaid share of a recurring fee beyond the contract's last day). Each is
posted once, in a run, so invoicing documents it with a credit note.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Iterable, Mapping, Sequence

from shared.errors import Rejected
from shared.events import (
    BillingRunRequested,
    ChargeKind,
    ContractStatus,
    CreditReason,
    CustomerProfile,
    TaxCategory,
    derive_id,
)
from shared.money import Money


class EntryType(StrEnum):
    RECEIVABLE = "Receivable"
    CREDIT_MEMO = "CreditMemo"
    # The VAT of an invoice (Tax) or a credit note (TaxCredit), posted once invoicing has issued the
    # document: runs post net receivables and credit memos before any tax is known, and these make
    # the balance what the customer owes gross, the amount payments holds as open.
    TAX = "Tax"
    TAX_CREDIT = "TaxCredit"
    PAYMENT = "Payment"
    CHARGEBACK = "Chargeback"
    # What the provider charged for a chargeback, passed on to the customer.
    CHARGEBACK_FEE = "ChargebackFee"
    REFUND = "Refund"
    # A chargeback the merchant disputed and won: the money is the customer's payment again.
    CHARGEBACK_REVERSAL = "ChargebackReversal"


BALANCE_DIRECTION: dict[EntryType, int] = {
    EntryType.RECEIVABLE: 1,
    EntryType.CREDIT_MEMO: -1,
    EntryType.TAX: 1,
    EntryType.TAX_CREDIT: -1,
    EntryType.PAYMENT: -1,
    EntryType.CHARGEBACK: 1,
    EntryType.CHARGEBACK_FEE: 1,
    EntryType.REFUND: 1,
    EntryType.CHARGEBACK_REVERSAL: -1,
}


REVERSIBLE = frozenset({EntryType.PAYMENT, EntryType.CHARGEBACK, EntryType.REFUND, EntryType.CHARGEBACK_REVERSAL})


class RunStatus(StrEnum):
    # Recorded, waiting for its cutoff: a request for a cutoff still ahead when it is applied
    # (e.g. "create vouchers at the end of this period"). The scheduler opens it once its clock
    # passes the cutoff.
    PENDING = "pending"
    # Due and being settled: the scheduler records every due run as open in one short
    # transaction, then settles them one by one. A crash leaves a run open, and the next tick
    # settles it under the same id, so the retry has the same result.
    OPEN = "open"
    # Settled: its items carry its id, its Receivable and CreditMemo entries are on the ledger
    # and receivables.posted is in the outbox. A run that finds nothing to settle is dropped
    # instead: recorded runs are the ones that settled something, each with its document(s).
    COMPLETE = "complete"


# --- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    contract_id: str
    customer_id: str
    balance: Money
    last_sequence: int

    @classmethod
    def open(cls, contract_id: str, customer_id: str, currency: str) -> Account:
        return cls(contract_id, customer_id, Money.zero(currency), 0)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: uuid.UUID
    contract_id: str
    customer_id: str
    sequence: int
    entry_type: EntryType
    amount: Money  # signed: its effect on the balance
    balance: Money  # the running balance after this entry
    description: str
    booked_at: datetime
    settlement_run_id: uuid.UUID | None = None
    payment_id: str | None = None
    # The document the entry is about when it is known as it is booked (the invoice a payment names).
    document_number: str | None = None
    reverses_entry_id: uuid.UUID | None = None


def _book(account: Account, entry_type: EntryType, amount: Money, entry_id: uuid.UUID, description: str,
          booked_at: datetime, **references) -> tuple[Account, LedgerEntry]:
    if amount.currency != account.balance.currency:
        raise Rejected(
            f"contract {account.contract_id} is kept in {account.balance.currency}, not {amount.currency}"
        )
    # Made directly rather than with dataclasses.replace, which costs several times more, once per entry.
    moved = Account(account.contract_id, account.customer_id, account.balance + amount, account.last_sequence + 1)
    entry = LedgerEntry(
        entry_id=entry_id,
        contract_id=account.contract_id,
        customer_id=account.customer_id,
        sequence=moved.last_sequence,
        entry_type=entry_type,
        amount=amount,
        balance=moved.balance,
        description=description,
        booked_at=booked_at,
        **references,
    )
    return moved, entry


def post(
    account: Account,
    entry_type: EntryType,
    magnitude: Money,
    *,
    entry_id: uuid.UUID,
    description: str,
    booked_at: datetime,
    settlement_run_id: uuid.UUID | None = None,
    payment_id: str | None = None,
    document_number: str | None = None,
) -> tuple[Account, LedgerEntry]:
    """Book `magnitude` (never negative) as `entry_type`; returns the moved account and the entry."""
    if magnitude.amount < 0:
        raise Rejected(f"{entry_type} amount must not be negative, got {magnitude}")
    amount = magnitude if BALANCE_DIRECTION[entry_type] > 0 else -magnitude
    return _book(account, entry_type, amount, entry_id, description, booked_at,
                 settlement_run_id=settlement_run_id, payment_id=payment_id, document_number=document_number)


def reverse(
    account: Account, entry: LedgerEntry, *, entry_id: uuid.UUID, reason: str, booked_at: datetime
) -> tuple[Account, LedgerEntry]:
    """Undo `entry` with a new entry of its type and the opposite amount; the original stays as it was.

    Only money that moved is reversed this way (a payment, chargeback or refund booked in error):
    receivables and credit memos are corrected with credits, so that invoicing documents them.
    """
    if entry.entry_type not in REVERSIBLE:
        raise Rejected(f"a {entry.entry_type} is corrected with a credit, not reversed")
    if entry.contract_id != account.contract_id:
        raise Rejected(f"entry {entry.entry_id} belongs to contract {entry.contract_id}, not {account.contract_id}")
    if entry.reverses_entry_id is not None:
        raise Rejected(f"entry {entry.entry_id} is itself a reversal; book the original amount again instead")
    # Not the payment id: that stays the original's, one entry per provider transaction and kind.
    return _book(account, entry.entry_type, -entry.amount, entry_id, f"Reversal of #{entry.sequence}: {reason}"[:500],
                 booked_at, settlement_run_id=entry.settlement_run_id, document_number=entry.document_number,
                 reverses_entry_id=entry.entry_id)


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """A ledger's entries summed per type, each as the positive figure it is read as (reversals net out)."""

    receivables: Money
    credit_memos: Money
    tax: Money
    tax_credits: Money
    payments: Money
    chargebacks: Money
    chargeback_fees: Money
    refunds: Money
    chargeback_reversals: Money

    @classmethod
    def of(cls, currency: str, signed_sums: Mapping[EntryType, Decimal]) -> LedgerTotals:
        """From the sums of each type's signed amounts (as they moved the balance)."""
        # "+ 0" turns the -0 of a type without entries into 0.
        return cls(*(Money(signed_sums.get(entry_type, Decimal(0)) * BALANCE_DIRECTION[entry_type] + 0, currency)
                     for entry_type in _TOTALS_ORDER))

    def figures(self) -> dict[EntryType, Money]:
        return dict(zip(_TOTALS_ORDER, (getattr(self, field.name) for field in fields(self)), strict=True))

    @property
    def balance(self) -> Money:
        """What the customer owes: each figure in the direction its entries move the balance."""
        figures = self.figures().items()
        return sum((figure if BALANCE_DIRECTION[entry_type] > 0 else -figure for entry_type, figure in figures),
                   Money.zero(self.receivables.currency))

    def __add__(self, other: LedgerTotals) -> LedgerTotals:
        return LedgerTotals(*(mine + theirs for mine, theirs in zip(self.figures().values(),
                                                                     other.figures().values(), strict=True)))


# The entry type behind each LedgerTotals field, in field order.
_TOTALS_ORDER = (EntryType.RECEIVABLE, EntryType.CREDIT_MEMO, EntryType.TAX, EntryType.TAX_CREDIT, EntryType.PAYMENT,
                 EntryType.CHARGEBACK, EntryType.CHARGEBACK_FEE, EntryType.REFUND, EntryType.CHARGEBACK_REVERSAL)


@dataclass(frozen=True, slots=True)
class ContractLedger:
    """One contract's account: its balance, how many entries it has, and their totals per type."""

    contract_id: str
    balance: Money
    entries: int
    totals: LedgerTotals


def totals_per_currency(ledgers: Iterable[ContractLedger]) -> dict[str, LedgerTotals]:
    """A customer's summary: the totals of all its contracts' ledgers, per currency."""
    summary: dict[str, LedgerTotals] = {}
    for ledger in ledgers:
        currency = ledger.balance.currency
        summary[currency] = summary[currency] + ledger.totals if currency in summary else ledger.totals
    return summary


def reversal_id(entry_id: uuid.UUID) -> uuid.UUID:
    """An entry is reversed at most once, so its reversal's id follows from it."""
    return derive_id(entry_id, "reversal")


# --- the runs of closed periods ---------------------------------------------------------


def scheduled_run_id(contract_id: str, period_end: date) -> uuid.UUID:
    return derive_id(f"{contract_id}:{period_end.isoformat()}", "scheduled-settlement-run")


# --- contracts, items and credits --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """Settlement's replica of a contract: what a termination credit depends on."""

    contract_id: str
    customer_id: str
    currency: str
    starts_on: date
    ends_on: date | None
    status: ContractStatus
    revision: int
    # Who is billed, as of this revision; None for snapshots kept before the replica held it.
    customer: CustomerProfile | None = None

    @property
    def terminated_on(self) -> date | None:
        """The last day of a cancelled contract; None while it runs."""
        return self.ends_on if self.status is ContractStatus.CANCELLED else None


@dataclass(frozen=True, slots=True)
class Item:
    """A billable item as settlement holds it: unsettled until a run settles it, then maybe credited.

    A run sees the unsettled usage and purchases of a period summed per item and price
    (`item_count` of them, `billable_item_id` None), so what it holds follows the contract, not
    the number of events; recurring fees, which termination credits refer to, stay one by one."""

    billable_item_id: uuid.UUID | None
    contract_id: str
    item_code: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Money
    period_start: date
    period_end: date
    charge_kind: ChargeKind = ChargeKind.USAGE
    settlement_run_id: uuid.UUID | None = None
    credited: Money | None = None  # what credits have given back on it so far
    tax_category: TaxCategory | None = None  # None for items rated under items.rated v1
    discount: Money | None = None  # what a discount took off the list amount to give `net`
    item_count: int = 1

    @property
    def creditable(self) -> Money:
        """What may still be credited: a credit never gives back more than the item charged."""
        return self.net - self.credited if self.credited is not None else self.net


@dataclass(frozen=True, slots=True)
class Credit:
    """A credit memo line on a billed item; `net` is positive, what the customer gets back."""

    credit_id: uuid.UUID
    reason: CreditReason
    item: Item
    net: Money
    description: str
    period_start: date
    period_end: date

    @property
    def credited_settlement_run_id(self) -> uuid.UUID | None:
        return self.item.settlement_run_id


def _billed(item: Item, what: str) -> None:
    if item.settlement_run_id is None:
        raise Rejected(f"item {item.billable_item_id} has not been billed yet; a {what} corrects a billed item")


def _within_creditable(item: Item, amount: Money) -> None:
    if amount > item.creditable:
        raise Rejected(
            f"item {item.billable_item_id} can be credited {item.creditable} more at most (net {item.net}), "
            f"not {amount}"
        )


def grant_credit(item: Item, amount: Money, reason: str, credit_id: uuid.UUID) -> Credit:
    """A credit of `amount` an operator grants on a billed item, for `reason`."""
    _billed(item, "credit")
    if amount.amount <= 0:
        raise Rejected(f"a credit must be positive, not {amount}")
    _within_creditable(item, amount)
    return Credit(credit_id, CreditReason.CREDIT, item, amount, f"Credit on {item.description}: {reason}"[:500],
                  item.period_start, item.period_end)


def order_cancellation_id(billable_item_id: uuid.UUID) -> uuid.UUID:
    """An item's order is cancelled at most once, so the credit's id follows from the item."""
    return derive_id(billable_item_id, "order-cancelled-credit")


def cancel_order(item: Item) -> Credit:
    """Cancelling a billed order credits all of its net that was not credited before."""
    _billed(item, "cancellation")
    if not item.creditable.amount > 0:
        raise Rejected(f"item {item.billable_item_id} is already credited in full")
    return Credit(order_cancellation_id(item.billable_item_id), CreditReason.ORDER_CANCELLED, item,
                  item.creditable, f"Cancelled: {item.description}"[:500], item.period_start, item.period_end)


def termination_credit(item: Item, terminated_on: date) -> Credit | None:
    """The prepaid part of a recurring fee beyond the contract's last day, or None if nothing is.

    credit = net x (days of the item's period after `terminated_on`) / (days in the period),
    rounded once, ROUND_HALF_UP, and never more than is still creditable on the item.
    """
    if item.charge_kind is not ChargeKind.RECURRING_FEE or item.period_end <= terminated_on:
        return None
    credited_from = max(terminated_on + timedelta(days=1), item.period_start)
    days_after = (item.period_end - credited_from).days + 1
    days = (item.period_end - item.period_start).days + 1
    prorated = Money.round(item.net.amount * days_after / days, item.net.currency)
    amount = min(prorated, item.creditable)
    if not amount.amount > 0:
        return None
    return Credit(derive_id(item.billable_item_id, "termination-credit"), CreditReason.TERMINATION, item, amount,
                  f"Termination credit: {item.description}"[:500], credited_from, item.period_end)


def termination_credits(contract: ContractTerms | None, items: Iterable[Item]) -> list[Credit]:
    """Termination credits due on billed `items` (none had one yet) of a contract that was cancelled."""
    if contract is None or contract.terminated_on is None:
        return []
    credits = (termination_credit(item, contract.terminated_on) for item in items)
    return [credit for credit in credits if credit is not None]


def credit_run_id(credits: Sequence[Credit]) -> uuid.UUID:
    """The run that posts exactly these credits (each credit is posted once, so the run is too)."""
    return derive_id(",".join(sorted(str(credit.credit_id) for credit in credits)), "credit-run")


# --- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BillingLine:
    """A run's items of one contract item, period, unit price and tax category, summed exactly."""

    line_id: uuid.UUID
    item_code: str
    description: str
    period_start: date
    period_end: date
    unit_price: Decimal
    tax_category: TaxCategory | None
    quantity: Decimal
    discount: Money
    net: Money
    item_count: int


def billing_lines(settlement_run_id: uuid.UUID, items: Sequence[Item], currency: str) -> tuple[BillingLine, ...]:
    """`items` summed per contract item, period, unit price and tax category: what receivables.posted
    carries, so a run's size follows its contract, not the number of usage events."""
    groups: dict[tuple, list[Item]] = {}
    for item in items:
        key = (item.period_start, item.period_end, item.item_code, item.description, item.unit_price,
               item.tax_category or "", item.charge_kind)
        groups.setdefault(key, []).append(item)
    return tuple(
        BillingLine(
            line_id=derive_id(settlement_run_id, "line:" + ":".join(str(part) for part in key)),
            item_code=members[0].item_code, description=members[0].description,
            period_start=members[0].period_start, period_end=members[0].period_end,
            unit_price=members[0].unit_price, tax_category=members[0].tax_category,
            quantity=sum((member.quantity for member in members), Decimal(0)),
            discount=Money.sum((member.discount or Money.zero(currency) for member in members), currency),
            net=Money.sum((member.net for member in members), currency),
            item_count=sum(member.item_count for member in members),
        )
        for key, members in sorted(groups.items(), key=lambda group: group[0][:5])
    )


@dataclass(frozen=True, slots=True)
class SettlementRun:
    """A run over items (`total` is their net, which may be negative) and credits.

    A run whose items' total is negative (a period's price fell after part of it was billed: a
    cheaper volume band reached by later usage) owes the customer money: its lines with a
    negative net are credited as adjustments (a credit memo and a credit note), the others are
    invoiced. Otherwise all its lines are invoiced, negative ones included.
    """

    settlement_run_id: uuid.UUID
    contract_id: str
    customer_id: str
    cutoff: datetime
    items: tuple[Item, ...]
    credits: tuple[Credit, ...]
    total: Money
    credit_total: Money
    lines: tuple[BillingLine, ...] = ()
    # Derived from the lines once, when the run is made: posting and announcing a run read them
    # several times each, for every run of a batch.
    invoiced_lines: tuple[BillingLine, ...] = field(init=False)
    adjusted_lines: tuple[BillingLine, ...] = field(init=False)
    # What the run's invoice charges.
    receivable: Money = field(init=False)
    # What the run credits because its items came to less than nothing (positive).
    adjustment: Money = field(init=False)

    def __post_init__(self) -> None:
        credited = self.total.amount < 0
        invoiced = tuple(line for line in self.lines if not (credited and line.net.amount <= 0))
        adjusted = tuple(line for line in self.lines if credited and line.net.amount <= 0)
        currency = self.total.currency
        object.__setattr__(self, "invoiced_lines", invoiced)
        object.__setattr__(self, "adjusted_lines", adjusted)
        object.__setattr__(self, "receivable", Money.sum((line.net for line in invoiced), currency))
        object.__setattr__(self, "adjustment", -Money.sum((line.net for line in adjusted), currency))


def settle(
    settlement_run_id: uuid.UUID,
    account: Account,
    cutoff: datetime,
    items: Sequence[Item],
    contract: ContractTerms | None = None,
    credits: Sequence[Credit] = (),
) -> SettlementRun | None:
    """A run over `items` (unsettled, used before `cutoff`) and `credits`; None when it has neither.

    The items are settled by this run, and if the contract was cancelled, the recurring fees
    among them that reach beyond its last day are credited in the same run.
    """
    settled = tuple(replace(item, settlement_run_id=settlement_run_id) for item in items)
    all_credits = (*credits, *termination_credits(contract, settled))
    if not settled and not all_credits:
        return None
    currency = account.balance.currency
    return SettlementRun(
        settlement_run_id=settlement_run_id,
        contract_id=account.contract_id,
        customer_id=account.customer_id,
        cutoff=cutoff,
        items=settled,
        credits=all_credits,
        total=Money.sum((item.net for item in settled), currency),
        credit_total=Money.sum((credit.net for credit in all_credits), currency),
        lines=billing_lines(settlement_run_id, settled, currency),
    )


def post_run(account: Account, run: SettlementRun, booked_at: datetime) -> tuple[Account, list[LedgerEntry]]:
    """The run's Receivable (its invoiced lines) and CreditMemo entries (its adjustments, its credits)."""
    entries = []
    bookings = [
        (run.invoiced_lines, EntryType.RECEIVABLE, run.receivable, "receivable", f"Settlement run {run.settlement_run_id}"),
        (run.adjusted_lines, EntryType.CREDIT_MEMO, run.adjustment, "adjustment",
         f"Credit memo (adjustment: the items came to {run.total}), settlement run {run.settlement_run_id}"),
        (run.credits, EntryType.CREDIT_MEMO, run.credit_total, "credit-memo",
         f"Credit memo ({', '.join(sorted({credit.reason.value for credit in run.credits}))}), "
         f"settlement run {run.settlement_run_id}"),
    ]
    for lines, entry_type, amount, name, description in bookings:
        if lines:
            account, entry = post(account, entry_type, amount, entry_id=derive_id(run.settlement_run_id, name),
                                  description=description, booked_at=booked_at,
                                  settlement_run_id=run.settlement_run_id)
            entries.append(entry)
    return account, entries


def post_document_tax(account: Account, document_id: uuid.UUID, number: str, is_invoice: bool, tax: Money,
                      booked_at: datetime) -> tuple[Account, list[LedgerEntry]]:
    """The VAT of an issued invoice (owed) or credit note (given back); nothing for a document without tax."""
    if tax.is_zero():
        return account, []
    entry_type = EntryType.TAX if is_invoice else EntryType.TAX_CREDIT
    account, entry = post(account, entry_type, tax, entry_id=derive_id(document_id, "tax"),
                          description=f"VAT: {number}", booked_at=booked_at, document_number=number)
    return account, [entry]


def post_transaction(account: Account, entry_type: EntryType, amount: Money, fee: Money | None, *,
                     event_id: uuid.UUID, payment_id: str, document_number: str | None,
                     booked_at: datetime) -> tuple[Account, list[LedgerEntry]]:
    """A provider transaction that moved money, and the fee a chargeback passes on to the customer."""
    account, entry = post(account, entry_type, amount, entry_id=derive_id(event_id, "ledger-entry"),
                          description=f"Transaction: {payment_id}", booked_at=booked_at, payment_id=payment_id,
                          document_number=document_number)
    if fee is None:
        return account, [entry]
    if entry_type is not EntryType.CHARGEBACK:
        raise Rejected(f"{entry_type} {payment_id} carries a fee; only chargebacks do")
    account, fee_entry = post(account, EntryType.CHARGEBACK_FEE, fee, entry_id=derive_id(event_id, "chargeback-fee"),
                              description=f"Chargeback fee: {payment_id}", booked_at=booked_at,
                              payment_id=payment_id, document_number=document_number)
    return account, [entry, fee_entry]


def billing_run_requests(request_id: uuid.UUID, contract_ids: Sequence[str], cutoff: datetime, now: datetime,
                         requested_by: str) -> list[BillingRunRequested]:
    """One billing run per contract named (once each). The event ids derive from the request id, so a
    request sent again asks for the same runs, which settlement's inbox then drops."""
    if not contract_ids:
        raise Rejected("name at least one contract")
    return [BillingRunRequested(event_id=derive_id(str(request_id), f"billing-run:{contract_id}"), occurred_at=now,
                                contract_id=contract_id, cutoff=cutoff, requested_by=requested_by)
            for contract_id in dict.fromkeys(contract_ids)]
