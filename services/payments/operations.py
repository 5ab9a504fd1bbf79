"""Payments' operator routes, served by the bridge's HTTP app (payments' one HTTP app): credit moved
by hand between open items, and payment accounts. The portal's actions call them.

Thin: each runs one use case of services.payments.handlers in one transaction of payments' database
with its audit record; a refused one (422) changes nothing. Unlike /webhooks they need a signed-in
person's session or an API token (shared.access): assignments a billing clerk, payment accounts an
administrator.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Awaitable, Callable

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import handlers
from services.payments.domain import InvalidPaymentAccount, PaymentMethod
from services.payments.tables import audit_records
from shared.access.guard import Clerk, Admin
from shared.access.store import Change, record
from shared.errors import Rejected
from shared.events import Amount
from shared.money import Money, MoneyError

router = APIRouter(prefix="/operations", tags=["operations"])


class ByHand(BaseModel):
    request_id: uuid.UUID = Field(description="Sending the same request id again changes nothing.")
    payment_event_id: uuid.UUID = Field(description="The payment or credit note whose money is moved.")
    document_id: uuid.UUID = Field(description="The open item.")


class AssignmentRequest(ByHand):
    amount: Annotated[Amount, Field(gt=0)] | None = Field(None, description="Default: as much as the payment's "
                                                                            "credit and the item's open amount allow.")


class Moved(BaseModel):
    """What was moved between credit and the item; none when the request was carried out before."""

    amount: str | None
    currency: str | None


class AccountRequest(BaseModel):
    method: PaymentMethod
    holder_name: Annotated[str, Field(max_length=200)] | None = None
    iban: str | None = None
    bic: str | None = None
    mandate_reference: str | None = None
    mandate_signed_on: date | None = None
    provider: str | None = None
    provider_token: str | None = Field(None, description="A card's token at its provider, or a direct debit's "
                                                         "mandate id at the provider collecting it.")
    make_default: bool = False


class AccountAdded(BaseModel):
    account_id: uuid.UUID
    is_default: bool
    describe: str


async def _in_transaction(request: Request, use_case: Callable[[AsyncSession], Awaitable[Any]],
                          change: Change, *, once: bool = False) -> Any:
    """The use case and its audit record in one transaction; with `once`, a None outcome (a request
    id carried out before) changed nothing and is not recorded."""
    try:
        async with request.app.state.database.transaction() as session:
            done = await use_case(session)
            if done is not None or not once:
                await record(session, audit_records, change)
            return done
    except (Rejected, InvalidPaymentAccount, MoneyError) as refused:
        raise HTTPException(422, str(refused)) from None


def _moved(money: Money | None) -> Moved:
    return Moved(amount=None, currency=None) if money is None else Moved(amount=format(money.amount, "f"),
                                                                           currency=money.currency)


@router.post("/assignments", response_model=Moved)
async def assign(body: AssignmentRequest, request: Request, actor: Clerk) -> Moved:
    """Assign a payment's credit (money no item holds) to an open item of its contract."""
    assignment = await _in_transaction(request, lambda session: handlers.assign_by_hand(
        session, body.payment_event_id, body.document_id, body.amount, body.request_id),
        Change(actor, "payment.assign", str(body.document_id), body.model_dump(mode="json")), once=True)
    return _moved(None if assignment is None else assignment.amount)


@router.post("/assignments/undo", response_model=Moved)
async def undo(body: ByHand, request: Request, actor: Clerk) -> Moved:
    """Undo what a payment pays of an item: the item is open again by as much, the money the payment's credit."""
    held = await _in_transaction(request, lambda session: handlers.undo_assignment(
        session, body.payment_event_id, body.document_id, body.request_id),
        Change(actor, "payment.unassign", str(body.document_id), body.model_dump(mode="json")), once=True)
    return _moved(None if held is None else held.amount)


@router.post("/customers/{customer_id}/payment-accounts", response_model=AccountAdded, status_code=201)
async def add_account(customer_id: str, body: AccountRequest, request: Request,
                      actor: Admin) -> AccountAdded:
    """Add a payment account (SEPA direct debit with its mandate, card token, bank transfer); the
    customer's first, or one added with `make_default`, is the default."""
    details = body.model_dump(exclude={"method", "make_default"})
    account = await _in_transaction(request, lambda session: handlers.add_payment_account(
        session, customer_id, body.method, make_default=body.make_default, **details),
        Change(actor, "payment-account.add", customer_id, {"method": body.method, "provider": body.provider,
                                                           "make_default": body.make_default}))
    return AccountAdded(account_id=account.account_id, is_default=account.is_default, describe=account.describe())


@router.post("/customers/{customer_id}/payment-accounts/{account_id}/default", status_code=204)
async def set_default(customer_id: str, account_id: uuid.UUID, request: Request,
                      actor: Admin) -> None:
    """Make the account the customer's default (the previous one stops being it)."""
    await _in_transaction(request, lambda session: handlers.set_default_payment_account(
        session, customer_id, account_id),
        Change(actor, "payment-account.default", customer_id, {"account_id": str(account_id)}))
