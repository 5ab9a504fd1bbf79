"""`billing reconcile`: proof that money was neither lost nor made up on its way through the four services.

Per contract, and in total per currency:
  1. rating and settlement: the net rating rated == the net settlement holds: settled by runs + still
     unsettled (shown apart, since they are waiting for their run, not missing);
  2. settlement: the items settled == the runs' totals == their Receivable entries, the credits == their
     CreditMemo entries, and the ledger balance summed from the entries == the account's balance == the
     running balance of its last entry;
  3. settlement and invoicing: Receivable == the net of the invoices, CreditMemo == the net of the credit
     notes, Tax and TaxCredit == their VAT (so what was settled is what was invoiced);
  4. settlement and payments: Payment, Chargeback, ChargebackFee, Refund and ChargebackReversal == payments'
     succeeded transactions of that kind and the chargebacks' fees; so the ledger balance == the documents'
     gross - payments + chargebacks + fees + refunds - chargeback reversals, and it == payments' open items
     - the unassigned credit;
  5. every settlement run with items has its invoice and every run with credits its credit note in
     invoicing, every invoice has its open item in payments and every credit note is recorded there.

Then what did not go through: the rows of each service's `parked` table (where it has one), the
dead letters on `dead-letters`, and the provider transactions the webhook bridge holds (received,
not yet placed on a contract); all are listed, and count as differences (dead letters not with
`allow_dead_letters`). With `contract_ids`, only the messages keyed by those contracts (held
transactions have no contract yet, so they are listed only without).

It reads each service's own database, read-only. The services are read one after the other, so
run it when the pipeline is quiet: an item rating has rated but settlement has not received yet
shows as a difference until it arrives.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Iterable, Sequence

from sqlalchemy import MetaData, func, select, text

from ops.observe import Databases, dead_letters
from services.invoicing.tables import documents
from services.payments.domain import CREDIT_NOTE
from services.payments.tables import open_items, payments, webhook_receipts
from services.rating.tables import billable_items as rated_items
from services.settlement.domain import EntryType, LedgerTotals
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import contract_accounts, credits, ledger_entries, settlement_runs
from shared.db import messaging_tables
from shared.events import DeadLetter, DocumentType, PaymentKind, PaymentStatus
from shared.money import Money, exponent
from shared.settings import KafkaSettings

ZERO = Decimal(0)


def show(amount: Decimal, currency: str) -> str:
    """An amount at the currency's minor unit (the database sums come back at numeric(28,4))."""
    return f"{amount:.{exponent(currency)}f}"

# Where the ledger's figure of each entry type comes from in invoicing or payments, for the differences.
COUNTERPARTS = {
    EntryType.RECEIVABLE: "invoices' net",
    EntryType.CREDIT_MEMO: "credit notes' net",
    EntryType.TAX: "invoices' VAT",
    EntryType.TAX_CREDIT: "credit notes' VAT",
    EntryType.PAYMENT: "payments' payments",
    EntryType.CHARGEBACK: "payments' chargebacks",
    EntryType.CHARGEBACK_FEE: "payments' chargeback fees",
    EntryType.REFUND: "payments' refunds",
    EntryType.CHARGEBACK_REVERSAL: "payments' chargeback reversals",
}


