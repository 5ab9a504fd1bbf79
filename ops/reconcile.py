"""`billing reconcile`: proof that money was neither lost nor made up between rating and the ledger.

Per contract, and in total per currency:
  1. the net rating rated == the net settlement holds: settled by runs + still unsettled
     (shown apart, since they are waiting for their run, not missing);
  2. the runs' totals == their Receivable entries, and the credits == their CreditMemo entries;
  3. the ledger balance == receivables - credit memos + VAT - payments + chargebacks + fees + refunds,
     summed from the entries, == the account's balance == the running balance of its last entry.

It reads each service's own database, read-only. The services are read one after the other, so
run it when the pipeline is quiet: an item rating has rated but settlement has not received yet
shows as a difference until it arrives.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Sequence

from sqlalchemy import func, select, text

from ops.observe import Databases
from services.rating.tables import billable_items as rated_items
from services.settlement.domain import EntryType, LedgerTotals
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import contract_accounts, credits, ledger_entries, settlement_runs
from shared.money import exponent

ZERO = Decimal(0)


@dataclass(frozen=True)
class Figures:
    """One contract's (or, summed, one currency's) figures from rating and settlement."""

    currency: str
    rated: Decimal = ZERO
    settled: Decimal = ZERO
    unsettled: Decimal = ZERO
    run_totals: Decimal = ZERO
    credited: Decimal = ZERO
    # Signed sums of the ledger entries per type, as they moved the balance.
    entry_sums: dict[EntryType, Decimal] = field(default_factory=dict)
    account_balance: Decimal = ZERO
    last_running_balance: Decimal = ZERO

    @property
    def ledger(self) -> LedgerTotals:
        return LedgerTotals.of(self.currency, self.entry_sums)

    @property
    def rated_difference(self) -> Decimal:
        return self.rated - self.settled - self.unsettled

    @property
    def ledger_difference(self) -> Decimal:
        return self.ledger.balance.amount - self.account_balance

    def show(self, amount: Decimal) -> str:
        """An amount at the currency's minor unit (the database sums come back at numeric(28,4))."""
        return f"{amount:.{exponent(self.currency)}f}"

    def differences(self) -> list[str]:
        ledger, show = self.ledger, self.show
        found = []
        if self.rated_difference:
            found.append(f"rated {show(self.rated)} != settled {show(self.settled)} + unsettled {show(self.unsettled)}")
        if ledger.receivables.amount != self.run_totals:
            found.append(f"receivables {ledger.receivables} != runs' totals {show(self.run_totals)}")
        if ledger.credit_memos.amount != self.credited:
            found.append(f"credit memos {ledger.credit_memos} != credits {show(self.credited)}")
        if self.ledger_difference:
            found.append(f"entries give a balance of {ledger.balance}, the account has {show(self.account_balance)}")
        if self.last_running_balance != self.account_balance:
            found.append(f"last entry's running balance {show(self.last_running_balance)} != "
                         f"account {show(self.account_balance)}")
        return found

    def __add__(self, other: Figures) -> Figures:
        sums = defaultdict(Decimal, self.entry_sums)
        for entry_type, amount in other.entry_sums.items():
            sums[entry_type] += amount
        return replace(
            self,
            rated=self.rated + other.rated,
            settled=self.settled + other.settled,
            unsettled=self.unsettled + other.unsettled,
            run_totals=self.run_totals + other.run_totals,
            credited=self.credited + other.credited,
            entry_sums=dict(sums),
            account_balance=self.account_balance + other.account_balance,
            last_running_balance=self.last_running_balance + other.last_running_balance,
        )


def totals_per_currency(per_contract: dict[str, Figures]) -> dict[str, Figures]:
    totals: dict[str, Figures] = {}
    for figures in per_contract.values():
        totals[figures.currency] = totals.get(figures.currency, Figures(figures.currency)) + figures
    return totals


