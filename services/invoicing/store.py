"""Invoicing's repository: contract replicas, number series, documents and their PDFs."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.invoicing.domain import ContractTerms, DirectDebit, Document, Party
from services.invoicing.tables import (
    contract_terms,
    customer_payment_accounts,
    document_einvoices,
    document_line_sources,
    document_lines,
    document_pdfs,
    document_tax_lines,
    documents,
    number_series,
)
from shared.db import among, insert_rows
from shared.events import DocumentType, EInvoiceFormat, PaymentAccountsChanged, TaxCategory


def _party_json(party: Party) -> dict[str, Any]:
    # Field by field: a party holds only strings, so asdict's deep copy of each is wasted, once per
    # document and snapshot.
    return {**{field.name: getattr(party, field.name) for field in dataclasses.fields(party)},
            "address_lines": list(party.address_lines)}


def _party(data: dict[str, Any]) -> Party:
    """A party as stored; parties stored before it had postal code, city or contact take the defaults."""
    return Party(**{**data, "address_lines": tuple(data["address_lines"])})


async def save_contract_terms(session: AsyncSession, snapshots: Sequence[ContractTerms]) -> int:
    """Keep the snapshots (one per contract) unless a newer revision is already held; returns how many were kept."""
    if not snapshots:
        return 0
    statement = pg_insert(contract_terms)
    statement = statement.on_conflict_do_update(
        index_elements=[contract_terms.c.contract_id],
        set_={**{name: statement.excluded[name] for name in ("revision", "customer_id", "customer", "tax_categories")},
              "updated_at": func.now()},
        where=contract_terms.c.revision < statement.excluded.revision,
    ).returning(contract_terms.c.contract_id)
    kept = await session.execute(statement, [
        {
            "contract_id": terms.contract_id,
            "revision": terms.revision,
            "customer_id": terms.customer_id,
            "customer": _party_json(terms.customer),
            "tax_categories": {code: category.value for code, category in terms.tax_categories.items()},
        }
        for terms in snapshots
    ])
    return len(kept.all())


async def find_contract_terms(session: AsyncSession, contract_ids: Iterable[str]) -> dict[str, ContractTerms]:
    contract_ids = set(contract_ids)
    if not contract_ids:
        return {}
    rows = await session.execute(select(contract_terms).where(among(contract_terms.c.contract_id, contract_ids)))
    return {
        row.contract_id: ContractTerms(
            contract_id=row.contract_id,
            revision=row.revision,
            customer_id=row.customer_id,
            customer=_party(row.customer),
            tax_categories={code: TaxCategory(category) for code, category in row.tax_categories.items()},
        )
        for row in rows
    }


async def save_payment_accounts(session: AsyncSession, changes: Sequence[PaymentAccountsChanged]) -> None:
    """Keep each customer's newest default account (one change per customer), unless a newer one is held."""
    if not changes:
        return
    statement = pg_insert(customer_payment_accounts)
    statement = statement.on_conflict_do_update(
        index_elements=[customer_payment_accounts.c.customer_id],
        set_={name: statement.excluded[name] for name in ("changed_at", "mandate_reference", "iban")},
        where=customer_payment_accounts.c.changed_at <= statement.excluded.changed_at,
    )
    await session.execute(statement, [
        {"customer_id": change.customer_id, "changed_at": change.occurred_at,
         **({"mandate_reference": account.mandate_reference, "iban": account.iban}
            if (account := change.default_account) is not None and account.mandate_active
            else {"mandate_reference": None, "iban": None})}
        for change in changes
    ])


async def direct_debits(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, DirectDebit]:
    """The customers whose default account is an active SEPA mandate, with it."""
    rows = await session.execute(select(customer_payment_accounts).where(
        among(customer_payment_accounts.c.customer_id, customer_ids),
        customer_payment_accounts.c.mandate_reference.is_not(None)))
    return {row.customer_id: DirectDebit(row.mandate_reference, row.iban) for row in rows}


