"""Running rating's use cases for operators and upstream products (admin CLI, HTTP API): each in
one transaction of rating's database, its events written to the outbox in that transaction, so
the rating worker's relay publishes them (contracts.changed, items.rated)."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from services.rating import handlers
from services.rating.specs import CONTRACT_LIST, ContractSpec
from services.rating.tables import audit_records, messaging
from shared import outbox
from shared.access.store import Change
from shared.db import Database
from shared.outbox import Outgoing
from shared.settings import SellerSettings

__all__ = ["CONTRACT_LIST", "ContractSpec", "operate", "read", "save_contracts"]

T = TypeVar("T")


async def operate(database: Database, use_case: Callable[..., Awaitable[list[Outgoing]]], *args,
                  change: Change | None = None) -> list[Outgoing]:
    """Run a use case in one transaction, its events into the outbox, `change` into the audit trail."""
    return await outbox.operate(database, messaging, use_case, *args, audit=audit_records, change=change)


async def read(database: Database, query: Callable[..., Awaitable[T]], *args) -> T:
    async with database.transaction() as session:
        return await query(session, *args)


async def save_contracts(database: Database, specs: list[ContractSpec], change: Change | None = None) -> list[int]:
    """Create or replace contracts (and their customers); returns each contract's new revision.

    All or none: a contract refused (e.g. one invoicing could not tax) refuses the whole batch."""
    seller = SellerSettings()

    async def save_all(session: AsyncSession) -> list[Outgoing]:
        saved, outgoing = await handlers.save_contracts(session, specs, seller)
        revisions.extend(saved)
        return outgoing

    revisions: list[int] = []
    await operate(database, save_all, change=change)
    return revisions
