"""Operator commands for rating's own data: `python -m services.rating.admin --help`.

Commands that change something run the same use case as the HTTP API, in one transaction of
rating's database, and leave their events (contracts.changed, items.rated) in its outbox, which
a running rating worker publishes.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Coroutine, TypeVar

import typer

from services.rating import handlers
from services.rating.contracts import CONTRACT_LIST, operate, read, save_contracts
from services.rating.scheduler import close_due
from services.rating.settings import RatingSettings
from services.rating.specs import CancellationSpec, PurchaseSpec
from shared.access.commands import authorized
from shared.access.domain import Role
from shared.access.store import Change
from shared.db import Database, migrate
from shared.errors import Rejected
from shared.events import RatedItem
from shared.money import Money
from shared.outbox import Outgoing
from shared.periods import parse_instant
from shared.settings import seller_country

T = TypeVar("T")

cli = typer.Typer(help="Rating administration.", no_args_is_help=True)


@asynccontextmanager
async def rating_database() -> AsyncIterator[Database]:
    settings = RatingSettings()
    await migrate("rating", settings.database_url)
    database = Database(settings.database_url)
    try:
        yield database
    finally:
        await database.dispose()


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's work; a refused change ends the command with its reason, not a traceback."""
    try:
        return asyncio.run(work)
    except Rejected as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from None


def _echo_items(outgoing: list[Outgoing]) -> None:
    for message in outgoing:
        event = message.event
        if isinstance(event, RatedItem):
            typer.echo(f"{event.contract_id}  {event.period_start}..{event.period_end}  {event.charge_kind:<13}  "
                       f"{event.description}  {Money(event.net, event.currency)}")


@cli.command("load-contracts")
def load_contracts_command(path: Path) -> None:
    """Create or replace the contracts in a JSON file (a list of contracts with customer and items).

    Each change is published on contracts.changed by the rating worker's outbox relay.
    """
    specs = CONTRACT_LIST.validate_json(path.read_bytes())
    actor = authorized(Role.admin, "load-contracts")

    async def run() -> list[int]:
        async with rating_database() as database:
            return await save_contracts(database, specs, Change(actor, "contracts.load", ", ".join(
                spec.contract_id for spec in specs), {"file": path.name, "contracts": len(specs)}))

    revisions = _run(run())
    typer.echo(json.dumps({spec.contract_id: revision for spec, revision in zip(specs, revisions, strict=True)}))


@cli.command("close-periods")
def close_periods_command(
    as_of: Annotated[str, typer.Option(help="The instant to close at (ISO date-time with offset, or a date: "
                                            "its noon UTC); default now.")] = "",
    grace_days: Annotated[int | None, typer.Option(help="Close periods that ended this many days before AS_OF; "
                                                        "default RATING_CLOSE_GRACE_DAYS.")] = None,
    contract: Annotated[list[str] | None, typer.Option(help="Only these contracts (repeatable).")] = None,
) -> None:
    """Do what the worker's period close does at AS_OF: charge the fees of the periods begun by then
    and close the periods that have ended (minimum top-ups), each contract by its own business day,
    announcing each closed period to settlement; late usage then bills in the next one."""
    now = parse_instant(as_of, day_at=time(12)) if as_of else datetime.now(UTC)
    grace = RatingSettings().close_grace_days if grace_days is None else grace_days
    actor = authorized(Role.clerk, "close-periods")

    async def run() -> list[Outgoing]:
        async with rating_database() as database:
            return await close_due(database, now, grace_days=grace, contract_ids=contract, actor=actor)

    emitted = _run(run())
    charged = [outgoing for outgoing in emitted if isinstance(outgoing.event, RatedItem)]
    _echo_items(charged)
    typer.echo(f"{len(charged)} item(s) charged, {len(emitted) - len(charged)} period(s) closed")


@cli.command("add-purchase")
def add_purchase_command(
    contract_id: str, item_code: str, description: str, quantity: str, unit_price: str,
    purchased_on: Annotated[str, typer.Option(help="ISO date; default today.")] = "",
    purchase_id: Annotated[str | None, typer.Option(help="Makes a repeated command the same purchase.")] = None,
) -> None:
    """Add a one-time purchase item to a contract (billed as an item on items.rated)."""
    purchase = PurchaseSpec(item_code=item_code, description=description, quantity=quantity, unit_price=unit_price,
                            purchased_on=purchased_on or date.today(), purchase_id=purchase_id)
    actor = authorized(Role.clerk, "add-purchase")

    async def run() -> list[Outgoing]:
        async with rating_database() as database:
            return await operate(database, handlers.add_purchase, contract_id, purchase, seller_country(),
                                 timedelta(seconds=RatingSettings().max_future_skew_s),
                                 change=Change(actor, "purchase.add", contract_id, purchase.model_dump(mode="json")))

    _echo_items(_run(run()))


@cli.command("cancel-contract")
def cancel_contract_command(contract_id: str, ends_on: Annotated[str, typer.Option(help="The last day (ISO).")]) -> None:
    """Cancel a contract on a date (its last day); publishes contracts.changed."""
    actor = authorized(Role.admin, "cancel-contract")
    cancellation = CancellationSpec(ends_on=ends_on)

    async def run() -> list[Outgoing]:
        async with rating_database() as database:
            return await operate(database, handlers.cancel_contract, contract_id, cancellation,
                                 change=Change(actor, "contract.cancel", contract_id, cancellation.model_dump(mode="json")))

    for message in _run(run()):
        typer.echo(f"{message.event.contract_id} cancelled on {ends_on}")


@cli.command("estimate")
def estimate_command(contract_id: str, item_code: str, quantity: str,
                     periods: Annotated[int, typer.Option(help="At most this many periods.")] = 12) -> None:
    """The expected net of each unbilled period of CONTRACT_ID if QUANTITY of ITEM_CODE is used in each."""

    async def run():
        async with rating_database() as database:
            return await read(database, handlers.estimate, contract_id, item_code, Decimal(quantity), periods)

    estimated = _run(run())
    for line in estimated:
        typer.echo(f"{line.period.start}..{line.period.end}  {line.quantity}  {line.net}")
    if estimated:
        typer.echo(f"total {Money.sum((line.net for line in estimated), estimated[0].net.currency)}")


if __name__ == "__main__":
    cli()
