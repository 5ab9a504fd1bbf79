"""Hostile input on every consumed topic: each message is dead-lettered by every consumer group
with its topic, partition, offset, reason and payload; nothing is written; the valid message
queued behind them on the same partition is applied exactly once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Awaitable, Callable

import pytest
from pydantic import BaseModel
from sqlalchemy import Table, func, select

from ops.observe import Databases, dead_letters, wait_until
from services.invoicing.tables import documents
from services.payments.tables import open_items, payments
from services.rating.tables import billable_items as rated_items
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import ledger_entries, settlement_runs
from shared import topics
from shared.events import (
    BillingRunRequested,
    DocumentCreated,
    DocumentType,
    PaymentKind,
    PaymentReceived,
    RatedItem,
    ReceivablesPosted,
    SettlementItem,
    TaxCategory,
    UsageRecorded,
    encode_event,
)
from shared.runtime import publish_event
from tests.e2e.conftest import DEADLINE_S, given_contract, new_contract_id
from tests.e2e.hostile import corpus

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

NOW = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)


def rated_item(contract: str) -> RatedItem:
    item_id = uuid.uuid4()
    return RatedItem(
        event_id=uuid.uuid4(), occurred_at=NOW, contract_id=contract, billable_item_id=item_id,
        customer_id=f"CUST-{contract}", item_code="api-calls", description="API calls", currency="EUR",
        quantity=Decimal("800"), free_quantity=Decimal(0), billable_quantity=Decimal("800"),
        unit_price=Decimal("0.0125"), net=Decimal("10.00"), period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30), source_event_ids=[uuid.uuid4()], tax_category=TaxCategory.STANDARD,
    )


def receivables(contract: str) -> ReceivablesPosted:
    item = SettlementItem(
        line_id=uuid.uuid4(), item_count=1, item_code="api-calls", description="API calls", quantity=Decimal("800"),
        unit_price=Decimal("0.0125"), net=Decimal("10.00"), period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
    )
    return ReceivablesPosted(
        event_id=uuid.uuid4(), occurred_at=NOW, contract_id=contract, settlement_run_id=uuid.uuid4(),
        customer_id=f"CUST-{contract}", currency="EUR", cutoff=NOW, items=[item], total=Decimal("10.00"),
        ledger_balance=Decimal("10.00"),
    )


def document(contract: str) -> DocumentCreated:
    return DocumentCreated(
        event_id=uuid.uuid4(), occurred_at=NOW, contract_id=contract, document_id=uuid.uuid4(),
        document_type=DocumentType.INVOICE, number=f"R-{contract}", settlement_run_id=uuid.uuid4(),
        customer_id=f"CUST-{contract}", currency="EUR", issue_date=NOW.date(), due_date=date(2026, 11, 24),
        net_total=Decimal("10.00"), tax_total=Decimal("1.90"), gross_total=Decimal("11.90"),
    )


def payment(contract: str) -> PaymentReceived:
    return PaymentReceived(
        event_id=uuid.uuid4(), occurred_at=NOW, contract_id=contract, payment_id=f"PAY-{contract}",
        kind=PaymentKind.PAYMENT, provider="test-bank", customer_id=f"CUST-{contract}", currency="EUR",
        amount=Decimal("5.00"),
    )


def usage(contract: str) -> UsageRecorded:
    return UsageRecorded(event_id=uuid.uuid4(), occurred_at=NOW, contract_id=contract, item_code="api-calls",
                         quantity=Decimal("400"))


def billing_run(contract: str) -> BillingRunRequested:
    return BillingRunRequested(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), contract_id=contract,
                               cutoff=datetime.now(UTC))


async def count(databases: Databases, service: str, table: Table, contract: str) -> int:
    return await databases.count(service, select(func.count()).select_from(table).where(table.c.contract_id == contract))


@dataclass(frozen=True)
class Case:
    topic: str
    consumers: tuple[str, ...]
    valid: Callable[[str], BaseModel]
    number_field: str | None
    currency_field: str | None
    # Rows the consumers of the topic wrote for the contract: exactly `expected` once the valid one is in.
    written: Callable[[Databases, str], Awaitable[int]]
    expected: int = 1


CASES = [
    Case(topics.USAGE_RECORDED, ("rating.usage.recorded",), usage, "quantity", None,
         lambda db, c: count(db, "rating", rated_items, c)),
    Case(topics.ITEMS_RATED, ("settlement.items.rated",), rated_item, "quantity", "currency",
         lambda db, c: count(db, "settlement", settled_items, c)),
    Case(topics.BILLING_RUNS_REQUESTED, ("settlement.billing-runs.requested",), billing_run, None, None,
         lambda db, c: count(db, "settlement", settlement_runs, c)),
    Case(topics.RECEIVABLES_POSTED, ("invoicing.receivables.posted",), receivables, "total", "currency",
         lambda db, c: count(db, "invoicing", documents, c)),
    Case(topics.DOCUMENTS_CREATED, ("payments.documents.created", "settlement.documents.created"), document,
         "gross_total", "currency",
         lambda db, c: _sum(count(db, "payments", open_items, c), count(db, "settlement", ledger_entries, c)),
         expected=2),
    Case(topics.PAYMENTS_RECEIVED, ("settlement.payments.received", "payments.payments.received"), payment,
         "amount", "currency",
         lambda db, c: _sum(count(db, "settlement", ledger_entries, c), count(db, "payments", payments, c)),
         expected=2),
]


async def _sum(*counts: Awaitable[int]) -> int:
    return sum([await each for each in counts])


@pytest.mark.parametrize("case", CASES, ids=[case.topic for case in CASES])
async def test_hostile_messages_are_dead_lettered_and_never_block_or_write(case, pipeline, broker, databases):
    contract = new_contract_id("hostile")
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    if case.topic == topics.BILLING_RUNS_REQUESTED:  # a run needs something to settle
        await publish_event(broker, topics.ITEMS_RATED, rated_item(contract), contract)
        await wait_until(lambda: _has(databases, "settlement", settled_items, contract, 1),
                         timeout_s=DEADLINE_S, what="the item to settle")

    valid = case.valid(contract)
    published = []
    for name, payload in corpus(json.loads(encode_event(valid)), number_field=case.number_field,
                                currency_field=case.currency_field):
        record = await broker.publish(payload, case.topic, key=contract.encode())
        published.append((name, payload, record.partition, record.offset))
    await publish_event(broker, case.topic, valid, contract)

    await wait_until(lambda: _written(case, databases, contract), timeout_s=DEADLINE_S,
                     what=f"the valid {case.topic} message behind {len(published)} hostile ones")
    letters = {(letter.consumer, letter.partition, letter.offset): letter
               for letter in await dead_letters(pipeline.kafka.bootstrap_servers)
               if letter.source_topic == case.topic and letter.key == contract}
    for name, payload, partition, offset in published:
        for consumer in case.consumers:
            letter = letters.get((consumer, partition, offset))
            assert letter is not None, f"{name!r} was not dead-lettered by {consumer}"
            assert letter.reason and letter.error_type, name
            # Whole and byte for byte (an oversized message too, and one that is not UTF-8): replayable.
            assert not letter.payload_truncated and letter.original_payload() == payload, name
    assert len(letters) == len(published) * len(case.consumers)
    assert await case.written(databases, contract) == case.expected  # nothing more than the valid message


async def _has(databases: Databases, service: str, table: Table, contract: str, expected: int) -> bool:
    return await count(databases, service, table, contract) == expected


async def _written(case: Case, databases: Databases, contract: str) -> bool:
    return await case.written(databases, contract) >= case.expected