async def _rows(databases: Databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        await session.execute(text("SET TRANSACTION READ ONLY"))
        return list((await session.execute(statement)).all())


async def gather(databases: Databases, contract_ids: Sequence[str] | None = None) -> dict[str, Figures]:
    """Every contract rating or settlement knows (or only `contract_ids`), with its figures."""
    def only(statement, column):
        return statement.where(column.in_(contract_ids)) if contract_ids else statement

    values: dict[str, dict] = defaultdict(dict)
    sums: dict[str, dict[EntryType, Decimal]] = defaultdict(dict)

    def add(contract_id: str, currency: str, name: str, amount: Decimal) -> None:
        values[contract_id]["currency"] = currency
        values[contract_id][name] = values[contract_id].get(name, ZERO) + (amount or ZERO)

    for row in await _rows(databases, "rating", only(
            select(rated_items.c.contract_id, rated_items.c.currency, func.sum(rated_items.c.net))
            .group_by(rated_items.c.contract_id, rated_items.c.currency), rated_items.c.contract_id)):
        add(row[0], row[1], "rated", row[2])
    for row in await _rows(databases, "settlement", only(
            select(settled_items.c.contract_id, settled_items.c.currency, settled_items.c.settlement_run_id.is_(None),
                   func.sum(settled_items.c.net))
            .group_by(settled_items.c.contract_id, settled_items.c.currency,
                      settled_items.c.settlement_run_id.is_(None)), settled_items.c.contract_id)):
        add(row[0], row[1], "unsettled" if row[2] else "settled", row[3])
    for row in await _rows(databases, "settlement", only(
            select(settlement_runs.c.contract_id, settlement_runs.c.currency, func.sum(settlement_runs.c.total))
            .group_by(settlement_runs.c.contract_id, settlement_runs.c.currency), settlement_runs.c.contract_id)):
        add(row[0], row[1], "run_totals", row[2])
    for row in await _rows(databases, "settlement", only(
            select(credits.c.contract_id, credits.c.currency, func.sum(credits.c.net))
            .group_by(credits.c.contract_id, credits.c.currency), credits.c.contract_id)):
        add(row[0], row[1], "credited", row[2])
    for row in await _rows(databases, "settlement", only(
            select(ledger_entries.c.contract_id, ledger_entries.c.entry_type, func.sum(ledger_entries.c.amount))
            .group_by(ledger_entries.c.contract_id, ledger_entries.c.entry_type), ledger_entries.c.contract_id)):
        sums[row[0]][EntryType(row[1])] = row[2]
    last_entry = (select(ledger_entries.c.contract_id, ledger_entries.c.balance)
                  .distinct(ledger_entries.c.contract_id)
                  .order_by(ledger_entries.c.contract_id, ledger_entries.c.sequence.desc()))
    for row in await _rows(databases, "settlement", only(last_entry, ledger_entries.c.contract_id)):
        values[row[0]]["last_running_balance"] = row[1]
    for row in await _rows(databases, "settlement", only(
            select(contract_accounts.c.contract_id, contract_accounts.c.currency, contract_accounts.c.balance),
            contract_accounts.c.contract_id)):
        add(row[0], row[1], "account_balance", row[2])
    return {contract_id: Figures(entry_sums=sums[contract_id], **values[contract_id])
            for contract_id in sorted(values)}


COLUMNS = ("contract", "cur", "rated", "settled", "unsettled", "difference", "receivables", "credit memos",
           "net VAT", "payments", "chargebacks", "fees", "refunds", "= balance", "account", "difference")


def _line(label: str, figures: Figures) -> str:
    ledger = figures.ledger
    cells = (figures.rated, figures.settled, figures.unsettled, figures.rated_difference,
             ledger.receivables.amount, ledger.credit_memos.amount, (ledger.tax - ledger.tax_credits).amount,
             ledger.payments.amount, ledger.chargebacks.amount, ledger.chargeback_fees.amount, ledger.refunds.amount,
             ledger.balance.amount, figures.account_balance,
             figures.ledger_difference)
    return f"{label:<28} {figures.currency:<3}" + "".join(f" {figures.show(cell):>13}" for cell in cells)


def report(per_contract: dict[str, Figures]) -> tuple[str, int]:
    """The table, and how many differences it found (per contract; the totals add up from them)."""
    lines = [f"{COLUMNS[0]:<28} {COLUMNS[1]:<3}" + "".join(f" {title:>13}" for title in COLUMNS[2:])]
    problems = []
    for contract_id, figures in per_contract.items():
        lines.append(_line(contract_id, figures))
        problems += [f"{contract_id}: {difference}" for difference in figures.differences()]
    for currency, figures in sorted(totals_per_currency(per_contract).items()):
        lines.append(_line(f"TOTAL {currency}", figures))
    lines.append(f"{len(per_contract)} contract(s), {len(problems)} difference(s)")
    lines += [f"  DIFFERENCE {problem}" for problem in problems]
    return "\n".join(lines), len(problems)


async def reconcile(contract_ids: Sequence[str] | None = None) -> tuple[str, int]:
    databases = Databases()
    try:
        return report(await gather(databases, contract_ids))
    finally:
        await databases.dispose()


def main(contract_ids: Sequence[str] | None = None) -> int:
    """Print the reconciliation; the exit status is 1 if anything differs."""
    table, problems = asyncio.run(reconcile(contract_ids))
    print(table)
    return 1 if problems else 0
