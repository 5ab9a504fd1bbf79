"""The PDF of a finalized document: the page made with reportlab, and the ZUGFeRD / Factur-X PDF/A-3
that carries the document's EN 16931 XML (services/invoicing/einvoice.py).

`render` is pure: `invariant=1` keeps reportlab from stamping the creation time and a random file
id into the page, so the same document gives the same bytes. Text is set in Bitstream Vera, the
TrueType family reportlab ships, embedded (as PDF/A requires; the standard Helvetica is not). It
covers Latin-1 and the euro sign, which is what the documents' names and addresses use.

`facturx_pdf` makes that page a PDF/A-3: an sRGB output intent (the ICC profile littleCMS builds,
through Pillow), then `factur-x` embeds the XML as `factur-x.xml` (AFRelationship Data) and writes
the XMP metadata naming PDF/A-3B and the Factur-X profile EN 16931. Its metadata carries the time
it is made, so unlike the page it is not reproducible byte for byte: the stored file and its
sha256 are the document's.
"""

from __future__ import annotations

import io
from decimal import Decimal
from xml.sax.saxutils import escape

import facturx
from PIL import ImageCms
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject, TextStringObject
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfmetrics import registerFontFamily
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from services.invoicing.domain import Document, DocumentStatus, Party
from shared.events import DocumentType
from shared.money import exponent

TITLES = {DocumentType.INVOICE: "Invoice", DocumentType.CREDIT_NOTE: "Credit note"}
VAT_LABELS = {"S": "standard rate", "Z": "zero rated", "E": "exempt", "AE": "reverse charge",
              "G": "export outside the EU"}
REASONS = {"credit": "credit", "order_cancelled": "order cancelled", "termination": "termination credit",
           "adjustment": "adjustment: the period came to less than was invoiced"}

FONT, BOLD = "Vera", "VeraBd"
for _name in (FONT, BOLD):
    pdfmetrics.registerFont(TTFont(_name, f"{_name}.ttf"))  # found in reportlab's own fonts folder
registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)

_styles = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_styles["Normal"], fontName=FONT, fontSize=9, leading=11.5)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444"))
TITLE = ParagraphStyle("title", parent=BODY, fontName=BOLD, fontSize=18, leading=22)

# Every table names its font: a cell's default is Helvetica, which would add an unembedded font.
IN_FONT = ("FONTNAME", (0, 0), (-1, -1), FONT)
GRID = TableStyle([
    IN_FONT,
    ("FONTSIZE", (0, 0), (-1, -1), 8.5),
    ("FONTNAME", (0, 0), (-1, 0), BOLD),
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
    place = " ".join(part for part in (party.postal_code, party.city) if part)
    lines = [party.name, *party.address_lines, *([place] if place else []), party.country]
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
        # The canvas' initial font is Helvetica unless told otherwise, which would add an unembedded font.
        buffer, pagesize=A4, invariant=1, title=title, author=document.seller.name, initialFontName=FONT,
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
            colWidths=[width / 2, width / 2], style=[IN_FONT, ("VALIGN", (0, 0), (-1, -1), "TOP")],
        ),
        Spacer(1, 8 * mm),
        _text(title, TITLE),
        Spacer(1, 3 * mm),
        Table([[_text(label, SMALL), _text(value)] for label, value in facts], colWidths=[35 * mm, width - 35 * mm],
              style=[IN_FONT, ("VALIGN", (0, 0), (-1, -1), "TOP"), ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]),
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
        IN_FONT,
        ("FONTSIZE", (0, 0), (-1, -1), 9.5),
        ("FONTNAME", (0, -1), (-1, -1), BOLD),
        ("ALIGN", (0, 0), (-1, -1), "RIGHT"),
        ("LINEABOVE", (0, -1), (-1, -1), 0.6, colors.black),
    ])


def facturx_pdf(document: Document, xml: bytes) -> bytes:
    """The document's page as a ZUGFeRD / Factur-X PDF/A-3 with `xml` (its CII XML) embedded."""
    page = _with_srgb_output_intent(render(document))
    title = f"{TITLES[document.document_type]} {document.number}"
    return facturx.generate_from_binary(
        page, xml, flavor="factur-x", level="en16931", check_xsd=False, lang="en",
        pdf_metadata={"author": document.seller.name, "keywords": "Factur-X, ZUGFeRD, EN 16931",
                      "title": title, "subject": f"{title} for {document.customer.name}"})


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _with_srgb_output_intent(content: bytes) -> bytes:
    """PDF/A needs an output intent naming the colour space the page is meant for: sRGB."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(content)))
    profile = DecodedStreamObject()
    profile.set_data(_srgb_profile())
    profile[NameObject("/N")] = NumberObject(3)
    intent = DictionaryObject({
        NameObject("/Type"): NameObject("/OutputIntent"),
        NameObject("/S"): NameObject("/GTS_PDFA1"),
        NameObject("/OutputConditionIdentifier"): TextStringObject("sRGB IEC61966-2.1"),
        NameObject("/Info"): TextStringObject("sRGB IEC61966-2.1"),
        NameObject("/DestOutputProfile"): writer._add_object(profile),
    })
    writer._root_object[NameObject("/OutputIntents")] = ArrayObject([writer._add_object(intent)])
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _amount(amount: Decimal, currency: str) -> str:
    return f"{amount:,.{exponent(currency)}f}"
