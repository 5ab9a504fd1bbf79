"""The read API (and the quick actions) under /api; OpenAPI at /openapi.json and /docs."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from services.portal import details, estimates, models, reads
from services.portal import queries as q
from services.portal.actions import Actions
from services.portal.reads import Sources
from shared.access.domain import Role
from shared.access.guard import Admin, Clerk, credential_of, requires

# Reading needs a viewer at least (on the router); each action names the role it needs.
router = APIRouter(prefix="/api", dependencies=[Depends(requires(Role.viewer))])


def get_sources(request: Request) -> Sources:
    return request.app.state.sources


def get_actions(request: Request) -> Actions:
    """The actions as the caller, whose credential the services' APIs check (and audit) again."""
    return request.app.state.actions.on_behalf_of(credential_of(request)[0])


SourcesDep = Annotated[Sources, Depends(get_sources)]
ActionsDep = Annotated[Actions, Depends(get_actions)]


async def known_customer(customer_id: str, sources: SourcesDep) -> str:
    if await reads.customer(sources, customer_id) is None:
        raise HTTPException(404, f"no customer {customer_id}")
    return customer_id


CustomerDep = Annotated[str, Depends(known_customer)]


@router.get("/customers", tags=["customers"])
async def list_customers(sources: SourcesDep,
                         query: Annotated[q.CustomerQuery, Query()]) -> models.Page[models.CustomerSummary]:
    return await reads.customers(sources, query)


@router.get("/customers/{customer_id}", tags=["customers"])
async def get_customer(customer_id: str, sources: SourcesDep) -> models.Customer:
    found = await reads.customer(sources, customer_id)
    if found is None:
        raise HTTPException(404, f"no customer {customer_id}")
    return found


@router.get("/customers/{customer_id}/billable-items", tags=["billing data"])
async def billable_items(customer_id: CustomerDep, sources: SourcesDep,
                         query: Annotated[q.BillableItemQuery, Query()]) -> models.Page[models.BillableItem]:
    """Usage and purchases of the customer's contracts; billed ones name their run's documents.
    The period is the month the item was used."""
    return await reads.billable_items(sources, customer_id, query)


@router.get("/customers/{customer_id}/documents", tags=["billing data"])
async def documents(customer_id: CustomerDep, sources: SourcesDep,
                    query: Annotated[q.DocumentQuery, Query()]) -> models.Page[models.Document]:
    """Invoices and credit notes, each with its PDF's URL; the period is the issue date's month."""
    return await reads.documents(sources, customer_id, query)


@router.get("/customers/{customer_id}/documents/{number}", tags=["billing data"])
async def document(customer_id: str, number: str, sources: SourcesDep) -> models.DocumentDetails:
    """A document's lines, tax lines and totals, what corrects it, and (an invoice's) its open item
    with the payments assigned to it."""
    found = await details.document(sources, customer_id, number)
    if found is None:
        raise HTTPException(404, f"customer {customer_id} has no document {number}")
    return found


@router.get("/customers/{customer_id}/documents/{number}/pdf", tags=["billing data"],
            response_class=Response, responses={200: {"content": {"application/pdf": {}}}})
async def document_pdf(customer_id: str, number: str, sources: SourcesDep) -> Response:
    """The PDF stored when the document was issued, byte for byte: a ZUGFeRD / Factur-X PDF/A-3 with
    the e-invoice embedded."""
    return await _document_file(sources, customer_id, number, "pdf", "application/pdf")


@router.get("/customers/{customer_id}/documents/{number}/xml", tags=["billing data"],
            response_class=Response, responses={200: {"content": {"application/xml": {}}}})
async def document_xml(customer_id: str, number: str, sources: SourcesDep) -> Response:
    """The document's e-invoice as it was issued, byte for byte: EN 16931 CII XML (the Factur-X profile
    EN 16931, or XRechnung 3.0 for customers who receive XRechnung)."""
    return await _document_file(sources, customer_id, number, "xml", "application/xml")


async def _document_file(sources: Sources, customer_id: str, number: str, kind: str, media_type: str) -> Response:
    content = await reads.document_file(sources, customer_id, number, kind)
    if content is None:
        raise HTTPException(404, f"customer {customer_id} has no document {number} with a stored {kind.upper()}")
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f'inline; filename="{number}.{kind}"'})


