"""The portal's own rules, without I/O: what its actions publish, and how it sums a customer's ledgers."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Iterable

from shared.events import UsageRecorded
from shared.money import Money

# Usage recorded for a past day is stamped at its noon (UTC), well inside the day in Europe's zones.
PAST_USAGE_TIME = time(12, 0)


class ActionRefused(ValueError):
    """A quick action that can never be carried out as asked (its message says why)."""


def usage_instant(day: date, now: datetime) -> datetime:
    """When usage entered for `day` happened: now if it is today, the day's noon (UTC) if it is past."""
    today = now.astimezone(UTC).date()
    if day > today:
        raise ActionRefused(f"usage cannot be recorded for a future day ({day.isoformat()})")
    return now if day == today else datetime.combine(day, PAST_USAGE_TIME, tzinfo=UTC)


def usage_recorded(request_id: uuid.UUID, contract_id: str, item_code: str, quantity: Decimal, day: date,
                   now: datetime) -> UsageRecorded:
    """The portal as an upstream product: the request's id is the event id, so a resubmitted form is one usage."""
    return UsageRecorded(event_id=request_id, occurred_at=usage_instant(day, now), contract_id=contract_id,
                         item_code=item_code, quantity=quantity)


def minor_units(amount: Decimal, currency: str) -> Decimal:
    """A stored amount (numeric(28,4)) as its currency writes it: 407.2500 EUR -> 407.25."""
    return Money(amount, currency).amount


def plain_number(value: Decimal) -> Decimal:
    """A quantity or price without trailing zeros and never in exponent form: 8500.0000000000 -> 8500."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal


def mask_iban(iban: str | None) -> str | None:
    """Enough of an IBAN to recognise it (country, check digits, last four), not to use it."""
    if not iban:
        return iban
    compact = iban.replace(" ", "")
    return f"{compact[:4]} **** {compact[-4:]}"


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """One ledger (a contract's) or the sum of several in one currency."""

    currency: str
    balance: Money
    entries: int
    # entry type -> the signed sum of its amounts, as the entries moved the balance
    by_type: dict[str, Money] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContractLedger:
    contract_id: str
    figures: LedgerFigures


@dataclass(frozen=True, slots=True)
class AccountRow:
    contract_id: str
    currency: str
    balance: Decimal


@dataclass(frozen=True, slots=True)
class TypeSum:
    contract_id: str
    entry_type: str
    amount: Decimal
    entries: int


def ledger_summary(accounts: Iterable[AccountRow], sums: Iterable[TypeSum]) -> tuple[list[ContractLedger],
                                                                                   list[LedgerFigures]]:
    """Per contract: balance, entries and sums per entry type; per currency: the same, added up.

    Balances come from the accounts (what the ledger says the customer owes), the sums from the
    entries; they agree because every entry moved its account's balance by its amount.
    """
    by_contract: dict[str, list[TypeSum]] = defaultdict(list)
    for row in sums:
        by_contract[row.contract_id].append(row)
    contracts = []
    for account in accounts:
        rows = by_contract.get(account.contract_id, [])
        contracts.append(ContractLedger(account.contract_id, LedgerFigures(
            account.currency, Money(account.balance, account.currency), sum(row.entries for row in rows),
            {row.entry_type: Money(row.amount, account.currency) for row in sorted(rows, key=lambda r: r.entry_type)},
        )))
    totals: dict[str, LedgerFigures] = {}
    for ledger in contracts:
        figures = ledger.figures
        before = totals.get(figures.currency, LedgerFigures(figures.currency, Money.zero(figures.currency), 0))
        by_type = dict(before.by_type)
        for entry_type, amount in figures.by_type.items():
            by_type[entry_type] = by_type.get(entry_type, Money.zero(figures.currency)) + amount
        totals[figures.currency] = LedgerFigures(figures.currency, before.balance + figures.balance,
                                                 before.entries + figures.entries, dict(sorted(by_type.items())))
    return contracts, [totals[currency] for currency in sorted(totals)]
