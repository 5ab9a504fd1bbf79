"""Operator commands' side of access: a command that changes data runs as the holder of an API
token (ACCESS_TOKEN, or the file ACCESS_TOKEN in BILLING_SECRETS_DIR), checked and recorded like
an API request's; without one, or with too weak a role, it exits with the reason, changing nothing."""

from __future__ import annotations

import asyncio
import getpass
import socket
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import AsyncIterator

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from shared.access import store
from shared.access.domain import Actor, Refused, Role, require
from shared.access.store import Change
from shared.access.tables import audit_records
from shared.db import Database, migrate
from shared.settings import AccessSettings


def command_source() -> str:
    return f"command by {getpass.getuser()} on {socket.gethostname()}"[:100]


def authorized(role: Role, command: str) -> Actor:
    """The command's actor; exits with status 2 and the reason when the token is missing, unknown,
    revoked or of too weak a role."""
    settings = AccessSettings()
    secret = settings.token.get_secret_value()

    async def look_up() -> Actor | None:
        async with access_session(settings) as session:
            return await store.actor_of(session, secret, command_source(), datetime.now(UTC))

    try:
        return require(asyncio.run(look_up()) if secret else None, role, command)
    except Refused as refused:
        reason = refused.detail if secret else (
            f"{command} needs an API token of the {role.name} role in ACCESS_TOKEN "
            "(create one in the portal or with `python -m services.access.admin create-token`)")
        typer.echo(f"refused: {reason}", err=True)
        raise typer.Exit(2) from None


@asynccontextmanager
async def access_session(settings: AccessSettings | None = None) -> AsyncIterator[AsyncSession]:
    """One transaction of the access database (migrated first), for a command or a local setup."""
    settings = settings or AccessSettings()
    await migrate("access", settings.database_url)
    database = Database(settings.database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            yield session
    finally:
        await database.dispose()


async def record_in_access(change: Change) -> None:
    """For a change no service database holds (a dead letter replayed onto its topic): the access
    database's own audit trail."""
    async with access_session() as session:
        await store.record(session, audit_records, change)
