"""Liveness and readiness, the same two endpoints on every worker and HTTP app.

`/health/live` answers 200 as long as the process serves HTTP at all: a failing liveness probe
restarts the process, so it must not depend on PostgreSQL or the broker (restarting every worker
because the database is away only adds a thundering herd to the outage).

`/health/ready` answers 200 only when every check of the process passes (its database answers,
its schema is at the newest migration, the broker answers), otherwise 503 with what failed, so a
load balancer or Kubernetes sends it nothing until it can do its work. Each app keeps its
`Readiness` in `app.state.readiness`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import migrations_at_head

# A check returns None when all is well, else what is wrong; raising counts as failing.
Check = Callable[[], Awaitable[str | None]]

# A probe must answer within its own timeout (Kubernetes: 1 s by default) even when a server hangs.
CHECK_TIMEOUT_S = 2.0


def database_reachable(engine: AsyncEngine) -> Check:
    async def check() -> str | None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None

    return check


def schema_at_head(service: str, engine: AsyncEngine) -> Check:
    async def check() -> str | None:
        return None if await migrations_at_head(service, engine) else f"{service}'s database is not at the newest migration"

    return check


def broker_reachable(broker: KafkaBroker) -> Check:
    async def check() -> str | None:
        return None if await broker.ping(timeout=CHECK_TIMEOUT_S) else "the broker does not answer"

    return check


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, Check]

    async def failures(self) -> dict[str, str]:
        """What fails now, by check name; empty when the process is ready."""
        outcomes = await asyncio.gather(*(asyncio.wait_for(check(), CHECK_TIMEOUT_S) for check in self.checks.values()),
                                        return_exceptions=True)
        failed: dict[str, str] = {}
        for name, outcome in zip(self.checks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed[name] = f"{type(outcome).__name__}: {outcome}"[:300]
            elif outcome is not None:
                failed[name] = outcome
        return failed


router = APIRouter(prefix="/health", include_in_schema=False)


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    if readiness is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    failed = await readiness.failures()
    if failed:
        return JSONResponse({"status": "unavailable", "failed": failed}, status_code=503)
    return JSONResponse({"status": "ok", "checked": sorted(readiness.checks)})
