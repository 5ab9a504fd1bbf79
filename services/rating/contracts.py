"""Contracts as operators and upstream products describe them, and the use case that saves them.

Saving a contract also emits its whole new state on `contracts.changed` (through the outbox, in
the same transaction), so the services that need customer and contract data keep replicas.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from services.rating import store
from services.rating.domain import Contract, ContractItem
from services.rating.tables import messaging
from shared import topics
from shared.db import Database
from shared.events import (
    ContractChanged,
    ContractItemTerms,
    ContractStatus,
    Currency,
    CustomerProfile,
    Identifier,
    TaxCategory,
    Text,
    UnitPrice,
    derive_id,
)
from shared.messaging import Outgoing, write_outbox


class ContractItemSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Identifier
    description: Text
    unit_price: Annotated[UnitPrice, Field(ge=0)]
    tax_category: TaxCategory = TaxCategory.STANDARD


class ContractSpec(BaseModel):
    """A contract with its customer, as an operator or upstream product describes it."""

    model_config = ConfigDict(extra="forbid")

    contract_id: Identifier
    customer: CustomerProfile
    currency: Currency
    starts_on: date
    ends_on: date | None = None
    status: ContractStatus = ContractStatus.ACTIVE
    items: list[ContractItemSpec] = Field(min_length=1)

    def to_domain(self) -> Contract:
        return Contract(
            contract_id=self.contract_id,
            customer_id=self.customer.customer_id,
            currency=self.currency,
            starts_on=self.starts_on,
            ends_on=self.ends_on,
            status=self.status,
            items={item.item_code: ContractItem(**item.model_dump()) for item in self.items},
        )


CONTRACT_LIST = TypeAdapter(list[ContractSpec])


def changed_event(spec: ContractSpec, revision: int) -> ContractChanged:
    return ContractChanged(
        event_id=derive_id(f"{spec.contract_id}:{revision}", "contracts.changed"),
        occurred_at=datetime.now(UTC),
        contract_id=spec.contract_id,
        revision=revision,
        customer=spec.customer,
        currency=spec.currency,
        starts_on=spec.starts_on,
        ends_on=spec.ends_on,
        status=spec.status,
        items=[
            ContractItemTerms(item_code=item.item_code, description=item.description, tax_category=item.tax_category)
            for item in spec.items
        ],
    )


async def save_contracts(database: Database, specs: list[ContractSpec]) -> list[int]:
    """Create or replace contracts (and their customers); returns each contract's new revision."""
    revisions = []
    async with database.transaction() as session:
        for spec in specs:
            await store.save_customer(session, spec.customer)
            revision = await store.save_contract(session, spec.to_domain())
            await write_outbox(session, messaging, [Outgoing(topics.CONTRACTS_CHANGED, changed_event(spec, revision))])
            revisions.append(revision)
    return revisions
