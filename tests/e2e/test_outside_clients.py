"""The pipeline driven by a client nobody here wrote: librdkafka (confluent-kafka), as upstream
products publish usage and downstream systems read documents, with the JSON they would write by
hand (no schema_version, amounts as strings).

Hand-computed: 1,000 + 200 API calls at 0.0125 EUR = 15.00 EUR net, 19 % German VAT = 2.85 EUR,
17.85 EUR gross.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from ops import load
from ops.observe import wait_until
from shared import topics
from tests.e2e.conftest import DEADLINE_S, given_contract, new_contract_id, request_billing_run, wait_for_invoice

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def usage_as_written_by_hand(contract_id: str, quantity: str, day: int) -> tuple[bytes, bytes]:
    body = {"event_id": str(uuid.uuid4()), "occurred_at": f"2026-11-{day:02d}T09:30:00Z", "contract_id": contract_id,
            "item_code": "api-calls", "quantity": quantity}
    return contract_id.encode(), json.dumps(body).encode()


async def test_usage_published_with_librdkafka_ends_in_a_document_read_with_librdkafka(
        pipeline, broker, databases, reconciled_at_the_end):
    contract = new_contract_id("rdkafka")
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    rated: list[dict] = []
    documents: list[dict] = []
    items_reader = load.TopicReader(pipeline.kafka, topics.ITEMS_RATED, lambda value, _: rated.append(json.loads(value)))
    documents_reader = load.TopicReader(pipeline.kafka, topics.DOCUMENTS_CREATED,
                                        lambda value, _: documents.append(json.loads(value)))
    try:
        await load.publish(pipeline.kafka, topics.USAGE_RECORDED, [usage_as_written_by_hand(contract, "1000", 10),
                                                                   usage_as_written_by_hand(contract, "200", 11)])

        async def rated_in_full() -> bool:
            return sum(Decimal(item["net"]) for item in rated if item["contract_id"] == contract) == Decimal("15.00")

        await wait_until(rated_in_full, timeout_s=DEADLINE_S, what=f"15.00 EUR rated for {contract} on items.rated")
        # At once, as a user who saw the items rated would: settlement's fetches linger, so it may
        # not hold them yet; the run waits until it does, and bills them.
        await request_billing_run(broker, contract)
        invoice = await wait_for_invoice(databases, contract)

        async def document_read() -> bool:
            return any(document["number"] == invoice.number for document in documents)

        await wait_until(document_read, timeout_s=DEADLINE_S, what=f"invoice {invoice.number} on documents.created")
    finally:
        items_reader.close()
        documents_reader.close()
    [document] = [document for document in documents if document["number"] == invoice.number]
    assert (document["net_total"], document["tax_total"], document["gross_total"]) == ("15.00", "2.85", "17.85")
