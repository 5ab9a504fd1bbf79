"""Operator commands for settlement: `python -m services.settlement.admin --help`.

Commands that post (credits, reversals, due runs) run their use case in one transaction of
settlement's database and leave receivables.posted in its outbox, which a running settlement
worker publishes. Cancelling a contract (on a date, or today for "immediately") is rating's data:
save the contract with `"status": "cancelled"` and its `ends_on` through
`python -m services.rating.admin load-contracts`; settlement credits the prepaid fees beyond it.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, AsyncIterator, Awaitable, Callable, Sequence

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from services.settlement import domain, handlers, store
from services.settlement.scheduler import run_due
from services.settlement.settings import SettlementSettings
from services.settlement.tables import audit_records, messaging
from shared import outbox
from shared.access.commands import authorized
from shared.access.domain import Role
from shared.access.store import Change, record
from shared.db import Database, migrate
from shared.events import ReceivablesPosted, derive_id
from shared.outbox import Outgoing
from shared.periods import parse_instant
from shared.money import Money

cli = typer.Typer(help="Settlement administration.", no_args_is_help=True)


@asynccontextmanager
async def settlement_database() -> AsyncIterator[Database]:
    settings = SettlementSettings()
    await migrate("settlement", settings.database_url)
    database = Database(settings.database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def operate(database: Database, use_case: Callable[..., Awaitable[list[Outgoing]]], *args,
                  change: Change | None = None) -> list[Outgoing]:
    """Run a use case in one transaction, its events into the outbox, `change` into the audit trail."""
    return await outbox.operate(database, messaging, use_case, *args, audit=audit_records, change=change)


def granted_credit_id(item_id: uuid.UUID, amount: Decimal, reason: str) -> uuid.UUID:
    """Granting the same credit twice (same item, amount and reason) is one credit."""
    return derive_id(f"{item_id}:{amount.normalize()}:{reason}", "granted-credit")


def _echo_runs(outgoing: Sequence[Outgoing]) -> None:
    for message in outgoing:
        event = message.event
        assert isinstance(event, ReceivablesPosted)
        typer.echo(f"run {event.settlement_run_id} {event.contract_id}: {len(event.items)} item(s) "
                   f"{Money(event.total, event.currency)}, {len(event.credits)} credit(s) "
                   f"{Money(event.credit_total, event.currency)}; ledger balance {Money(event.ledger_balance, event.currency)}")


@cli.command("run-due")
def run_due_command(
    as_of: Annotated[str, typer.Option(help="The instant to settle for (ISO date or date-time, UTC); default now.")] = "",
    contract: Annotated[list[str] | None, typer.Option(help="Only these contracts (repeatable).")] = None,
) -> None:
    """Do what the worker's scheduler does at AS_OF: settle the requested runs whose cutoff has passed by then
    (a period is billed when rating closes it: see rating's close-periods)."""
    instant = parse_instant(as_of) if as_of else datetime.now(UTC)
    actor = authorized(Role.clerk, "run-due")

    async def run() -> list[uuid.UUID]:
        async with settlement_database() as database:
            return await run_due(database, instant, contract_ids=contract or None, actor=actor)

    settled = asyncio.run(run())
    typer.echo(f"{len(settled)} run(s) settled as of {instant.isoformat()}")
    for run_id in settled:
        typer.echo(f"  {run_id}")


@cli.command("create-vouchers")
def create_vouchers_command(
    contracts: Annotated[list[str], typer.Argument(help="The contracts to bill.")],
    cutoff: Annotated[str, typer.Option(help="Settle what was used before this (ISO, UTC); default now. "
                                             "A later cutoff waits for the scheduler.")] = "",
) -> None:
    """Request a billing run for each contract on billing-runs.requested (through settlement's outbox:
    a running settlement worker publishes and settles them)."""
    now = datetime.now(UTC)
    until = parse_instant(cutoff) if cutoff else now
    actor = authorized(Role.clerk, "create-vouchers")

    async def run() -> list[Outgoing]:
        async with settlement_database() as database:
            return await operate(database, handlers.request_billing_runs, uuid.uuid4(), contracts, until, now,
                                 actor.label, change=Change(actor, "billing-run.request", ", ".join(contracts),
                                                            {"cutoff": until.isoformat()}))

    for message in asyncio.run(run()):
        typer.echo(f"requested {message.event.event_id} for {message.event.contract_id}, cutoff {until.isoformat()}")


@cli.command("grant-credit")
def grant_credit_command(
    item: Annotated[uuid.UUID, typer.Option(help="The billed item (billable_item_id).")],
    amount: Annotated[str, typer.Option(help="What to credit, in the contract's currency, e.g. 12.34.")],
    reason: Annotated[str, typer.Option(help="Why; it becomes the credit memo line's text.")],
    credit_id: Annotated[uuid.UUID | None, typer.Option(help="Default: derived from item, amount and reason.")] = None,
) -> None:
    """Credit part of a billed item: a credit memo on the ledger and a credit note from invoicing."""
    value = Decimal(amount)
    actor = authorized(Role.clerk, "grant-credit")

    async def run() -> list[Outgoing]:
        async with settlement_database() as database:
            return await operate(database, handlers.grant_credit, item, value, reason,
                                 credit_id or granted_credit_id(item, value, reason), datetime.now(UTC),
                                 change=Change(actor, "credit.grant", str(item), {"amount": amount, "reason": reason}))

    outgoing = asyncio.run(run())
    if not outgoing:
        typer.echo("that credit was granted before; nothing posted")
    _echo_runs(outgoing)


@cli.command("cancel-order")
def cancel_order_command(
    item: Annotated[list[uuid.UUID], typer.Option(help="A billed item of the order (repeatable).")],
) -> None:
    """Cancel billed orders: credit each item's net in full (what earlier credits left of it)."""
    actor = authorized(Role.clerk, "cancel-order")

    async def run() -> list[Outgoing]:
        async with settlement_database() as database:
            return await operate(database, handlers.cancel_order, item, datetime.now(UTC),
                                 change=Change(actor, "order.cancel", ", ".join(map(str, item)), {}))

    outgoing = asyncio.run(run())
    if not outgoing:
        typer.echo("those orders were cancelled before; nothing posted")
    _echo_runs(outgoing)


@cli.command("reverse-entry")
def reverse_entry_command(
    entry: Annotated[uuid.UUID, typer.Argument(help="The ledger entry booked in error.")],
    reason: Annotated[str, typer.Option(help="Why it is reversed.")],
) -> None:
    """Reverse a payment, chargeback or refund booked in error (the original entry is never changed)."""
    actor = authorized(Role.admin, "reverse-entry")

    async def run() -> domain.LedgerEntry | None:
        async with settlement_database() as database, database.transaction() as session:
            reversal = await handlers.reverse_entry(session, entry, reason, datetime.now(UTC))
            if reversal is not None:
                await record(session, audit_records, Change(actor, "entry.reverse", str(entry), {"reason": reason}))
            return reversal

    reversal = asyncio.run(run())
    if reversal is None:
        typer.echo(f"entry {entry} was reversed before; nothing posted")
    else:
        typer.echo(f"#{reversal.sequence} {reversal.entry_type} {reversal.amount}  balance {reversal.balance}")


async def read(use: Callable[[AsyncSession], Awaitable]):
    async with settlement_database() as database, database.transaction() as session:
        return await use(session)


@cli.command("ledger")
def ledger_command(contract: str) -> None:
    """The contract's ledger: every entry with its running balance and references."""
    for entry in asyncio.run(read(lambda session: store.ledger(session, contract))):
        references = [f"run {entry.settlement_run_id}" if entry.settlement_run_id else "",
                      f"document {entry.document_number}" if entry.document_number else "",
                      f"transaction {entry.payment_id}" if entry.payment_id else "",
                      f"reverses {entry.reverses_entry_id}" if entry.reverses_entry_id else ""]
        typer.echo(f"#{entry.sequence:<4} {entry.booked_at:%Y-%m-%d %H:%M}  {entry.entry_type:<10} "
                   f"{entry.amount!s:>16}  balance {entry.balance!s:>16}  {entry.description}  "
                   f"[{', '.join(filter(None, references))}]  {entry.entry_id}")


@cli.command("runs")
def runs_command(contract: str) -> None:
    """The contract's billing runs with their status (pending, open, complete)."""
    for run in asyncio.run(read(lambda session: store.runs(session, contract))):
        period = f" period {run.period_start}..{run.period_end}" if run.period_end else ""
        typer.echo(f"{run.settlement_run_id}  {run.status:<8}  cutoff {run.cutoff.isoformat()}{period}  "
                   f"by {run.requested_by}")


@cli.command("customer-summary")
def customer_summary_command(customer: str) -> None:
    """The customer's ledgers across all its contracts, and their totals per currency."""
    ledgers = asyncio.run(read(lambda session: store.customer_summary(session, customer)))
    if not ledgers:
        typer.echo(f"customer {customer} has no contract accounts")
        raise typer.Exit(1)
    header = ("contract", "receivables", "credit memos", "VAT", "VAT credited", "payments", "chargebacks",
              "chargeback fees", "refunds", "balance")
    typer.echo(f"Customer {customer}")
    typer.echo("  " + "  ".join(f"{title:>16}" if i else f"{title:<24}" for i, title in enumerate(header)))

    def line(label: str, totals: domain.LedgerTotals, balance: Money) -> str:
        figures = (*totals.figures().values(), balance)
        return f"  {label:<24}" + "".join(f"  {figure!s:>16}" for figure in figures)

    for ledger in ledgers:
        typer.echo(line(f"{ledger.contract_id} ({ledger.entries})", ledger.totals, ledger.balance))
    for currency, totals in domain.totals_per_currency(ledgers).items():
        typer.echo(line(f"total {currency}", totals, totals.balance))


if __name__ == "__main__":
    cli()