@dataclass(frozen=True)
class Figures:
    """One contract's (or, summed, one currency's) figures from each of the four services."""

    currency: str
    # rating
    rated: Decimal = ZERO
    # settlement
    settled: Decimal = ZERO
    unsettled: Decimal = ZERO
    run_totals: Decimal = ZERO  # what the runs invoiced
    adjusted: Decimal = ZERO  # what runs whose items came to less than nothing credited of it
    credited: Decimal = ZERO
    # Signed sums of the ledger entries per type, as they moved the balance.
    entry_sums: dict[EntryType, Decimal] = field(default_factory=dict)
    account_balance: Decimal = ZERO
    last_running_balance: Decimal = ZERO
    # invoicing: its issued documents
    invoiced_net: Decimal = ZERO
    invoiced_tax: Decimal = ZERO
    credit_notes_net: Decimal = ZERO
    credit_notes_tax: Decimal = ZERO
    # payments: succeeded transactions per kind, and what is open and what is the customer's credit
    paid: Decimal = ZERO
    charged_back: Decimal = ZERO
    chargeback_fees: Decimal = ZERO
    refunded: Decimal = ZERO
    chargebacks_reversed: Decimal = ZERO
    open_amount: Decimal = ZERO
    unassigned_credit: Decimal = ZERO

    @property
    def ledger(self) -> LedgerTotals:
        return LedgerTotals.of(self.currency, self.entry_sums)

    @property
    def counterparts(self) -> LedgerTotals:
        """The ledger as invoicing's documents and payments' transactions have it, type by type."""
        def money(amount: Decimal) -> Money:
            return Money(amount, self.currency)
        return LedgerTotals(
            receivables=money(self.invoiced_net), credit_memos=money(self.credit_notes_net),
            tax=money(self.invoiced_tax), tax_credits=money(self.credit_notes_tax), payments=money(self.paid),
            chargebacks=money(self.charged_back), chargeback_fees=money(self.chargeback_fees),
            refunds=money(self.refunded), chargeback_reversals=money(self.chargebacks_reversed),
        )

    @property
    def rated_difference(self) -> Decimal:
        return self.rated - self.settled - self.unsettled

    @property
    def ledger_difference(self) -> Decimal:
        return self.ledger.balance.amount - self.account_balance

    @property
    def open_minus_credit(self) -> Decimal:
        """What the customer owes by payments' books."""
        return self.open_amount - self.unassigned_credit

    @property
    def payments_difference(self) -> Decimal:
        return self.ledger.balance.amount - self.open_minus_credit

    def show(self, amount: Decimal) -> str:
        return show(amount, self.currency)

    def differences(self) -> list[str]:
        ledger, counterparts, show = self.ledger, self.counterparts, self.show
        found = []
        if self.rated_difference:
            found.append(f"rated {show(self.rated)} != settled {show(self.settled)} + unsettled {show(self.unsettled)}")
        adjustments = f" and adjustments {show(self.adjusted)}" if self.adjusted else ""
        if self.settled != self.run_totals - self.adjusted:
            found.append(f"settled items {show(self.settled)} != runs' totals {show(self.run_totals)}{adjustments}")
        if ledger.receivables.amount != self.run_totals:
            found.append(f"receivables {ledger.receivables} != runs' totals {show(self.run_totals)}")
        if ledger.credit_memos.amount != self.credited + self.adjusted:
            found.append(f"credit memos {ledger.credit_memos} != credits {show(self.credited)}{adjustments}")
        if self.ledger_difference:
            found.append(f"entries give a balance of {ledger.balance}, the account has {show(self.account_balance)}")
        if self.last_running_balance != self.account_balance:
            found.append(f"last entry's running balance {show(self.last_running_balance)} != "
                         f"account {show(self.account_balance)}")
        for (entry_type, booked), elsewhere in zip(ledger.figures().items(), counterparts.figures().values(),
                                                   strict=True):
            if booked != elsewhere:
                found.append(f"{entry_type} entries {booked} != {COUNTERPARTS[entry_type]} {elsewhere}")
        if ledger.balance != counterparts.balance:
            found.append(f"ledger balance {ledger.balance} != documents' gross - payments + chargebacks + fees "
                         f"+ refunds - chargeback reversals {counterparts.balance}")
        if self.payments_difference:
            found.append(f"ledger balance {ledger.balance} != payments' open items {show(self.open_amount)} "
                         f"- unassigned credit {show(self.unassigned_credit)} = {show(self.open_minus_credit)}")
        return found

    def __add__(self, other: Figures) -> Figures:
        entry_sums = defaultdict(Decimal, self.entry_sums)
        for entry_type, amount in other.entry_sums.items():
            entry_sums[entry_type] += amount
        amounts = {figure.name: getattr(self, figure.name) + getattr(other, figure.name) for figure in fields(self)
                   if isinstance(getattr(self, figure.name), Decimal)}
        return Figures(self.currency, entry_sums=dict(entry_sums), **amounts)


def totals_per_currency(per_contract: dict[str, Figures]) -> dict[str, Figures]:
    totals: dict[str, Figures] = {}
    for figures in per_contract.values():
        totals[figures.currency] = totals.get(figures.currency, Figures(figures.currency)) + figures
    return totals


