"""Operator commands for rating's own data: `python -m services.rating.admin --help`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from services.rating.contracts import CONTRACT_LIST, save_contracts
from services.rating.settings import RatingSettings
from shared.db import Database, migrate

cli = typer.Typer(help="Rating administration.", no_args_is_help=True)


@cli.command("load-contracts")
def load_contracts_command(path: Path) -> None:
    """Create or replace the contracts in a JSON file (a list of contracts with customer and items).

    Each change is published on contracts.changed by the rating worker's outbox relay.
    """
    specs = CONTRACT_LIST.validate_json(path.read_bytes())

    async def run() -> list[int]:
        settings = RatingSettings()
        await migrate("rating", settings.database_url)
        database = Database(settings.database_url)
        try:
            return await save_contracts(database, specs)
        finally:
            await database.dispose()

    revisions = asyncio.run(run())
    typer.echo(json.dumps({spec.contract_id: revision for spec, revision in zip(specs, revisions, strict=True)}))


if __name__ == "__main__":
    cli()
