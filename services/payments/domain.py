"""Open items and payment assignment (OPOS). Pure, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date
from typing import Sequence

from shared.money import Money


@dataclass(frozen=True, slots=True)
class OpenItem:
    document_id: uuid.UUID
    invoice_number: str
    amount: Money
    open_amount: Money
    due_date: date


@dataclass(frozen=True, slots=True)
class Assignment:
    document_id: uuid.UUID
    invoice_number: str
    amount: Money


def assignment_order(items: Sequence[OpenItem], referenced_invoice: str | None) -> list[OpenItem]:
    """The invoice the payer named comes first, then the oldest due (ties by number)."""
    return sorted(
        items, key=lambda item: (item.invoice_number != referenced_invoice, item.due_date, item.invoice_number)
    )


def assign(
    available: Money, items: Sequence[OpenItem], referenced_invoice: str | None = None
) -> tuple[list[Assignment], list[OpenItem], Money]:
    """Spend `available` on the open items.

    Returns the assignments, every item as it stands afterwards (in assignment order), and what
    is left over, which the customer keeps as credit for the next open item.
    """
    assignments: list[Assignment] = []
    after: list[OpenItem] = []
    remaining = available
    for item in assignment_order(items, referenced_invoice):
        amount = min(remaining, item.open_amount)
        if not amount.is_zero():
            assignments.append(Assignment(item.document_id, item.invoice_number, amount))
            item = replace(item, open_amount=item.open_amount - amount)
            remaining = remaining - amount
        after.append(item)
    return assignments, after, remaining
