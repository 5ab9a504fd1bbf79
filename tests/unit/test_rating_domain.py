"""Rating's rules with hand-checked amounts: periods, usage (consumption and meter readings),
late usage, recurring fees with proration, minimums at period close, purchases, estimates."""

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating import domain
from services.rating.domain import (
    Contract,
    ContractItem,
    ItemKind,
    Measure,
    MeterState,
    PeriodUsage,
    RatingError,
)
from services.rating.pricing import PricePlan, PricingModel, Tier
from shared.events import BillingCycle, ChargeKind, TaxCategory, UsageRecorded
from shared.money import Money

D = Decimal
EUR = "EUR"

API = ContractItem("api", "API calls", plan=PricePlan(
    PricingModel.GRADUATED, free_quantity=D(100),
    tiers=(Tier(D(0), D(1000), D("0.02")), Tier(D(1000), None, D("0.01")))))
POWER = ContractItem("power", "Power (kWh)", plan=PricePlan(unit_price=D("0.30")), measure=Measure.METER_READING,
                     initial_reading=D(1000))
SUPPORT = ContractItem("support", "Support", plan=PricePlan(unit_price=D("1.00"), minimum=D("50")))
LICENSE = ContractItem("license", "License", kind=ItemKind.RECURRING_FEE, list_price=D("300.00"),
                       deviation_percent=D(10))


def contract(**changes) -> Contract:
    base = Contract("C-1", "CUST-1", EUR, date(2026, 1, 1), None,
                    {item.item_code: item for item in (API, POWER, SUPPORT, LICENSE)})
    return replace(base, **changes)


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def usage(item: str, quantity: str, when: datetime, reading: str | None = None,
          contract_id: str = "C-1") -> UsageRecorded:
    return UsageRecorded(event_id=uuid.uuid4(), occurred_at=when, contract_id=contract_id, item_code=item,
                         quantity=D(quantity), meter_reading=None if reading is None else D(reading))


def place(event: UsageRecorded, terms: Contract) -> domain.Placement:
    """Where a batch of this one event places it; raises its refusal."""
    placed, rejected = domain.place_batch([event], {event.contract_id: terms})
    if rejected:
        raise rejected[event.event_id]
    [(_, placement)] = placed
    return placement


def rate_all(terms: Contract, events: list[UsageRecorded]) -> domain.BatchRating:
    placed, rejected = domain.place_batch(events, {"C-1": terms})
    outcome = domain.rate_batch(placed, {"C-1": terms}, {}, {})
    outcome.rejected.update(rejected)
    return outcome


def rate_each(terms: Contract, events: list[UsageRecorded]) -> list[domain.BillableItem]:
    """Each event in a batch of its own: the items show what each event added to its period."""
    states: dict = {}
    meters: dict = {}
    items = []
    for event in events:
        placed, _ = domain.place_batch([event], {"C-1": terms})
        outcome = domain.rate_batch(placed, {"C-1": terms}, states, meters)
        states.update(outcome.states)
        meters.update(outcome.meters)
        items += outcome.items
    return items


def rate_one(event: UsageRecorded, terms: Contract, state: PeriodUsage) -> tuple[domain.BillableItem, PeriodUsage]:
    return domain.rate([domain.Consumption(event, event.quantity)], terms, place(event, terms), state)


# --- periods ----------------------------------------------------------------------------------

def test_calendar_periods_cut_to_the_contract():
    terms = contract(starts_on=date(2026, 1, 20), ends_on=date(2026, 3, 10))
    assert [(p.start, p.end, p.regular_days) for p in terms.periods(date(2026, 12, 31))] == [
        (date(2026, 1, 20), date(2026, 1, 31), 31), (date(2026, 2, 1), date(2026, 2, 28), 28),
        (date(2026, 3, 1), date(2026, 3, 10), 31)]


def test_quarterly_calendar_periods():
    terms = contract(starts_on=date(2026, 2, 10), period_months=3)
    assert terms.period_of(date(2026, 5, 5)) == domain.Period(date(2026, 4, 1), date(2026, 6, 30), 91)
    assert terms.period_of(date(2026, 2, 10)).start == date(2026, 2, 10)


