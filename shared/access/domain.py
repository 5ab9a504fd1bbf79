"""Roles, actors and the secrets that identify them: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# A token's prefix says what it is, so a leaked one is recognisable (secret scanners) and the
# guard knows where to look it up.
API_TOKEN_PREFIX = "bil_"
SESSION_PREFIX = "bis_"
# The Kafka header an event caused by a person or token carries: who, as `kind:name`.
ACTOR_HEADER = "billing-actor"


class Role(IntEnum):
    """Each role may do everything the ones below it may."""

    viewer = 1  # read only
    clerk = 2  # usage, purchases, vouchers (billing runs), credit notes, payment assignment
    admin = 3  # contracts, price plans, cancellations, payment accounts, users and tokens

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown role {name!r}: one of {', '.join(role.name for role in cls)}") from None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a request: a signed-in person (`user`), an API token (`token`, by its name), or an
    operator's command run with a token. `source` is where the request came from (an address)."""

    kind: Literal["user", "token"]
    name: str
    role: Role
    source: str | None = None
    # A token's id, so that the audit trail can say which of several same-named tokens it was.
    credential_id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    def may(self, role: Role) -> bool:
        return self.role >= role


class Refused(Exception):
    """A request without valid credentials (401) or with too weak a role (403); nothing changed."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def require(actor: Actor | None, role: Role, what: str) -> Actor:
    if actor is None:
        raise Refused(401, f"{what} needs credentials: sign in, or send an API token as 'Authorization: Bearer ...'")
    if not actor.may(role):
        raise Refused(403, f"{what} needs the {role.name} role; {actor.label} has {actor.role.name}")
    return actor


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A new token or session: `secret` is shown once and never stored; `digest` is."""

    credential_id: str
    secret: str
    digest: str


def issue(prefix: str) -> IssuedSecret:
    credential_id = secrets.token_hex(6)
    secret = f"{prefix}{credential_id}_{secrets.token_urlsafe(32)}"
    return IssuedSecret(credential_id, secret, digest(secret))


def digest(secret: str) -> str:
    """SHA-256 is enough for a secret with 256 random bits: nothing to brute-force, unlike a password."""
    return hashlib.sha256(secret.encode()).hexdigest()


def credential_id_of(secret: str) -> str | None:
    """The id part of `bil_<id>_<random>` / `bis_<id>_<random>`; None for anything else."""
    for prefix in (API_TOKEN_PREFIX, SESSION_PREFIX):
        if secret.startswith(prefix):
            credential_id, separator, rest = secret[len(prefix):].partition("_")
            return credential_id if separator and rest else None
    return None


_passwords = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("a password needs at least 12 characters")
    return _passwords.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    if stored_hash is None:
        # Hash anyway: answering faster for an unknown user would tell which names exist.
        _passwords.hash(password)
        return False
    try:
        return _passwords.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def csrf_token_of(session_secret: str) -> str:
    """A form's anti-forgery token, bound to the session: another site can send the cookie but
    cannot read this value (same-origin policy), so its forged form lacks it."""
    return hmac.new(session_secret.encode(), b"csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_secret: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token_of(session_secret), presented)


def sign_in_blocked(recent_failures: int, limit: int) -> bool:
    """Too many failed sign-ins for a name or from an address in the window: refuse without checking."""
    return recent_failures >= limit