# --- settlement runs and their documents ---------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A settlement run, and what it needs documented: an invoice for the items it invoiced, a credit
    note for its credits and adjustments."""

    settlement_run_id: uuid.UUID
    contract_id: str
    currency: str
    total: Decimal
    credit_total: Decimal
    has_items: bool
    has_credits: bool


@dataclass(frozen=True)
class Document:
    document_id: uuid.UUID
    number: str
    document_type: DocumentType
    settlement_run_id: uuid.UUID
    contract_id: str


def undocumented(runs: Iterable[Run], issued: Sequence[Document], open_item_ids: set[uuid.UUID],
                 credit_notes_in_payments: set[str]) -> dict[str, list[str]]:
    """Per contract, each run without the document(s) it needs and each document payments does not have.

    An invoice is an open item in payments (under the document's id); a credit note is money that pays
    open items there, recorded under its number.
    """
    found: dict[str, list[str]] = defaultdict(list)
    by_run = {(document.settlement_run_id, document.document_type) for document in issued}
    for run in runs:
        if run.has_items and (run.settlement_run_id, DocumentType.INVOICE) not in by_run:
            found[run.contract_id].append(f"settlement run {run.settlement_run_id} settled "
                                          f"{show(run.total, run.currency)} {run.currency}, but invoicing has "
                                          "no invoice for it")
        if run.has_credits and (run.settlement_run_id, DocumentType.CREDIT_NOTE) not in by_run:
            found[run.contract_id].append(f"settlement run {run.settlement_run_id} credited "
                                          f"{show(run.credit_total, run.currency)} {run.currency}, but invoicing "
                                          "has no credit note for it")
    for document in issued:
        if document.document_type is DocumentType.INVOICE and document.document_id not in open_item_ids:
            found[document.contract_id].append(f"invoice {document.number} has no open item in payments")
        if (document.document_type is DocumentType.CREDIT_NOTE
                and document.number not in credit_notes_in_payments):
            found[document.contract_id].append(f"credit note {document.number} is not recorded in payments")
    return dict(found)


# --- what did not go through -------------------------------------------------------------------


@dataclass(frozen=True)
class Parked:
    """A message a consumer set aside (its service's `parked` table) instead of applying it."""

    service: str
    consumer: str
    event_id: uuid.UUID | None
    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    parked_at: datetime

    def describe(self) -> str:
        return (f"{self.service}: {self.topic}[{self.partition}]@{self.offset} key {self.key} ({self.consumer}), "
                f"parked {self.parked_at:%Y-%m-%d %H:%M:%S}: {self.reason}")


@dataclass(frozen=True)
class Held:
    """A provider transaction the webhook bridge recorded but could not place on a contract yet."""

    provider: str
    provider_event_id: str
    transaction: dict
    waiting_for: str | None
    received_at: datetime

    def describe(self) -> str:
        what = (f"waits for {self.waiting_for}" if self.waiting_for
                else "names no contract, invoice or customer billing knows")
        money = self.transaction
        return (f"{self.provider} event {self.provider_event_id}, received {self.received_at:%Y-%m-%d %H:%M:%S}: "
                f"{money.get('kind')} {money.get('payment_id')} {money.get('amount')} {money.get('currency')} {what}")


def describe_dead_letter(letter: DeadLetter) -> str:
    return (f"{letter.source_topic}[{letter.partition}]@{letter.offset} key {letter.key} ({letter.consumer}): "
            f"{letter.reason}")


@dataclass(frozen=True)
class Reconciliation:
    per_contract: dict[str, Figures]
    undocumented: dict[str, list[str]] = field(default_factory=dict)
    parked: list[Parked] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)

    def contract_differences(self) -> list[str]:
        # A contract with a run or a document has figures, so every undocumented one is among them.
        return [f"{contract_id}: {difference}" for contract_id, figures in self.per_contract.items()
                for difference in [*figures.differences(), *self.undocumented.get(contract_id, [])]]

    def differences(self, allow_dead_letters: bool = False) -> list[str]:
        """Everything that differs or did not go through, each as one line (dead letters unless allowed)."""
        return [*(f"DIFFERENCE {difference}" for difference in self.contract_differences()),
                *(f"PARKED {message.describe()}" for message in self.parked),
                *(f"HELD {receipt.describe()}" for receipt in self.held),
                *([] if allow_dead_letters else self._dead_letter_lines("DEAD LETTER"))]

    def allowed(self, allow_dead_letters: bool) -> list[str]:
        """The dead letters, listed even when they are allowed."""
        return self._dead_letter_lines("DEAD LETTER (allowed)") if allow_dead_letters else []

    def _dead_letter_lines(self, label: str) -> list[str]:
        return [f"{label} {describe_dead_letter(letter)}" for letter in self.dead_letters]


# --- reading the services ----------------------------------------------------------------------


def _only(statement, column, contract_ids: Sequence[str] | None):
    """`statement` for the contracts asked for (all without `contract_ids`), by its contract `column`."""
    return statement.where(column.in_(contract_ids)) if contract_ids else statement


async def _rows(databases: Databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        await session.execute(text("SET TRANSACTION READ ONLY"))
        return list((await session.execute(statement)).all())


async def gather(databases: Databases, contract_ids: Sequence[str] | None = None) -> dict[str, Figures]:
    """Every contract any service knows (or only `contract_ids`), with its figures."""
    only = partial(_only, contract_ids=contract_ids)

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
            select(settlement_runs.c.contract_id, settlement_runs.c.currency, func.sum(settlement_runs.c.total),
                   func.sum(settlement_runs.c.adjustment_total))
            .group_by(settlement_runs.c.contract_id, settlement_runs.c.currency), settlement_runs.c.contract_id)):
        add(row[0], row[1], "run_totals", row[2])
        add(row[0], row[1], "adjusted", row[3])
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

    for row in await _rows(databases, "invoicing", only(
            select(documents.c.contract_id, documents.c.currency, documents.c.document_type,
                   func.sum(documents.c.net_total), func.sum(documents.c.tax_total))
            .group_by(documents.c.contract_id, documents.c.currency, documents.c.document_type),
            documents.c.contract_id)):
        prefix = "invoiced" if row[2] == DocumentType.INVOICE else "credit_notes"
        add(row[0], row[1], f"{prefix}_net", row[3])
        add(row[0], row[1], f"{prefix}_tax", row[4])

    # Only money that moved is on the ledger; a credit note's money is counted from invoicing's documents.
    figure_of_kind = {PaymentKind.PAYMENT: "paid", PaymentKind.CHARGEBACK: "charged_back",
                      PaymentKind.REFUND: "refunded", PaymentKind.CHARGEBACK_REVERSAL: "chargebacks_reversed"}
    for row in await _rows(databases, "payments", only(
            select(payments.c.contract_id, payments.c.currency, payments.c.kind, func.sum(payments.c.amount),
                   func.sum(payments.c.fee))
            .where(payments.c.status == PaymentStatus.SUCCEEDED.value,
                   payments.c.kind.in_([kind.value for kind in figure_of_kind]))
            .group_by(payments.c.contract_id, payments.c.currency, payments.c.kind), payments.c.contract_id)):
        add(row[0], row[1], figure_of_kind[PaymentKind(row[2])], row[3])
        add(row[0], row[1], "chargeback_fees", row[4])
    for row in await _rows(databases, "payments", only(
            select(open_items.c.contract_id, open_items.c.currency, func.sum(open_items.c.open_amount))
            .group_by(open_items.c.contract_id, open_items.c.currency), open_items.c.contract_id)):
        add(row[0], row[1], "open_amount", row[2])
    for row in await _rows(databases, "payments", only(
            select(payments.c.contract_id, payments.c.currency, func.sum(payments.c.unassigned_amount))
            .group_by(payments.c.contract_id, payments.c.currency), payments.c.contract_id)):
        add(row[0], row[1], "unassigned_credit", row[2])
    return {contract_id: Figures(entry_sums=sums[contract_id], **values[contract_id])
            for contract_id in sorted(values)}