def test_anniversary_alignment_makes_the_first_period_longer_or_shorter():
    longer = contract(starts_on=date(2026, 1, 15), billing_cycle=BillingCycle.ANNIVERSARY,
                      alignment_date=date(2026, 3, 1))
    assert longer.period_of(date(2026, 2, 20)) == domain.Period(date(2026, 1, 15), date(2026, 2, 28), 28)
    assert longer.period_of(date(2026, 3, 1)) == domain.Period(date(2026, 3, 1), date(2026, 3, 31), 31)
    shorter = contract(starts_on=date(2026, 1, 15), billing_cycle=BillingCycle.ANNIVERSARY,
                       alignment_date=date(2026, 1, 25))
    assert shorter.period_of(date(2026, 1, 20)) == domain.Period(date(2026, 1, 15), date(2026, 1, 24), 31)
    assert shorter.period_of(date(2026, 2, 24)) == domain.Period(date(2026, 1, 25), date(2026, 2, 24), 31)


def test_anniversary_without_alignment_starts_on_the_start_date_and_keeps_the_31st():
    terms = contract(starts_on=date(2026, 1, 31), billing_cycle=BillingCycle.ANNIVERSARY)
    assert [(p.start, p.end) for p in terms.periods(date(2026, 4, 1))] == [
        (date(2026, 1, 31), date(2026, 2, 27)), (date(2026, 2, 28), date(2026, 3, 30)),
        (date(2026, 3, 31), date(2026, 4, 29))]


# --- usage ------------------------------------------------------------------------------------

def test_consumption_uses_the_periods_cumulative_free_quantity_and_tiers():
    events = [usage("api", "60", at(3, 2)), usage("api", "540", at(3, 9)), usage("api", "700", at(3, 20))]
    first, second, third = rate_each(contract(), events)
    assert (first.free_quantity, first.billable_quantity, first.net) == (D(60), D(0), Money.of("0", EUR))
    # 40 still free, 500 at 0.02
    assert (second.free_quantity, second.billable_quantity, second.net) == (D(40), D(500), Money.of("10.00", EUR))
    # billable 500 -> 1200: 500 more at 0.02 up to 1000, 200 at 0.01
    assert third.net == Money.of("12.00", EUR)
    assert [(band.quantity, band.unit_price) for band in third.bands] == [(D(500), D("0.02")), (D(200), D("0.01"))]
    assert (third.period_start, third.period_end) == (date(2026, 3, 1), date(2026, 3, 31))


def test_a_batchs_events_of_one_period_are_one_item_priced_at_once():
    events = [usage("api", "60", at(3, 2)), usage("api", "540", at(3, 9)), usage("api", "700", at(3, 20))]
    outcome = rate_all(contract(), events)
    [item] = outcome.items
    # 100 free; of the 1,200 billable 1,000 at 0.02 and 200 at 0.01: what the three items above add up to
    assert (item.quantity, item.free_quantity, item.billable_quantity, item.net) == (
        D(1300), D(100), D(1200), Money.of("22.00", EUR))
    assert [(band.quantity, band.unit_price, band.amount) for band in item.bands] == [
        (D(1000), D("0.02"), D("20.00")), (D(200), D("0.01"), D("2.00"))]
    assert item.source_event_ids == tuple(event.event_id for event in events)
    assert (item.source_event_id, item.occurred_at) == (events[0].event_id, at(3, 20))
    assert [(rated.event_id, rated.billable_item_id, rated.quantity) for rated in outcome.usage] == [
        (event.event_id, item.billable_item_id, event.quantity) for event in events]
    assert outcome.states[("C-1", "api", date(2026, 3, 1))] == PeriodUsage(D(1300), D("22.00"), D("0.00"))


def test_each_period_has_its_own_free_quantity():
    outcome = rate_all(contract(), [usage("api", "150", at(3, 31, 23)), usage("api", "150", at(4, 1, 0))])
    assert [item.period_start for item in outcome.items] == [date(2026, 3, 1), date(2026, 4, 1)]
    assert [item.net for item in outcome.items] == [Money.of("1.00", EUR), Money.of("1.00", EUR)]