async def invoice_numbers_of_runs(session: AsyncSession, run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    run_ids = set(run_ids)
    if not run_ids:
        return {}
    rows = await session.execute(
        select(documents.c.settlement_run_id, documents.c.number).where(
            documents.c.settlement_run_id.in_(run_ids),
            documents.c.document_type == DocumentType.INVOICE.value,
        )
    )
    return {row.settlement_run_id: row.number for row in rows}


async def last_numbers(session: AsyncSession, series: Iterable[str]) -> dict[str, int]:
    """The last number issued in each series (0 for a new one), as it stands, without locking it."""
    names = set(series)
    rows = await session.execute(select(number_series.c.series, number_series.c.last_number)
                                 .where(number_series.c.series.in_(names)))
    return {name: 0 for name in names} | dict(rows.all())


async def lock_series(session: AsyncSession, series: Iterable[str]) -> dict[str, int]:
    """The last number issued in each series (0 for a new one), its row locked until the transaction
    commits or rolls back. Locked in series order, so concurrent workers never deadlock."""
    names = sorted(set(series))
    if not names:
        return {}
    await session.execute(pg_insert(number_series).on_conflict_do_nothing(),
                          [{"series": name, "last_number": 0} for name in names])
    rows = await session.execute(
        select(number_series.c.series, number_series.c.last_number)
        .where(number_series.c.series.in_(names)).order_by(number_series.c.series).with_for_update()
    )
    return dict(rows.all())


_advance_series = (
    update(number_series)
    .where(number_series.c.series == bindparam("name"))
    .values(last_number=bindparam("last"))
)


async def advance_series(session: AsyncSession, last_numbers: Mapping[str, int]) -> None:
    """Record the last numbers issued in series this transaction holds (`lock_series`)."""
    if last_numbers:
        await session.execute(_advance_series, [{"name": name, "last": last} for name, last in last_numbers.items()])


@dataclass(frozen=True, slots=True)
class EInvoice:
    """One of a document's EN 16931 XMLs as issued, and what its validation said."""

    format: EInvoiceFormat
    content: bytes
    sha256: str
    validation: str


@dataclass(frozen=True, slots=True)
class Issued:
    """A finalized document with its PDF and e-invoices, if they were rendered."""

    document: Document
    pdf: bytes | None
    pdf_sha256: str | None
    einvoices: tuple[EInvoice, ...] = ()


DOCUMENT_COLUMNS = ("document_id", "document_type", "number", "status", "settlement_run_id", "contract_id",
                    "customer_id", "currency", "issue_date", "due_date", "service_period_start", "service_period_end",
                    "net_total", "tax_total", "gross_total", "seller", "customer", "payment_terms", "notes",
                    "corrects_number")
LINE_COLUMNS = ("document_id", "line_no", "item_code", "description", "quantity", "unit_price", "discount", "net",
                "period_start", "period_end", "tax_category", "vat_category", "vat_rate", "credit_reason",
                "corrects_number")


async def add_documents(session: AsyncSession, issued: Sequence[Issued]) -> None:
    """Store the documents with their lines, line sources, tax lines, PDFs and e-invoices, each
    table in one statement (`insert_rows`): a batch issues hundreds of documents, each a row in four
    tables or more."""
    if not issued:
        return
    await insert_rows(session, documents, DOCUMENT_COLUMNS, [_document_row(one.document) for one in issued])
    await insert_rows(session, document_lines, LINE_COLUMNS, [
        (one.document.document_id, line.line_no, line.item_code, line.description, line.quantity, line.unit_price,
         line.discount.amount, line.net.amount, line.period_start, line.period_end, line.tax_category.value,
         line.vat.category.value, line.vat.rate, line.credit_reason.value if line.credit_reason else None,
         line.corrects_number)
        for one in issued for line in one.document.lines])
    await insert_rows(session, document_line_sources, ("source_id", "document_id", "line_no"), [
        (source_id, one.document.document_id, line.line_no)
        for one in issued for line in one.document.lines for source_id in line.source_ids])
    await insert_rows(session, document_tax_lines, ("document_id", "vat_category", "vat_rate", "base", "tax"), [
        (one.document.document_id, line.vat.category.value, line.vat.rate, line.base.amount, line.tax.amount)
        for one in issued for line in one.document.tax_lines])
    pdfs = [(one.document.document_id, one.pdf, one.pdf_sha256) for one in issued if one.pdf is not None]
    if pdfs:
        await insert_rows(session, document_pdfs, ("document_id", "content", "sha256"), pdfs)
    einvoices = [(one.document.document_id, xml.format.value, xml.content, xml.sha256, xml.validation)
                 for one in issued for xml in one.einvoices]
    if einvoices:
        await insert_rows(session, document_einvoices, ("document_id", "format", "content", "sha256", "validation"),
                          einvoices)


def _document_row(document: Document) -> tuple:
    """The document as a row of DOCUMENT_COLUMNS; its JSON columns as JSON text, which is what
    COPY and the arrays of an INSERT take for jsonb."""
    period_start, period_end = document.service_period
    return (document.document_id, document.document_type.value, document.number, document.status.value,
            document.settlement_run_id, document.contract_id, document.customer_id, document.currency,
            document.issue_date, document.due_date, period_start, period_end, document.net_total.amount,
            document.tax_total.amount, document.gross_total.amount, json.dumps(_party_json(document.seller)),
            json.dumps(_party_json(document.customer)), document.payment_terms, json.dumps(list(document.notes)),
            document.corrects_number)


async def pdf_by_number(session: AsyncSession, number: str) -> bytes | None:
    """The stored PDF of the document numbered `number` (for the admin command or an API)."""
    return await session.scalar(
        select(document_pdfs.c.content)
        .join(documents, documents.c.document_id == document_pdfs.c.document_id)
        .where(documents.c.number == number)
    )


async def einvoice_by_number(session: AsyncSession, number: str) -> bytes | None:
    """The stored e-invoice of the document numbered `number`, as it was issued: the XRechnung XML
    for a customer who receives XRechnung, else the Factur-X XML (the one in the PDF)."""
    return await session.scalar(
        select(document_einvoices.c.content)
        .join(documents, documents.c.document_id == document_einvoices.c.document_id)
        .where(documents.c.number == number)
        .order_by((document_einvoices.c.format == EInvoiceFormat.FACTUR_X.value).asc()).limit(1)
    )
