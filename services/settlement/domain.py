"""Settlement's rules: what a billing run settles and how entries move a contract's balance.

The balance is what the customer owes on the contract: receivables, chargebacks and refunds
raise it; credit memos and payments lower it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Sequence

from shared.errors import Rejected
from shared.money import Money


class EntryType(StrEnum):
    RECEIVABLE = "Receivable"
    CREDIT_MEMO = "CreditMemo"
    PAYMENT = "Payment"
    CHARGEBACK = "Chargeback"
    REFUND = "Refund"


BALANCE_DIRECTION: dict[EntryType, int] = {
    EntryType.RECEIVABLE: 1,
    EntryType.CREDIT_MEMO: -1,
    EntryType.PAYMENT: -1,
    EntryType.CHARGEBACK: 1,
    EntryType.REFUND: 1,
}


class RunStatus(StrEnum):
    PENDING = "pending"
    OPEN = "open"
    COMPLETE = "complete"


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
) -> tuple[Account, LedgerEntry]:
    """Book `magnitude` (never negative) as `entry_type`; returns the moved account and the entry."""
    if magnitude.currency != account.balance.currency:
        raise Rejected(
            f"contract {account.contract_id} is kept in {account.balance.currency}, "
            f"not {magnitude.currency}"
        )
    if magnitude.amount < 0:
        raise Rejected(f"{entry_type} amount must not be negative, got {magnitude}")
    amount = magnitude if BALANCE_DIRECTION[entry_type] > 0 else -magnitude
    moved = replace(account, balance=account.balance + amount, last_sequence=account.last_sequence + 1)
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
        settlement_run_id=settlement_run_id,
        payment_id=payment_id,
    )
    return moved, entry


@dataclass(frozen=True, slots=True)
class UnsettledItem:
    billable_item_id: uuid.UUID
    item_code: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Money
    period_start: date
    period_end: date


@dataclass(frozen=True, slots=True)
class SettlementRun:
    settlement_run_id: uuid.UUID
    contract_id: str
    customer_id: str
    cutoff: datetime
    items: tuple[UnsettledItem, ...]
    total: Money
    status: RunStatus


def settle(
    settlement_run_id: uuid.UUID,
    account: Account,
    cutoff: datetime,
    items: Sequence[UnsettledItem],
) -> SettlementRun | None:
    """A run over the items used before `cutoff`; None when there is nothing to settle."""
    if not items:
        return None
    currency = account.balance.currency
    return SettlementRun(
        settlement_run_id=settlement_run_id,
        contract_id=account.contract_id,
        customer_id=account.customer_id,
        cutoff=cutoff,
        items=tuple(items),
        total=Money.sum((item.net for item in items), currency),
        status=RunStatus.COMPLETE,
    )
