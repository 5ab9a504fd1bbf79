"""The PDF of a finalized document, made with reportlab. Pure: the same document gives the same bytes.

`invariant=1` keeps reportlab from stamping the creation time and a random file id into the PDF,
so re-rendering a document reproduces its stored bytes and their sha256. Text is set in the
standard Helvetica, which every PDF reader has and text extraction reads back; it covers Latin-1
(and the euro sign), which is what the documents' names and addresses use.
"""

from __future__ import annotations

import io
from decimal import Decimal
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from services.invoicing.domain import Document, DocumentStatus, Party
from shared.events import DocumentType
from shared.money import exponent

TITLES = {DocumentType.INVOICE: "Invoice", DocumentType.CREDIT_NOTE: "Credit note"}
VAT_LABELS = {"S": "standard rate", "Z": "zero rated", "E": "exempt", "AE": "reverse charge",
              "G": "export outside the EU"}
REASONS = {"credit": "credit", "order_cancelled": "order cancelled", "termination": "termination credit",
           "adjustment": "adjustment: the period came to less than was invoiced"}

_styles = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_styles["Normal"], fontName="Helvetica", fontSize=9, leading=11.5)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444"))
TITLE = ParagraphStyle("title", parent=BODY, fontName="Helvetica-Bold", fontSize=18, leading=22)

GRID = TableStyle([
    ("FONTNAME", (0, 0), (-1, -1), "Helvetica"),
    ("FONTSIZE", (0, 0), (-1, -1), 8.5),
    ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
    ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
    ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
])


def plain(number: Decimal) -> str:
    """12000, not 1.2E+4; 0.0125 as it is."""
    return f"{number.normalize():f}"


def _text(value: str, style: ParagraphStyle = BODY) -> Paragraph:
    return Paragraph(escape(value), style)


def _party(label: str, party: Party, extra: list[str]) -> list[Paragraph]:
    lines = [party.name, *party.address_lines, party.country]
    if party.vat_id:
        lines.append(f"VAT ID {party.vat_id}")
    lines.extend(extra)
    return [_text(label, SMALL), Paragraph("<br/>".join(escape(line) for line in lines), BODY)]


def render(document: Document) -> bytes:
    if document.status is not DocumentStatus.FINALIZED or document.number is None:
        raise ValueError("only a finalized document has a PDF")
    title = f"{TITLES[document.document_type]} {document.number}"
    buffer = io.BytesIO()
    template = SimpleDocTemplate(
        buffer, pagesize=A4, invariant=1, title=title, author=document.seller.name,
        leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm, bottomMargin=16 * mm,
    )
    width = A4[0] - 36 * mm
    start, end = document.service_period
    facts = [
        ("Number", document.number),
        ("Issue date", document.issue_date.isoformat()),
        ("Due date", document.due_date.isoformat()),
        ("Service period", f"{start.isoformat()} to {end.isoformat()}"),
        ("Customer number", document.customer_id),
        ("Contract", document.contract_id),
    ]
    if document.corrects_number:
        facts.append(("Corrects invoice", document.corrects_number))

    story = [
        Paragraph(escape(document.seller.name), SMALL),
        Spacer(1, 4 * mm),
        Table(
            [[_party("Bill to" if document.document_type is DocumentType.INVOICE else "Credit to",
                     document.customer, [document.customer.email] if document.customer.email else []),
              _party("From", document.seller, [document.seller.email] if document.seller.email else [])]],
            colWidths=[width / 2, width / 2], style=[("VALIGN", (0, 0), (-1, -1), "TOP")],
        ),
        Spacer(1, 8 * mm),
        _text(title, TITLE),
        Spacer(1, 3 * mm),
        Table([[_text(label, SMALL), _text(value)] for label, value in facts], colWidths=[35 * mm, width - 35 * mm],
              style=[("VALIGN", (0, 0), (-1, -1), "TOP"), ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]),
        Spacer(1, 6 * mm),
        _lines_table(document, width),
        Spacer(1, 5 * mm),
        _tax_table(document, width),
        Spacer(1, 4 * mm),
        _totals_table(document, width),
        Spacer(1, 6 * mm),
    ]
    story.extend(_text(note) for note in document.notes)
    story.append(Spacer(1, 3 * mm))
    story.append(_text(f"Payment terms: {document.payment_terms}"))
    template.build(story)
    return buffer.getvalue()


def _lines_table(document: Document, width: float) -> Table:
    currency = document.currency
    rows: list[list[object]] = [["#", "Description", "Quantity", "Unit price", "Discount", f"Net {currency}", "VAT"]]
    for line in document.lines:
        details = [f"{line.item_code}, {line.period_start.isoformat()} to {line.period_end.isoformat()}"]
        if line.credit_reason:
            details.append(REASONS[line.credit_reason])
        if line.corrects_number and line.corrects_number != document.corrects_number:
            details.append(f"corrects {line.corrects_number}")
        rows.append([
            str(line.line_no),
            Paragraph(f"{escape(line.description)}<br/><font size=7>{escape('; '.join(details))}</font>", BODY),
            plain(line.quantity),
            plain(line.unit_price),
            _amount(line.discount.amount, currency),
            _amount(line.net.amount, currency),
            f"{line.vat.category} {plain(line.vat.rate)} %",
        ])
    widths = [8 * mm, None, 22 * mm, 22 * mm, 20 * mm, 24 * mm, 18 * mm]
    fixed = sum(w for w in widths if w is not None)
    return Table(rows, colWidths=[w if w is not None else width - fixed for w in widths], repeatRows=1, style=GRID)


def _tax_table(document: Document, width: float) -> Table:
    currency = document.currency
    rows: list[list[object]] = [["VAT category", "", "Rate", f"Taxable {currency}", f"VAT {currency}"]]
    for line in document.tax_lines:
        rows.append([line.vat.category.value, VAT_LABELS[line.vat.category.value], f"{plain(line.vat.rate)} %",
                     _amount(line.base.amount, currency), _amount(line.tax.amount, currency)])
    return Table(rows, colWidths=[30 * mm, width - 108 * mm, 20 * mm, 29 * mm, 29 * mm], style=GRID)


def _totals_table(document: Document, width: float) -> Table:
    currency = document.currency
    due = "Total due" if document.document_type is DocumentType.INVOICE else "Total credited"
    rows = [
        ["Net total", f"{_amount(document.net_total.amount, currency)} {currency}"],
        ["VAT total", f"{_amount(document.tax_total.amount, currency)} {currency}"],
        [due, f"{_amount(document.gross_total.amount, currency)} {currency}"],
    ]
    return Table(rows, colWidths=[width - 45 * mm, 45 * mm], style=[
        ("FONTNAME", (0, 0), (-1, -1), "Helvetica"),
        ("FONTSIZE", (0, 0), (-1, -1), 9.5),
        ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
        ("ALIGN", (0, 0), (-1, -1), "RIGHT"),
        ("LINEABOVE", (0, -1), (-1, -1), 0.6, colors.black),
    ])


def _amount(amount: Decimal, currency: str) -> str:
    return f"{amount:,.{exponent(currency)}f}"
