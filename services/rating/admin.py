"""Operator commands for rating's own data: `python -m services.rating.admin --help`."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from services.rating import store
from services.rating.domain import Contract, ContractItem
from services.rating.settings import RatingSettings
from shared.db import Database, migrate
from shared.events import Currency, Identifier, Text, UnitPrice


class ContractItemSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Identifier
    description: Text
    unit_price: Annotated[UnitPrice, Field(ge=0)]


class ContractSpec(BaseModel):
    """A contract as an operator or upstream product describes it."""

    model_config = ConfigDict(extra="forbid")

    contract_id: Identifier
    customer_id: Identifier
    currency: Currency
    starts_on: date
    ends_on: date | None = None
    items: list[ContractItemSpec] = Field(min_length=1)

    def to_domain(self) -> Contract:
        return Contract(
            contract_id=self.contract_id,
            customer_id=self.customer_id,
            currency=self.currency,
            starts_on=self.starts_on,
            ends_on=self.ends_on,
            items={item.item_code: ContractItem(**item.model_dump()) for item in self.items},
        )


CONTRACT_LIST = TypeAdapter(list[ContractSpec])


async def load_contracts(database: Database, specs: list[ContractSpec]) -> None:
    async with database.transaction() as session:
        for spec in specs:
            await store.save_contract(session, spec.to_domain())


cli = typer.Typer(help="Rating administration.", no_args_is_help=True)


@cli.command("load-contracts")
def load_contracts_command(path: Path) -> None:
    """Create or replace the contracts in a JSON file (a list of contracts with their items)."""
    specs = CONTRACT_LIST.validate_json(path.read_bytes())

    async def run() -> None:
        settings = RatingSettings()
        await migrate("rating", settings.database_url)
        database = Database(settings.database_url)
        try:
            await load_contracts(database, specs)
        finally:
            await database.dispose()

    asyncio.run(run())
    typer.echo(json.dumps({"contracts_loaded": len(specs)}))


if __name__ == "__main__":
    cli()