def test_meter_readings_rate_the_difference_to_the_previous_reading():
    readings = [usage("power", "0", at(3, 1), "1250.5"), usage("power", "0", at(3, 15), "1300")]
    first, second = rate_each(contract(), readings)
    assert (first.previous_reading, first.current_reading, first.quantity) == (D(1000), D("1250.5"), D("250.5"))
    assert first.net == Money.of("75.15", EUR)  # 250.5 x 0.30
    assert (second.previous_reading, second.quantity, second.net) == (D("1250.5"), D("49.5"), Money.of("14.85", EUR))
    outcome = rate_all(contract(), readings)
    [both] = outcome.items
    assert (both.previous_reading, both.current_reading, both.quantity, both.net) == (
        D(1000), D(1300), D(300), Money.of("90.00", EUR))
    assert [rated.quantity for rated in outcome.usage] == [D("250.5"), D("49.5")]
    assert outcome.meters[("C-1", "power")] == MeterState(D(1300), at(3, 15))


def test_out_of_order_and_backwards_readings_are_refused():
    later, earlier = usage("power", "0", at(3, 15), "1300"), usage("power", "0", at(3, 10), "1200")
    outcome = rate_all(contract(), [later, earlier, usage("power", "0", at(3, 20), "1299")])
    assert [item.quantity for item in outcome.items] == [D(300)]
    assert "not newer than the reading 1300" in str(outcome.rejected[earlier.event_id])
    assert len(outcome.rejected) == 2
    assert any("below the previous reading 1300" in str(error) for error in outcome.rejected.values())


@pytest.mark.parametrize("event, reason", [
    (usage("fax", "1", at(3, 1)), "has no item 'fax'"),
    (usage("api", "1", datetime(2025, 12, 31, 23, tzinfo=UTC)), "outside contract C-1's term"),
    (usage("power", "5", at(3, 1)), "send its current meter_reading"),
    (usage("power", "5", at(3, 1), "1100"), "quantity must be 0"),
    (usage("api", "0", at(3, 1), "5"), "not a meter_reading"),
    (usage("license", "1", at(3, 1)), "not a usage item"),
])
def test_usage_that_cannot_be_rated_is_refused_with_a_reason(event, reason):
    with pytest.raises(RatingError, match=reason):
        place(event, contract())


def test_a_batch_places_each_event_by_its_own_day_and_checks_each_events_measure():
    """A batch looks each (contract, item, day) up once: events sharing it must still be judged on
    their own (each one's measure), and an event a minute later on another day must not share it."""
    berlin = contract(time_zone="Europe/Berlin", ends_on=date(2026, 5, 31))
    last_day = [usage("api", "10", datetime(2026, 5, 31, 9, tzinfo=UTC)),
                usage("api", "0", datetime(2026, 5, 31, 10, tzinfo=UTC), "5"),
                usage("api", "20", datetime(2026, 5, 31, 21, 59, tzinfo=UTC))]
    after_the_end = [usage("api", "30", datetime(2026, 5, 31, 22, 0, tzinfo=UTC)),  # 00:00 on 1 June in Berlin
                     usage("api", "40", datetime(2026, 5, 31, 23, 0, tzinfo=UTC))]
    readings = [usage("power", "0", datetime(2026, 5, 2, 8, tzinfo=UTC), "1100"),
                usage("power", "0", datetime(2026, 5, 2, 9, tzinfo=UTC)),
                usage("power", "0", datetime(2026, 5, 2, 10, tzinfo=UTC), "1160")]
    placed, rejected = domain.place_batch([*last_day, *after_the_end, *readings], {"C-1": berlin})
    assert [(event.event_id, placement.key) for event, placement in placed] == [
        (last_day[0].event_id, ("C-1", "api", date(2026, 5, 1))), (last_day[2].event_id, ("C-1", "api", date(2026, 5, 1))),
        (readings[0].event_id, ("C-1", "power", date(2026, 5, 1))),
        (readings[2].event_id, ("C-1", "power", date(2026, 5, 1)))]
    assert "not a meter_reading" in str(rejected[last_day[1].event_id])
    assert all("on 2026-06-01 is outside contract C-1's term" in str(rejected[event.event_id]) for event in after_the_end)
    assert "send its current meter_reading" in str(rejected[readings[1].event_id])
    outcome = domain.rate_batch(placed, {"C-1": berlin}, {}, {})
    assert [(item.item_code, item.quantity, item.net) for item in outcome.items] == [
        ("api", D(30), Money.of("0.00", EUR)),  # within the 100 free
        ("power", D(160), Money.of("48.00", EUR))]  # 1,160 - 1,000 at 0.30
    assert [rated.event_id for rated in outcome.usage] == [event.event_id for event, _ in placed]


