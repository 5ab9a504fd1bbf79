"""The pages: the customer list, one page per customer, per contract and per document, server-rendered,
plus the quick actions' forms.

Each section of a customer's page takes its filters from query parameters named
`<section>.<filter>` (e.g. `items.period=2026-11`), validated by the same query model as the API.
Actions are plain form posts that answer with a redirect back to the page and a notice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel, ValidationError

from services.portal import details, estimates, models, reads
from services.portal import queries as q
from services.portal.actions import Actions, ServiceUnavailable
from services.portal.domain import ActionRefused
from services.portal.reads import Sources
from shared.access.domain import Role
from shared.access.guard import CSRF_FIELD, Admin, Clerk, credential_of, csrf_token, requires

# Every page needs a signed-in viewer at least (401: sent to sign in); base.html shows who it is.
router = APIRouter(include_in_schema=False, dependencies=[Depends(requires(Role.viewer))])
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def csrf_input(request: Request) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token(request))


templates.env.globals["csrf_input"] = csrf_input


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    query: type[q.ListQuery]
    read: Callable[[Sources, str, Any], Awaitable[models.Page[Any]]]


SECTIONS = [
    Section("contracts", "Contracts", q.ContractQuery, reads.contracts),
    Section("orders", "Orders", q.OrderQuery, details.orders),
    Section("items", "Billable items", q.BillableItemQuery, reads.billable_items),
    Section("documents", "Documents", q.DocumentQuery, reads.documents),
    Section("runs", "Billing runs", q.RunQuery, reads.settlement_runs),
    Section("opos", "Open items (OPOS)", q.OpenItemQuery, reads.open_items),
    Section("credits", "Unassigned payments and credit", q.CreditQuery, reads.credits),
    Section("accounts", "Payment accounts", q.PaymentAccountQuery, reads.payment_accounts),
    Section("ledger", "Ledger", q.LedgerQuery, reads.ledger),
]


def section_query(section: Section, params: dict[str, str]) -> tuple[q.ListQuery, str | None]:
    """The section's query from the page's parameters; invalid filters fall back to none, with the reason."""
    prefix = f"{section.key}."
    mine = {name.removeprefix(prefix): value for name, value in params.items() if name.startswith(prefix) and value}
    try:
        return section.query.model_validate(mine), None
    except ValidationError as error:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return section.query(), f"filters ignored ({reasons})"


class PageLinks:
    """Links that change one section's parameters and keep every other section's as they are."""

    def __init__(self, path: str, params: dict[str, str]) -> None:
        self.path = path
        self.params = params

    def __call__(self, section: str, **changes: Any) -> str:
        params = dict(self.params)
        params.pop("notice", None)
        params.pop("error", None)
        if "offset" not in changes:
            params.pop(f"{section}.offset", None)  # a new filter or order starts at the first page
        for name, value in changes.items():
            key = f"{section}.{name}"
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = str(value)
        return f"{self.path}?{urlencode(params)}#{section}" if params else f"{self.path}#{section}"

    def cleared(self, section: str) -> str:
        """The page without the section's filters (its sort order stays)."""
        kept = {name: value for name, value in self.params.items()
                if not name.startswith(f"{section}.") or name == f"{section}.sort"}
        return PageLinks(self.path, kept)(section)

    def hidden(self, section: str) -> list[tuple[str, str]]:
        """The other sections' parameters, for a section's filter form to carry along."""
        return [(name, value) for name, value in self.params.items()
                if not name.startswith(f"{section}.") and name not in ("notice", "error")]


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/customers")


@router.get("/customers", response_class=HTMLResponse)
async def customer_list(request: Request) -> Response:
    try:
        query = q.CustomerQuery.model_validate({k: v for k, v in request.query_params.items() if v})
    except ValidationError:
        query = q.CustomerQuery()
    page = await reads.customers(request.app.state.sources, query)
    return templates.TemplateResponse(request, "customers.html", {"page": page, "query": query})


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(request: Request, customer_id: str) -> Response:
    sources: Sources = request.app.state.sources
    customer = await _customer(sources, customer_id)
    params = dict(request.query_params)
    sections = await _read_sections(SECTIONS, params, sources, customer_id)
    # Every contract, not just the listed page: the action forms offer them all.
    all_contracts = await reads.contracts(sources, customer_id, q.ContractQuery(limit=500))
    return templates.TemplateResponse(request, "customer.html", {
        "customer": customer, "sections": sections, "summary": await reads.ledger_summary(sources, customer_id),
        "all_contracts": all_contracts.items, "links": PageLinks(request.url.path, params),
        "request_id": uuid.uuid4(), "notice": params.get("notice"), "error": params.get("error"),
    })


