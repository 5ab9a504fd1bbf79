"""Invoicing's use cases, each inside the consumer's transaction."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.invoicing import domain, store
from services.invoicing.rendering import Rendered, RenderPool
from services.invoicing.settings import InvoicingSettings
from shared import topics
from shared.errors import DependencyNotReady, Rejected
from shared.events import (
    ContractChanged,
    CreditItem,
    CustomerProfile,
    DocumentCreated,
    DocumentType,
    EInvoiceFormat,
    EInvoicing,
    PaymentAccountsChanged,
    ReceivablesPosted,
    SettlementItem,
    TaxLine,
    derive_id,
)
from shared.inbox import BatchOutcome
from shared.outbox import Outgoing
from shared.money import Money
from shared.periods import business_day
from shared.settings import business_time_zone

log = logging.getLogger("billing.invoicing")
settings = InvoicingSettings()
seller = settings.seller()
render_pool = RenderPool(settings.render_processes)
TIME_ZONE = business_time_zone()


async def keep_contract_terms(session: AsyncSession, events: Sequence[ContractChanged]) -> BatchOutcome:
    """Keep each contract's newest snapshot."""
    newest: dict[str, ContractChanged] = {}
    for event in events:
        if event.contract_id not in newest or event.revision > newest[event.contract_id].revision:
            newest[event.contract_id] = event
    kept = await store.save_contract_terms(session, [_terms(event) for event in newest.values()])
    if kept < len(events):
        log.info("%d contract snapshot(s) not newer than the ones held; ignored", len(events) - kept)
    return BatchOutcome()


def _terms(event: ContractChanged) -> domain.ContractTerms:
    return domain.ContractTerms(
        contract_id=event.contract_id,
        revision=event.revision,
        customer_id=event.customer.customer_id,
        customer=_party(event.customer),
        tax_categories={item.item_code: item.tax_category for item in event.items},
    )


async def keep_payment_accounts(session: AsyncSession, events: Sequence[PaymentAccountsChanged]) -> BatchOutcome:
    """Keep each customer's newest default payment account, for the payment means of its invoices."""
    newest: dict[str, PaymentAccountsChanged] = {}
    for event in events:
        if event.customer_id not in newest or event.occurred_at >= newest[event.customer_id].occurred_at:
            newest[event.customer_id] = event
    await store.save_payment_accounts(session, list(newest.values()))
    return BatchOutcome()


async def create_documents(session: AsyncSession, events: Sequence[ReceivablesPosted]) -> BatchOutcome:
    """An invoice for each run's items and a credit note for its credits, each numbered as it is finalized.

    Each run's documents are drafted and their e-invoices validated first, before any number is
    taken: a run whose document fails validation is parked with the report, and issues nothing
    (its number goes to the next document). The series rows stay locked from lock_series until
    commit (in series order, so workers never deadlock); the batch's documents are numbered in its
    order, each number going to a document stored in this transaction, and the series' last
    numbers are recorded with them. Validating and rendering run in the render processes, before
    the series are locked (see below).
    """
    # Only the runs that do not carry all they need read the replica: in a billing run over
    # 100,000 contracts, reading (and decoding) every run's replica was a twentieth of the worker.
    replicas = await store.find_contract_terms(session, {event.contract_id for event in events
                                                         if _needs_replica(event)})
    terms: dict[uuid.UUID, domain.ContractTerms] = {}
    parked: dict[uuid.UUID, DependencyNotReady] = {}
    for event in events:
        try:
            terms[event.event_id] = _terms_of_run(event, replicas.get(event.contract_id))
        except DependencyNotReady as waiting:
            parked[event.event_id] = waiting
    events = [event for event in events if event.event_id in terms]
    # The invoices that credits correct: issued before, or earlier in this batch.
    corrected = await store.invoice_numbers_of_runs(
        session, (credit.credited_settlement_run_id for event in events for credit in event.credits
                  if credit.credited_settlement_run_id))
    # Dated the day they are issued, in the seller's time zone, whenever the run was asked for or replayed.
    issued_on = business_day(datetime.now(UTC), TIME_ZONE)
    # Invoices of customers who pay by SEPA direct debit are collected; the others are paid by transfer.
    mandates = await store.direct_debits(session, {each.customer_id for each in terms.values()})
    terms = {event_id: replace(each, direct_debit=mandates.get(each.customer_id)) for event_id, each in terms.items()}
    rejected: dict[uuid.UUID, Rejected] = {}
    drafts: dict[uuid.UUID, list[domain.Document]] = {}
    for event in events:
        try:
            drafts[event.event_id] = _drafts(event, terms[event.event_id], corrected, issued_on)
        except Rejected as refusal:
            rejected[event.event_id] = refusal
    validations: dict[tuple[uuid.UUID, EInvoiceFormat], str] = {}
    if settings.render_pdfs and settings.e_invoices:
        invalid, validations = await _validate(drafts)
        parked.update(invalid)
    events = [event for event in events if event.event_id in drafts and event.event_id not in parked]
    series = {draft.series for event in events for draft in drafts[event.event_id]}
    # Rendered before the series are locked, so other workers do not wait for it, with the numbers
    # the documents will get unless another worker issues in the same series meanwhile: then what
    # was rendered is put aside and rendered again, under the lock, with the numbers they do get.
    # Without rendering there is nothing to do before the lock.
    expected = await store.last_numbers(session, series) if settings.render_pdfs else None
    if expected is not None:
        finalized, last = _finalize(events, terms, drafts, dict(corrected), issued_on, expected)
        files = await _render(finalized)
    if (locked := await store.lock_series(session, series)) != expected:
        if expected is not None:
            log.info("another worker issued in %s while %d document(s) were rendered; rendering them again",
                     ", ".join(sorted(series)), len(finalized))
        finalized, last = _finalize(events, terms, drafts, dict(corrected), issued_on, locked)
        files = await _render(finalized)
    issued = [store.Issued(document, rendered.pdf, rendered.pdf_sha256, tuple(
                  store.EInvoice(xml.format, xml.content, xml.sha256, validations[document.document_id, xml.format])
                  for xml in rendered.xmls)) if rendered else store.Issued(document, None, None)
              for (document, _), rendered in zip(finalized, files, strict=True)]
    await store.add_documents(session, issued)
    await store.advance_series(session, last)
    return BatchOutcome([Outgoing(topics.DOCUMENTS_CREATED, _created(one, event))
                         for one, (_, event) in zip(issued, finalized, strict=True)], rejected, parked)