@router.get("/customers/{customer_id}/contracts", tags=["billing data"])
async def contracts(customer_id: CustomerDep, sources: SourcesDep,
                    query: Annotated[q.ContractQuery, Query()]) -> models.Page[models.Contract]:
    """Contracts with start, expiry and status, and the items usage can be recorded for."""
    return await reads.contracts(sources, customer_id, query)


@router.get("/customers/{customer_id}/contracts/{contract_id}", tags=["billing data"])
async def contract(customer_id: str, contract_id: str, sources: SourcesDep) -> models.ContractDetails:
    """The contract's header (start, expiry, status, cycle, currency) and its items with their price plans."""
    found = await details.contract(sources, customer_id, contract_id)
    if found is None:
        raise HTTPException(404, f"customer {customer_id} has no contract {contract_id}")
    return found


@router.get("/customers/{customer_id}/contracts/{contract_id}/schedule", tags=["billing data"])
async def billing_schedule(customer_id: str, contract_id: str, sources: SourcesDep, request: Request,
                           query: Annotated[q.ScheduleQuery, Query()]) -> models.Page[models.ScheduleRow]:
    """The billing schedule: one row per item and billing period of the term (an open-ended contract's up to
    12 periods ahead), with what was rated into it, credited on it and whether it was invoiced. With
    `estimate_item` and `estimate_quantity`, rating's estimate of that consumption per period is applied to
    the item's current and future unbilled rows (marked estimated). With `estimate_period` and
    `estimate_period_quantity`, that one period's estimate is edited: the unbilled periods before it are
    treated as actual (no estimate), the later ones keep `estimate_quantity`; 422 unless it begins an
    unbilled period."""
    if await details.contract(sources, customer_id, contract_id) is None:
        raise HTTPException(404, f"customer {customer_id} has no contract {contract_id}")
    estimate = await estimates.for_schedule(get_actions(request), contract_id, query)
    found = await details.billing_schedule(sources, customer_id, contract_id, query, estimate)
    assert found is not None  # the contract is the customer's (above)
    return found


@router.get("/customers/{customer_id}/contracts/{contract_id}/schedule/{item_code}/{period_start}",
            tags=["billing data"])
async def schedule_line(customer_id: str, contract_id: str, item_code: str, period_start: date, sources: SourcesDep,
                        query: Annotated[q.LineUsageQuery, Query()]) -> models.ScheduleLine:
    """A billing schedule row's billing detail ("View billing detail"): the row, its price detail per band
    (from, to, unit price, quantity, net) and the usage events billed in it, `limit` at a time in the order
    they were used (pass `next` as `after` for the next page)."""
    found = await details.schedule_line(sources, customer_id, contract_id, item_code, period_start, query)
    if found is None:
        raise HTTPException(404, f"customer {customer_id}'s contract {contract_id} has no item {item_code} "
                                 f"with a billing period beginning {period_start}")
    return found


@router.get("/customers/{customer_id}/orders", tags=["billing data"])
async def orders(customer_id: CustomerDep, sources: SourcesDep,
                 query: Annotated[q.OrderQuery, Query()]) -> models.Page[models.Order]:
    """One-time purchases as orders (a contract's purchases of one day), with their items, status and
    documents; the period is the month of the purchase."""
    return await details.orders(sources, customer_id, query)


@router.get("/customers/{customer_id}/settlement-runs", tags=["billing data"])
async def settlement_runs(customer_id: CustomerDep, sources: SourcesDep,
                          query: Annotated[q.RunQuery, Query()]) -> models.Page[models.SettlementRun]:
    """Billing runs (pending, open, complete) with their month and documents; the period is the cutoff's month."""
    return await reads.settlement_runs(sources, customer_id, query)


@router.get("/customers/{customer_id}/open-items", tags=["billing data"])
async def open_items(customer_id: CustomerDep, sources: SourcesDep,
                     query: Annotated[q.OpenItemQuery, Query()]) -> models.Page[models.OpenItem]:
    """The OPOS list with the payments assigned to each item; the period is the due date's month."""
    return await reads.open_items(sources, customer_id, query)


@router.get("/customers/{customer_id}/credits", tags=["billing data"])
async def credits(customer_id: CustomerDep, sources: SourcesDep,
                  query: Annotated[q.CreditQuery, Query()]) -> models.Page[models.Credit]:
    """Payments and credit notes with money no open item holds, each with the items it can be assigned to."""
    return await reads.credits(sources, customer_id, query)


