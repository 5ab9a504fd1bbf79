"""What the portal reads from invoicing's database: documents with their lines and tax, and their stored PDFs."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from sqlalchemy import Date, DateTime, Integer, LargeBinary, Numeric, String, Uuid, column, exists, select, table
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.portal.listing import Page, PageRequest, Period, Sort, fetch_page

documents = table(
    "documents",
    column("document_id", Uuid), column("document_type", String), column("number", String),
    column("status", String), column("settlement_run_id", Uuid), column("contract_id", String),
    column("customer_id", String), column("currency", String), column("issue_date", Date),
    column("due_date", Date), column("service_period_start", Date), column("service_period_end", Date),
    column("net_total", Numeric), column("tax_total", Numeric), column("gross_total", Numeric),
    column("corrects_number", String), column("finalized_at", DateTime(timezone=True)),
    column("payment_terms", String),
)
document_lines = table(
    "document_lines",
    column("document_id", Uuid), column("line_no", Integer), column("item_code", String),
    column("description", String), column("quantity", Numeric), column("unit_price", Numeric),
    column("discount", Numeric), column("net", Numeric), column("period_start", Date), column("period_end", Date),
    column("vat_category", String), column("vat_rate", Numeric), column("credit_reason", String),
)
document_tax_lines = table(
    "document_tax_lines",
    column("document_id", Uuid), column("vat_category", String), column("vat_rate", Numeric),
    column("base", Numeric), column("tax", Numeric),
)
document_pdfs = table("document_pdfs", column("document_id", Uuid), column("content", LargeBinary))
document_einvoices = table("document_einvoices", column("document_id", Uuid), column("format", String),
                           column("content", LargeBinary))
# A document's files as invoicing stored them when it was issued.
FILES = {"pdf": document_pdfs, "xml": document_einvoices}

DOCUMENT_SORTS = {"issue_date": documents.c.issue_date, "number": documents.c.number,
                  "due_date": documents.c.due_date, "gross_total": documents.c.gross_total}


def _has_einvoice() -> Any:
    return exists().where(document_einvoices.c.document_id == documents.c.document_id).label("has_einvoice")


async def documents_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                         period: Period | None, document_type: str | None, status: str | None, sort: Sort,
                         page: PageRequest) -> Page[Row[Any]]:
    docs = documents.c
    query = select(documents, _has_einvoice()).where(docs.customer_id == customer_id)
    if contract_id:
        query = query.where(docs.contract_id == contract_id)
    if period:
        query = query.where(period.where(docs.issue_date))
    if document_type:
        query = query.where(docs.document_type == document_type)
    if status:
        query = query.where(docs.status == status)
    return await fetch_page(connection, query, sort=sort, sortable=DOCUMENT_SORTS,
                            tiebreak=[docs.number.desc()], page=page)


async def documents_of_runs(connection: AsyncConnection,
                            run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row[Any]]]:
    """The documents each settlement run produced (an invoice, a credit note): number, type, issue date."""
    found: dict[uuid.UUID, list[Row[Any]]] = {}
    if not run_ids:
        return found
    docs = documents.c
    rows = await connection.execute(select(docs.settlement_run_id, docs.number, docs.document_type, docs.issue_date)
                                    .where(docs.settlement_run_id.in_(run_ids)).order_by(docs.number))
    for row in rows:
        found.setdefault(row.settlement_run_id, []).append(row)
    return found


async def document_file(connection: AsyncConnection, customer_id: str, number: str, kind: str) -> bytes | None:
    """The file (`pdf` or `xml`, the e-invoice) stored when document `number` was issued, if it is the
    customer's. Its e-invoice is the XRechnung XML for a customer who receives XRechnung, else the
    Factur-X XML (the one the PDF carries)."""
    files = FILES[kind]
    query = (select(files.c.content)
             .join_from(files, documents, files.c.document_id == documents.c.document_id)
             .where(documents.c.customer_id == customer_id, documents.c.number == number))
    if kind == "xml":
        query = query.order_by((document_einvoices.c.format == "factur-x").asc()).limit(1)
    return await connection.scalar(query)


async def numbers_of_runs(connection: AsyncConnection, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    return {run_id: [row.number for row in rows]
            for run_id, rows in (await documents_of_runs(connection, run_ids)).items()}


async def document(connection: AsyncConnection, customer_id: str, number: str) -> Row[Any] | None:
    return (await connection.execute(select(documents, _has_einvoice()).where(
        documents.c.customer_id == customer_id, documents.c.number == number))).first()


async def lines_of(connection: AsyncConnection, document_id: uuid.UUID) -> list[Row[Any]]:
    return list((await connection.execute(select(document_lines).where(document_lines.c.document_id == document_id)
                                          .order_by(document_lines.c.line_no))).all())


async def tax_lines_of(connection: AsyncConnection, document_id: uuid.UUID) -> list[Row[Any]]:
    taxes = document_tax_lines.c
    return list((await connection.execute(select(document_tax_lines).where(taxes.document_id == document_id)
                                          .order_by(taxes.vat_category, taxes.vat_rate))).all())


async def corrections_of(connection: AsyncConnection, number: str) -> list[Row[Any]]:
    """The credit notes that correct document `number`."""
    docs = documents.c
    return list((await connection.execute(select(docs.number, docs.document_type, docs.issue_date)
                                          .where(docs.corrects_number == number).order_by(docs.number))).all())

