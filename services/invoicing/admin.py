"""Operator commands for invoicing's own data: `python -m services.invoicing.admin --help`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from services.invoicing import store
from services.invoicing.settings import InvoicingSettings
from shared.db import Database

cli = typer.Typer(help="Invoicing administration.", no_args_is_help=True)


async def fetch_file(database: Database, number: str, kind: str) -> bytes | None:
    """The stored PDF or e-invoice XML of document `number`, exactly as it was made when it was issued."""
    async with database.transaction() as session:
        return await (store.pdf_by_number if kind == "pdf" else store.einvoice_by_number)(session, number)


def _write(number: str, kind: str, output: Path | None) -> None:
    async def run() -> bytes | None:
        database = Database(InvoicingSettings().database_url)
        try:
            return await fetch_file(database, number, kind)
        finally:
            await database.dispose()

    content = asyncio.run(run())
    if content is None:
        typer.echo(f"no document numbered {number} with a stored {kind.upper()}", err=True)
        raise typer.Exit(1)
    target = output or Path(f"{number}.{kind}")
    target.write_bytes(content)
    typer.echo(f"{target} ({len(content)} bytes)")


Output = Annotated[Path | None, typer.Option("--output", "-o", help="where to write it; default <number>.<kind>")]


@cli.command("pdf")
def pdf_command(number: str, output: Output = None) -> None:
    """Write the PDF of the document numbered NUMBER (an invoice R... or a credit note G...): the
    Factur-X PDF/A-3 with its e-invoice embedded."""
    _write(number, "pdf", output)


@cli.command("xml")
def xml_command(number: str, output: Output = None) -> None:
    """Write the e-invoice of the document numbered NUMBER: its EN 16931 CII XML (Factur-X, or XRechnung)."""
    _write(number, "xml", output)


if __name__ == "__main__":
    cli()
