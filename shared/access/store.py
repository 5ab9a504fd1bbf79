"""Reading and writing the access database, and writing any database's audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.access.domain import (
    API_TOKEN_PREFIX,
    SESSION_PREFIX,
    Actor,
    IssuedSecret,
    Role,
    credential_id_of,
    digest,
    hash_password,
    issue,
    password_matches,
)
from shared.access.tables import api_tokens, operators, sessions, sign_in_failures


@dataclass(frozen=True, slots=True)
class Change:
    """What an actor did, as the audit trail records it."""

    actor: Actor
    action: str
    target: str
    details: dict[str, Any]


async def record(session: AsyncSession, audit: Table, change: Change) -> None:
    """Append `change` to `audit` (the database's audit_records) in the caller's transaction."""
    actor = change.actor
    await session.execute(insert(audit).values(
        actor=actor.label, role=actor.role.name, credential_id=actor.credential_id, source=actor.source,
        action=change.action, target=change.target[:500], details=change.details))


async def actor_of(session: AsyncSession, secret: str, source: str | None, now: datetime) -> Actor | None:
    """Who holds `secret` (an API token or a session): None when it is unknown, revoked, expired or
    its operator disabled."""
    credential_id = credential_id_of(secret)
    if credential_id is None:
        return None
    if secret.startswith(API_TOKEN_PREFIX):
        token = (await session.execute(select(api_tokens).where(
            api_tokens.c.token_id == credential_id, api_tokens.c.secret_digest == digest(secret),
            api_tokens.c.revoked_at.is_(None),
            or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now)))).first()
        return None if token is None else Actor("token", token.name, Role.named(token.role), source, token.token_id)
    assert secret.startswith(SESSION_PREFIX)
    person = (await session.execute(
        select(operators.c.username, operators.c.role, sessions.c.session_id)
        .join(operators, operators.c.username == sessions.c.username)
        .where(sessions.c.session_id == credential_id, sessions.c.secret_digest == digest(secret),
               sessions.c.ended_at.is_(None), sessions.c.expires_at > now, operators.c.disabled_at.is_(None)))).first()
    return None if person is None else Actor("user", person.username, Role.named(person.role), source,
                                             person.session_id)


async def add_operator(session: AsyncSession, username: str, display_name: str, role: Role,
                       password: str | None, email: str | None) -> None:
    await session.execute(insert(operators).values(
        username=username, display_name=display_name, role=role.name, email=email,
        password_hash=hash_password(password) if password is not None else None))


async def operator(session: AsyncSession, username: str):
    return (await session.execute(select(operators).where(operators.c.username == username))).first()


async def set_password(session: AsyncSession, username: str, password: str) -> bool:
    changed = await session.execute(update(operators).where(operators.c.username == username)
                                    .values(password_hash=hash_password(password)))
    return changed.rowcount == 1


async def set_role(session: AsyncSession, username: str, role: Role) -> None:
    await session.execute(update(operators).where(operators.c.username == username).values(role=role.name))


async def disable_operator(session: AsyncSession, username: str, now: datetime) -> bool:
    """Disabled: signed out everywhere at once (their sessions stop matching), kept for the audit."""
    changed = await session.execute(update(operators).where(operators.c.username == username,
                                                            operators.c.disabled_at.is_(None))
                                    .values(disabled_at=now))
    return changed.rowcount == 1


async def all_operators(session: AsyncSession) -> list:
    return list((await session.execute(select(operators).order_by(operators.c.username))).all())


async def recent_failures(session: AsyncSession, username: str, source: str, since: datetime) -> int:
    return await session.scalar(select(func.count()).select_from(sign_in_failures).where(
        sign_in_failures.c.failed_at > since,
        or_(sign_in_failures.c.username == username, sign_in_failures.c.source == source))) or 0


async def note_failure(session: AsyncSession, username: str, source: str) -> None:
    await session.execute(insert(sign_in_failures).values(username=username[:100], source=source[:100]))


async def check_password(session: AsyncSession, username: str, password: str):
    """The operator if the password is theirs and they are not disabled, else None."""
    row = await operator(session, username)
    matches = password_matches(row.password_hash if row is not None else None, password)
    return row if matches and row.disabled_at is None else None


async def open_session(session: AsyncSession, username: str, source: str | None, now: datetime,
                       lifetime: timedelta) -> IssuedSecret:
    issued = issue(SESSION_PREFIX)
    await session.execute(insert(sessions).values(
        session_id=issued.credential_id, secret_digest=issued.digest, username=username, source=source,
        expires_at=now + lifetime))
    return issued


async def end_session(session: AsyncSession, secret: str, now: datetime) -> None:
    await session.execute(update(sessions).where(sessions.c.secret_digest == digest(secret),
                                                 sessions.c.ended_at.is_(None)).values(ended_at=now))


async def create_token(session: AsyncSession, name: str, role: Role, created_by: str,
                       expires_at: datetime | None) -> IssuedSecret:
    issued = issue(API_TOKEN_PREFIX)
    await session.execute(insert(api_tokens).values(
        token_id=issued.credential_id, name=name, role=role.name, secret_digest=issued.digest,
        created_by=created_by, expires_at=expires_at))
    return issued


async def revoke_token(session: AsyncSession, token_id: str, revoked_by: str, now: datetime) -> bool:
    changed = await session.execute(update(api_tokens).where(api_tokens.c.token_id == token_id,
                                                             api_tokens.c.revoked_at.is_(None))
                                    .values(revoked_at=now, revoked_by=revoked_by))
    return changed.rowcount == 1


async def all_tokens(session: AsyncSession) -> list:
    return list((await session.execute(
        select(api_tokens.c.token_id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_by,
               api_tokens.c.created_at, api_tokens.c.expires_at, api_tokens.c.revoked_at)
        .order_by(api_tokens.c.created_at))).all())


async def operator_by_oidc(session: AsyncSession, subject: str, email: str | None):
    """The operator the provider's person is: by their subject once linked, else by e-mail (linked then)."""
    row = (await session.execute(select(operators).where(operators.c.oidc_subject == subject))).first()
    if row is None and email:
        row = (await session.execute(select(operators).where(func.lower(operators.c.email) == email.lower(),
                                                             operators.c.oidc_subject.is_(None)))).first()
        if row is not None:
            await session.execute(update(operators).where(operators.c.username == row.username)
                                  .values(oidc_subject=subject))
    return row


async def link_oidc(session: AsyncSession, username: str, subject: str) -> None:
    await session.execute(update(operators).where(operators.c.username == username).values(oidc_subject=subject))
