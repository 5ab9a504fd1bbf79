"""Statements sent to asyncpg directly (`shared.db.in_transaction`: `CompiledOnce`, `insert_rows`)
run in the session's own transaction, on the connection SQLAlchemy holds for it, and in no other:
the connection is kept for the transaction, not for the session."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import text

from shared.db import in_transaction

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def backend_pid_and_transaction(session) -> tuple[int, int]:
    connection = await in_transaction(session)
    return tuple(await connection.fetchrow("SELECT pg_backend_pid(), txid_current()"))


async def test_direct_statements_share_the_sessions_transaction(databases):
    async with databases["rating"].transaction() as session:
        direct = await backend_pid_and_transaction(session)
        assert await backend_pid_and_transaction(session) == direct
        orm = tuple((await session.execute(text("SELECT pg_backend_pid(), txid_current()"))).one())
        assert orm == direct  # what SQLAlchemy runs and what goes to asyncpg: one transaction


async def test_a_rolled_back_transaction_takes_nothing_sent_directly_with_it(databases):
    database = databases["rating"]
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await (await in_transaction(session)).execute("CREATE TABLE rolled_back_probe (n int)")
            await (await in_transaction(session)).execute("INSERT INTO rolled_back_probe VALUES (1)")
            raise RuntimeError("the use case failed")
    async with database.transaction() as session:
        assert (await session.execute(text("SELECT to_regclass('rolled_back_probe')"))).scalar() is None


async def test_after_its_transaction_ends_the_session_begins_another_for_direct_statements(databases):
    async with databases["rating"].sessions() as session:
        async with session.begin():
            first = await backend_pid_and_transaction(session)
        async with session.begin():
            second = await backend_pid_and_transaction(session)
            assert second[1] != first[1]  # a new transaction, not the committed one's connection state
            orm = tuple((await session.execute(text("SELECT pg_backend_pid(), txid_current()"))).one())
            assert orm == second


async def test_a_transaction_with_direct_statements_leaves_nothing_for_the_cycle_collector(databases):
    """What a transaction leaves is freed as it goes: garbage in reference cycles waits for the
    collector, which freed a busy worker's in pauses that the events arriving then waited through."""
    database = databases["rating"]
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(5):
            async with database.transaction() as session:
                await backend_pid_and_transaction(session)
        gc.collect()
        left = [type(thing).__qualname__ for thing in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []
