"""Documents: what invoices and credit notes contain, and their lifecycle. Pure, no I/O.

A settlement run becomes up to two documents: an invoice over its settled items and a credit
note over its credit memo lines (each credit line names the invoice it corrects, when there is
one). Settled items are grouped into lines per contract item, period and unit price.

Lifecycle: a document is drafted (no number), then finalized, which gives it the next number of
its series (`R<year>-<seq>` for invoices, `G<year>-<seq>` for credit notes) in the transaction
that stores it. A finalized document never changes (the database refuses updates and deletes);
an invoice is corrected or voided only by a credit note that references it. Invoices are due
`payment_terms_days` after their issue date; a credit note is due on its issue date, as the
credit is the customer's at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Iterable, Mapping, Sequence

from shared.events import CreditReason, DocumentType, EInvoiceFormat, TaxCategory
from shared.money import Money
from shared.vat import TaxContext, TaxLine, Vat, tax_lines

SERIES_PREFIX = {DocumentType.INVOICE: "R", DocumentType.CREDIT_NOTE: "G"}


class DocumentStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"


@dataclass(frozen=True, slots=True)
class Party:
    """A seller or customer as printed on a document."""

    name: str
    country: str
    address_lines: tuple[str, ...] = ()
    vat_id: str | None = None
    email: str | None = None
    postal_code: str | None = None
    city: str | None = None
    # Where it receives e-invoices (BT-34 / BT-49), in an EAS scheme; none: its e-mail, scheme EM.
    electronic_address: str | None = None
    electronic_address_scheme: str = "EM"
    # Who answers questions about a document (BG-6 / BG-9), which XRechnung requires of the seller.
    contact_name: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Seller:
    party: Party
    iban: str
    bic: str
    # The SEPA creditor identifier (BT-90) direct debits are collected under.
    creditor_id: str | None = None


class PaymentMeansCode(StrEnum):
    """UNTDID 4461 codes (EN 16931 BT-81) of how a document is settled."""

    SEPA_CREDIT_TRANSFER = "58"
    SEPA_DIRECT_DEBIT = "59"
    # A credit note: offset against open invoices (or refunded), nothing to pay.
    CLEARING_BETWEEN_PARTNERS = "97"


@dataclass(frozen=True, slots=True)
class DirectDebit:
    """A customer's default payment account when it is a SEPA direct-debit mandate."""

    mandate_reference: str
    iban: str


@dataclass(frozen=True, slots=True)
class PaymentMeans:
    """How the document is settled (BG-16): to the seller's account, or collected from the customer's."""

    code: PaymentMeansCode
    payee_iban: str | None = None
    payee_bic: str | None = None
    direct_debit: DirectDebit | None = None
    creditor_id: str | None = None


def payment_means(document_type: DocumentType, seller: Seller, direct_debit: DirectDebit | None) -> PaymentMeans:
    if document_type is DocumentType.CREDIT_NOTE:
        return PaymentMeans(PaymentMeansCode.CLEARING_BETWEEN_PARTNERS)
    if direct_debit is not None:
        return PaymentMeans(PaymentMeansCode.SEPA_DIRECT_DEBIT, direct_debit=direct_debit,
                            creditor_id=seller.creditor_id)
    return PaymentMeans(PaymentMeansCode.SEPA_CREDIT_TRANSFER, payee_iban=seller.iban.replace(" ", ""),
                        payee_bic=seller.bic)


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """Who a contract bills and how its items are taxed: from the run itself (receivables.posted v2,
    `revision` 0), else from invoicing's replica of contracts.changed (runs posted before v2)."""

    contract_id: str
    revision: int
    customer_id: str
    customer: Party
    tax_categories: dict[str, TaxCategory]
    e_invoice_format: EInvoiceFormat = EInvoiceFormat.FACTUR_X
    buyer_reference: str | None = None
    # The customer's default account when it is an active SEPA mandate (payment-accounts.changed).
    direct_debit: DirectDebit | None = None


@dataclass(frozen=True, slots=True)
class SourceLine:
    """A settled item or a credit memo line, as it arrives from settlement."""

    source_id: uuid.UUID
    item_code: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    discount: Money
    net: Money
    period_start: date
    period_end: date
    credit_reason: CreditReason | None = None
    corrects_number: str | None = None
    # The line's own tax category as settlement passed it on; None: the contract item's.
    tax_category: TaxCategory | None = None


@dataclass(frozen=True, slots=True)
class DocumentLine:
    line_no: int
    item_code: str
    description: str
    period_start: date
    period_end: date
    quantity: Decimal
    unit_price: Decimal
    discount: Money
    net: Money
    tax_category: TaxCategory
    vat: Vat
    source_ids: tuple[uuid.UUID, ...]
    credit_reason: CreditReason | None = None
    corrects_number: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    document_id: uuid.UUID
    document_type: DocumentType
    settlement_run_id: uuid.UUID
    contract_id: str
    customer_id: str
    seller: Party
    customer: Party
    currency: str
    issue_date: date
    due_date: date
    payment_terms: str
    lines: tuple[DocumentLine, ...]
    tax_lines: tuple[TaxLine, ...]
    notes: tuple[str, ...]
    corrects_number: str | None = None
    status: DocumentStatus = DocumentStatus.DRAFT
    number: str | None = None
    payment_means: PaymentMeans = PaymentMeans(PaymentMeansCode.CLEARING_BETWEEN_PARTNERS)
    e_invoice_format: EInvoiceFormat = EInvoiceFormat.FACTUR_X
    buyer_reference: str | None = None
    # The sums of the tax lines, once per document: its row, its event and its PDF each read them.
    net_total: Money = field(init=False)
    tax_total: Money = field(init=False)
    gross_total: Money = field(init=False)

    def __post_init__(self) -> None:
        net = Money.sum((line.base for line in self.tax_lines), self.currency)
        tax = Money.sum((line.tax for line in self.tax_lines), self.currency)
        object.__setattr__(self, "net_total", net)
        object.__setattr__(self, "tax_total", tax)
        object.__setattr__(self, "gross_total", net + tax)

    @property
    def series(self) -> str:
        return series_of(self.document_type, self.issue_date)

    @property
    def service_period(self) -> tuple[date, date]:
        return min(line.period_start for line in self.lines), max(line.period_end for line in self.lines)

    def finalize(self, sequence: int) -> Document:
        """Give the draft its number; only a finalized document ever has one."""
        if self.status is not DocumentStatus.DRAFT:
            raise ValueError(f"document {self.document_id} is already {self.status}")
        return replace(self, status=DocumentStatus.FINALIZED, number=f"{self.series}-{sequence:04d}")