def test_usage_of_an_unknown_contract_is_refused():
    event = usage("api", "1", at(3, 1), contract_id="C-404")
    placed, rejected = domain.place_batch([event], {"C-1": contract()})
    assert not placed and "unknown contract 'C-404'" in str(rejected[event.event_id])


def test_usage_after_a_cancellation_is_refused():
    with pytest.raises(RatingError, match="outside"):
        place(usage("api", "1", at(6, 2)), contract(ends_on=date(2026, 6, 1)))


def test_late_usage_continues_its_closed_period_and_is_billed_in_the_first_open_one():
    terms = contract(closed_through=date(2026, 3, 31))
    march = ("C-1", "api", date(2026, 3, 1))
    placement = place(usage("api", "50", at(3, 30)), terms)
    # March had 80 used (all free) and was closed: the late 50 get only the 20 free left.
    item, state = rate_one(usage("api", "50", at(3, 30)), terms, PeriodUsage(D(80)))
    assert placement.key == march
    assert (item.free_quantity, item.billable_quantity, item.net) == (D(20), D(30), Money.of("0.60", EUR))
    assert (item.period_start, item.period_end) == (date(2026, 4, 1), date(2026, 4, 30))
    assert item.late_for == domain.Period(date(2026, 3, 1), date(2026, 3, 31), 31)
    assert state.quantity == D(130)


def test_late_usage_is_not_charged_again_what_the_minimum_already_charged():
    terms = contract(closed_through=date(2026, 3, 31))
    # 20 x 1.00 used, topped up to the minimum of 50 at close: 50.00 billed for March.
    closed_march = PeriodUsage(D(20), D("50.00"))
    late = usage("support", "25", at(3, 30))
    item, state = rate_one(late, terms, closed_march)
    assert item.net == Money.of("0", EUR)  # 45.00 used, still under the minimum
    late_again = usage("support", "10", at(3, 31))
    item, state = rate_one(late_again, terms, state)
    assert item.net == Money.of("5.00", EUR)  # 55.00 used: 5.00 above what was billed
    assert state.net == D("55.00")


# --- period close: fees and minimums ----------------------------------------------------------

def test_fees_are_charged_in_advance_and_prorated_by_day():
    terms = contract(starts_on=date(2026, 1, 20), ends_on=date(2026, 3, 10))
    closing = domain.close_periods(terms, date(2026, 2, 1), {})
    fees = [fee for fee in closing.fees if fee.item_code == "license"]
    # 300.00 less 10 % = 270.00 a month; January: 12 of 31 days, February in full
    assert [(fee.period_start, fee.net) for fee in fees] == [
        (date(2026, 1, 20), Money.of("104.52", EUR)), (date(2026, 2, 1), Money.of("270.00", EUR))]
    assert fees[0].discount == Money.of("11.61", EUR)  # 116.13 list for 12 days - 104.52
    # As the line shows it: 12/31 of a period x the list price 300.00 - 11.61 = 104.52.
    assert (fees[0].quantity, fees[0].unit_price) == (D("0.3870967742"), D("300.00"))
    assert Money.round(fees[0].quantity * fees[0].unit_price, EUR) - fees[0].discount == fees[0].net
    assert fees[0].charge_kind is ChargeKind.RECURRING_FEE
    march = domain.close_periods(terms, date(2026, 3, 1), {}).fees[-1]
    assert (march.period_end, march.net) == (date(2026, 3, 10), Money.of("87.10", EUR))  # 10 of 31 days
    assert march.billable_item_id == domain.close_periods(terms, date(2026, 3, 5), {}).fees[-1].billable_item_id
    # closed periods were charged when they began: closing again charges only the open ones
    assert [fee.period_start for fee in domain.close_periods(replace(terms, closed_through=date(2026, 1, 31)),
                                                             date(2026, 3, 1), {}).fees] == [
        date(2026, 2, 1), date(2026, 3, 1)]


def test_a_longer_first_period_costs_more_than_a_regular_one():
    terms = contract(starts_on=date(2026, 1, 15), billing_cycle=BillingCycle.ANNIVERSARY,
                     alignment_date=date(2026, 3, 1))
    first = domain.close_periods(terms, date(2026, 1, 15), {}).fees[0]
    assert first.net == Money.of("433.93", EUR)  # 270.00 x 45 / 28
    assert first.quantity == D("1.6071428571")


