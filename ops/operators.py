"""Operators and tokens for a local installation: the demo's operator, the tests' tokens."""

from __future__ import annotations

from shared.access import store
from shared.access.commands import access_session
from shared.access.domain import Role


async def issue_tokens(roles: dict[str, Role], created_by: str) -> dict[str, str]:
    """A new API token per name, of its role; name -> the token (shown once, stored hashed)."""
    async with access_session() as session:
        return {name: (await store.create_token(session, name, role, created_by, None)).secret
                for name, role in roles.items()}


async def ensure_operator(username: str, display_name: str, role: Role, password: str) -> None:
    """The operator, added with this role if they are not there yet; their password set either way."""
    async with access_session() as session:
        if await store.operator(session, username) is None:
            await store.add_operator(session, username, display_name, role, password, None)
        else:
            await store.set_password(session, username, password)
