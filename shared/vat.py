"""VAT: which rate a document line carries and how the tax of a document is computed. Pure, no I/O.

Shared because two services apply the same rules: invoicing computes the tax of every document,
and rating refuses, when a contract is created or changed, a customer and item invoicing could
not tax (before any usage is rated, settled and posted as a receivable that cannot be invoiced).

The seller is the provider whose country is `BILLING_SELLER_COUNTRY` (shared.settings, Germany by
default). Which VAT applies depends on where the seller and the customer are, whether the
customer has a VAT id, and the contract item's tax category:

- domestic (customer in the seller's country): the seller country's rate for the category,
  whether or not the customer is a business;
- EU business customer in another member state with a VAT id: reverse charge, 0 % (category AE),
  the recipient accounts for the VAT; the document carries the legal note and both VAT ids. VAT
  ids are taken as given (checking them in VIES is not this service's job);
- EU consumer (no VAT id) in another member state: the destination country's rate, declared
  through the One-Stop Shop (OSS). We always apply the destination rate and ignore the 10,000 EUR
  OSS threshold, which sellers of digital services routinely waive; a destination without a
  pinned rate for the category is refused rather than guessed;
- customer outside the EU: export of services, 0 % (category G) with a note; the place of supply
  is the customer's country.
Items in the tax category `exempt` are exempt (category E) under every rule; items in `zero` are
zero-rated (Z) where the seller's or the destination's VAT applies and follow reverse charge or
export otherwise.

Rates are pinned in `VAT_RATES` for all 27 member states: a rate change is a reviewed code
change, never something read at run time. `standard` is the country's standard rate. `reduced`
is one rate per country, since a contract item has one category: the reduced rate (at least 5 %,
so never a super-reduced rate) that foodstuffs in general bear there, as the German 7 %, French
5.5 % and Italian and Spanish 10 % are; where food bears the standard, zero or a super-reduced
rate, the country's lowest reduced rate. An item a country taxes at one of its other reduced
rates cannot be described by `reduced`. Denmark has no reduced rate: a `reduced` item is refused
for a customer whose VAT is Danish. Category codes are UNCL5305, as EN 16931 (the European
e-invoicing standard) uses them.

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


def _pinned(standard: str, reduced: str | None = None) -> dict[TaxCategory, Decimal]:
    rates = {TaxCategory.STANDARD: Decimal(standard)}
    if reduced is not None:
        rates[TaxCategory.REDUCED] = Decimal(reduced)
    return rates


# Percent per member state: standard, and the rate that stands for `reduced` (see the module
# docstring), with what the other reduced rates are for where a country has several.
# Source: European Commission, "VAT rates applied in the Member States of the European Union"
# (taxation-customs.ec.europa.eu), whose current figures are its Taxes in Europe Database (TEDB).
# Checked on 2026-12-02: the standard rates against TEDB as of 2026-09-23, the reduced rates
# against TEDB as of 2026-04-28 (both as republished by vatnode/eu-vat-rates-data), and for FI,
# LT and SE the 2026 changes against the news of them; a change published after those dates may
# be missing. Which goods bear which of a country's reduced rates (and so which one stands for
# `reduced`, notably for HR, HU, LV and SK, where food is split between rates) is from our own
# knowledge as of that date, not from TEDB. A country's special territories (Canary Islands,
# Madeira and the Azores, Corsica, Greek islands, Jungholz and Mittelberg, ...) are not modelled:
# a country code means its mainland rates.
VAT_RATES: dict[str, dict[TaxCategory, Decimal]] = {
    "AT": _pinned("20", "10"),  # food; 13 % (culture, wine) is not `reduced`
    "BE": _pinned("21", "6"),  # food; 12 % (restaurants, social housing) is not
    "BG": _pinned("20", "9"),  # food is standard-rated; 9 % is the only reduced rate
    "CY": _pinned("19", "5"),  # food; 9 % (restaurants, hotels) is not
    "CZ": _pinned("21", "12"),  # one reduced rate since 2024-01-01 (10 % and 15 % merged)
    "DE": _pinned("19", "7"),
    "DK": _pinned("25"),  # no reduced rate at all: a `reduced` item is refused, never guessed
    "EE": _pinned("24", "9"),  # 24 % since 2025-07-01 (was 22 %); food is standard-rated
    "ES": _pinned("21", "10"),  # food; staples bear the super-reduced 4 %
    "FI": _pinned("25.5", "13.5"),  # 25.5 % since 2024-09-01 (was 24 %); food 13.5 % since 2026-01-01 (was 14 %)
    "FR": _pinned("20", "5.5"),  # food; 10 % (restaurants, transport) is not
    "GR": _pinned("24", "13"),  # food; 6 % (books, medicines) is not
    "HR": _pinned("25", "5"),  # basic food since 2023-04-01; 13 % is not
    "HU": _pinned("27", "5"),  # basic food; 18 % (some dairy and bakery) is not
    "IE": _pinned("23", "9"),  # food is zero-rated; 13.5 % is not
    "IT": _pinned("22", "10"),  # food; staples bear the super-reduced 4 %
    "LT": _pinned("21", "5"),  # food is standard-rated; 12 % since 2026-01-01 (was 9 %) is not
    "LU": _pinned("17", "8"),  # food bears the super-reduced 3 %; 14 % is not
    "LV": _pinned("21", "5"),  # food is mostly standard-rated; 12 % is not
    "MT": _pinned("18", "5"),  # food is zero-rated; 7 % (accommodation) is not
    "NL": _pinned("21", "9"),
    "PL": _pinned("23", "5"),  # food; 8 % (restaurants, some processed food) is not
    "PT": _pinned("23", "6"),  # mainland; food; 13 % (restaurants) is not
    "RO": _pinned("21", "11"),  # since 2025-08-01: 21 % (was 19 %), 11 % (replacing 9 % and 5 %)
    "SE": _pinned("25", "6"),  # food 6 % from 2026-04-01 to 2027-12-31 (was 12 %, review then)
    "SI": _pinned("22", "9.5"),  # food; 5 % (books, medicines) is not
    "SK": _pinned("23", "5"),  # 23 % since 2025-01-01 (was 20 %); basic food 5 %; 19 % is not
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
    if country not in VAT_RATES:
        raise Rejected(f"no VAT rates are pinned for {country} (shared/vat.py VAT_RATES)")
    if category not in VAT_RATES[country]:
        raise Rejected(f"{country} has no {category} VAT rate: an item in tax category '{category}' cannot be "
                       f"invoiced with {country} VAT; give it another tax category")
    return VAT_RATES[country][category]


def tax_lines(lines: Iterable[tuple[Vat, Money]], currency: str) -> tuple[TaxLine, ...]:
    """The VAT breakdown of `lines` (each a line's VAT and net): one tax line per category and rate."""
    bases: dict[Vat, Money] = {}
    for vat, net in lines:
        bases[vat] = bases.get(vat, Money.zero(currency)) + net
    return tuple(
        TaxLine(vat, base, Money.round(base.amount * vat.rate / 100, currency))
        for vat, base in sorted(bases.items(), key=lambda entry: (entry[0].category, -entry[0].rate))
    )
