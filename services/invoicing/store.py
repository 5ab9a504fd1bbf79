"""Invoicing's repository: contract replicas, number series, documents and their PDFs."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Iterable

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.invoicing.domain import ContractTerms, Document, Party
from services.invoicing.tables import (
    contract_terms,
    document_line_sources,
    document_lines,
    document_pdfs,
    document_tax_lines,
    documents,
    number_series,
)
from shared.events import DocumentType, TaxCategory


def _party_json(party: Party) -> dict[str, Any]:
    return {**dataclasses.asdict(party), "address_lines": list(party.address_lines)}


def _party(data: dict[str, Any]) -> Party:
    return Party(**{**data, "address_lines": tuple(data["address_lines"])})


async def save_contract_terms(session: AsyncSession, terms: ContractTerms) -> bool:
    """Keep `terms` unless a newer revision is already held; returns whether they were kept."""
    values = {
        "contract_id": terms.contract_id,
        "revision": terms.revision,
        "customer_id": terms.customer_id,
        "customer": _party_json(terms.customer),
        "tax_categories": {code: category.value for code, category in terms.tax_categories.items()},
    }
    statement = pg_insert(contract_terms).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[contract_terms.c.contract_id],
        set_={**{name: statement.excluded[name] for name in values if name != "contract_id"},
              "updated_at": func.now()},
        where=contract_terms.c.revision < statement.excluded.revision,
    ).returning(contract_terms.c.revision)
    return (await session.execute(statement)).first() is not None


async def find_contract_terms(session: AsyncSession, contract_id: str) -> ContractTerms | None:
    row = (await session.execute(select(contract_terms).where(contract_terms.c.contract_id == contract_id))).first()
    if row is None:
        return None
    return ContractTerms(
        contract_id=row.contract_id,
        revision=row.revision,
        customer_id=row.customer_id,
        customer=_party(row.customer),
        tax_categories={code: TaxCategory(category) for code, category in row.tax_categories.items()},
    )


async def invoice_numbers_of_runs(session: AsyncSession, run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await session.execute(
        select(documents.c.settlement_run_id, documents.c.number).where(
            documents.c.settlement_run_id.in_(set(run_ids)),
            documents.c.document_type == DocumentType.INVOICE.value,
        )
    )
    return {row.settlement_run_id: row.number for row in rows}


async def next_number(session: AsyncSession, series: str) -> int:
    """The next number of `series`, locked to this transaction until it commits or rolls back."""
    statement = (
        pg_insert(number_series)
        .values(series=series, last_number=1)
        .on_conflict_do_update(index_elements=["series"], set_={"last_number": number_series.c.last_number + 1})
        .returning(number_series.c.last_number)
    )
    return (await session.execute(statement)).scalar_one()


async def add_document(session: AsyncSession, document: Document, pdf: bytes | None, pdf_sha256: str | None) -> None:
    period_start, period_end = document.service_period
    await session.execute(
        insert(documents).values(
            document_id=document.document_id,
            document_type=document.document_type.value,
            number=document.number,
            status=document.status.value,
            settlement_run_id=document.settlement_run_id,
            contract_id=document.contract_id,
            customer_id=document.customer_id,
            currency=document.currency,
            issue_date=document.issue_date,
            due_date=document.due_date,
            service_period_start=period_start,
            service_period_end=period_end,
            net_total=document.net_total.amount,
            tax_total=document.tax_total.amount,
            gross_total=document.gross_total.amount,
            seller=_party_json(document.seller),
            customer=_party_json(document.customer),
            payment_terms=document.payment_terms,
            notes=list(document.notes),
            corrects_number=document.corrects_number,
        )
    )
    await session.execute(
        insert(document_lines),
        [
            {
                "document_id": document.document_id,
                "line_no": line.line_no,
                "item_code": line.item_code,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "discount": line.discount.amount,
                "net": line.net.amount,
                "period_start": line.period_start,
                "period_end": line.period_end,
                "tax_category": line.tax_category.value,
                "vat_category": line.vat.category.value,
                "vat_rate": line.vat.rate,
                "credit_reason": line.credit_reason.value if line.credit_reason else None,
                "corrects_number": line.corrects_number,
            }
            for line in document.lines
        ],
    )
    await session.execute(
        insert(document_line_sources),
        [
            {"source_id": source_id, "document_id": document.document_id, "line_no": line.line_no}
            for line in document.lines
            for source_id in line.source_ids
        ],
    )
    await session.execute(
        insert(document_tax_lines),
        [
            {"document_id": document.document_id, "vat_category": line.vat.category.value,
             "vat_rate": line.vat.rate, "base": line.base.amount, "tax": line.tax.amount}
            for line in document.tax_lines
        ],
    )
    if pdf is not None:
        await session.execute(
            insert(document_pdfs).values(document_id=document.document_id, content=pdf, sha256=pdf_sha256)
        )


async def pdf_by_number(session: AsyncSession, number: str) -> bytes | None:
    """The stored PDF of the document numbered `number` (for the admin command or an API)."""
    return await session.scalar(
        select(document_pdfs.c.content)
        .join(documents, documents.c.document_id == document_pdfs.c.document_id)
        .where(documents.c.number == number)
    )
