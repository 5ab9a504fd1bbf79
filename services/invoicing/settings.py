"""Invoicing's settings (INVOICING_*), including the seller printed on every document.

The seller defaults to a demo German GmbH; production sets INVOICING_SELLER_NAME,
INVOICING_SELLER_ADDRESS_LINES (a JSON list), INVOICING_SELLER_VAT_ID, INVOICING_SELLER_EMAIL,
INVOICING_SELLER_IBAN and INVOICING_SELLER_BIC. The seller's country is BILLING_SELLER_COUNTRY
(shared.settings), which rating reads too: it decides what is domestic (see shared/vat.py).
"""

import os

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from services.invoicing.domain import Party, Seller
from shared.settings import ServiceSettings, seller_country


class InvoicingSettings(ServiceSettings):
    service = "invoicing"
    model_config = SettingsConfigDict(env_prefix="INVOICING_")

    payment_terms_days: int = 14
    # Off issues documents without a stored PDF (about 10 ms each): for measuring the document path
    # alone, or a deployment that renders them elsewhere. Such documents have no PDF to download.
    render_pdfs: bool = True

    seller_name: str = "Usage Billing Demo GmbH"
    seller_address_lines: list[str] = ["Friedrichstrasse 123", "10117 Berlin"]
    seller_vat_id: str = "DE999999999"
    seller_email: str = "billing@usage-billing.example"
    seller_iban: str = "DE89 3704 0044 0532 0130 00"
    seller_bic: str = "COBADEFFXXX"

    @model_validator(mode="after")
    def _seller_country_is_shared(self) -> "InvoicingSettings":
        # Ignoring the variable this setting used to be would tax every document as if the seller
        # were where BILLING_SELLER_COUNTRY's default says.
        if "INVOICING_SELLER_COUNTRY" in os.environ:
            raise ValueError("INVOICING_SELLER_COUNTRY is now BILLING_SELLER_COUNTRY (rating reads it too); rename it")
        return self

    def seller(self) -> Seller:
        party = Party(name=self.seller_name, country=seller_country(), address_lines=tuple(self.seller_address_lines),
                      vat_id=self.seller_vat_id, email=self.seller_email)
        return Seller(party=party, iban=self.seller_iban, bic=self.seller_bic)
