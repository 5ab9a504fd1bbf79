"""The quick actions: each goes through the API of the service whose data it changes, never into
another service's tables, with the caller's own credential (their session or API token), so that
the service checks their role again and records them in its audit trail.

Usage entered by hand, purchases and cancellations are rating's; billing runs (vouchers) and
cancelled orders' credits are settlement's; credit moved by hand and payment accounts are payments'.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.portal import details, domain, models
from services.portal.reads import Sources
from services.portal.sources import payments, rating


class UnknownContract(domain.ActionRefused):
    pass


class ServiceUnavailable(RuntimeError):
    """A service's API did not answer, or failed; nothing was changed by the portal."""


class Actions:
    def __init__(self, sources: Sources, rating_api: httpx.AsyncClient, settlement_api: httpx.AsyncClient,
                 payments_api: httpx.AsyncClient, credential: str | None = None) -> None:
        self.sources = sources
        self.rating_api = rating_api
        self.settlement_api = settlement_api
        self.payments_api = payments_api
        self.credential = credential

    def on_behalf_of(self, credential: str | None) -> Actions:
        """The actions as the caller: the services' APIs see (and audit) them, not the portal."""
        acting = copy.copy(self)
        acting.credential = credential
        return acting

    async def ask(self, api: httpx.AsyncClient, service: str, method: str, path: str, **request: Any) -> Any:
        """A request to a service's API; its answer's JSON. Refusals are the service's reasons, outages its absence."""
        headers = {"Authorization": f"Bearer {self.credential}"} if self.credential else {}
        try:
            response = await api.request(method, path, headers=headers, **request)
        except httpx.TransportError as error:
            raise ServiceUnavailable(f"{service}'s API is not reachable at {api.base_url}: {error}") from error
        if response.status_code >= 500:
            raise ServiceUnavailable(f"{service}'s API failed ({response.status_code}) on {path}")
        if response.status_code >= 400:
            raise domain.ActionRefused(f"{service} refused it: {_detail(response)}")
        return response.json() if response.content else None

    async def _post(self, api: httpx.AsyncClient, service: str, path: str, body: dict[str, Any]) -> Any:
        return await self.ask(api, service, "POST", path, json=body)

    async def _contracts(self, customer_id: str, contract_ids: list[str]) -> dict[str, Any]:
        """The customer's contracts named, with their items; a contract of someone else is refused."""
        async with self.sources.rating.read() as connection:
            found = {contract_id: await rating.contract(connection, customer_id, contract_id)
                     for contract_id in contract_ids}
            items = await rating.items_of(connection, contract_ids)
        missing = [contract_id for contract_id, row in found.items() if row is None]
        if missing:
            raise UnknownContract(f"customer {customer_id} has no contract {', '.join(missing)}")
        return {contract_id: {item.item_code for item in items[contract_id]} for contract_id in contract_ids}

    async def record_usage(self, customer_id: str, contract_id: str, request: models.UsageRequest) -> models.ActionResult:
        item_codes = (await self._contracts(customer_id, [contract_id]))[contract_id]
        if request.item_code not in item_codes:
            raise domain.ActionRefused(f"contract {contract_id} has no item {request.item_code!r}")
        event = domain.usage_recorded(request.request_id, contract_id, request.item_code, request.quantity,
                                      request.day, datetime.now(UTC))
        await self._post(self.rating_api, "rating", f"/contracts/{quote(contract_id, safe='')}/usage",
                         event.model_dump(mode="json", exclude_none=True))
        return models.ActionResult(
            message=f"usage of {format(request.quantity, 'f')} {request.item_code} recorded for {contract_id}; "
                    "it is rated in a moment", event_ids=[event.event_id])

    async def request_billing_runs(self, customer_id: str, request: models.BillingRunRequest) -> models.ActionResult:
        if not request.contract_ids:
            raise domain.ActionRefused("select at least one contract")
        await self._contracts(customer_id, request.contract_ids)
        runs = await self._post(self.settlement_api, "settlement", "/billing-runs",
                                {"request_id": str(request.request_id), "contract_ids": request.contract_ids})
        if not runs:  # the same request id again (a resubmitted form): settlement requested nothing more
            return models.ActionResult(message="those vouchers were requested before; nothing more requested")
        return models.ActionResult(
            message=f"vouchers requested for {', '.join(run['contract_id'] for run in runs)}; "
                    "the documents appear once invoicing has issued them",
            event_ids=[uuid.UUID(run["event_id"]) for run in runs])

    async def add_purchase(self, customer_id: str, contract_id: str, request: models.PurchaseRequest) -> models.ActionResult:
        await self._contracts(customer_id, [contract_id])
        await self._post(self.rating_api, "rating", f"/contracts/{contract_id}/purchases", request.model_dump(mode="json"))
        return models.ActionResult(message=f"purchase of {format(request.quantity, 'f')} {request.item_code} "
                                           f"added to {contract_id}")

    async def cancel_contracts(self, customer_id: str, request: models.CancellationRequest) -> models.ActionResult:
        await self._contracts(customer_id, request.contract_ids)
        for contract_id in request.contract_ids:
            await self._post(self.rating_api, "rating", f"/contracts/{contract_id}/cancel",
                        {"ends_on": request.ends_on.isoformat()})
        return models.ActionResult(message=f"{', '.join(request.contract_ids)} cancelled as of "
                                           f"{request.ends_on.isoformat()}")

    async def cancel_orders(self, customer_id: str, request: models.OrderCancellationRequest) -> models.ActionResult:
        """Create a credit note for the orders: settlement credits their billed purchases in full."""
        orders = [details.parse_order_id(text) for text in dict.fromkeys(request.order_ids)]
        await self._contracts(customer_id, sorted({contract_id for contract_id, _ in orders}))
        purchases = await details.order_items(self.sources, orders)
        if not purchases:
            raise domain.ActionRefused(f"no purchases in {', '.join(request.order_ids)}")
        unbilled = sorted({f"{item.contract_id} {item.item_code}" for item in purchases if item.settlement_run_id is None})
        if unbilled:
            raise domain.ActionRefused(f"not billed yet, so nothing to credit: {', '.join(unbilled)}; "
                                       "create vouchers first")
        runs = await self._post(self.settlement_api, "settlement", "/orders/cancellations",
                           {"billable_item_ids": [str(item.billable_item_id) for item in purchases]})
        if not runs:
            return models.ActionResult(message=f"{', '.join(request.order_ids)} were cancelled before; nothing credited")
        credited = ", ".join(f"{run['credit_total']} {run['currency']} on {run['contract_id']}" for run in runs)
        return models.ActionResult(message=f"credit note requested for {', '.join(request.order_ids)}: {credited}; "
                                           "it appears once invoicing has issued it")

    async def _payment_and_item(self, customer_id: str, payment_event_id: uuid.UUID,
                                document_id: uuid.UUID) -> tuple[Any, Any]:
        """The customer's payment and open item named; someone else's is refused, never moved."""
        async with self.sources.payments.read() as connection:
            payment = await payments.payment(connection, payment_event_id)
            item = await payments.open_item(connection, document_id)
        if payment is None or payment.customer_id != customer_id:
            raise domain.ActionRefused(f"customer {customer_id} has no payment {payment_event_id}")
        if item is None or item.customer_id != customer_id:
            raise domain.ActionRefused(f"customer {customer_id} has no open item {document_id}")
        return payment, item

    async def assign_payment(self, customer_id: str, request: models.AssignmentRequest) -> models.ActionResult:
        """Assign a payment's credit to an open item the billing user chose."""
        payment, item = await self._payment_and_item(customer_id, request.payment_event_id, request.document_id)
        moved = await self._post(self.payments_api, "payments", "/operations/assignments", request.model_dump(mode="json"))
        return _moved(moved, f"{payment.kind} {payment.payment_id}", "assigned to",
                      item.invoice_number or str(item.document_id))

    async def undo_assignment(self, customer_id: str, request: models.UndoAssignmentRequest) -> models.ActionResult:
        payment, item = await self._payment_and_item(customer_id, request.payment_event_id, request.document_id)
        moved = await self._post(self.payments_api, "payments", "/operations/assignments/undo",
                            request.model_dump(mode="json"))
        return _moved(moved, f"{payment.kind} {payment.payment_id}", "taken back from",
                      item.invoice_number or str(item.document_id))

    async def add_payment_account(self, customer_id: str, request: models.PaymentAccountRequest) -> models.ActionResult:
        added = await self._post(self.payments_api, "payments", f"/operations/customers/{quote(customer_id, safe='')}"
                            "/payment-accounts", request.model_dump(mode="json", exclude_none=True))
        return models.ActionResult(message=f"{added['describe']} added{' as the default' if added['is_default'] else ''}")

    async def set_default_payment_account(self, customer_id: str, account_id: uuid.UUID) -> models.ActionResult:
        await self._post(self.payments_api, "payments", f"/operations/customers/{quote(customer_id, safe='')}"
                    f"/payment-accounts/{account_id}/default", {})
        return models.ActionResult(message=f"payment account {account_id} is now the default")


def _moved(moved: dict[str, Any], payment: str, how: str, reference: str) -> models.ActionResult:
    if moved["amount"] is None:
        return models.ActionResult(message=f"that was done before; nothing moved for {payment}")
    return models.ActionResult(message=f"{moved['amount']} {moved['currency']} of {payment} {how} {reference}")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text or str(response.status_code)
    return detail if isinstance(detail, str) else str(detail)