async def gather_undocumented(databases: Databases, contract_ids: Sequence[str] | None = None
                              ) -> dict[str, list[str]]:
    """`undocumented`, from settlement's runs, invoicing's documents and what payments recorded of them."""
    only = partial(_only, contract_ids=contract_ids)

    item_runs = {row[0] for row in await _rows(databases, "settlement", only(
        select(settled_items.c.settlement_run_id).distinct().where(settled_items.c.settlement_run_id.is_not(None)),
        settled_items.c.contract_id))}
    credit_runs = {row[0] for row in await _rows(databases, "settlement", only(
        select(credits.c.settlement_run_id).distinct(), credits.c.contract_id))}
    # A run whose items came to less than nothing invoices only its positive lines (maybe none) and
    # credits the rest: it needs an invoice if it invoiced something, and a credit note.
    runs = [Run(row.settlement_run_id, row.contract_id, row.currency, row.total, row.credit_total,
                row.settlement_run_id in item_runs and (not row.adjustment_total or row.total > 0),
                row.settlement_run_id in credit_runs or row.adjustment_total > 0)
            for row in await _rows(databases, "settlement", only(
                select(settlement_runs.c.settlement_run_id, settlement_runs.c.contract_id, settlement_runs.c.currency,
                       settlement_runs.c.total, settlement_runs.c.credit_total, settlement_runs.c.adjustment_total),
                settlement_runs.c.contract_id))]
    issued = [Document(row.document_id, row.number, DocumentType(row.document_type), row.settlement_run_id,
                       row.contract_id)
              for row in await _rows(databases, "invoicing", only(
                  select(documents.c.document_id, documents.c.number, documents.c.document_type,
                         documents.c.settlement_run_id, documents.c.contract_id), documents.c.contract_id))]
    open_item_ids = {row[0] for row in await _rows(databases, "payments", only(
        select(open_items.c.document_id), open_items.c.contract_id))}
    credit_notes = {row[0] for row in await _rows(databases, "payments", only(
        select(payments.c.payment_id).where(payments.c.kind == CREDIT_NOTE), payments.c.contract_id))}
    return undocumented(runs, issued, open_item_ids, credit_notes)


