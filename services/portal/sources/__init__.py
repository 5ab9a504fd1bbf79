"""Read-only access to each service's own database, one module per service.

Each module declares the columns the portal reads (lightweight `table()`s of its own, so no
service code is imported) and the queries it runs. Connections are read-only REPEATABLE READ
transactions: a page and its total come from one snapshot, and the portal cannot write.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine


class Source:
    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(
            url, pool_size=3, pool_pre_ping=True,
            execution_options={"postgresql_readonly": True, "isolation_level": "REPEATABLE READ"},
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection, connection.begin():
            yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()
