"""Validating and rendering documents off the event loop, in a pool of processes.

Validating a document's e-invoice (XSD and the EN 16931 schematron, about 15 ms) and rendering its
Factur-X PDF (about 35 ms) are CPU work. Done on the worker's event loop they would stall its
consumer heartbeats and every other batch; done in threads they would hold the GIL. So they run in
`INVOICING_RENDER_PROCESSES` worker processes (spawned, so no state of the parent's event loop or
database connections is inherited), each of which compiles the schematron once when it starts.

Both steps are pure: a document in, bytes or a verdict out; the handler decides what is issued.
The PDF and e-invoice libraries (reportlab, pypdf, Pillow, factur-x, lxml: about 34 MB of the
worker's 125 MB at start) are imported by the render processes only, so what comes back to the
worker is plain data: bytes, and each e-invoice's verdict as a `Checked`.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from services.invoicing.domain import Document
from shared.events import EInvoiceFormat

# The render process's validator (services.invoicing.einvoice.Validator), built when it starts.
_validator = None


def _start_process() -> None:
    global _validator
    from services.invoicing import einvoice  # only in the render processes (see the module's docstring)

    _validator = einvoice.Validator()


def _ready() -> int:
    return os.getpid()


@dataclass(frozen=True, slots=True)
class Checked:
    """What the worker needs of an e-invoice's validation report (einvoice.Report)."""

    passed: bool
    summary: str


def check(draft: Document) -> dict[EInvoiceFormat, Checked]:
    """The verdict on each e-invoice the draft is issued as (einvoice.formats)."""
    from services.invoicing import einvoice

    assert _validator is not None, "check runs in a process the pool started"
    reports = {format_: _validator.validate(einvoice.cii_xml(draft, format_), format_)
               for format_ in einvoice.formats(draft)}
    return {format_: Checked(report.passed, report.summary()) for format_, report in reports.items()}


@dataclass(frozen=True, slots=True)
class XmlFile:
    format: EInvoiceFormat
    content: bytes
    sha256: str


@dataclass(frozen=True, slots=True)
class Rendered:
    """A finalized document's files: the PDF (Factur-X, with the first XML embedded, when it has
    e-invoices) and its e-invoices' XML."""

    pdf: bytes
    pdf_sha256: str
    xmls: tuple[XmlFile, ...]


def render(document: Document, with_einvoice: bool) -> Rendered:
    from services.invoicing import einvoice, pdf

    xmls = tuple(XmlFile(format_, xml, hashlib.sha256(xml).hexdigest())
                 for format_ in (einvoice.formats(document) if with_einvoice else ())
                 for xml in [einvoice.cii_xml(document, format_)])
    content = pdf.facturx_pdf(document, xmls[0].content) if xmls else pdf.render(document)
    return Rendered(content, hashlib.sha256(content).hexdigest(), xmls)


class RenderPool:
    """The worker processes: started with the invoicing worker (`start`), or on first use."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_process)
        return self._pool

    async def start(self) -> None:
        """Start the processes (each compiling the schematron) before the first documents need them."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor(), _ready) for _ in range(self._processes)))

    async def check(self, drafts: Sequence[Document]) -> list[dict[EInvoiceFormat, Checked]]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(self._executor(), check, draft) for draft in drafts)))

    async def render(self, documents: Sequence[Document], with_einvoice: bool) -> list[Rendered]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(self._executor(), render, document, with_einvoice)
                                           for document in documents)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