def test_closing_tops_up_minimums_and_moves_the_closed_mark():
    terms = contract()
    march, april = ("C-1", "support", date(2026, 3, 1)), ("C-1", "support", date(2026, 4, 1))
    closing = domain.close_periods(replace(terms, closed_through=date(2026, 2, 28)), date(2026, 5, 1),
                                   {march: PeriodUsage(D(12), D("12.00")), april: PeriodUsage(D(80), D("80.00"))})
    assert [(item.period_start, item.net) for item in closing.top_ups] == [(date(2026, 3, 1), Money.of("38.00", EUR))]
    assert closing.states == {march: PeriodUsage(D(12), D("50.00"))}
    assert closing.closed_through == date(2026, 4, 30)
    empty = domain.close_periods(replace(terms, closed_through=date(2026, 4, 30)), date(2026, 5, 31), {})
    assert empty.top_ups == [] and empty.closed_through == date(2026, 4, 30)


def test_a_period_without_usage_owes_its_minimum():
    closing = domain.close_periods(contract(closed_through=date(2026, 5, 31)), date(2026, 7, 1), {})
    assert [(item.item_code, item.net) for item in closing.top_ups] == [("support", Money.of("50.00", EUR))]


def test_the_next_close_is_due_when_a_period_begins_with_fees_or_its_open_period_is_past_grace():
    usage_only = contract(items={"api": API, "support": SUPPORT})
    # closed through April as of 5 May (grace 3): May is open and closes once 3 June is past
    assert domain.next_close_due(replace(usage_only, closed_through=date(2026, 4, 30)), date(2026, 5, 5), 3) \
        == date(2026, 6, 4)
    # a recurring fee is due when June begins, before May's close
    assert domain.next_close_due(contract(closed_through=date(2026, 4, 30)), date(2026, 5, 5), 3) == date(2026, 6, 1)
    # a contract that has not started: its first period begins with its fees
    assert domain.next_close_due(contract(starts_on=date(2026, 9, 15)), date(2026, 5, 5), 3) == date(2026, 9, 15)
    # an ended contract: its last period's close, never a fee after its end; then nothing
    ended = contract(ends_on=date(2026, 6, 10), closed_through=date(2026, 5, 31))
    assert domain.next_close_due(ended, date(2026, 6, 2), 3) == date(2026, 6, 14)
    assert domain.next_close_due(replace(ended, closed_through=date(2026, 6, 10)), date(2026, 6, 14), 3) is None


def test_closing_on_the_day_it_is_due_does_what_was_due():
    terms = contract(closed_through=date(2026, 4, 30))
    due = domain.next_close_due(terms, date(2026, 5, 5), 0)
    assert due == date(2026, 6, 1)
    assert domain.close_periods(terms, date(2026, 5, 31), {}).closed_through == date(2026, 4, 30)  # nothing yet
    closing = domain.close_periods(terms, due, {})
    assert closing.closed_through == date(2026, 5, 31)
    assert [fee.period_start for fee in closing.fees if fee.period_start == due] == [due]


# --- purchases, estimates, renewals -----------------------------------------------------------

def test_purchase_is_a_one_time_item_in_its_period():
    # "setup" is no item of the contract: the purchase's own tax category goes with it.
    item = domain.purchase_item(contract(), uuid.uuid4(), "setup", "Setup", D(3), D("33.335"), date(2026, 5, 20),
                                TaxCategory.REDUCED)
    assert (item.net, item.charge_kind, item.period_start, item.tax_category) == (
        Money.of("100.01", EUR), ChargeKind.ONE_TIME, date(2026, 5, 1), TaxCategory.REDUCED)
    with pytest.raises(RatingError, match="outside"):
        domain.purchase_item(contract(), uuid.uuid4(), "setup", "Setup", D(1), D(1), date(2025, 5, 20),
                             TaxCategory.STANDARD)


