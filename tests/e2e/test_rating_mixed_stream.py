"""Rating end to end: a contract made through the HTTP API, a mixed usage stream through the real
broker (consumption, meter readings, invalid and out-of-order events), the period close with
fees and a minimum, late usage after it, and a purchase; every item reaches settlement.

A poll's events of one period are rated as one item, and how the broker splits the stream into
polls is its own business: the amounts are asserted per item code and period, and the events
behind them one by one (rated_usage).

The contract's first period (from ten days ago, aligned to an anniversary today) ended
yesterday, within the grace days in which the rating workers' own period close leaves it open;
the test closes it as the worker's scheduler does, with a grace of its own (none). Amounts are
hand-computed; the first period's fee is prorated over the month before today, whose length
varies, so its expectation is the formula.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select

from ops.observe import wait_until
from services.rating.api import create_app
from services.rating.scheduler import close_due
from services.rating.settings import RatingSettings
from services.rating.tables import billable_items as rated_items
from services.rating.tables import rated_usage
from services.settlement.tables import billable_items as settled_items
from shared import topics
from shared.events import UsageRecorded
from shared.runtime import publish_event
from tests.e2e.conftest import as_role
from tests.e2e.conftest import DEADLINE_S, new_contract_id, wait_for_dead_letter

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

D = Decimal
TODAY = datetime.now(UTC).date()
STARTS = TODAY - timedelta(days=10)
# The regular period before the alignment date, which the shorter first period is a part of.
REGULAR_DAYS = (TODAY - (TODAY - relativedelta(months=1))).days
assert RatingSettings().close_grace_days >= 2, "the workers would close the first period themselves"


def contract_body() -> dict:
    return {
        "customer": {"customer_id": "CUST-RATING-E2E", "name": "Rating E2E GmbH", "country": "DE"},
        "currency": "EUR",
        "starts_on": STARTS.isoformat(),
        "billing_cycle": "anniversary",
        "alignment_date": TODAY.isoformat(),
        "items": [
            {"item_code": "api", "description": "API calls", "pricing": {
                "model": "graduated", "free_quantity": "100",
                "tiers": [{"from_quantity": "0", "to_quantity": "1000", "unit_price": "0.02"},
                          {"from_quantity": "1000", "unit_price": "0.01"}]}},
            {"item_code": "power", "description": "Power (kWh)", "unit_price": "0.30", "measure": "meter_reading",
             "initial_reading": "1000"},
            {"item_code": "support", "description": "Support hours", "pricing": {"unit_price": "1.00", "minimum": "50"}},
            {"item_code": "license", "description": "License", "kind": "recurring_fee", "list_price": "300.00",
             "deviation_percent": "10"},
        ],
    }


def usage(contract_id: str, item_code: str, quantity: str, minute: int, *, reading: str | None = None,
          day: date = STARTS) -> UsageRecorded:
    return UsageRecorded(
        event_id=uuid.uuid4(), occurred_at=datetime.combine(day, time(0, minute), tzinfo=UTC),
        contract_id=contract_id, item_code=item_code, quantity=D(quantity),
        meter_reading=None if reading is None else D(reading),
    )


async def rated_rows(databases, contract_id: str) -> list:
    async with databases["rating"].transaction() as session:
        return (await session.execute(select(rated_items).where(rated_items.c.contract_id == contract_id)
                                      .order_by(rated_items.c.occurred_at, rated_items.c.item_code))).all()


async def rated_events(databases, contract_id: str) -> dict:
    async with databases["rating"].transaction() as session:
        return {row.event_id: row for row in (await session.execute(
            select(rated_usage).where(rated_usage.c.contract_id == contract_id))).all()}


async def wait_for_rated(databases, contract_id: str, events: int, items: int) -> tuple[list, dict]:
    """Once `events` usage events are rated and the contract has `items` billable items or more:
    (the items, the rated events by event id)."""
    rows: list = []
    usage: dict = {}

    async def arrived() -> bool:
        usage.update(await rated_events(databases, contract_id))
        rows[:] = await rated_rows(databases, contract_id)
        return len(usage) >= events and len(rows) >= items

    await wait_until(arrived, timeout_s=DEADLINE_S, what=f"{events} rated events of {contract_id}")
    return rows, usage


def per_item_and_period(rows: list, field: str) -> dict:
    totals: dict = {}
    for row in rows:
        key = (row.item_code, row.period_start)
        totals[key] = totals.get(key, D(0)) + getattr(row, field)
    return totals


async def test_a_mixed_stream_is_rated_into_the_expected_items_and_dead_letters(pipeline, broker, databases,
                                                                               access_guard):
    contract_id = new_contract_id("rating")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(databases["rating"], access_guard)),
                                 base_url="http://rating", headers=as_role()) as api:
        created = await api.put(f"/contracts/{contract_id}", json=contract_body())
        assert created.status_code == 200, created.text
        purchase = await api.post(f"/contracts/{contract_id}/purchases", json={
            "item_code": "setup", "description": "Setup", "quantity": "2", "unit_price": "49.995",
            "purchased_on": STARTS.isoformat(), "purchase_id": "setup-1"})
        assert purchase.status_code == 201 and purchase.json()[0]["net"] == "99.99"
        again = await api.post(f"/contracts/{contract_id}/purchases", json={
            "item_code": "setup", "description": "Setup", "quantity": "2", "unit_price": "49.995",
            "purchased_on": STARTS.isoformat(), "purchase_id": "setup-1"})
        assert again.status_code == 201 and again.json() == []
        estimate = await api.get(f"/contracts/{contract_id}/estimate",
                                 params={"item_code": "api", "quantity": "1600", "periods": "2"})
        assert estimate.json()["total"] == "50.00"  # 1000 x 0.02 + 500 x 0.01 in each of 2 periods

    in_order = [
        usage(contract_id, "api", "600", 10),  # 100 free, 500 x 0.02
        usage(contract_id, "api", "700", 20),  # 500 x 0.02 + 200 x 0.01
        usage(contract_id, "power", "0", 30, reading="1250"),  # 250 x 0.30
        usage(contract_id, "support", "12", 40),  # 12 x 1.00
    ]
    out_of_order = usage(contract_id, "power", "0", 25, reading="1200")
    invalid = [
        usage(contract_id, "fax", "1", 41),
        usage(contract_id, "api", "1", 0, day=STARTS - timedelta(days=1)),
        usage(contract_id, "power", "5", 42),
        usage("T-rating-no-such-contract", "api", "1", 43),
    ]
    for event in [*in_order, out_of_order, *invalid]:
        await publish_event(broker, topics.USAGE_RECORDED, event, event.key)

    rows, events = await wait_for_rated(databases, contract_id, 4, 4)  # 4 events; 3 items and the purchase
    usage_rows = [row for row in rows if row.charge_kind == "usage"]
    # api: 1300 used, 100 free, then 1000 x 0.02 + 200 x 0.01; power 250 x 0.30; support 12 x 1.00
    assert per_item_and_period(usage_rows, "net") == {
        ("api", STARTS): D("22.00"), ("power", STARTS): D("75.00"), ("support", STARTS): D("12.00")}
    assert per_item_and_period(usage_rows, "free_quantity")[("api", STARTS)] == D(100)
    assert per_item_and_period(usage_rows, "billable_quantity")[("api", STARTS)] == D(1200)
    [power] = [row for row in usage_rows if row.item_code == "power"]
    assert (power.previous_reading, power.current_reading, power.quantity) == (D(1000), D(1250), D(250))
    assert {event_id: (row.quantity, row.meter_reading) for event_id, row in events.items()} == {
        in_order[0].event_id: (D(600), None), in_order[1].event_id: (D(700), None),
        in_order[2].event_id: (D(250), D(1250)), in_order[3].event_id: (D(12), None)}
    billed_in = {row.billable_item_id: row for row in usage_rows}
    assert all(billed_in[event.billable_item_id].item_code == event.item_code for event in events.values())

    for key, reason in [
        (contract_id, "not newer than the reading 1250"),
        (contract_id, "has no item 'fax'"),
        (contract_id, "outside contract"),
        (contract_id, "send its current meter_reading"),
        ("T-rating-no-such-contract", "unknown contract"),
    ]:
        await wait_for_dead_letter(pipeline, key, reason)

    # The period close, as the worker's scheduler runs it, without grace days.
    now = datetime.now(UTC)
    emitted = await close_due(databases["rating"], now, contract_ids=[contract_id])
    assert ("support", STARTS, D("38.00")) in {  # 12.00 used, topped up to the minimum of 50.00
        (message.event.item_code, message.event.period_start, message.event.net) for message in emitted
        if message.topic == topics.ITEMS_RATED}
    [closed] = [message.event for message in emitted if message.topic == topics.PERIODS_CLOSED]
    assert (closed.period_start, closed.period_end, closed.time_zone) == (STARTS, TODAY - timedelta(days=1), "Europe/Berlin")
    assert await close_due(databases["rating"], now, contract_ids=[contract_id]) == []

    late = [usage(contract_id, "api", "300", 50), usage(contract_id, "support", "45", 51)]
    for event in late:
        await publish_event(broker, topics.USAGE_RECORDED, event, event.key)
    rows, events = await wait_for_rated(databases, contract_id, 6, 9)
    items = {row.billable_item_id: row for row in rows}
    late_api, late_support = (items[events[event.event_id].billable_item_id] for event in late)
    # api continues its closed month: billable 1200 -> 1500, all at 0.01; billed next month
    assert (late_api.net, late_api.free_quantity, late_api.period_start, late_api.late_for_period_start) == \
        (D("3.00"), D(0), TODAY, STARTS)
    # support: 57.00 used against the 50.00 already billed
    assert late_support.net == D("7.00")

    # 300.00 less 10 % a month, in advance; the first period's 10 days prorated
    first_fee = (D(270) * 10 / REGULAR_DAYS).quantize(D("0.01"), rounding=ROUND_HALF_UP)
    fees = [row for row in rows if row.charge_kind == "recurring_fee"]
    assert sorted((row.period_start, row.net) for row in fees) == [(STARTS, first_fee), (TODAY, D("270.00"))]
    total = sum((row.net for row in rows), D(0))
    # usage 109.00 + minimum top-up 38.00 + late 10.00 + purchase 99.99 + fees
    assert total == D("526.99") + first_fee

    async def settled() -> bool:
        async with databases["settlement"].transaction() as session:
            count, amount = (await session.execute(
                select(func.count(), func.coalesce(func.sum(settled_items.c.net), 0))
                .where(settled_items.c.contract_id == contract_id))).one()
        return count == len(rows) and amount == total

    await wait_until(settled, timeout_s=DEADLINE_S, what=f"settlement to receive every item of {contract_id}")
