"""Exact money: Decimal amounts in an ISO 4217 currency, rounded by one rule.

The rule: an amount is rounded to its currency's minor unit with ROUND_HALF_UP (commercial
rounding, 0.125 EUR -> 0.13 EUR), and only at the points where the code says `Money.round`.
Unit prices and quantities stay unrounded Decimals; only amounts are Money.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Iterable, Sequence

ROUNDING = ROUND_HALF_UP

# ISO 4217 minor-unit exponents of the currencies the product bills in. Pinned here on purpose:
# adding a currency is a reviewed change, not something that arrives with a dependency update.
CURRENCY_EXPONENTS: dict[str, int] = {
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "HUF": 2,
    "CAD": 2,
    "AUD": 2,
    "JPY": 0,
    "KRW": 0,
    "BHD": 3,
    "KWD": 3,
    "JOD": 3,
}


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unsupported currency {currency!r}") from None


def to_decimal(value: str | int | Decimal) -> Decimal:
    """A finite Decimal from a string, int or Decimal; floats are refused because they are inexact."""
    if type(value) is Decimal and value.is_finite():  # most amounts are already (immutable) Decimals
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise MoneyError(f"amounts must be given as str, int or Decimal, not {type(value).__name__}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise MoneyError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise MoneyError(f"not a finite number: {value!r}")
    return result


@functools.cache
def _quantum(currency: str) -> Decimal:
    """The currency's minor unit (0.01 for EUR); computed once per currency, as every amount needs it."""
    return Decimal(1).scaleb(-exponent(currency))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount already at its currency's minor unit; arithmetic never needs to round again."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        amount = self.amount
        # Most amounts are finite Decimals already (sums, parsed events): checked without to_decimal's round trip.
        if type(amount) is not Decimal or not amount.is_finite():
            amount = to_decimal(amount)
        quantized = amount.quantize(_quantum(self.currency), rounding=ROUNDING)
        if amount != quantized:
            raise MoneyError(
                f"{amount} has more decimals than {self.currency} allows; use Money.round to round it"
            )
        object.__setattr__(self, "amount", quantized)

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str) -> Money:
        return cls(to_decimal(amount), currency)

    @classmethod
    def round(cls, amount: str | int | Decimal, currency: str) -> Money:
        """The one place where amounts are rounded: to the minor unit, ROUND_HALF_UP."""
        return cls(to_decimal(amount).quantize(_quantum(currency), rounding=ROUNDING), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return _zero(currency)

    @classmethod
    def sum(cls, amounts: Iterable[Money], currency: str) -> Money:
        # The amounts are added as Decimals and the total checked once, not each partial sum.
        total = Decimal(0)
        for amount in amounts:
            _same_currency(currency, amount)
            total += amount.amount
        return cls(total, currency)

    @property
    def minor_units(self) -> int:
        return int(self.amount.scaleb(exponent(self.currency)))

    def _same_currency(self, other: Money) -> None:
        _same_currency(self.currency, other)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def allocate(self, weights: Sequence[Decimal | int]) -> list[Money]:
        """Split into parts proportional to `weights` that add up to exactly this amount.

        Largest-remainder method on minor units: each part gets its floor share, and the units
        left over go one each to the parts with the largest remainders (earliest first on ties).
        """
        if not weights or any(Decimal(w) < 0 for w in weights) or sum(weights) == 0:
            raise MoneyError("allocation needs non-negative weights with a positive sum")
        total_units = self.minor_units
        sign = -1 if total_units < 0 else 1
        units = abs(total_units)
        weight_sum = Decimal(sum(Decimal(w) for w in weights))
        exact = [Decimal(units) * Decimal(w) / weight_sum for w in weights]
        floors = [int(share) for share in exact]
        leftover = units - sum(floors)
        by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
        for index in by_remainder[:leftover]:
            floors[index] += 1
        scale = exponent(self.currency)
        return [Money(Decimal(sign * part).scaleb(-scale), self.currency) for part in floors]

    def __str__(self) -> str:
        return f"{self.amount:,.{exponent(self.currency)}f} {self.currency}"


def _same_currency(currency: str, other: Money) -> None:
    if not isinstance(other, Money):
        raise TypeError(f"cannot combine Money with {type(other).__name__}")
    if other.currency != currency:
        raise MoneyError(f"cannot combine {currency} with {other.currency}")


@functools.cache
def _zero(currency: str) -> Money:
    # Money is immutable, so every sum can start from the same zero of its currency.
    return Money(Decimal(0), currency)