def _finalize(events: Sequence[ReceivablesPosted], terms: dict[uuid.UUID, domain.ContractTerms],
              drafts: dict[uuid.UUID, list[domain.Document]], corrected: dict[uuid.UUID, str], issued_on: date,
              last: Mapping[str, int]) -> tuple[list[tuple[domain.Document, ReceivablesPosted]], dict[str, int]]:
    """The runs' documents numbered in batch order after `last`, and the series' new last numbers.
    Credit notes are drafted again here: one names the invoice it corrects, which may be one
    numbered earlier in this batch (`corrected` gains each invoice's number)."""
    numbering = domain.Numbering(last)
    finalized = []
    for event in events:
        for draft in drafts[event.event_id]:
            if draft.document_type is DocumentType.CREDIT_NOTE:
                draft = _credit_note(event, terms[event.event_id], corrected, issued_on)
            document = numbering.finalize(draft)
            if document.document_type is DocumentType.INVOICE:
                corrected[document.settlement_run_id] = document.number
            finalized.append((document, event))
    return finalized, numbering.last


async def _render(finalized: Sequence[tuple[domain.Document, ReceivablesPosted]]) -> list[Rendered | None]:
    if not settings.render_pdfs:
        return [None] * len(finalized)
    return await render_pool.render([document for document, _ in finalized], settings.e_invoices)


def _drafts(event: ReceivablesPosted, terms: domain.ContractTerms, corrected: dict[uuid.UUID, str],
            issued_on: date) -> list[domain.Document]:
    """The run's invoice and credit note, invoice first, as drafts."""
    return [*([_invoice(event, terms, issued_on)] if event.items else []),
            *([_credit_note(event, terms, corrected, issued_on)] if event.credits else [])]


async def _validate(drafts: dict[uuid.UUID, list[domain.Document]]
                    ) -> tuple[dict[uuid.UUID, DependencyNotReady], dict[tuple[uuid.UUID, EInvoiceFormat], str]]:
    """Each draft's e-invoices validated: the runs (by event id) with a document that fails, parked
    with the report, and each e-invoice's report summary (by document id and format) to store with
    what is issued."""
    documents = [draft for run in drafts.values() for draft in run]
    reports = dict(zip((draft.document_id for draft in documents), await render_pool.check(documents), strict=True))
    parked = {}
    for event_id, run in drafts.items():
        failures = [f"{draft.document_type.value} as {format_}: {report.summary}" for draft in run
                    for format_, report in reports[draft.document_id].items() if not report.passed]
        if failures:
            log.warning("settlement run %s not issued, its e-invoice fails validation: %s",
                        run[0].settlement_run_id, " | ".join(failures))
            parked[event_id] = DependencyNotReady(
                f"settlement run {run[0].settlement_run_id} is not issued, its e-invoice fails validation (fix the "
                f"seller settings or the customer; it is issued when re-driven): {' | '.join(failures)}"[:2000])
    return parked, {(document_id, format_): report.summary
                    for document_id, by_format in reports.items() for format_, report in by_format.items()}


def _uncategorized(event: ReceivablesPosted) -> set[str]:
    """The item codes of the run's lines without a tax category (items rated under items.rated v1)."""
    return {line.item_code for line in (*event.items, *event.credits) if line.tax_category is None}


def _needs_replica(event: ReceivablesPosted) -> bool:
    """Whether the run lacks its customer (receivables.posted v1) or a line's tax category."""
    return event.customer is None or bool(_uncategorized(event))


