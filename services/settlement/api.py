"""Settlement's HTTP API for the portal and operators: request billing runs, cancel billed orders.
`uvicorn services.settlement.api:app` or `python -m services.settlement.api` (port
SETTLEMENT_API_PORT, default 8092); OpenAPI at /docs and /openapi.json.

The same use case as `python -m services.settlement.admin cancel-order`, in one transaction of
settlement's database with its receivables.posted in the outbox; the settlement worker's relay
publishes it, and invoicing makes the credit note of it.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.settlement import handlers
from services.settlement.admin import operate
from services.settlement.settings import SettlementSettings
from shared import health, metrics
from shared.access.guard import Clerk, Guard, guarded
from shared.access.store import Change
from shared.http import SecurityHeaders
from shared.db import Database, migrate
from shared.errors import Rejected
from shared.events import Identifier, ReceivablesPosted
from shared.health import Readiness, database_reachable, schema_at_head
from shared.logs import configure_logging


class OrderCancellation(BaseModel):
    billable_item_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000,
                                               description="The billed items (one-time purchases) of the orders.")


class BillingRunsRequest(BaseModel):
    request_id: uuid.UUID = Field(description="Sending the same request id again requests nothing more.")
    contract_ids: list[Identifier] = Field(min_length=1, max_length=1000)
    cutoff: datetime | None = Field(None, description="Bill what was used before this; default now.")


class RequestedRun(BaseModel):
    event_id: uuid.UUID
    contract_id: str
    cutoff: datetime


class CreditRun(BaseModel):
    """A credit run posted: its credit memos are on the ledger; its credit note follows from invoicing."""

    settlement_run_id: uuid.UUID
    contract_id: str
    credit_total: str
    currency: str


class Problem(BaseModel):
    detail: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    settings = SettlementSettings()
    await migrate("settlement", settings.database_url)
    app.state.database = database = Database(settings.database_url)
    app.state.guard = guard = await Guard.open()
    app.state.readiness = Readiness({"database": database_reachable(database.engine),
                                     "migrations": schema_at_head("settlement", database.engine),
                                     "access database": database_reachable(guard.database.engine)})
    try:
        yield
    finally:
        await database.dispose()
        await guard.close()


app = FastAPI(title="Settlement", version="1", lifespan=lifespan,
              description="Credits on billed items: cancelled orders.")
guarded(app)
app.add_middleware(SecurityHeaders)
app.include_router(health.router)
app.include_router(metrics.router)


@app.exception_handler(Rejected)
async def _rejected(request: Request, error: Rejected) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=422)


@app.post("/orders/cancellations", response_model=list[CreditRun],
          responses={422: {"model": Problem, "description": "an item not billed, unknown or credited in full"}})
async def cancel_orders(cancellation: OrderCancellation, request: Request,
                        actor: Clerk) -> list[CreditRun]:
    """Credit each billed item in full (what earlier credits left of it), a credit run per contract.
    Items cancelled before are left as they are, so sending the same request again posts nothing."""
    outgoing = await operate(request.app.state.database, handlers.cancel_order, cancellation.billable_item_ids,
                             datetime.now(UTC), change=Change(actor, "order.cancel", ", ".join(
                                 map(str, cancellation.billable_item_ids)), cancellation.model_dump(mode="json")))
    runs = [message.event for message in outgoing if isinstance(message.event, ReceivablesPosted)]
    return [CreditRun(settlement_run_id=run.settlement_run_id, contract_id=run.contract_id,
                      credit_total=format(run.credit_total, "f"), currency=run.currency) for run in runs]



@app.post("/billing-runs", response_model=list[RequestedRun], status_code=202)
async def request_billing_runs(body: BillingRunsRequest, request: Request, actor: Clerk) -> list[RequestedRun]:
    """Request a billing run (vouchers) for each contract, through settlement's outbox onto
    billing-runs.requested; the worker runs them, invoicing issues the documents. The same
    request id sent again requests nothing more."""
    now = datetime.now(UTC)
    outgoing = await operate(request.app.state.database, handlers.request_billing_runs, body.request_id,
                             body.contract_ids, body.cutoff or now, now, actor.label,
                             change=Change(actor, "billing-run.request", ", ".join(body.contract_ids),
                                           body.model_dump(mode="json")))
    return [RequestedRun(event_id=message.event.event_id, contract_id=message.event.contract_id,
                         cutoff=message.event.cutoff) for message in outgoing]


if __name__ == "__main__":
    settings = SettlementSettings()
    uvicorn.run(app, host=settings.api_host, port=settings.api_port)