@router.get("/customers/{customer_id}/payment-accounts", tags=["billing data"])
async def payment_accounts(customer_id: CustomerDep, sources: SourcesDep,
                           query: Annotated[q.PaymentAccountQuery, Query()]) -> models.Page[models.PaymentAccount]:
    return await reads.payment_accounts(sources, customer_id, query)


@router.get("/customers/{customer_id}/ledger", tags=["billing data"])
async def ledger(customer_id: CustomerDep, sources: SourcesDep,
                 query: Annotated[q.LedgerQuery, Query()]) -> models.Page[models.LedgerEntry]:
    """Ledger entries with each contract's running balance; the period is the booking month."""
    return await reads.ledger(sources, customer_id, query)


@router.get("/customers/{customer_id}/ledger/summary", tags=["billing data"])
async def ledger_summary(customer_id: CustomerDep, sources: SourcesDep) -> models.LedgerSummary:
    """Per contract: balance, entries and the sum of each entry type; per currency: the customer's totals."""
    return await reads.ledger_summary(sources, customer_id)


@router.post("/customers/{customer_id}/contracts/{contract_id}/usage", tags=["actions"], status_code=202)
async def record_usage(customer_id: str, contract_id: str, request: models.UsageRequest,
                       actions: ActionsDep, _: Clerk) -> models.ActionResult:
    """Record usage for the contract through rating's API (rated asynchronously)."""
    return await actions.record_usage(customer_id, contract_id, request)


@router.post("/customers/{customer_id}/contracts/{contract_id}/purchases", tags=["actions"], status_code=201)
async def add_purchase(customer_id: str, contract_id: str, request: models.PurchaseRequest,
                       actions: ActionsDep, _: Clerk) -> models.ActionResult:
    """Add a one-time purchase item to the contract through rating's API."""
    return await actions.add_purchase(customer_id, contract_id, request)


@router.post("/customers/{customer_id}/billing-runs", tags=["actions"], status_code=202)
async def create_vouchers(customer_id: str, request: models.BillingRunRequest,
                          actions: ActionsDep, _: Clerk) -> models.ActionResult:
    """Create vouchers: request a billing run per contract through settlement's API."""
    return await actions.request_billing_runs(customer_id, request)


@router.post("/customers/{customer_id}/cancellations", tags=["actions"])
async def cancel_contracts(customer_id: str, request: models.CancellationRequest,
                           actions: ActionsDep, _: Admin) -> models.ActionResult:
    """Cancel the contracts on a date through rating's API."""
    return await actions.cancel_contracts(customer_id, request)


@router.post("/customers/{customer_id}/orders/cancellations", tags=["actions"])
async def cancel_orders(customer_id: str, request: models.OrderCancellationRequest,
                        actions: ActionsDep, _: Clerk) -> models.ActionResult:
    """Create a credit note for the orders: settlement's API credits their billed purchases in full (once),
    and invoicing issues the credit note that corrects their invoice."""
    return await actions.cancel_orders(customer_id, request)


@router.post("/customers/{customer_id}/assignments", tags=["actions"])
async def assign_payment(_: Clerk, customer_id: CustomerDep, request: models.AssignmentRequest,
                         actions: ActionsDep) -> models.ActionResult:
    """Assign a payment's credit to a chosen open item of its contract, through payments' API."""
    return await actions.assign_payment(customer_id, request)


@router.post("/customers/{customer_id}/assignments/undo", tags=["actions"])
async def undo_assignment(_: Clerk, customer_id: CustomerDep, request: models.UndoAssignmentRequest,
                          actions: ActionsDep) -> models.ActionResult:
    """Undo what a payment pays of an item: the item is open again and the money the customer's credit."""
    return await actions.undo_assignment(customer_id, request)


@router.post("/customers/{customer_id}/payment-accounts", tags=["actions"], status_code=201)
async def add_payment_account(_: Admin, customer_id: CustomerDep, request: models.PaymentAccountRequest,
                              actions: ActionsDep) -> models.ActionResult:
    """Add a SEPA direct debit (with its mandate), a card (its provider's token) or a bank transfer account."""
    return await actions.add_payment_account(customer_id, request)


@router.post("/customers/{customer_id}/payment-accounts/{account_id}/default", tags=["actions"])
async def set_default_payment_account(_: Admin, customer_id: CustomerDep, account_id: uuid.UUID,
                                      actions: ActionsDep) -> models.ActionResult:
    return await actions.set_default_payment_account(customer_id, account_id)
