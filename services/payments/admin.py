"""Operator commands for payments' own data: `python -m services.payments.admin --help`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Awaitable, Callable, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import handlers, store, webhooks
from services.payments.domain import InvalidPaymentAccount, PaymentMethod
from services.payments.providers import WebhookRefused
from services.payments.settings import PaymentsSettings
from services.payments.tables import audit_records
from shared.access.commands import authorized
from shared.access.domain import Role
from shared.access.store import Change, record
from shared.db import Database, migrate
from shared.errors import Rejected

cli = typer.Typer(help="Payments administration: payment accounts, open items (OPOS), webhooks.",
                  no_args_is_help=True)

T = TypeVar("T")


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]], change: Change | None = None) -> T:
    """`work` in one transaction of payments' database, with `change` (a command's) in its audit trail."""
    async def run() -> T:
        settings = PaymentsSettings()
        await migrate("payments", settings.database_url)
        database = Database(settings.database_url)
        try:
            async with database.transaction() as session:
                done = await work(session)
                if change is not None:
                    await record(session, audit_records, change)
                return done
        finally:
            await database.dispose()

    return asyncio.run(run())


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=str))


@cli.command("add-account")
def add_account(
    customer_id: str,
    method: Annotated[PaymentMethod, typer.Option(help="How the customer pays.")],
    holder: Annotated[str | None, typer.Option(help="The account holder's name.")] = None,
    iban: Annotated[str | None, typer.Option(help="SEPA: the IBAN debited.")] = None,
    bic: Annotated[str | None, typer.Option(help="SEPA: the BIC (optional).")] = None,
    mandate_reference: Annotated[str | None, typer.Option(help="SEPA: the mandate reference.")] = None,
    mandate_signed_on: Annotated[str | None, typer.Option(help="SEPA: the mandate's date (YYYY-MM-DD).")] = None,
    provider: Annotated[str | None, typer.Option(help="Card: the payment provider; SEPA: the provider that "
                                                      "collects it (e.g. gocardless), if any.")] = None,
    token: Annotated[str | None, typer.Option(help="Card: the provider's token for the card; SEPA: the provider's "
                                                   "id of the mandate (GoCardless: MD...).")] = None,
    make_default: Annotated[bool, typer.Option("--default", help="Make it the customer's default.")] = False,
) -> None:
    """Add a payment account (the customer's first becomes the default) and print it as JSON."""
    signed_on = date.fromisoformat(mandate_signed_on) if mandate_signed_on else None
    actor = authorized(Role.admin, "add-account")
    try:
        account = _in_transaction(lambda session: handlers.add_payment_account(
            session, customer_id, method, make_default=make_default, holder_name=holder, iban=iban, bic=bic,
            mandate_reference=mandate_reference, mandate_signed_on=signed_on, provider=provider,
            provider_token=token), Change(actor, "payment-account.add", customer_id, {
                "method": method, "provider": provider, "make_default": make_default}))
    except InvalidPaymentAccount as error:
        raise typer.BadParameter(str(error)) from None
    _echo_json({"account_id": account.account_id, "customer_id": account.customer_id, "method": account.method,
                "default": account.is_default, "mandate_status": account.mandate_status,
                "describe": account.describe()})


@cli.command("accounts")
def accounts(customer_id: str) -> None:
    """List a customer's payment accounts, the default first: id, method, default mark, description."""
    for account in _in_transaction(lambda session: store.accounts_of(session, customer_id)):
        typer.echo(f"{account.account_id}  {account.method:<17}  {'default' if account.is_default else '-':<7}  "
                   f"{account.describe()}")


@cli.command("set-default")
def set_default(customer_id: str, account_id: uuid.UUID) -> None:
    """Make one of the customer's accounts the default (the previous one stops being it)."""
    actor = authorized(Role.admin, "set-default")
    try:
        _in_transaction(lambda session: handlers.set_default_payment_account(session, customer_id, account_id),
                        Change(actor, "payment-account.default", customer_id, {"account_id": str(account_id)}))
    except InvalidPaymentAccount as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(f"{account_id} is now the default of {customer_id}")


def _reference(item) -> str:
    return item.invoice_number or str(item.document_id)


@cli.command("open-items")
def open_items(
    contract_id: Annotated[str | None, typer.Option(help="Only this contract's items.")] = None,
    customer_id: Annotated[str | None, typer.Option(help="Only this customer's items.")] = None,
    include_paid: Annotated[bool, typer.Option("--all", help="Paid items too.")] = False,
) -> None:
    """The OPOS list: reference, type, amount, open amount, due date, contract."""
    if contract_id is None and customer_id is None:
        raise typer.BadParameter("name --contract-id or --customer-id")
    items = _in_transaction(lambda session: store.items_of(session, contract_id=contract_id,
                                                           customer_id=customer_id, open_only=not include_paid))
    for item in items:
        typer.echo(f"{_reference(item):<36}  {item.item_type:<14}  {item.amount:>12.2f}  {item.open_amount:>12.2f}  "
                   f"{item.currency}  due {item.due_date}  {item.contract_id}")


@cli.command("assignments")
def assignments(reference: str) -> None:
    """The payments assigned to an item (an invoice number or an item id), reversals as negative rows."""
    async def load(session: AsyncSession):
        item = await store.find_invoice_item(session, reference)
        if item is None:
            try:
                item = await store.find_item(session, uuid.UUID(reference))
            except ValueError:
                return None
        if item is None:
            return None
        return item, await store.assignments_of_item(session, item.document_id)

    found = _in_transaction(load)
    if found is None:
        raise typer.BadParameter(f"no open item {reference!r}")
    item, rows = found
    for row in rows:
        typer.echo(f"{row.assigned_at:%Y-%m-%d %H:%M:%S}  {row.kind:<11}  {row.payment_id:<24}  "
                   f"{row.amount:>12.2f} {row.currency}  (caused by {row.caused_by})")
    typer.echo(f"{_reference(item)}: {item.amount:.2f} {item.currency}, open {item.open_amount:.2f}", err=True)


@cli.command("place-held")
def place_held(
    provider: str,
    provider_event_id: str,
    contract_id: Annotated[str, typer.Option(help="The contract the money is for.")],
    customer_id: Annotated[str, typer.Option(help="Its customer.")],
) -> None:
    """Say whose a held provider transaction is (`billing reconcile` lists them as HELD); it is then published."""
    actor = authorized(Role.clerk, "place-held")
    try:
        event = _in_transaction(lambda session: handlers.place_held(session, provider, provider_event_id,
                                                                    contract_id, customer_id),
                                Change(actor, "payment.place-held", f"{provider} {provider_event_id}", {
                                    "contract_id": contract_id, "customer_id": customer_id}))
    except Rejected as error:
        raise typer.BadParameter(str(error)) from None
    except WebhookRefused as refused:
        raise typer.BadParameter(refused.message) from None
    typer.echo(f"{event.kind} {event.payment_id} {event.amount} {event.currency} is {contract_id}'s "
               f"(event {event.event_id})")


@cli.command("sign-webhook")
def sign_webhook(
    provider: str,
    body: Annotated[Path, typer.Argument(help="The JSON body, exactly as it will be sent.")],
    timestamp: Annotated[int | None, typer.Option(help="Unix seconds; now if not given.")] = None,
) -> None:
    """Print the headers that sign BODY for PROVIDER with the configured secret (for trying the bridge)."""
    secret = PaymentsSettings().webhook_secrets.get(provider)
    if secret is None:
        raise typer.BadParameter(f"no webhook secret is configured for provider {provider!r}")
    sent_at = str(timestamp if timestamp is not None else int(time.time()))
    typer.echo(f"Webhook-Timestamp: {sent_at}")
    typer.echo(f"Webhook-Signature: {webhooks.sign(secret.get_secret_value(), sent_at, body.read_bytes())}")


if __name__ == "__main__":
    cli()