async def _read_sections(sections: list[Section], params: dict[str, str], sources: Sources,
                         customer_id: str) -> dict[str, dict[str, Any]]:
    found = {}
    for section in sections:
        query, problem = section_query(section, params)
        found[section.key] = {"section": section, "query": query, "problem": problem,
                              "page": await section.read(sources, customer_id, query)}
    return found


async def _customer(sources: Sources, customer_id: str) -> models.Customer:
    customer = await reads.customer(sources, customer_id)
    if customer is None:
        raise HTTPException(404, f"no customer {customer_id}")
    return customer


@router.get("/customers/{customer_id}/contracts/{contract_id}", response_class=HTMLResponse)
async def contract_page(request: Request, customer_id: str, contract_id: str) -> Response:
    """The contract's header and items, its billing schedule and its ledger (a section each, paged)."""
    sources: Sources = request.app.state.sources
    customer = await _customer(sources, customer_id)
    contract = await details.contract(sources, customer_id, contract_id)
    if contract is None:
        raise HTTPException(404, f"customer {customer_id} has no contract {contract_id}")

    estimate_problem = None

    async def schedule(sources: Sources, customer_id: str, query: q.ScheduleQuery) -> models.Page[Any]:
        nonlocal estimate_problem
        try:
            estimate = await estimates.for_schedule(_actions(request), contract_id, query)
            found = await details.billing_schedule(sources, customer_id, contract_id, query, estimate)
        except (ActionRefused, ServiceUnavailable) as error:
            estimate_problem = f"estimate not applied: {error}"
            found = await details.billing_schedule(sources, customer_id, contract_id, query)
        assert found is not None  # the contract was found above, in the same customer's data
        return found

    async def ledger(sources: Sources, customer_id: str, query: q.LedgerQuery) -> models.Page[Any]:
        return await reads.ledger(sources, customer_id, query.model_copy(update={"contract_id": contract_id}))

    params = dict(request.query_params)
    sections = await _read_sections([Section("schedule", "Billing schedule", q.ScheduleQuery, schedule),
                                     Section("ledger", "Ledger", q.LedgerQuery, ledger)], params, sources, customer_id)
    return templates.TemplateResponse(request, "contract.html", {
        "customer": customer, "contract": contract, "sections": sections, "estimate_problem": estimate_problem,
        "summary": await reads.ledger_summary(sources, customer_id), "links": PageLinks(request.url.path, params),
    })


@router.get("/customers/{customer_id}/contracts/{contract_id}/schedule/{item_code}/{period_start}",
            response_class=HTMLResponse)
async def schedule_line_page(request: Request, customer_id: str, contract_id: str, item_code: str,
                             period_start: date) -> Response:
    """A schedule row's billing detail: the row, its price detail per band and its usage events, paged."""
    sources: Sources = request.app.state.sources
    customer = await _customer(sources, customer_id)
    try:
        query, problem = q.LineUsageQuery.model_validate(
            {name: value for name, value in request.query_params.items() if value}), None
    except ValidationError as error:
        query, problem = q.LineUsageQuery(), f"first page shown ({error.errors()[0]['msg']})"
    line = await details.schedule_line(sources, customer_id, contract_id, item_code, period_start, query)
    if line is None:
        raise HTTPException(404, f"contract {contract_id} has no item {item_code} with a period beginning {period_start}")
    return templates.TemplateResponse(request, "schedule_line.html", {
        "customer": customer, "contract_id": contract_id, "line": line, "query": query, "problem": problem})


@router.get("/customers/{customer_id}/documents/{number}", response_class=HTMLResponse)
async def document_page(request: Request, customer_id: str, number: str) -> Response:
    sources: Sources = request.app.state.sources
    customer = await _customer(sources, customer_id)
    document = await details.document(sources, customer_id, number)
    if document is None:
        raise HTTPException(404, f"customer {customer_id} has no document {number}")
    return templates.TemplateResponse(request, "document.html", {"customer": customer, "document": document})