def series_of(document_type: DocumentType, issue_date: date) -> str:
    """Numbers run per document type and year: R2026-0001, R2026-0002, ... G2026-0001."""
    return f"{SERIES_PREFIX[document_type]}{issue_date.year}"


class Numbering:
    """Finalizes drafts with the next numbers of their series, counting on from the last numbers
    issued (`last`, per series). Gapless as long as every document it finalizes is stored in the
    transaction that holds the series and then records `last` as the series' new last numbers."""

    def __init__(self, last: Mapping[str, int]) -> None:
        self.last = dict(last)

    def finalize(self, draft: Document) -> Document:
        document = draft.finalize(self.last[draft.series] + 1)
        self.last[draft.series] += 1
        return document


def group_lines(
    sources: Iterable[SourceLine], tax_categories: dict[str, TaxCategory], context: TaxContext
) -> tuple[DocumentLine, ...]:
    """One line per item, period, unit price and tax category (and, on credit notes, reason and corrected
    invoice); a line without a category of its own takes its contract item's from `tax_categories`.

    Quantities, discounts and nets are summed exactly: the nets were rounded once per item where
    they were rated, so a line's net is the sum of what was settled, not a re-rounded product.
    """
    groups: dict[tuple, list[SourceLine]] = {}
    for source in sources:
        key = (source.period_start, source.period_end, source.item_code, source.description, source.unit_price,
               source.credit_reason or "", source.corrects_number or "",
               source.tax_category or tax_categories[source.item_code])
        groups.setdefault(key, []).append(source)
    lines = []
    for line_no, key in enumerate(sorted(groups), start=1):
        members = groups[key]
        first = members[0]
        currency = first.net.currency
        category = key[-1]
        lines.append(DocumentLine(
            line_no=line_no,
            item_code=first.item_code,
            description=first.description,
            period_start=first.period_start,
            period_end=first.period_end,
            quantity=sum((member.quantity for member in members), Decimal(0)),
            unit_price=first.unit_price,
            discount=Money.sum((member.discount for member in members), currency),
            net=Money.sum((member.net for member in members), currency),
            tax_category=category,
            vat=context.vat_for(category),
            source_ids=tuple(member.source_id for member in members),
            credit_reason=first.credit_reason,
            corrects_number=first.corrects_number,
        ))
    return tuple(lines)


def payment_terms(document_type: DocumentType, seller: Seller, means: PaymentMeans, issue_date: date,
                  due_date: date) -> str:
    if document_type is DocumentType.CREDIT_NOTE:
        return "The credited amount is offset against open invoices or refunded."
    if means.direct_debit is not None:
        return (f"Collected by SEPA direct debit on {due_date.isoformat()} from IBAN ending "
                f"{means.direct_debit.iban[-4:]}, mandate {means.direct_debit.mandate_reference}, "
                f"creditor identifier {means.creditor_id}.")
    days = (due_date - issue_date).days
    return (f"Payable without deduction within {days} days, by {due_date.isoformat()}, "
            f"to IBAN {seller.iban}, BIC {seller.bic}, quoting the invoice number.")


def draft_document(
    *,
    document_id: uuid.UUID,
    document_type: DocumentType,
    settlement_run_id: uuid.UUID,
    terms: ContractTerms,
    seller: Seller,
    currency: str,
    sources: Sequence[SourceLine],
    issue_date: date,
    payment_terms_days: int,
) -> Document:
    """A draft invoice or credit note over `sources`, with its VAT breakdown and legal notes."""
    if not sources:
        raise ValueError("a document needs at least one line")
    context = TaxContext(seller.party.country, terms.customer.country, terms.customer.vat_id)
    lines = group_lines(sources, terms.tax_categories, context)
    due_date = issue_date + timedelta(days=payment_terms_days if document_type is DocumentType.INVOICE else 0)
    corrected = {line.corrects_number for line in lines}
    means = payment_means(document_type, seller, terms.direct_debit)
    return Document(
        document_id=document_id,
        document_type=document_type,
        settlement_run_id=settlement_run_id,
        contract_id=terms.contract_id,
        customer_id=terms.customer_id,
        seller=seller.party,
        customer=terms.customer,
        currency=currency,
        issue_date=issue_date,
        due_date=due_date,
        payment_terms=payment_terms(document_type, seller, means, issue_date, due_date),
        lines=lines,
        tax_lines=tax_lines(((line.vat, line.net) for line in lines), currency),
        notes=context.notes(line.vat.category for line in lines),
        # A credit note corrects one invoice as a whole when all its lines do; otherwise each line says.
        corrects_number=corrected.pop() if len(corrected) == 1 else None,
        payment_means=means,
        e_invoice_format=terms.e_invoice_format,
        buyer_reference=terms.buyer_reference,
    )
