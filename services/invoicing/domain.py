"""Documents: what an invoice contains and how it is numbered. Pure, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Sequence

from shared.events import DocumentType
from shared.money import Money

SERIES_PREFIX = {DocumentType.INVOICE: "R", DocumentType.CREDIT_NOTE: "G"}


class DocumentStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"


@dataclass(frozen=True, slots=True)
class DocumentLine:
    line_no: int
    billable_item_id: uuid.UUID
    item_code: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Money
    period_start: date
    period_end: date


@dataclass(frozen=True, slots=True)
class Document:
    document_id: uuid.UUID
    document_type: DocumentType
    settlement_run_id: uuid.UUID
    contract_id: str
    customer_id: str
    issue_date: date
    due_date: date
    lines: tuple[DocumentLine, ...]
    net_total: Money
    tax_total: Money
    gross_total: Money
    status: DocumentStatus = DocumentStatus.DRAFT
    number: str | None = None

    @property
    def series(self) -> str:
        """Numbers run per document type and year: R2026-0001, R2026-0002, ... G2026-0001."""
        return f"{SERIES_PREFIX[self.document_type]}{self.issue_date.year}"

    def finalize(self, sequence: int) -> Document:
        """Give the draft its number; only a finalized document ever has one."""
        if self.status is not DocumentStatus.DRAFT:
            raise ValueError(f"document {self.document_id} is already {self.status}")
        return replace(self, status=DocumentStatus.FINALIZED, number=f"{self.series}-{sequence:04d}")


def draft_invoice(
    *,
    document_id: uuid.UUID,
    settlement_run_id: uuid.UUID,
    contract_id: str,
    customer_id: str,
    currency: str,
    lines: Sequence[DocumentLine],
    issue_date: date,
    payment_terms_days: int,
) -> Document:
    """An invoice over the settled lines. Tax is not charged yet: tax_total is zero."""
    net_total = Money.sum((line.net for line in lines), currency)
    tax_total = Money.zero(currency)
    return Document(
        document_id=document_id,
        document_type=DocumentType.INVOICE,
        settlement_run_id=settlement_run_id,
        contract_id=contract_id,
        customer_id=customer_id,
        issue_date=issue_date,
        due_date=issue_date + timedelta(days=payment_terms_days),
        lines=tuple(lines),
        net_total=net_total,
        tax_total=tax_total,
        gross_total=net_total + tax_total,
    )
