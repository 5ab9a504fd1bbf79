"""VAT: which rate a document line carries and how the tax of a document is computed. Pure, no I/O.

The seller is the provider configured in invoicing's settings (INVOICING_SELLER_*, a German GmbH
by default). Which VAT applies depends on where the seller and the customer are, whether the
customer has a VAT id, and the contract item's tax category:

- domestic (customer in the seller's country): the seller country's rate for the category,
  whether or not the customer is a business;
- EU business customer in another member state with a VAT id: reverse charge, 0 % (category AE),
  the recipient accounts for the VAT; the document carries the legal note and both VAT ids. VAT
  ids are taken as given (checking them in VIES is not this service's job);
- EU consumer (no VAT id) in another member state: the destination country's rate, declared
  through the One-Stop Shop (OSS). We always apply the destination rate and ignore the 10,000 EUR
  OSS threshold, which sellers of digital services routinely waive; a destination without a
  pinned rate is refused rather than guessed;
- customer outside the EU: export of services, 0 % (category G) with a note; the place of supply
  is the customer's country.
Items in the tax category `exempt` are exempt (category E) under every rule; items in `zero` are
zero-rated (Z) where the seller's or the destination's VAT applies and follow reverse charge or
export otherwise.

Rates are pinned in `VAT_RATES` (standard and reduced, as in force in 2026): a rate change is a
reviewed code change, never something read at run time. Category codes are UNCL5305, as EN 16931
(the European e-invoicing standard) uses them.

Rounding follows EN 16931: line nets arrive already rounded to the currency's minor unit; per VAT
category and rate the line nets are summed exactly into the taxable base, and the tax is
base x rate, rounded once per category and rate with ROUND_HALF_UP (`Money.round`). Tax is never
rounded per line, so a document's tax can differ by a few minor units from the sum of per-line
taxes; the document's totals are the sums of its tax lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Iterable

from shared.errors import Rejected
from shared.events import TaxCategory
from shared.money import Money

EU_MEMBER_STATES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
    "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})

# Percent per country and tax category.
VAT_RATES: dict[str, dict[TaxCategory, Decimal]] = {
    "DE": {TaxCategory.STANDARD: Decimal("19"), TaxCategory.REDUCED: Decimal("7")},
    "FR": {TaxCategory.STANDARD: Decimal("20"), TaxCategory.REDUCED: Decimal("5.5")},
    "AT": {TaxCategory.STANDARD: Decimal("20"), TaxCategory.REDUCED: Decimal("10")},
    "NL": {TaxCategory.STANDARD: Decimal("21"), TaxCategory.REDUCED: Decimal("9")},
    "IT": {TaxCategory.STANDARD: Decimal("22"), TaxCategory.REDUCED: Decimal("10")},
    "ES": {TaxCategory.STANDARD: Decimal("21"), TaxCategory.REDUCED: Decimal("10")},
}


class VatCategory(StrEnum):
    """UNCL5305 VAT category codes (EN 16931 BT-118 / BT-151)."""

    STANDARD = "S"
    ZERO = "Z"
    EXEMPT = "E"
    REVERSE_CHARGE = "AE"
    EXPORT = "G"


class Treatment(StrEnum):
    DOMESTIC = "domestic"
    REVERSE_CHARGE = "reverse_charge"
    OSS = "oss"
    EXPORT = "export"


@dataclass(frozen=True, slots=True)
class Vat:
    """What a line is taxed with: a category and a rate in percent."""

    category: VatCategory
    rate: Decimal


@dataclass(frozen=True, slots=True)
class TaxLine:
    """One VAT breakdown line of a document: the base and tax of one category and rate."""

    vat: Vat
    base: Money
    tax: Money


@dataclass(frozen=True, slots=True)
class TaxContext:
    """Everything about the parties that decides a document's VAT."""

    seller_country: str
    customer_country: str
    customer_vat_id: str | None

    @property
    def treatment(self) -> Treatment:
        if self.customer_country == self.seller_country:
            return Treatment.DOMESTIC
        if self.customer_country not in EU_MEMBER_STATES:
            return Treatment.EXPORT
        return Treatment.REVERSE_CHARGE if self.customer_vat_id else Treatment.OSS

    def vat_for(self, category: TaxCategory) -> Vat:
        treatment = self.treatment
        if category is TaxCategory.EXEMPT:
            return Vat(VatCategory.EXEMPT, Decimal(0))
        if treatment is Treatment.REVERSE_CHARGE:
            return Vat(VatCategory.REVERSE_CHARGE, Decimal(0))
        if treatment is Treatment.EXPORT:
            return Vat(VatCategory.EXPORT, Decimal(0))
        if category is TaxCategory.ZERO:
            return Vat(VatCategory.ZERO, Decimal(0))
        country = self.seller_country if treatment is Treatment.DOMESTIC else self.customer_country
        return Vat(VatCategory.STANDARD, rate(country, category))

    def notes(self, categories: Iterable[VatCategory]) -> tuple[str, ...]:
        """The legal notes a document with lines in `categories` must carry."""
        present = set(categories)
        notes = []
        if VatCategory.REVERSE_CHARGE in present:
            notes.append(
                "Reverse charge: the recipient is liable for the VAT (Article 196 of Council Directive "
                f"2006/112/EC). Customer VAT ID: {self.customer_vat_id}."
            )
        if VatCategory.EXPORT in present:
            notes.append(
                f"Export of services outside the EU: the place of supply is {self.customer_country}; "
                f"no {self.seller_country} VAT is charged."
            )
        if self.treatment is Treatment.OSS and VatCategory.STANDARD in present:
            notes.append(f"VAT of {self.customer_country}, declared through the One-Stop Shop (OSS).")
        if VatCategory.EXEMPT in present:
            notes.append("Lines in VAT category E are exempt from VAT.")
        return tuple(notes)


def rate(country: str, category: TaxCategory) -> Decimal:
    try:
        return VAT_RATES[country][category]
    except KeyError:
        raise Rejected(
            f"no pinned {category} VAT rate for {country}; add it to services/invoicing/tax.py VAT_RATES"
        ) from None


def tax_lines(lines: Iterable[tuple[Vat, Money]], currency: str) -> tuple[TaxLine, ...]:
    """The VAT breakdown of `lines` (each a line's VAT and net): one tax line per category and rate."""
    bases: dict[Vat, Money] = {}
    for vat, net in lines:
        bases[vat] = bases.get(vat, Money.zero(currency)) + net
    return tuple(
        TaxLine(vat, base, Money.round(base.amount * vat.rate / 100, currency))
        for vat, base in sorted(bases.items(), key=lambda entry: (entry[0].category, -entry[0].rate))
    )
