"""Estimated consumption: what an item's unbilled periods would cost if a quantity were used in each.

Rating prices it (its price plans, minimums included: GET /contracts/{id}/estimate); the portal
shows it on the billing schedule's rows and never stores or bills it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from urllib.parse import quote

import httpx

from services.portal import queries as q
from services.portal.actions import ask

# As many periods as rating estimates at most: an open-ended contract's schedule shows fewer.
MAX_PERIODS = 120


async def estimated_nets(rating_api: httpx.AsyncClient, contract_id: str, item_code: str,
                         quantity: Decimal) -> dict[date, Decimal]:
    """Period start -> the net rating expects of `quantity` of the item in that unbilled (not closed) period."""
    answer = await ask(rating_api, "rating", "GET", f"/contracts/{quote(contract_id, safe='')}/estimate",
                       params={"item_code": item_code, "quantity": format(quantity, "f"), "periods": MAX_PERIODS})
    return {date.fromisoformat(period["period_start"]): Decimal(str(period["net"])) for period in answer["periods"]}


async def for_schedule(rating_api: httpx.AsyncClient, contract_id: str,
                       query: q.ScheduleQuery) -> dict[date, Decimal] | None:
    """The estimate the schedule's query asks for, if any (call it for a contract known to be the customer's)."""
    if query.estimate_item is None or query.estimate_quantity is None:
        return None
    return await estimated_nets(rating_api, contract_id, query.estimate_item, query.estimate_quantity)
