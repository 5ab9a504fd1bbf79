"""Rating's use cases: one function per message kind, each inside the consumer's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.rating import domain, store
from shared import topics
from shared.errors import Rejected
from shared.events import RatedItem, UsageRecorded, derive_id
from shared.messaging import Outgoing


async def rate_usage(session: AsyncSession, event: UsageRecorded) -> list[Outgoing]:
    contract = await store.find_contract(session, event.contract_id)
    if contract is None:
        raise Rejected(f"unknown contract {event.contract_id!r}")
    usage = domain.Usage(event.event_id, event.contract_id, event.item_code, event.quantity, event.occurred_at)
    item = domain.rate(usage, contract, billable_item_id=derive_id(event.event_id, "billable-item"))
    await store.add_billable_item(session, item)
    rated = RatedItem(
        event_id=derive_id(item.billable_item_id, "items.rated"),
        occurred_at=item.occurred_at,
        contract_id=item.contract_id,
        billable_item_id=item.billable_item_id,
        customer_id=item.customer_id,
        item_code=item.item_code,
        description=item.description,
        currency=item.net.currency,
        quantity=item.quantity,
        free_quantity=item.free_quantity,
        billable_quantity=item.billable_quantity,
        unit_price=item.unit_price,
        net=item.net.amount,
        period_start=item.period_start,
        period_end=item.period_end,
        source_event_ids=[item.source_event_id],
    )
    return [Outgoing(topics.ITEMS_RATED, rated)]
