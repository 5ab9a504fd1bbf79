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


@cli.callback()
def main() -> None:
    """Invoicing administration (a callback keeps `pdf` a subcommand while it is the only one)."""


async def fetch_pdf(database: Database, number: str) -> bytes | None:
    """The stored PDF of document `number`, exactly as it was made at finalization."""
    async with database.transaction() as session:
        return await store.pdf_by_number(session, number)


@cli.command("pdf")
def pdf_command(
    number: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="where to write it; default <number>.pdf")] = None,
) -> None:
    """Write the PDF of the document numbered NUMBER (an invoice R... or a credit note G...)."""

    async def run() -> bytes | None:
        database = Database(InvoicingSettings().database_url)
        try:
            return await fetch_pdf(database, number)
        finally:
            await database.dispose()

    content = asyncio.run(run())
    if content is None:
        typer.echo(f"no document numbered {number}", err=True)
        raise typer.Exit(1)
    target = output or Path(f"{number}.pdf")
    target.write_bytes(content)
    typer.echo(f"{target} ({len(content)} bytes)")


if __name__ == "__main__":
    cli()
