"""The portal's reading of contract terms: price plans from stored item terms, the schedule's periods
within the term, and the billing status of a period or an order."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.portal import schedule
from services.portal.domain import ActionRefused
from services.portal.models import BillingStatus, OrderStatus, Timing
from shared.periods import Period


def test_a_plain_unit_price_is_one_open_band():
    plan = schedule.price_plan({"item_code": "sms", "description": "Sms", "unit_price": "0.0750000000"})
    assert plan is not None and plan.model == "per_unit"
    assert [(b.from_quantity, b.to_quantity, b.unit_price) for b in plan.bands] == [(0, None, Decimal("0.075"))]
    assert (plan.free_quantity, plan.discount_percent, plan.minimum, plan.maximum) == (0, 0, None, None)


def test_graduated_bands_keep_their_limits_and_the_plan_its_extras():
    plan = schedule.price_plan({"pricing": {
        "model": "graduated", "free_quantity": "100", "discount_percent": "10", "minimum": "5.00",
        "tiers": [{"from_quantity": "0", "to_quantity": "1000", "unit_price": "0.10"},
                  {"from_quantity": "1000", "unit_price": "0.05"}]}})
    assert plan is not None and plan.model == "graduated"
    assert [(b.from_quantity, b.to_quantity, b.unit_price) for b in plan.bands] == [
        (0, 1000, Decimal("0.1")), (1000, None, Decimal("0.05"))]
    assert (plan.free_quantity, plan.discount_percent, plan.minimum) == (100, 10, Decimal(5))


def test_a_recurring_fee_has_no_price_plan():
    assert schedule.price_plan({"kind": "recurring_fee", "list_price": "49.00"}) is None


def test_the_cycle_in_words():
    assert schedule.cycle_in_words("calendar", 1) == "monthly, calendar"
    assert schedule.cycle_in_words("anniversary", 3) == "quarterly, anniversary"
    assert schedule.cycle_in_words("calendar", 2) == "every 2 months, calendar"


def test_a_term_with_an_end_is_shown_whole():
    terms = schedule.billing_schedule(date(2026, 1, 15), date(2026, 4, 10), "calendar", 1, None)
    periods = schedule.periods_in_term(terms, today=date(2026, 2, 20))
    assert [(p.start, p.end) for p in periods] == [
        (date(2026, 1, 15), date(2026, 1, 31)), (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 31)), (date(2026, 4, 1), date(2026, 4, 10))]


def test_an_open_ended_term_is_shown_until_some_periods_ahead():
    terms = schedule.billing_schedule(date(2026, 1, 1), None, "calendar", 3, None)
    periods = schedule.periods_in_term(terms, today=date(2026, 5, 5), future_periods=2)
    assert [p.start for p in periods] == [date(2026, 1, 1), date(2026, 4, 1), date(2026, 7, 1), date(2026, 10, 1)]


@pytest.mark.parametrize(("today", "expected"), [
    (date(2026, 12, 1), Timing.PAST), (date(2026, 11, 30), Timing.CURRENT), (date(2026, 11, 1), Timing.CURRENT),
    (date(2026, 10, 31), Timing.FUTURE)])
def test_a_period_is_past_current_or_future(today, expected):
    assert schedule.timing(Period(date(2026, 11, 1), date(2026, 11, 30), 30), today) is expected


@pytest.mark.parametrize(("items", "settled", "status"), [
    (0, 0, BillingStatus.NOTHING_RATED), (3, 0, BillingStatus.UNBILLED), (3, 1, BillingStatus.PARTLY_BILLED),
    (3, 3, BillingStatus.BILLED)])
def test_a_period_is_billed_once_all_its_items_are_settled(items, settled, status):
    assert schedule.Settled(items, settled).status is status


@pytest.mark.parametrize(("billed", "cancelled", "status"), [
    ([False, False], [False, False], OrderStatus.UNBILLED), ([True, False], [False, False], OrderStatus.PARTLY_BILLED),
    ([True, True], [True, False], OrderStatus.BILLED), ([True, True], [True, True], OrderStatus.CANCELLED)])
def test_an_order_is_cancelled_once_all_its_purchases_are(billed, cancelled, status):
    assert schedule.order_status(billed, cancelled) is status


JAN, FEB, MAR, APR = (date(2027, month, 1) for month in (1, 2, 3, 4))
# rating's net of 1234 x 0.10 and of 500 x 0.10 in each unbilled period
NETS_1234 = {JAN: Decimal("123.40"), FEB: Decimal("123.40"), MAR: Decimal("123.40"), APR: Decimal("123.40")}
NETS_500 = {JAN: Decimal("50.00"), FEB: Decimal("50.00"), MAR: Decimal("50.00"), APR: Decimal("50.00")}


def figures(estimate: schedule.Estimate) -> dict[date, tuple[Decimal, Decimal, bool]]:
    return {start: (period.quantity, period.net, period.edited) for start, period in estimate.periods.items()}


def test_an_estimate_applies_to_every_unbilled_period():
    estimate = schedule.estimate("storage", Decimal(1234), NETS_1234)
    assert figures(estimate) == {start: (1234, Decimal("123.40"), False) for start in (JAN, FEB, MAR, APR)}


def test_editing_one_period_clears_the_skipped_ones_before_it_and_keeps_the_later_ones():
    edited = schedule.EditedPeriod(MAR, Decimal(500), NETS_500)
    estimate = schedule.estimate("storage", Decimal(1234), NETS_1234, edited)
    # January and February skipped: treated as actual, no estimate; April keeps the item's
    assert figures(estimate) == {MAR: (500, Decimal("50.00"), True), APR: (1234, Decimal("123.40"), False)}


def test_one_period_can_be_estimated_without_an_estimate_for_the_item():
    estimate = schedule.estimate("storage", None, {}, schedule.EditedPeriod(FEB, Decimal(500), NETS_500))
    assert figures(estimate) == {FEB: (500, Decimal("50.00"), True)}


def test_only_an_unbilled_period_can_be_edited():
    with pytest.raises(ActionRefused, match="no unbilled period of storage begins on 2026-11-01"):
        schedule.estimate("storage", Decimal(1234), NETS_1234,
                          schedule.EditedPeriod(date(2026, 11, 1), Decimal(500), NETS_500))
