"""`billing`: the operator's command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ops.stack import LocalStack, create_topics, database_urls
from shared.db import migrate, new_revision
from shared.settings import DEFAULT_KAFKA_PORT, AccessSettings, KafkaSettings, stack_dir

app = typer.Typer(help="Usage billing pipeline operations.", no_args_is_help=True)
stack_app = typer.Typer(help="The embedded local servers (PostgreSQL and Apache Kafka, or Tansu without Java).",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
letters_app = typer.Typer(help="Dead letters: what consumers could not apply, and why.", no_args_is_help=True)
app.add_typer(letters_app, name="dead-letters")


def local_stack() -> LocalStack:
    return LocalStack(stack_dir(), int(os.environ.get("BILLING_LOCAL_KAFKA_PORT", DEFAULT_KAFKA_PORT)))


async def prepare() -> None:
    """Topics and database schemas, on whatever Kafka and PostgreSQL the settings point at."""
    await create_topics(KafkaSettings())
    for service, url in database_urls().items():
        await migrate(service, url)
    await migrate("access", AccessSettings().database_url)


@stack_app.command("up")
def stack_up(fresh: Annotated[bool, typer.Option(help="Wipe all data first.")] = False) -> None:
    """Start PostgreSQL and the broker, create databases and topics, run migrations."""
    state = local_stack().up(fresh=fresh)
    asyncio.run(prepare())
    typer.echo(json.dumps(state, indent=2))


@stack_app.command("down")
def stack_down() -> None:
    """Stop both servers (PostgreSQL's data and Apache Kafka's log stay; Tansu keeps nothing)."""
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


@letters_app.command("list")
def dead_letters_list(
    topic: Annotated[str | None, typer.Option(help="Only letters from this source topic.")] = None,
    consumer: Annotated[str | None, typer.Option(help="Only letters of this consumer group.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, with payloads.")] = False,
) -> None:
    """List dead letters (oldest first per partition)."""
    from ops.dead_letters import list_letters

    letters = asyncio.run(list_letters(KafkaSettings().bootstrap_servers, topic=topic, consumer=consumer))
    for letter in letters:
        if as_json:
            typer.echo(letter.model_dump_json())
        else:
            typer.echo(f"{letter.event_id}  {letter.source_topic}[{letter.partition}]@{letter.offset}  "
                       f"{letter.consumer}  {letter.error_type}: {letter.reason}")
    typer.echo(f"{len(letters)} dead letter(s)", err=True)


@letters_app.command("replay")
def dead_letters_replay(
    event_ids: Annotated[list[str], typer.Argument(help="Dead letter ids (from `list`).")] = None,
    consumer: Annotated[str | None, typer.Option(help="Replay every letter of this consumer group.")] = None,
) -> None:
    """Republish chosen dead letters to their original topics, after their cause was fixed."""
    import uuid

    from ops.dead_letters import list_letters, replay
    from shared.access.commands import authorized, record_in_access
    from shared.access.domain import Role
    from shared.access.store import Change
    from shared.runtime import create_broker

    if not event_ids and not consumer:
        raise typer.BadParameter("name dead letter ids or --consumer")
    kafka = KafkaSettings()
    actor = authorized(Role.admin, "dead-letters replay")

    async def run() -> list:
        letters = await list_letters(kafka.bootstrap_servers, consumer=consumer,
                                     event_ids=[uuid.UUID(value) for value in event_ids or []])
        async with create_broker(kafka, client_id="billing-cli") as broker:
            await broker.start()
            outcomes = await replay(broker, letters)
        replayed = [str(letter.event_id) for letter, problem in outcomes if not problem]
        if replayed:
            await record_in_access(Change(actor, "dead-letters.replay", ", ".join(replayed)[:500], {
                "topics": sorted({letter.source_topic for letter, problem in outcomes if not problem}),
                "event_ids": replayed}))
        return outcomes

    outcomes = asyncio.run(run())
    for letter, problem in outcomes:
        typer.echo(f"{'skipped' if problem else 'replayed'} {letter.event_id} -> {letter.source_topic}"
                   + (f" ({problem})" if problem else ""))
    if any(problem for _, problem in outcomes) or not outcomes:
        raise typer.Exit(1)


@app.command("crash-harness")
def crash_harness(
    events: Annotated[int, typer.Option(help="Unique usage events to publish.")] = 20_000,
    contracts: Annotated[int, typer.Option(help="Contracts they are spread over.")] = 200,
    kill_every: Annotated[float, typer.Option(help="Mean seconds between SIGKILLs (0: none).")] = 3.0,
    duplicates: Annotated[float, typer.Option(help="Share of events published twice.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same stream).")] = 7,
    restart_broker: Annotated[bool, typer.Option(
        "--restart-broker", help="Also stop the broker mid-stream (SIGTERM, then SIGKILL) and restart it on "
                                 "its log (Apache Kafka only).")] = False,
    root: Annotated[Path, typer.Option(help="Where its own local stack lives (wiped first).")] = Path(
        ".stack/harness"),
) -> None:
    """Run the pipeline under SIGKILLs, duplicates and a topic replay; exit 1 on any broken invariant."""
    from ops.crash_harness import HarnessConfig, run_harness
    from ops.stack import chosen_broker

    if restart_broker and chosen_broker() != "kafka":
        raise typer.BadParameter("needs Apache Kafka: Tansu keeps nothing across a restart", param_hint="--restart-broker")
    figures = run_harness(HarnessConfig(events=events, contracts=contracts, kill_every_s=kill_every,
                                        duplicate_share=duplicates, seed=seed, restart_broker=restart_broker,
                                        root=root))
    typer.echo(figures.report())
    raise typer.Exit(1 if figures.violations else 0)


@app.command("benchmark")
def benchmark(
    events: Annotated[int, typer.Option(help="Usage events per throughput measurement.")] = 100_000,
    contracts: Annotated[int, typer.Option(help="Contracts those events are spread over.")] = 200,
    run_contracts: Annotated[int, typer.Option(help="Contracts in the billing-run measurement.")] = 100_000,
    latency_rate: Annotated[int, typer.Option(help="Offered load for the latency measurement, ev/s.")] = 1_000,
    latency_seconds: Annotated[float, typer.Option(help="How long the latency load lasts.")] = 10.0,
    period_events: Annotated[int, typer.Option(help="Usage events of one contract in one period, to its "
                                                    "invoice; 0 skips it.")] = 1_000_000,
    burst_events: Annotated[int, typer.Option(help="Usage events of the burst worked off before latency is "
                                                   "measured again; 0 skips it.")] = 200_000,
    runs: Annotated[int, typer.Option(min=1, help="Runs, each on a fresh stack; the summary gives min / "
                                                  "median / max.")] = 3,
    brokers: Annotated[str, typer.Option(
        help="Comma-separated: kafka, tansu or both, each measured on a fresh stack; default: the local "
             "stack's choice.")] = "",
    quick: Annotated[bool, typer.Option(help="Every measurement, small and once (under two minutes); the "
                                             "other options are ignored.")] = False,
) -> None:
    """Measure every stage and the whole pipeline next to plain aiokafka/asyncpg baselines, and
    print each figure with its target."""
    from ops.benchmark import BenchmarkConfig, run_benchmark
    from ops.stack import BROKERS

    chosen = tuple(name.strip() for name in brokers.split(",") if name.strip())
    if set(chosen) - set(BROKERS):
        raise typer.BadParameter(f"choose from {', '.join(BROKERS)}", param_hint="--brokers")
    config = BenchmarkConfig.quick(brokers=chosen) if quick else BenchmarkConfig(
        events=events, contracts=contracts, run_contracts=run_contracts, latency_rate=latency_rate,
        latency_seconds=latency_seconds, period_events=period_events, burst_events=burst_events, runs=runs,
        brokers=chosen)
    run_benchmark(config)


@app.command("reconcile")
def reconcile(
    contract: Annotated[list[str] | None, typer.Option(help="Only these contracts (repeatable); default all.")] = None,
    allow_dead_letters: Annotated[bool, typer.Option(
        "--allow-dead-letters", help="List dead letters without counting them as differences.")] = False,
) -> None:
    """Prove rated == settled == invoiced per contract and ledger balance == its entries == payments' open items
    minus credit, with nothing parked or dead-lettered; exit 1 on any difference."""
    from ops.reconcile import main as run_reconcile

    raise typer.Exit(run_reconcile(contract or None, allow_dead_letters))


@app.command("parked")
def parked(
    contract: Annotated[list[str] | None, typer.Option(help="Only these contracts (repeatable); default all.")] = None,
) -> None:
    """The messages each service parked because what they wait for has not arrived, with what they wait for.

    They are re-driven on their own; one still listed after the park timeout becomes a dead letter."""
    from ops.observe import Databases
    from ops.reconcile import gather_parked

    async def run() -> list:
        databases = Databases()
        try:
            return await gather_parked(databases, contract or None)
        finally:
            await databases.dispose()

    found = asyncio.run(run())
    for message in found:
        typer.echo(message.describe())
    typer.echo(f"{len(found)} parked message(s)", err=True)


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (per refresh), for scripts.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 2.0,
) -> None:
    """Per stage: consumer groups, members, lag per partition, outbox backlog, parked messages, dead letters;
    and which stage is the bottleneck now."""
    from ops.status import watch as show_status

    def show(text: str) -> None:
        if watch and not as_json:
            typer.clear()
        typer.echo(text)

    try:
        asyncio.run(show_status(interval if watch else 0, as_json, show))
    except KeyboardInterrupt:
        pass


@app.command("demo")
def demo(
    serve: Annotated[bool | None, typer.Option(
        "--serve/--no-serve", help="Keep the stack, workers and portal up after the summary until Ctrl-C. "
                                   "Default: only when run in a terminal.")] = None,
    screenshot: Annotated[Path | None, typer.Option(
        help="Also save a screenshot of a demo contract's page here (headless Chromium).")] = None,
) -> None:
    """The main job: the whole pipeline on embedded servers with sample data, then a summary and the portal's URLs."""
    from ops.demo import run_demo

    raise typer.Exit(run_demo(serve=sys.stdout.isatty() if serve is None else serve, screenshot_to=screenshot))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
