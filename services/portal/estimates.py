"""Estimated consumption: what an item's unbilled periods would cost if a quantity were used in each.

Rating prices it (its price plans, minimums included: GET /contracts/{id}/estimate); the portal
shows it on the billing schedule's rows and never stores or bills it: the estimate, and one period's
edited estimate, live in the page's address (the schedule's query).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from urllib.parse import quote

from services.portal import queries as q
from services.portal import schedule
from services.portal.actions import Actions

# As many periods as rating estimates at most: an open-ended contract's schedule shows fewer.
MAX_PERIODS = 120


async def estimated_nets(actions: Actions, contract_id: str, item_code: str,
                         quantity: Decimal) -> dict[date, Decimal]:
    """Period start -> the net rating expects of `quantity` of the item in that unbilled (not closed) period."""
    answer = await actions.ask(actions.rating_api, "rating", "GET", f"/contracts/{quote(contract_id, safe='')}/estimate",
                       params={"item_code": item_code, "quantity": format(quantity, "f"), "periods": MAX_PERIODS})
    return {date.fromisoformat(period["period_start"]): Decimal(str(period["net"])) for period in answer["periods"]}


async def for_schedule(actions: Actions, contract_id: str,
                       query: q.ScheduleQuery) -> schedule.Estimate | None:
    """The estimate the schedule's query asks for, if any: the item's quantity per period and one
    period's edited one, each priced by rating (call it for a contract known to be the customer's)."""
    if query.estimate_item is None:
        return None
    nets = {} if query.estimate_quantity is None else await estimated_nets(
        actions, contract_id, query.estimate_item, query.estimate_quantity)
    edited = None
    if query.estimate_period is not None and query.estimate_period_quantity is not None:
        edited = schedule.EditedPeriod(query.estimate_period, query.estimate_period_quantity, await estimated_nets(
            actions, contract_id, query.estimate_item, query.estimate_period_quantity))
    return schedule.estimate(query.estimate_item, query.estimate_quantity, nets, edited)