# Every service database has the same messaging tables (shared.db), `parked` among them.
PARKED = messaging_tables(MetaData()).parked


async def gather_parked(databases: Databases, contract_ids: Sequence[str] | None = None) -> list[Parked]:
    found = []
    for service in databases.by_service:
        statement = _only(select(PARKED).order_by(PARKED.c.parked_at), PARKED.c.key, contract_ids)
        found += [Parked(service, row.consumer, row.event_id, row.topic, row.partition, row.offset, row.key,
                         row.waiting_for, row.parked_at) for row in await _rows(databases, service, statement)]
    return found


async def examine(databases: Databases, bootstrap_servers: str,
                  contract_ids: Sequence[str] | None = None) -> Reconciliation:
    letters = await dead_letters(bootstrap_servers)
    return Reconciliation(
        per_contract=await gather(databases, contract_ids),
        undocumented=await gather_undocumented(databases, contract_ids),
        parked=await gather_parked(databases, contract_ids),
        dead_letters=[letter for letter in letters if not contract_ids or letter.key in contract_ids],
        held=await gather_held(databases, contract_ids),
    )


async def gather_held(databases: Databases, contract_ids: Sequence[str] | None = None) -> list[Held]:
    """Money the bridge received and holds: not on any contract yet, so listed only when all contracts are."""
    if contract_ids:
        return []
    return [Held(row.provider, row.provider_event_id, row.held_transaction, row.waiting_for, row.received_at)
            for row in await _rows(databases, "payments", select(webhook_receipts)
                                   .where(webhook_receipts.c.held_transaction.is_not(None))
                                   .order_by(webhook_receipts.c.received_at))]


# --- the report --------------------------------------------------------------------------------


COLUMNS = ("contract", "cur", "rated", "settled", "unsettled", "difference", "receivables", "credit memos",
           "net VAT", "payments", "chargebacks", "fees", "refunds", "cb reversed", "= balance", "account", "difference",
           "invoiced", "credit notes", "open - credit", "difference")


def _line(label: str, figures: Figures) -> str:
    ledger = figures.ledger
    cells = (figures.rated, figures.settled, figures.unsettled, figures.rated_difference,
             ledger.receivables.amount, ledger.credit_memos.amount, (ledger.tax - ledger.tax_credits).amount,
             ledger.payments.amount, ledger.chargebacks.amount, ledger.chargeback_fees.amount, ledger.refunds.amount,
             ledger.chargeback_reversals.amount, ledger.balance.amount, figures.account_balance, figures.ledger_difference,
             figures.invoiced_net, figures.credit_notes_net, figures.open_minus_credit, figures.payments_difference)
    return f"{label:<28} {figures.currency:<3}" + "".join(f" {figures.show(cell):>13}" for cell in cells)


def report(reconciliation: Reconciliation, allow_dead_letters: bool = False) -> tuple[str, int]:
    """The table, and how many differences it found: per contract (the totals add up from them), each
    parked message, and each dead letter unless they are allowed."""
    per_contract = reconciliation.per_contract
    lines = [f"{COLUMNS[0]:<28} {COLUMNS[1]:<3}" + "".join(f" {title:>13}" for title in COLUMNS[2:])]
    lines += [_line(contract_id, figures) for contract_id, figures in per_contract.items()]
    lines += [_line(f"TOTAL {currency}", figures)
              for currency, figures in sorted(totals_per_currency(per_contract).items())]
    problems = reconciliation.differences(allow_dead_letters)
    lines.append(f"{len(per_contract)} contract(s), {len(problems)} difference(s)")
    lines += [f"  {line}" for line in [*problems, *reconciliation.allowed(allow_dead_letters)]]
    return "\n".join(lines), len(problems)


async def reconcile(contract_ids: Sequence[str] | None = None, *,
                    allow_dead_letters: bool = False) -> tuple[str, int]:
    databases = Databases()
    try:
        return report(await examine(databases, KafkaSettings().bootstrap_servers, contract_ids), allow_dead_letters)
    finally:
        await databases.dispose()


def main(contract_ids: Sequence[str] | None = None, allow_dead_letters: bool = False) -> int:
    """Print the reconciliation; the exit status is 1 if anything differs."""
    table, problems = asyncio.run(reconcile(contract_ids, allow_dead_letters=allow_dead_letters))
    print(table)
    return 1 if problems else 0
