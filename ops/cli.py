"""`billing`: the operator's command line."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ops.stack import LocalStack, create_topics, database_urls
from shared.db import migrate, new_revision
from shared.settings import DEFAULT_KAFKA_PORT, KafkaSettings, stack_dir

app = typer.Typer(help="Usage billing pipeline operations.", no_args_is_help=True)
stack_app = typer.Typer(help="The embedded local servers (PostgreSQL and a Kafka-protocol broker).",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")


def local_stack() -> LocalStack:
    return LocalStack(stack_dir(), int(os.environ.get("BILLING_LOCAL_KAFKA_PORT", DEFAULT_KAFKA_PORT)))


async def prepare() -> None:
    """Topics and database schemas, on whatever Kafka and PostgreSQL the settings point at."""
    await create_topics(KafkaSettings())
    for service, url in database_urls().items():
        await migrate(service, url)


@stack_app.command("up")
def stack_up(fresh: Annotated[bool, typer.Option(help="Wipe all data first.")] = False) -> None:
    """Start PostgreSQL and the broker, create databases and topics, run migrations."""
    state = local_stack().up(fresh=fresh)
    asyncio.run(prepare())
    typer.echo(json.dumps(state, indent=2))


@stack_app.command("down")
def stack_down() -> None:
    """Stop both servers (PostgreSQL data stays; the broker keeps messages in memory only)."""
    local_stack().down()
    typer.echo("stack stopped")


@app.command("prepare")
def prepare_command() -> None:
    """Create the topics and migrate every service database (for external Kafka/PostgreSQL too)."""
    asyncio.run(prepare())
    typer.echo("topics and schemas ready")


@app.command("new-migration")
def new_migration(service: str, message: str) -> None:
    """Autogenerate SERVICE's next migration from its tables (development)."""
    asyncio.run(new_revision(service, database_urls()[service], message))


def asyncapi_document() -> dict:
    from importlib.metadata import version

    from services.invoicing.app import runtime as invoicing
    from services.payments.app import runtime as payments
    from services.rating.app import runtime as rating
    from services.settlement.app import runtime as settlement
    from shared.asyncapi import document

    return document([rating, settlement, invoicing, payments], version("usage-billing"))


@app.command("asyncapi")
def asyncapi(output: Annotated[Path, typer.Option(help="Where to write it.")] = Path("docs/asyncapi.json")) -> None:
    """Write the AsyncAPI document of every topic, generated from the event schemas."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(asyncapi_document(), indent=2) + "\n")
    typer.echo(f"wrote {output}")


@app.command("demo")
def demo() -> None:
    """The main job: the whole pipeline on embedded servers with sample data, then a summary."""
    from ops.demo import run_demo

    raise typer.Exit(run_demo())


def main() -> None:
    app()
