"""Invoicing's settings (INVOICING_*), including the seller printed on every document.

The seller defaults to a demo German GmbH; production sets INVOICING_SELLER_NAME,
INVOICING_SELLER_ADDRESS_LINES (a JSON list of street lines), INVOICING_SELLER_POSTAL_CODE,
INVOICING_SELLER_CITY, INVOICING_SELLER_VAT_ID, INVOICING_SELLER_EMAIL, INVOICING_SELLER_CONTACT_NAME,
INVOICING_SELLER_PHONE, INVOICING_SELLER_IBAN, INVOICING_SELLER_BIC and INVOICING_SELLER_CREDITOR_ID
(the e-invoices need them all; XRechnung requires the contact, post code and city). The seller's country is BILLING_SELLER_COUNTRY
(shared.settings), which rating reads too: it decides what is domestic (see shared/vat.py).
"""

import os

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.invoicing.domain import Party, Seller
from shared.settings import ServiceSettings, seller_country


class InvoicingSettings(ServiceSettings):
    service = "invoicing"
    model_config = SettingsConfigDict(env_prefix="INVOICING_")

    payment_terms_days: int = 14
    # Off issues documents without a stored PDF or e-invoice (about 50 ms each): for measuring the
    # document path alone, or a deployment that renders them elsewhere. Such documents have no files.
    render_pdfs: bool = True
    # Off renders the plain PDF alone, without the EN 16931 XML and its validation: for measuring
    # what e-invoices cost, or a seller none of whose customers needs them.
    e_invoices: bool = True
    # The processes that validate and render documents off the event loop (rendering.py).
    render_processes: int = Field(default=1, ge=1, le=64)

    seller_name: str = "Usage Billing Demo GmbH"
    seller_address_lines: list[str] = ["Friedrichstrasse 123"]
    seller_postal_code: str = "10117"
    seller_city: str = "Berlin"
    seller_vat_id: str = "DE999999999"
    seller_email: str = "billing@usage-billing.example"
    seller_contact_name: str = "Billing team"
    seller_phone: str = "+49 30 1234567"
    seller_iban: str = "DE89 3704 0044 0532 0130 00"
    seller_bic: str = "COBADEFFXXX"
    # The SEPA creditor identifier direct debits are collected under (BT-90).
    seller_creditor_id: str = "DE98ZZZ09999999999"

    @model_validator(mode="after")
    def _seller_country_is_shared(self) -> "InvoicingSettings":
        # Ignoring the variable this setting used to be would tax every document as if the seller
        # were where BILLING_SELLER_COUNTRY's default says.
        if "INVOICING_SELLER_COUNTRY" in os.environ:
            raise ValueError("INVOICING_SELLER_COUNTRY is now BILLING_SELLER_COUNTRY (rating reads it too); rename it")
        return self

    def seller(self) -> Seller:
        party = Party(name=self.seller_name, country=seller_country(), address_lines=tuple(self.seller_address_lines),
                      vat_id=self.seller_vat_id, email=self.seller_email, postal_code=self.seller_postal_code,
                      city=self.seller_city, contact_name=self.seller_contact_name, phone=self.seller_phone)
        return Seller(party=party, iban=self.seller_iban, bic=self.seller_bic, creditor_id=self.seller_creditor_id)
