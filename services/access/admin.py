"""Operators and API tokens: `python -m services.access.admin --help`.

Every command that changes something needs an administrator's API token in ACCESS_TOKEN, with one
exception to start an installation: while the access database has no administrator at all (no
operator and no unrevoked token of the admin role), `add-operator --role admin` and `create-token
--role admin` run without one, recorded as `bootstrap`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from sqlalchemy import exists, or_, select

from shared.access import store
from shared.access.commands import access_session, authorized, command_source
from shared.access.domain import Actor, Role
from shared.access.store import Change
from shared.access.tables import api_tokens, audit_records, operators

cli = typer.Typer(help="Access: operators (people) and API tokens (machine clients).", no_args_is_help=True)


async def _has_administrator(session) -> bool:
    return bool(await session.scalar(select(or_(
        exists().where(operators.c.role == Role.admin.name, operators.c.disabled_at.is_(None)),
        exists().where(api_tokens.c.role == Role.admin.name, api_tokens.c.revoked_at.is_(None))))))


def _administrator(role: Role, command: str) -> Actor:
    """An admin token's holder, or `bootstrap` for the first administrator of an empty installation."""
    async def first_admin() -> bool:
        async with access_session() as session:
            return not await _has_administrator(session)

    if role is Role.admin and asyncio.run(first_admin()):
        return Actor("user", "bootstrap", Role.admin, command_source())
    return authorized(Role.admin, command)


async def _in_access(change: Change, use) -> object:
    async with access_session() as session:
        done = await use(session)
        if done is not False:  # False: nothing to change (no such operator or token)
            await store.record(session, audit_records, change)
        return done


RoleOption = Annotated[str, typer.Option(help="viewer (read only), clerk (usage, purchases, vouchers, credit "
                                              "notes, payment assignment) or admin (everything).")]


@cli.command("add-operator")
def add_operator(
    username: str,
    role: RoleOption,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          envvar="ACCESS_NEW_PASSWORD", help="At least 12 characters.")],
    display_name: Annotated[str, typer.Option(help="Default: the username.")] = "",
    email: Annotated[str, typer.Option(help="Links their OpenID Connect account on first sign-in.")] = "",
) -> None:
    """Add a person who signs in to the portal with a password (and/or the identity provider)."""
    chosen = Role.named(role)
    actor = _administrator(chosen, "add-operator")
    asyncio.run(_in_access(Change(actor, "operator.add", username, {"role": chosen.name, "email": email or None}),
                           lambda session: store.add_operator(session, username, display_name or username, chosen,
                                                              password, email or None)))
    typer.echo(f"operator {username} ({chosen.name}) added; they sign in at the portal's /sign-in")


@cli.command("set-password")
def set_password(
    username: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          envvar="ACCESS_NEW_PASSWORD", help="At least 12 characters.")],
) -> None:
    actor = authorized(Role.admin, "set-password")
    if not asyncio.run(_in_access(Change(actor, "operator.password", username, {}),
                                  lambda session: store.set_password(session, username, password))):
        typer.echo(f"no operator {username}", err=True)
        raise typer.Exit(1)
    typer.echo(f"password of {username} set")


@cli.command("disable-operator")
def disable_operator(username: str) -> None:
    """Disable an operator: their sessions stop working at once; their audit records stay."""
    actor = authorized(Role.admin, "disable-operator")
    if not asyncio.run(_in_access(Change(actor, "operator.disable", username, {}),
                                  lambda session: store.disable_operator(session, username, datetime.now(UTC)))):
        typer.echo(f"no enabled operator {username}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{username} disabled")


@cli.command("create-token")
def create_token(
    name: str,
    role: RoleOption,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
) -> None:
    """Create an API token; it is printed once (only its hash is kept)."""
    chosen = Role.named(role)
    actor = _administrator(chosen, "create-token")
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None

    async def create(session):
        return await store.create_token(session, name, chosen, actor.label, expires_at)

    issued = asyncio.run(_in_access(Change(actor, "token.create", name, {"role": chosen.name}), create))
    typer.echo(f"token {issued.credential_id} ({name}, {chosen.name}); send it as 'Authorization: Bearer <token>':")
    typer.echo(issued.secret)


@cli.command("revoke-token")
def revoke_token(token_id: str) -> None:
    actor = authorized(Role.admin, "revoke-token")
    if not asyncio.run(_in_access(Change(actor, "token.revoke", token_id, {}),
                                  lambda session: store.revoke_token(session, token_id, actor.label, datetime.now(UTC)))):
        typer.echo(f"no active token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"token {token_id} revoked")


@cli.command("tokens")
def tokens() -> None:
    authorized(Role.admin, "tokens")

    async def listed():
        async with access_session() as session:
            return await store.all_tokens(session)

    for token in asyncio.run(listed()):
        state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
        typer.echo(f"{token.token_id}  {token.name:<30} {token.role:<7} {state}  by {token.created_by}")


if __name__ == "__main__":
    cli()
