"""Every pricing model with hand-checked amounts, and the streaming property: rating a period
event by event costs exactly what rating it at once costs."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating.pricing import PricePlan, PricingModel, Tier, band_differences
from shared.money import Money

D = Decimal


def tiers(*bands: tuple[str, str | None, str]) -> tuple[Tier, ...]:
    return tuple(Tier(D(low), None if high is None else D(high), D(price)) for low, high, price in bands)


# 0-100 at 1.00, 100-1000 at 0.80, above at 0.50
DECREASING = tiers(("0", "100", "1.00"), ("100", "1000", "0.80"), ("1000", None, "0.50"))


def net(plan: PricePlan, quantity: str, currency: str = "EUR", closed: bool = False) -> Money:
    return plan.settled_net(D(quantity), currency, closed=closed)


def test_per_unit_rounds_once_half_up():
    plan = PricePlan(PricingModel.PER_UNIT, unit_price=D("0.0125"))
    assert net(plan, "1") == Money.of("0.01", "EUR")  # 0.0125 -> 0.01
    assert net(plan, "3") == Money.of("0.04", "EUR")  # 0.0375 -> 0.04
    assert net(plan, "12000") == Money.of("150.00", "EUR")


def test_graduated_prices_each_band_at_its_own_price():
    plan = PricePlan(PricingModel.GRADUATED, tiers=DECREASING)
    # 100 x 1.00 + 900 x 0.80 + 500 x 0.50 = 100 + 720 + 250
    assert net(plan, "1500") == Money.of("1070.00", "EUR")
    price = plan.price(D("1500"))
    assert [(band.quantity, band.unit_price, band.amount) for band in price.bands] == [
        (D(100), D("1.00"), D("100.00")), (D(900), D("0.80"), D("720.00")), (D(500), D("0.50"), D("250.00"))]
    assert price.unit_price == D("0.50")
    # the band boundary belongs to the lower band: 100 units are all at 1.00
    assert net(plan, "100") == Money.of("100.00", "EUR")
    assert net(plan, "100.5") == Money.of("100.40", "EUR")


def test_volume_prices_all_units_at_the_band_reached():
    plan = PricePlan(PricingModel.VOLUME, tiers=DECREASING)
    assert net(plan, "100") == Money.of("100.00", "EUR")  # 100 x 1.00
    assert net(plan, "101") == Money.of("80.80", "EUR")  # 101 x 0.80: cheaper than 100 units
    assert net(plan, "1500") == Money.of("750.00", "EUR")  # 1500 x 0.50


def test_package_charges_every_started_block():
    plan = PricePlan(PricingModel.PACKAGE, unit_price=D("5.00"), package_size=D(100))
    assert net(plan, "0") == Money.of("0", "EUR")
    assert net(plan, "1") == Money.of("5.00", "EUR")
    assert net(plan, "100") == Money.of("5.00", "EUR")
    assert net(plan, "100.01") == Money.of("10.00", "EUR")
    assert plan.price(D(250)).bands[0].quantity == 3


def test_free_quantity_comes_off_before_pricing():
    plan = PricePlan(PricingModel.GRADUATED, tiers=DECREASING, free_quantity=D(50))
    price = plan.price(D(200))
    assert (price.free_quantity, price.billable_quantity) == (D(50), D(150))
    assert net(plan, "200") == Money.of("140.00", "EUR")  # 100 x 1.00 + 50 x 0.80
    assert net(plan, "30") == Money.of("0", "EUR")


def test_percentage_discount_and_maximum():
    plan = PricePlan(PricingModel.PER_UNIT, unit_price=D("0.10"), discount_percent=D("12.5"), maximum=D("50"))
    price = plan.price(D(333))  # 33.30 less 12.5 % = 29.1375
    assert net(plan, "333") == Money.of("29.14", "EUR")
    assert price.discount == D("4.1625")
    assert net(plan, "10000") == Money.of("50.00", "EUR")  # 875.00 capped at 50


def test_minimum_applies_only_to_a_closed_period():
    plan = PricePlan(PricingModel.PER_UNIT, unit_price=D("0.10"), minimum=D("25"))
    assert net(plan, "100") == Money.of("10.00", "EUR")
    assert net(plan, "100", closed=True) == Money.of("25.00", "EUR")
    assert net(plan, "300", closed=True) == Money.of("30.00", "EUR")


def test_currency_minor_units():
    plan = PricePlan(PricingModel.PER_UNIT, unit_price=D("1.5"))
    assert net(plan, "3", "JPY") == Money.of("5", "JPY")  # 4.5 -> 5
    assert net(plan, "0.3333", "BHD") == Money.of("0.500", "BHD")  # 0.49995 -> 0.500


@pytest.mark.parametrize("plan_args, problem", [
    ({"model": PricingModel.GRADUATED}, "needs tiers"),
    ({"model": PricingModel.VOLUME, "tiers": tiers(("0", "10", "1"))}, "open-ended"),
    ({"model": PricingModel.VOLUME, "tiers": tiers(("0", "10", "1"), ("20", None, "1"))}, "expected 10"),
    ({"model": PricingModel.PACKAGE, "package_size": D(0)}, "package_size"),
    ({"discount_percent": D(101)}, "between 0 and 100"),
    ({"minimum": D(10), "maximum": D(5)}, "minimum is above maximum"),
    ({"tiers": tiers(("0", None, "1"))}, "takes no tiers"),
])
def test_unusable_plans_are_refused(plan_args, problem):
    with pytest.raises(ValueError, match=problem):
        PricePlan(**plan_args)


def test_band_differences_show_volume_repricing():
    plan = PricePlan(PricingModel.VOLUME, tiers=DECREASING)
    changes = band_differences(plan.price(D(100)), plan.price(D(101)))
    assert [(band.from_quantity, band.quantity, band.amount) for band in changes] == [
        (D(0), D(-100), D("-100.00")), (D(100), D(101), D("80.80"))]


# --- properties -------------------------------------------------------------------------------

prices = st.decimals(min_value=0, max_value=100, places=4)
quantities = st.decimals(min_value=0, max_value=5000, places=3)


@st.composite
def tier_tables(draw):
    bounds = sorted(set(draw(st.lists(st.integers(1, 3000), min_size=1, max_size=4))))
    lows = [0, *bounds]
    highs = [*bounds, None]
    return tuple(Tier(D(low), None if high is None else D(high), draw(prices)) for low, high in zip(lows, highs, strict=True))


@st.composite
def plans(draw):
    model = draw(st.sampled_from(list(PricingModel)))
    minimum = draw(st.none() | st.decimals(min_value=0, max_value=500, places=2))
    maximum = draw(st.none() | st.decimals(min_value=0, max_value=5000, places=2))
    if minimum is not None and maximum is not None and minimum > maximum:
        minimum, maximum = maximum, minimum
    return PricePlan(
        model=model,
        unit_price=draw(prices),
        tiers=draw(tier_tables()) if model in (PricingModel.GRADUATED, PricingModel.VOLUME) else (),
        package_size=draw(st.decimals(min_value="0.5", max_value=500, places=1)),
        free_quantity=draw(st.decimals(min_value=0, max_value=200, places=2)),
        discount_percent=draw(st.decimals(min_value=0, max_value=100, places=2)),
        minimum=minimum,
        maximum=maximum,
    )


@settings(max_examples=300, deadline=None)
@given(plans(), st.lists(quantities, max_size=30), st.sampled_from(["EUR", "JPY", "BHD"]))
def test_event_by_event_costs_what_the_whole_period_costs(plan, events, currency):
    cumulative, billed = D(0), Money.zero(currency)
    for quantity in events:
        before = plan.settled_net(cumulative, currency, closed=False)
        cumulative += quantity
        billed += plan.settled_net(cumulative, currency, closed=False) - before
    assert billed == plan.settled_net(cumulative, currency, closed=False)
    assert plan.settled_net(sum(events, D(0)), currency, closed=False) == billed


@settings(max_examples=300, deadline=None)
@given(plans(), quantities, quantities)
def test_billable_is_never_negative_and_never_more_than_entered(plan, used, more):
    price = plan.price(used)
    assert 0 <= price.billable_quantity <= used
    assert price.free_quantity + price.billable_quantity == used
    assert price.net >= 0 and price.discount >= 0
    if plan.maximum is not None:
        assert price.net <= plan.maximum
    if plan.model is not PricingModel.VOLUME:  # volume may fall when a cheaper band is reached
        assert plan.price(used + more).net >= price.net


@settings(max_examples=300, deadline=None)
@given(tier_tables(), quantities)
def test_graduated_never_costs_more_than_volume_when_band_prices_fall(table, used):
    falling = tuple(Tier(tier.from_quantity, tier.to_quantity, D(len(table) - index)) for index, tier in
                    enumerate(table))
    graduated = PricePlan(PricingModel.GRADUATED, tiers=falling).price(used)
    volume = PricePlan(PricingModel.VOLUME, tiers=falling).price(used)
    assert graduated.net >= volume.net  # falling prices: every unit of graduated costs at least volume's
    rising = tuple(Tier(tier.from_quantity, tier.to_quantity, D(index + 1)) for index, tier in enumerate(table))
    assert PricePlan(PricingModel.GRADUATED, tiers=rising).price(used).net <= \
        PricePlan(PricingModel.VOLUME, tiers=rising).price(used).net


@settings(max_examples=200, deadline=None)
@given(plans(), st.lists(quantities, min_size=1, max_size=20))
def test_band_differences_add_up_to_the_whole_period_breakdown(plan, events):
    cumulative, amounts = D(0), D(0)
    for quantity in events:
        before = plan.price(cumulative)
        cumulative += quantity
        amounts += sum((band.amount for band in band_differences(before, plan.price(cumulative))), D(0))
    assert amounts == plan.price(cumulative).gross
