"""Roles, secrets and password hashes of shared.access.domain."""

from __future__ import annotations

import pytest

from shared.access.domain import (
    API_TOKEN_PREFIX,
    SESSION_PREFIX,
    Actor,
    Refused,
    Role,
    credential_id_of,
    csrf_matches,
    csrf_token_of,
    digest,
    hash_password,
    issue,
    password_matches,
    require,
    sign_in_blocked,
)


def test_each_role_may_do_what_the_ones_below_it_may():
    clerk = Actor("user", "erika", Role.clerk)
    assert clerk.may(Role.viewer) and clerk.may(Role.clerk) and not clerk.may(Role.admin)
    assert Actor("token", "erp", Role.admin).may(Role.clerk)
    assert not Actor("token", "dashboard", Role.viewer).may(Role.clerk)
    assert Role.named("admin") is Role.admin
    with pytest.raises(ValueError, match="unknown role 'root'"):
        Role.named("root")


def test_a_refusal_says_why_and_distinguishes_no_credentials_from_too_weak_a_role():
    with pytest.raises(Refused) as missing:
        require(None, Role.viewer, "GET /api/customers")
    assert missing.value.status == 401 and "needs credentials" in missing.value.detail
    with pytest.raises(Refused) as weak:
        require(Actor("token", "dashboard", Role.viewer), Role.clerk, "POST /contracts/C-1/purchases")
    assert weak.value.status == 403
    assert weak.value.detail == "POST /contracts/C-1/purchases needs the clerk role; token:dashboard has viewer"
    assert require(Actor("user", "max", Role.admin), Role.clerk, "x").name == "max"


def test_an_issued_secret_is_kept_only_as_its_digest_and_names_its_id():
    token = issue(API_TOKEN_PREFIX)
    assert token.secret.startswith(f"bil_{token.credential_id}_") and len(token.secret) > 50
    assert token.digest == digest(token.secret) != token.secret and len(token.digest) == 64
    assert credential_id_of(token.secret) == token.credential_id
    session = issue(SESSION_PREFIX)
    assert credential_id_of(session.secret) == session.credential_id
    assert issue(API_TOKEN_PREFIX).secret != token.secret
    for foreign in ("", "Bearer", "bil_", "bil_abc", "ghp_abc_def", token.secret.replace("bil_", "xyz_")):
        assert credential_id_of(foreign) is None


def test_passwords_are_argon2id_hashes_that_only_their_password_matches():
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert password_matches(stored, "correct horse battery")
    assert not password_matches(stored, "correct horse batterY")
    assert not password_matches(None, "anything at all")  # an unknown name
    assert not password_matches("not a hash", "correct horse battery")
    with pytest.raises(ValueError, match="12 characters"):
        hash_password("short")


def test_the_anti_forgery_token_is_bound_to_its_session():
    session = issue(SESSION_PREFIX).secret
    token = csrf_token_of(session)
    assert csrf_matches(session, token)
    assert not csrf_matches(issue(SESSION_PREFIX).secret, token)
    assert not csrf_matches(session, None) and not csrf_matches(session, "")


def test_sign_in_is_blocked_from_the_limit_of_failures_on():
    assert not sign_in_blocked(4, 5)
    assert sign_in_blocked(5, 5) and sign_in_blocked(9, 5)
