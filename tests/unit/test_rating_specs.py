"""Rating refuses, at the edge, a contract whose items invoicing could not tax for its customer:
one case per VAT rule of shared.vat, with the seller in Germany unless a test says otherwise."""

from __future__ import annotations

import pytest

from services.rating.specs import ContractSpec
from shared.errors import Rejected


def contract(country: str, *categories: str, vat_id: str | None = None) -> ContractSpec:
    return ContractSpec(
        contract_id="C-1",
        customer={"customer_id": "CUST-1", "name": "Customer", "country": country, "vat_id": vat_id},
        currency="EUR",
        starts_on="2026-01-01",
        items=[{"item_code": f"item-{category}", "description": category.title(), "unit_price": "1.00",
                "tax_category": category} for category in categories],
    )


ALL_CATEGORIES = ("standard", "reduced", "zero", "exempt")


def test_a_domestic_customer_can_be_invoiced_for_every_category():
    contract("DE", *ALL_CATEGORIES).check_invoiceable("DE")


@pytest.mark.parametrize("country", ["BE", "PL", "FI", "EE"])
def test_an_eu_consumer_can_be_invoiced_with_the_destination_rates(country):
    contract(country, *ALL_CATEGORIES).check_invoiceable("DE")


def test_a_reduced_item_for_a_consumer_in_denmark_is_refused_naming_country_and_category():
    with pytest.raises(Rejected, match="DK has no reduced VAT rate: an item in tax category 'reduced'"):
        contract("DK", "standard", "reduced").check_invoiceable("DE")


def test_a_consumer_in_denmark_can_be_invoiced_for_the_other_categories():
    contract("DK", "standard", "zero", "exempt").check_invoiceable("DE")


def test_an_eu_business_with_a_vat_id_is_reverse_charged_whatever_its_country_lacks():
    contract("DK", *ALL_CATEGORIES, vat_id="DK13585628").check_invoiceable("DE")


def test_a_customer_outside_the_eu_is_an_export():
    contract("US", *ALL_CATEGORIES).check_invoiceable("DE")


def test_the_seller_country_decides_what_is_domestic():
    # A Danish seller has no reduced rate at home, whether or not its customer is a business...
    with pytest.raises(Rejected, match="DK has no reduced VAT rate"):
        contract("DK", "reduced", vat_id="DK13585628").check_invoiceable("DK")
    # ...while a German customer of a Danish seller is an EU consumer taxed at the German 7 %.
    contract("DE", "reduced").check_invoiceable("DK")