async def _act(request: Request, customer_id: str, form_to_action: Callable[[Actions, Any], Awaitable[models.ActionResult]]
               ) -> RedirectResponse:
    form = await request.form()
    try:
        result = await form_to_action(_actions(request), form)
        outcome = {"notice": result.message}
    except ValidationError as error:
        outcome = {"error": "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())}
    except (ActionRefused, ServiceUnavailable) as error:
        outcome = {"error": str(error)}
    return RedirectResponse(f"/customers/{customer_id}?{urlencode(outcome)}", status_code=303)


def _actions(request: Request) -> Actions:
    return request.app.state.actions.on_behalf_of(credential_of(request)[0])


def _model(model: type[BaseModel], form: Any, *fields: str) -> Any:
    return model.model_validate({name: form.get(name) for name in fields if form.get(name) not in (None, "")})


@router.post("/customers/{customer_id}/actions/usage")
async def add_usage(request: Request, customer_id: str, _: Clerk) -> RedirectResponse:
    def record(actions: Actions, form: Any) -> Awaitable[models.ActionResult]:
        # One select offers every contract's items: its values are "<contract>/<item code>".
        contract_id, _, item_code = str(form.get("contract_item", "")).partition("/")
        fields = {name: form.get(name) for name in ("request_id", "quantity", "day") if form.get(name)}
        return actions.record_usage(customer_id, contract_id,
                                    models.UsageRequest.model_validate({**fields, "item_code": item_code}))

    return await _act(request, customer_id, record)


@router.post("/customers/{customer_id}/actions/purchase")
async def add_purchase(request: Request, customer_id: str, _: Clerk) -> RedirectResponse:
    return await _act(request, customer_id, lambda actions, form: actions.add_purchase(
        customer_id, str(form.get("contract_id", "")),
        _model(models.PurchaseRequest, form, "item_code", "description", "quantity", "unit_price", "purchased_on",
               "purchase_id")))


@router.post("/customers/{customer_id}/actions/vouchers")
async def create_vouchers(request: Request, customer_id: str, _: Clerk) -> RedirectResponse:
    return await _act(request, customer_id, lambda actions, form: actions.request_billing_runs(
        customer_id, models.BillingRunRequest.model_validate(
            {"request_id": form.get("request_id"), "contract_ids": form.getlist("contract_id")})))


@router.post("/customers/{customer_id}/actions/cancel")
async def cancel_contracts(request: Request, customer_id: str, _: Admin) -> RedirectResponse:
    return await _act(request, customer_id, lambda actions, form: actions.cancel_contracts(
        customer_id, models.CancellationRequest.model_validate(
            {"ends_on": form.get("ends_on") or None, "contract_ids": form.getlist("contract_id")})))


@router.post("/customers/{customer_id}/actions/cancel-orders")
async def cancel_orders(request: Request, customer_id: str, _: Clerk) -> RedirectResponse:
    return await _act(request, customer_id, lambda actions, form: actions.cancel_orders(
        customer_id, models.OrderCancellationRequest.model_validate({"order_ids": form.getlist("order_id")})))


@router.post("/customers/{customer_id}/actions/assign")
async def assign_payment(request: Request, customer_id: str, _: Clerk) -> RedirectResponse:
    return await _act(request, customer_id, lambda actions, form: actions.assign_payment(
        customer_id, _model(models.AssignmentRequest, form, "request_id", "payment_event_id", "document_id", "amount")))


@router.post("/customers/{customer_id}/actions/undo-assignment")
async def undo_assignment(request: Request, customer_id: str, _: Clerk) -> RedirectResponse:
    return await _act(request, customer_id, lambda actions, form: actions.undo_assignment(
        customer_id, _model(models.UndoAssignmentRequest, form, "request_id", "payment_event_id", "document_id")))


@router.post("/customers/{customer_id}/actions/payment-account")
async def add_payment_account(request: Request, customer_id: str, _: Admin) -> RedirectResponse:
    return await _act(request, customer_id, lambda actions, form: actions.add_payment_account(
        customer_id, _model(models.PaymentAccountRequest, form, "method", "holder_name", "iban", "bic",
                            "mandate_reference", "mandate_signed_on", "provider", "provider_token", "make_default")))


@router.post("/customers/{customer_id}/actions/default-account")
async def set_default_payment_account(request: Request, customer_id: str, _: Admin) -> RedirectResponse:
    async def make_default(actions: Actions, form: Any) -> models.ActionResult:
        try:
            account_id = uuid.UUID(str(form.get("account_id", "")))
        except ValueError:
            raise ActionRefused("choose one of the customer's payment accounts") from None
        return await actions.set_default_payment_account(customer_id, account_id)

    return await _act(request, customer_id, make_default)