def _terms_of_run(event: ReceivablesPosted, replica: domain.ContractTerms | None) -> domain.ContractTerms:
    """Who the run bills and how its lines are taxed: what the run carries (receivables.posted v2),
    and for what it does not (v1 runs, items rated before items.rated v2) the contract replica's.

    A run that needs the replica before it holds what the run needs is parked until it does."""
    if not _needs_replica(event):
        assert event.customer is not None
        return _with_customer(domain.ContractTerms(event.contract_id, 0, event.customer_id, _party(event.customer), {}),
                              event.customer)
    uncategorized = _uncategorized(event)
    if replica is None:
        raise DependencyNotReady(f"run {event.settlement_run_id} needs the contracts.changed snapshot of "
                                 f"{event.contract_id}, which has not arrived")
    missing = sorted(uncategorized - replica.tax_categories.keys())
    if missing:
        raise DependencyNotReady(f"contract {event.contract_id} revision {replica.revision} has no item "
                                 f"{', '.join(missing)} yet")
    if event.customer is None:
        return replica
    return _with_customer(replace(replica, customer_id=event.customer_id), event.customer)


def _with_customer(terms: domain.ContractTerms, customer: CustomerProfile) -> domain.ContractTerms:
    e_invoicing = customer.e_invoicing or EInvoicing()
    return replace(terms, customer=_party(customer), e_invoice_format=e_invoicing.format,
                   buyer_reference=e_invoicing.buyer_reference)


def _party(customer: CustomerProfile) -> domain.Party:
    address = customer.e_invoicing.electronic_address if customer.e_invoicing else None
    return domain.Party(name=customer.name, country=customer.country, address_lines=tuple(customer.address_lines),
                        vat_id=customer.vat_id, email=customer.email, postal_code=customer.postal_code,
                        city=customer.city, electronic_address=address.address if address else None,
                        electronic_address_scheme=address.scheme if address else "EM")


def _invoice(event: ReceivablesPosted, terms: domain.ContractTerms, issued_on: date) -> domain.Document:
    return _draft(event, terms, DocumentType.INVOICE, [_from_item(item, event.currency) for item in event.items],
                  issued_on)


def _credit_note(event: ReceivablesPosted, terms: domain.ContractTerms,
                 corrected: dict[uuid.UUID, str], issued_on: date) -> domain.Document:
    return _draft(event, terms, DocumentType.CREDIT_NOTE,
                  [_from_credit(credit, event.currency, corrected) for credit in event.credits], issued_on)


def _draft(event: ReceivablesPosted, terms: domain.ContractTerms, document_type: DocumentType,
           sources: list[domain.SourceLine], issued_on: date) -> domain.Document:
    return domain.draft_document(
        document_id=derive_id(event.settlement_run_id, document_type.value),
        document_type=document_type,
        settlement_run_id=event.settlement_run_id,
        terms=terms,
        seller=seller,
        currency=event.currency,
        sources=sources,
        issue_date=issued_on,
        payment_terms_days=settings.payment_terms_days,
    )


def _from_item(item: SettlementItem, currency: str) -> domain.SourceLine:
    return domain.SourceLine(
        source_id=item.source_id,
        item_code=item.item_code,
        description=item.description,
        quantity=item.quantity,
        unit_price=item.unit_price,
        discount=Money.of(item.discount, currency),
        net=Money.of(item.net, currency),
        period_start=item.period_start,
        period_end=item.period_end,
        tax_category=item.tax_category,
    )


def _from_credit(credit: CreditItem, currency: str, corrected: dict[uuid.UUID, str]) -> domain.SourceLine:
    corrects = corrected.get(credit.credited_settlement_run_id)
    if credit.credited_settlement_run_id and corrects is None:
        log.warning("credit %s names settlement run %s, which has no invoice; the credit note line stands alone",
                    credit.credit_id, credit.credited_settlement_run_id)
    return domain.SourceLine(
        source_id=credit.credit_id,
        item_code=credit.item_code,
        description=credit.description,
        quantity=credit.quantity,
        unit_price=credit.unit_price,
        discount=Money.zero(currency),
        net=Money.of(credit.net, currency),
        period_start=credit.period_start,
        period_end=credit.period_end,
        credit_reason=credit.reason,
        corrects_number=corrects,
        tax_category=credit.tax_category,
    )


def _created(issued: store.Issued, event: ReceivablesPosted) -> DocumentCreated:
    document, pdf_sha256 = issued.document, issued.pdf_sha256
    return DocumentCreated(
        event_id=derive_id(document.document_id, "documents.created"),
        occurred_at=event.occurred_at,
        contract_id=document.contract_id,
        document_id=document.document_id,
        document_type=document.document_type,
        number=document.number,
        settlement_run_id=document.settlement_run_id,
        customer_id=document.customer_id,
        currency=document.currency,
        issue_date=document.issue_date,
        due_date=document.due_date,
        net_total=document.net_total.amount,
        tax_total=document.tax_total.amount,
        gross_total=document.gross_total.amount,
        corrects_number=document.corrects_number,
        tax_lines=[TaxLine(category=line.vat.category.value, rate=line.vat.rate, base=line.base.amount,
                           tax=line.tax.amount) for line in document.tax_lines],
        pdf_path=f"documents/{document.number}.pdf" if pdf_sha256 else None,
        pdf_sha256=pdf_sha256,
    )
