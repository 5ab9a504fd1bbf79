"""Which failures a consumer retries (infrastructure) and which it dead-letters (the message)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from shared.errors import Rejected
from shared.events import InvalidMessage
from shared.inbox import is_transient


def adapted(error: Exception) -> Exception:
    """`error` as SQLAlchemy's asyncpg adapter raises it: its own type, the driver's error as cause."""
    try:
        try:
            raise error
        except Exception as cause:
            raise AsyncAdapt_asyncpg_dbapi.InternalClientError(str(cause)) from cause
    except Exception as translated:
        return translated


def test_a_connection_left_out_of_step_by_a_server_shutting_down_is_retried():
    # What the first BEGIN on such a pooled connection raised while PostgreSQL stopped: a valid
    # item was dead-lettered with it, and `billing reconcile` found it missing.
    out_of_step = asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress")
    assert is_transient(adapted(out_of_step))
    assert is_transient(asyncpg.exceptions.OutdatedSchemaCacheError("cached statement plan is invalid"))


@pytest.mark.parametrize("error", [
    InvalidMessage("invalid RatedItem: net: Field required"),
    Rejected("thirteen is refused"),
    asyncpg.exceptions.DataError("invalid input for query argument $1"),
    asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
    RuntimeError("a defect"),
])
def test_what_the_message_or_the_code_causes_is_not_retried(error):
    assert not is_transient(error)
