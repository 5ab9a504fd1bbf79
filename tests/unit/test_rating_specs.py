"""Rating refuses, at the edge, a contract whose items invoicing could not tax for its customer:
one case per VAT rule of shared.vat, with the seller in Germany unless a test says otherwise."""

from __future__ import annotations

import pytest

from services.rating.specs import ContractSpec
from shared.errors import Rejected
from shared.events import ContractChanged, CustomerProfile, EInvoiceFormat


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


def test_a_customer_country_iso_3166_does_not_know_is_refused_as_no_e_invoice_could_name_it():
    with pytest.raises(Rejected, match=r"UK is not an ISO 3166-1 country code \(the United Kingdom is GB\)"):
        contract("UK", "standard").check_invoiceable("DE")
    contract("GB", "standard").check_invoiceable("DE")


def test_a_customer_without_a_name_or_with_a_vat_id_no_country_issued_is_refused():
    nameless = contract("DE", "standard").model_copy(update={"customer": CustomerProfile(
        customer_id="C-1", name="  ", country="DE")})
    with pytest.raises(Rejected, match=r"no name, which every invoice must give \(EN 16931 BR-07\)"):
        nameless.check_invoiceable("DE")
    with pytest.raises(Rejected, match="VAT id XX123456789 does not begin with an ISO 3166-1 country code"):
        contract("DE", "standard", vat_id="XX123456789").check_invoiceable("DE")
    contract("GR", "standard", vat_id="EL094014201").check_invoiceable("DE")  # Greece's VAT ids say EL


def test_an_xrechnung_customer_needs_buyer_reference_electronic_address_and_postal_address():
    customer = {"customer_id": "C-1", "name": "Stadt Musterhausen", "country": "DE",
                "e_invoicing": {"format": "xrechnung", "buyer_reference": "991-01234-56"}}
    with pytest.raises(ValueError, match=r"needs e_invoicing.electronic_address \(BT-49\), postal_code \(BT-53\), "
                                         r"city \(BT-52\)"):
        CustomerProfile.model_validate(customer)
    complete = CustomerProfile.model_validate({
        **customer, "postal_code": "12345", "city": "Musterhausen",
        "e_invoicing": {**customer["e_invoicing"], "electronic_address": {"scheme": "0204", "address": "991-01234-56"}}})
    assert complete.e_invoicing.format is EInvoiceFormat.XRECHNUNG


def test_contracts_changed_v1_cannot_carry_what_v2_added():
    snapshot = {"event_id": "6f1d8a52-3c1e-4d8e-9a57-2b8f0c6a4e11", "occurred_at": "2026-12-03T10:00:00Z",
                "contract_id": "C-1", "revision": 1, "currency": "EUR", "starts_on": "2026-01-01", "ends_on": None,
                "status": "active", "items": [{"item_code": "api", "description": "API"}],
                "customer": {"customer_id": "C-1", "name": "ACME", "country": "DE", "city": "Hamburg"}}
    assert ContractChanged.model_validate(snapshot).schema_version == 2
    with pytest.raises(ValueError, match="part of schema_version 2 on"):
        ContractChanged.model_validate({**snapshot, "schema_version": 1})
    old = {**snapshot, "schema_version": 1, "customer": {"customer_id": "C-1", "name": "ACME", "country": "DE"}}
    assert ContractChanged.model_validate(old).customer.e_invoicing is None
