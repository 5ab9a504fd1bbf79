"""Rating's HTTP API for operators and upstream products: contracts, purchases, cancellations,
estimates. `uvicorn services.rating.api:app` or `python -m services.rating.api` (port
RATING_API_PORT, default 8091); OpenAPI at /docs and /openapi.json.

Changes run the same use cases as the admin CLI, each in one transaction of rating's database
with its events (contracts.changed, items.rated) in the outbox; the rating worker's relay
publishes them.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, AsyncIterator

import uvicorn
from fastapi import FastAPI, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.rating import handlers, store
from services.rating.contracts import operate, read
from services.rating.handlers import NotFound
from services.rating.settings import RatingSettings
from services.rating.specs import CancellationSpec, ContractSpec, PurchaseSpec
from shared import health, metrics, topics
from shared.access.guard import Viewer, Clerk, Admin, Guard, guarded
from shared.access.store import Change
from shared.http import SecurityHeaders
from shared.db import Database, migrate
from shared.errors import Rejected
from shared.events import Amount, Currency, Identifier, Quantity, RatedItem, UsageRecorded
from shared.outbox import Outgoing
from shared.health import Readiness, database_reachable, schema_at_head
from shared.logs import configure_logging
from shared.settings import SellerSettings, seller_country


class ContractChange(ContractSpec):
    """A contract as PUT: the path names it, so `contract_id` may be left out of the body."""

    contract_id: Identifier | None = None


class EstimatedPeriod(BaseModel):
    period_start: date
    period_end: date
    quantity: Quantity
    net: Amount


class Estimate(BaseModel):
    contract_id: Identifier
    item_code: Identifier
    currency: Currency
    periods: list[EstimatedPeriod]
    total: Amount


class LineItem(BaseModel):
    """One billable item behind a billing line: a batch's usage of the period (`source_event_id`
    its first event), a fee, a top-up or a purchase."""

    billable_item_id: uuid.UUID
    source_event_id: uuid.UUID
    occurred_at: datetime
    charge_kind: str
    quantity: Quantity
    billable_quantity: Quantity
    unit_price: Decimal
    discount: Decimal
    net: Decimal
    late_for_period_start: date | None


class LineItems(BaseModel):
    contract_id: Identifier
    item_code: Identifier
    period_start: date
    items: list[LineItem]
    # Pass as `after` for the next page; None on the last one.
    next: str | None


class LineUsageEvent(BaseModel):
    """One usage event behind a billing line, and the billable item it is billed in."""

    event_id: uuid.UUID
    billable_item_id: uuid.UUID
    occurred_at: datetime
    # What it consumed: its quantity, or a meter reading's difference to the one before.
    quantity: Quantity
    meter_reading: Quantity | None


class LineUsage(BaseModel):
    contract_id: Identifier
    item_code: Identifier
    period_start: date
    events: list[LineUsageEvent]
    # Pass as `after` for the next page; None on the last one.
    next: str | None


class Problem(BaseModel):
    detail: str


ERRORS = {404: {"model": Problem, "description": "unknown contract"},
          422: {"model": Problem, "description": "a change that cannot be applied"}}


def create_app(database: Database | None = None, guard: Guard | None = None) -> FastAPI:
    """The API over `database` and `guard`, or over RATING_DATABASE_URL (migrated at start) and the
    access database of ACCESS_* when none are given."""

    def serve(app: FastAPI, over: Database, checked_by: Guard) -> None:
        app.state.database = over
        app.state.guard = checked_by
        app.state.readiness = Readiness({"database": database_reachable(over.engine),
                                         "migrations": schema_at_head("rating", over.engine),
                                         "access database": database_reachable(checked_by.database.engine)})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if database is not None and guard is not None:
            serve(app, database, guard)
            yield
            return
        configure_logging()  # a process of its own (tests hand in their database and keep pytest's logging)
        settings = RatingSettings()
        await migrate("rating", settings.database_url)
        serve(app, Database(settings.database_url), await Guard.open())
        try:
            yield
        finally:
            await app.state.database.dispose()
            await app.state.guard.close()

    api = FastAPI(title="Rating", version="1", lifespan=lifespan,
                  description="Contracts, their items and purchases; estimates of unbilled periods.")
    if database is not None and guard is not None:
        serve(api, database, guard)
    guarded(api)
    api.add_middleware(SecurityHeaders)
    api.include_router(health.router)
    api.include_router(metrics.router)

    @api.exception_handler(NotFound)
    async def _not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_404_NOT_FOUND)

    @api.exception_handler(Rejected)
    async def _rejected(request: Request, error: Rejected) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    def db(request: Request) -> Database:
        return request.app.state.database

    @api.put("/contracts/{contract_id}", response_model=ContractSpec, responses=ERRORS)
    async def put_contract(contract_id: Identifier, change: ContractChange, request: Request,
                           actor: Admin) -> ContractSpec:
        """Create or change a contract (publishes contracts.changed); 422 for a customer and item
        invoicing could not tax (e.g. a `reduced` item for a consumer in Denmark). Administrators only."""
        if change.contract_id not in (None, contract_id):
            raise Rejected(f"the body names contract {change.contract_id!r}, the path {contract_id!r}")
        spec = ContractSpec.model_validate({**change.model_dump(), "contract_id": contract_id})

        seller = SellerSettings()

        async def save(session) -> list:
            _, outgoing = await handlers.save_contract(session, spec, seller)
            return outgoing

        await operate(db(request), save,
                      change=Change(actor, "contract.change", contract_id, spec.model_dump(mode="json")))
        return await read_contract(contract_id, request)

    @api.get("/contracts/{contract_id}", response_model=ContractSpec, responses=ERRORS)
    async def get_contract(contract_id: Identifier, request: Request,
                           _: Viewer) -> ContractSpec:
        """The contract with its items (fees show whether a renewal adjusted their price)."""
        return await read_contract(contract_id, request)

    async def read_contract(contract_id: str, request: Request) -> ContractSpec:
        spec = await read(db(request), store.find_contract_spec, contract_id)
        if spec is None:
            raise NotFound(f"unknown contract {contract_id!r}")
        return spec

    @api.get("/customers/{customer_id}/contracts", response_model=list[ContractSpec])
    async def customer_contracts(customer_id: Identifier, request: Request,
                                 _: Viewer) -> list[ContractSpec]:
        return await read(db(request), store.customer_contract_specs, customer_id)

    @api.post("/contracts/{contract_id}/purchases", response_model=list[RatedItem],
              status_code=status.HTTP_201_CREATED, responses=ERRORS)
    async def add_purchase(contract_id: Identifier, purchase: PurchaseSpec, request: Request,
                           actor: Clerk) -> list[RatedItem]:
        """Add a one-time purchase item; returns its billable item (none when `purchase_id` was added before).
        422 when it is dated too far ahead or invoicing could not tax its `tax_category` for the customer."""
        outgoing = await operate(db(request), handlers.add_purchase, contract_id, purchase, seller_country(),
                                 timedelta(seconds=RatingSettings().max_future_skew_s),
                                 change=Change(actor, "purchase.add", contract_id, purchase.model_dump(mode="json")))
        return [message.event for message in outgoing]

    @api.post("/contracts/{contract_id}/usage", response_model=UsageRecorded, status_code=status.HTTP_202_ACCEPTED,
              responses=ERRORS)
    async def record_usage(contract_id: Identifier, usage: UsageRecorded, request: Request,
                           actor: Clerk) -> UsageRecorded:
        """Record usage entered by a person (upstream products publish usage.recorded themselves): it
        goes onto usage.recorded through rating's outbox and is rated like any other; an event id
        sent again is rated once."""
        if usage.contract_id != contract_id:
            raise Rejected(f"the body names contract {usage.contract_id!r}, the path {contract_id!r}")
        spec = await read_contract(contract_id, request)
        if usage.item_code not in {item.item_code for item in spec.items}:
            raise Rejected(f"contract {contract_id} has no item {usage.item_code!r}")

        async def enter(session) -> list[Outgoing]:
            return [Outgoing(topics.USAGE_RECORDED, usage)]

        await operate(db(request), enter, change=Change(actor, "usage.record", contract_id, usage.model_dump(mode="json")))
        return usage

    @api.post("/contracts/{contract_id}/cancel", response_model=ContractSpec, responses=ERRORS)
    async def cancel(contract_id: Identifier, cancellation: CancellationSpec, request: Request,
                     actor: Admin) -> ContractSpec:
        """Cancel on a date (its last day): later usage is refused, fees are prorated to it. Administrators only."""
        await operate(db(request), handlers.cancel_contract, contract_id, cancellation,
                      change=Change(actor, "contract.cancel", contract_id, cancellation.model_dump(mode="json")))
        return await read_contract(contract_id, request)

    @api.get("/contracts/{contract_id}/estimate", response_model=Estimate, responses=ERRORS)
    async def estimate(contract_id: Identifier, item_code: Identifier, quantity: Quantity, request: Request,
                       _: Viewer, periods: Annotated[int, Query(ge=1, le=120)] = 12) -> Estimate:
        """The expected net of each unbilled period if `quantity` of the item is used in each."""
        lines = await read(db(request), handlers.estimate, contract_id, item_code, Decimal(quantity), periods)
        spec = await read_contract(contract_id, request)
        return Estimate(
            contract_id=contract_id, item_code=item_code, currency=spec.currency,
            periods=[EstimatedPeriod(period_start=line.period.start, period_end=line.period.end,
                                     quantity=line.quantity, net=line.net.amount) for line in lines],
            total=sum((line.net.amount for line in lines), Decimal(0)),
        )

    @api.get("/contracts/{contract_id}/lines/{item_code}/{period_start}/items", response_model=LineItems,
             responses=ERRORS)
    async def line_items(contract_id: Identifier, item_code: Identifier, period_start: date, request: Request,
                         _: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         after: Annotated[str | None, Query(max_length=100)] = None) -> LineItems:
        """The billable items behind an invoice line: those of the item billed in the period beginning
        `period_start` (usage batch by batch, fees, top-ups, purchases), a page of `limit` after the
        cursor `after`."""
        await read_contract(contract_id, request)
        rows = await read(db(request), store.items_of_line, contract_id, item_code, period_start,
                          _cursor(after) if after else None, limit)
        return LineItems(contract_id=contract_id, item_code=item_code, period_start=period_start,
                         items=[LineItem.model_validate(row, from_attributes=True) for row in rows],
                         next=_next_cursor(rows, limit, "billable_item_id"))

    @api.get("/contracts/{contract_id}/lines/{item_code}/{period_start}/usage", response_model=LineUsage,
             responses=ERRORS)
    async def line_usage(contract_id: Identifier, item_code: Identifier, period_start: date, request: Request,
                         _: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         after: Annotated[str | None, Query(max_length=100)] = None) -> LineUsage:
        """The usage events behind an invoice line: those of the item billed in the period beginning
        `period_start`, in the order they were used, a page of `limit` after the cursor `after`."""
        await read_contract(contract_id, request)
        rows = await read(db(request), store.usage_of_line, contract_id, item_code, period_start,
                          _cursor(after) if after else None, limit)
        return LineUsage(contract_id=contract_id, item_code=item_code, period_start=period_start,
                         events=[LineUsageEvent.model_validate(row, from_attributes=True) for row in rows],
                         next=_next_cursor(rows, limit, "event_id"))

    return api


def _next_cursor(rows: list, limit: int, row_id: str) -> str | None:
    """The cursor after a full page's last row; None after the last page."""
    if len(rows) < limit:
        return None
    return f"{rows[-1].occurred_at.isoformat()}|{getattr(rows[-1], row_id)}"


def _cursor(after: str) -> tuple[datetime, uuid.UUID]:
    try:
        occurred_at, item_id = after.split("|")
        return datetime.fromisoformat(occurred_at), uuid.UUID(item_id)
    except ValueError as unreadable:
        raise Rejected(f"after={after!r} is not a cursor this API gave out") from unreadable


app = create_app()

if __name__ == "__main__":
    settings = RatingSettings()
    uvicorn.run(app, host=settings.api_host, port=settings.api_port)