def test_a_purchase_dated_in_a_closed_period_is_billed_in_the_first_open_one_naming_its_own():
    item = domain.purchase_item(contract(closed_through=date(2026, 5, 31)), uuid.uuid4(), "setup", "Setup", D(1),
                                D("49.90"), date(2026, 5, 20), TaxCategory.STANDARD)
    assert (item.period_start, item.late_for.start, item.occurred_at) == (
        date(2026, 6, 1), date(2026, 5, 1), datetime(2026, 5, 20, tzinfo=UTC))


def test_usage_goes_to_the_period_of_its_day_in_the_contracts_time_zone_and_fees_begin_at_its_midnight():
    berlin = contract(time_zone="Europe/Berlin")
    # 22:30 UTC on 31 May is 00:30 on 1 June in Berlin (summer time, UTC+2).
    late_evening = usage("api", "10", datetime(2026, 5, 31, 22, 30, tzinfo=UTC))
    assert place(late_evening, berlin).period.start == date(2026, 6, 1)
    assert place(late_evening, contract()).period.start == date(2026, 5, 1)  # in UTC: still May
    assert berlin.start_of(date(2026, 6, 1)) == datetime(2026, 5, 31, 22, 0, tzinfo=UTC)


def test_estimate_covers_the_unbilled_periods():
    terms = contract(ends_on=date(2026, 6, 15), closed_through=date(2026, 3, 31))
    estimated = domain.estimate(terms, "api", D(1600))
    # billable 1500: 1000 x 0.02 + 500 x 0.01 = 25.00 each of April, May, June (part of June: usage is not prorated)
    assert [(line.period.start, line.net) for line in estimated] == [
        (date(2026, 4, 1), Money.of("25.00", EUR)), (date(2026, 5, 1), Money.of("25.00", EUR)),
        (date(2026, 6, 1), Money.of("25.00", EUR))]
    assert [line.net for line in domain.estimate(terms, "support", D(10))] == [Money.of("50.00", EUR)] * 3
    fees = domain.estimate(terms, "license", D(0))
    assert fees[-1].net == Money.of("135.00", EUR)  # 15 of 30 days of 270.00
    assert len(domain.estimate(contract(), "api", D(1), horizon=5)) == 5


def test_a_renewal_that_changes_a_fee_flags_the_price_adjustment():
    old = contract()
    renewed = replace(old, items={**old.items, "license": replace(LICENSE, list_price=D("320.00"))})
    flagged = domain.adjusted_prices(old, renewed)
    assert flagged.items["license"].price_adjusted
    assert not flagged.items["api"].price_adjusted
    assert domain.adjusted_prices(flagged, flagged).items["license"].price_adjusted


# --- streaming property over the whole rating path -----------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 28), st.decimals(min_value=0, max_value=900, places=2)), max_size=25),
       st.integers(1, 6))
def test_a_period_rated_in_any_batches_costs_what_it_costs_at_once(events, batches):
    terms = contract()
    stream = [usage("api", str(quantity), at(3, day)) for day, quantity in events]
    states: dict = {}
    billed = Money.zero(EUR)
    size = max(1, len(stream) // batches)
    for start in range(0, len(stream), size):
        chunk = stream[start:start + size]
        placed, _ = domain.place_batch(chunk, {"C-1": terms})
        outcome = domain.rate_batch(placed, {"C-1": terms}, states, {})
        states.update(outcome.states)
        billed += Money.sum((item.net for item in outcome.items), EUR)
        assert all(item.billable_quantity >= 0 for item in outcome.items)
    total = sum((D(str(quantity)) for _, quantity in events), D(0))
    assert billed == API.plan.settled_net(total, EUR, closed=False)


def test_a_period_with_more_events_than_an_item_names_is_billed_in_several_items_priced_in_turn():
    events = [usage("api", "2", at(3, 1 + n % 28)) for n in range(domain.MAX_EVENTS_PER_ITEM + 1)]
    outcome = rate_all(contract(), events)
    first, second = outcome.items
    assert (len(first.source_event_ids), second.source_event_ids) == (domain.MAX_EVENTS_PER_ITEM, (events[-1].event_id,))
    # 2,002 used: 100 free, 1,000 at 0.02, 902 at 0.01; the second item adds its 2 at 0.01
    assert (first.net, second.net) == (Money.of("29.00", EUR), Money.of("0.02", EUR))
    assert outcome.states[("C-1", "api", date(2026, 3, 1))] == PeriodUsage(D(2002), D("29.02"), D("0.00"))
