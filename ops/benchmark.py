"""The benchmark: what one worker of each stage does on this machine, next to a plain baseline.

Runs on its own local stack and prints:
- a baseline: plain aiokafka produce and consume of the same messages, plain asyncpg inserts of
  the same rows (executemany), to put every stage's figure in proportion;
- each stage alone on a pre-filled topic (rating, with 1 and 2 workers; settlement's intake),
  billing runs from the requests to the last document (documents per second with and without
  PDFs; items settled per second), and the whole pipeline with every worker running (usage
  published until settlement holds the items);
- usage.recorded -> items.rated latency (p50/p95/p99) at a fixed offered load;
- one contract's million usage events in one period, to its one invoice (ops/benchmark_period.py);
- the peak RSS of every worker process (VmHWM).
With several brokers (`--brokers kafka,tansu`) it measures the same on a fresh stack on each, one
after the other, and ends with a table of both. It is not a test: it asserts nothing, it measures.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import func, select

from ops import load
from ops.benchmark_period import one_big_period
from ops.observe import Databases, wait_until
from ops.reconcile import examine
from ops.status import group_lag, stage_subscriptions
from ops.stack import LocalStack, chosen_broker, create_topics, describe_broker, free_port
from ops.workers import Workers
from services.invoicing.tables import documents
from services.payments.tables import open_items
from services.rating.contracts import ContractSpec, save_contracts
from services.rating.settings import RatingSettings
from services.rating.tables import contracts
from services.rating.tables import billable_items as rated_items
from services.rating.tables import rated_usage
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import messaging as settlement_messaging
from shared import topics
from shared.db import migrate
from shared.events import BillingRunRequested, UsageRecorded, derive_id, encode_event
from shared.settings import KafkaSettings



# The billing-run target is for this many contracts (a smaller run's time has no target).
BILLING_RUN_TARGET_CONTRACTS = 100_000


@dataclass
class BenchmarkConfig:
    # 100,000: twenty of rating's polls, so that neither the raw pipeline's rate nor a stage's hangs on
    # how its first few polls met the broker's fetches (with 20,000 the raw pipeline gave 24,000-72,000 ev/s).
    events: int = 100_000
    contracts: int = 200
    run_contracts: int = BILLING_RUN_TARGET_CONTRACTS
    # The fewest contracts of each run with documents rendered (a fiftieth of run_contracts otherwise).
    rendered_contracts: int = 200
    latency_rate: int = 1_000
    latency_seconds: float = 10.0
    period_events: int = 1_000_000
    burst_events: int = 200_000
    # Each run on a fresh stack; the summary gives min / median / max of every figure.
    runs: int = 3
    # "kafka", "tansu" or both; empty: the one the local stack would choose.
    brokers: tuple[str, ...] = ()
    root: Path = Path(".stack/benchmark")

    @classmethod
    def quick(cls, **changes) -> BenchmarkConfig:
        """A developer's check, under two minutes: every measurement, small, once."""
        # 20,000 events still make several of rating's polls (5,000 each): a rate is timed from the first.
        return cls(**{"events": 20_000, "contracts": 200, "run_contracts": 2_000, "rendered_contracts": 100,
                      "latency_seconds": 3.0,
                      "period_events": 0, "burst_events": 10_000, "runs": 1, **changes})


@dataclass(frozen=True)
class Target:
    text: str
    met: Callable[[float], bool]


# The figures the product has targets for, by the key each is recorded under.
TARGETS = {
    "rating 1": Target(">= 10,000 ev/s", lambda value: value >= 10_000),
    "rating 1 / raw": Target(">= 50 %", lambda value: value >= 50),
    "rating 2 / 1": Target("> 1.0 (two workers faster)", lambda value: value > 1),
    "whole pipeline": Target(">= 8,000 ev/s", lambda value: value >= 8_000),
    "latency p99": Target("< 100 ms", lambda value: value < 100),
    "latency after burst p99": Target("< 1,000 ms", lambda value: value < 1_000),
    "billing run": Target("< 60 s", lambda value: value < 60),  # over BILLING_RUN_TARGET_CONTRACTS
    "peak rss": Target("< 200 MB per worker", lambda value: value < 200),
    "reconcile": Target("0 differences", lambda value: value == 0),
}


@dataclass
class Results:
    lines: list[tuple[str, str]] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    # key -> (label, number, unit): what the summary over several runs aggregates.
    figures: dict[str, tuple[str, float, str]] = field(default_factory=dict)

    def add(self, label: str, value: str, *, key: str | None = None, number: float | None = None,
            unit: str = "") -> None:
        self.lines.append((label, value))
        if number is not None:
            self.figures[key or label] = (label, number, unit)
        print(f"  {label:<58} {value}", flush=True)


def summary(runs: list[Results]) -> str:
    """A Markdown table over the runs: min / median / max of each figure, its target and whether
    the median meets it (and in how many runs each did)."""
    keys = list(dict.fromkeys(key for results in runs for key in results.figures))
    rows = [f"| figure | min | median | max | target | met ({len(runs)} run{'s' * (len(runs) > 1)}) |",
            "|---|---|---|---|---|---|"]
    for key in keys:
        measured = [results.figures[key] for results in runs if key in results.figures]
        label, unit = measured[0][0], measured[0][2]
        numbers = sorted(number for _, number, _ in measured)
        target = TARGETS.get(key) or (TARGETS["peak rss"] if key.startswith("peak rss") else None)
        met = ""
        if target is not None:
            times = sum(target.met(number) for number in numbers)
            met = f"{'yes' if target.met(statistics.median(numbers)) else 'no'} ({times} of {len(numbers)})"
        rows.append(f"| {label} | {_number(numbers[0], unit)} | {_number(statistics.median(numbers), unit)} | "
                    f"{_number(numbers[-1], unit)} | {target.text if target else ''} | {met} |")
    return "\n".join(rows)


def _number(value: float, unit: str) -> str:
    if not unit:  # a ratio
        return f"{value:.2f}"
    return f"{value:,.1f} {unit}" if abs(value) < 100 and value != int(value) else f"{value:,.0f} {unit}"


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def record_rss(workers: Workers, results: Results) -> None:
    for service, process in workers.processes.items():
        if process.poll() is None:
            results.rss_mb[service] = max(results.rss_mb.get(service, 0.0), peak_rss_mb(process.pid))


def contract_specs(count: int, prefix: str) -> list[ContractSpec]:
    return [
        ContractSpec.model_validate({
            "contract_id": f"{prefix}-{number:05d}",
            "customer": {"customer_id": f"{prefix}C-{number:05d}", "name": f"Bench {number}", "country": "DE"},
            "currency": "EUR", "starts_on": "2026-01-01",
            "items": [{"item_code": "api-calls", "description": "API calls", "unit_price": "0.0125"}],
        })
        for number in range(count)
    ]


def usage_events(count: int, specs: list[ContractSpec], label: str) -> list[UsageRecorded]:
    """Usage of the last hour: in the open billing period whatever day the benchmark runs, so that
    no period close or scheduled run (that a fixed date would fall due for) interferes."""
    now = datetime.now(UTC)
    return [
        UsageRecorded(
            event_id=derive_id(f"bench:{label}", str(number)), occurred_at=now - timedelta(seconds=number % 3600),
            contract_id=specs[number % len(specs)].contract_id, item_code="api-calls",
            quantity=Decimal(100 + number % 900),
        )
        for number in range(count)
    ]


async def produce(kafka: KafkaSettings, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """The aiokafka baseline: publish (key, value) pairs with acks=all, idempotent where the relays
    are; returns seconds. (The benchmark's loads go through librdkafka, ops.load.)"""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5,
                                enable_idempotence=kafka.idempotent_producer)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=500)
    await consumer.start()
    try:
        seen = 0
        started = None
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batches and started is None:
                started = time.perf_counter()
            seen += sum(len(records) for records in batches.values())
        await consumer.commit()
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


async def baseline(kafka: KafkaSettings, databases: Databases, events: list[UsageRecorded], results: Results) -> dict:
    messages = [(event.key.encode(), encode_event(event)) for event in events]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:  # Apache Kafka creates no topic by itself here (auto.create.topics.enable=false)
        await admin.create_topics([NewTopic("bench.baseline", kafka.partitions, kafka.replication_factor),
                                   NewTopic("bench.baseline-librdkafka", kafka.partitions, kafka.replication_factor),
                                   NewTopic("bench.raw-out", 1, kafka.replication_factor)])
    finally:
        await admin.close()
    produce_s = await produce(kafka, "bench.baseline", messages)
    consume_s = await consume_all(kafka.bootstrap_servers, "bench.baseline", len(messages))
    results.add("baseline: aiokafka produce (acks=all)", f"{len(messages) / produce_s:,.0f} msg/s",
                number=len(messages) / produce_s, unit="msg/s")
    load_s = await load.publish(kafka, "bench.baseline-librdkafka", messages)
    results.add("baseline: librdkafka produce (acks=all), the load generator", f"{len(messages) / load_s:,.0f} msg/s",
                number=len(messages) / load_s, unit="msg/s")
    results.add("baseline: aiokafka consume (getmany)", f"{len(messages) / consume_s:,.0f} msg/s",
                number=len(messages) / consume_s, unit="msg/s")
    connection = await asyncpg.connect(databases.urls["rating"].replace("postgresql+asyncpg", "postgresql"))
    try:
        # The columns of a rated item, in a table of the baseline's own (not rating's, whose
        # constraints and indexes are part of what the stage's figure measures).
        await connection.execute(
            "CREATE TEMP TABLE bench_rows (billable_item_id uuid PRIMARY KEY, source_event_id uuid, contract_id text,"
            " customer_id text, item_code text, currency text, quantity numeric, free_quantity numeric,"
            " billable_quantity numeric, unit_price numeric, net numeric, period_start date, period_end date,"
            " occurred_at timestamptz)")
        rows = [(uuid.uuid4(), e.event_id, e.contract_id, "CUST", e.item_code, "EUR", e.quantity, Decimal(0),
                 e.quantity, Decimal("0.0125"), Decimal("1.25"), date(2026, 11, 1), date(2026, 11, 30), e.occurred_at)
                for e in events]
        started = time.perf_counter()
        await connection.executemany(
            "INSERT INTO bench_rows (billable_item_id, source_event_id, contract_id, customer_id, item_code, currency,"
            " quantity, free_quantity, billable_quantity, unit_price, net, period_start, period_end, occurred_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)", rows)
        insert_s = time.perf_counter() - started
    finally:
        await connection.close()
    results.add("baseline: asyncpg executemany inserts", f"{len(events) / insert_s:,.0f} rows/s",
                number=len(events) / insert_s, unit="rows/s")
    raw = await raw_pipeline(kafka, databases, "bench.baseline", len(messages), durable=True)
    results.add("baseline: raw pipeline (consume, dedupe, store, commit, produce)", f"{raw:,.0f} ev/s",
                number=raw, unit="ev/s")
    unlogged = await raw_pipeline(kafka, databases, "bench.baseline", len(messages), durable=False)
    results.add("  the same into a temporary table (no WAL, gone with its session)", f"{unlogged:,.0f} ev/s",
                key="raw pipeline, temporary table", number=unlogged, unit="ev/s")
    return {"consume": len(messages) / consume_s, "insert": len(events) / insert_s, "raw": raw}


async def raw_pipeline(kafka: KafkaSettings, databases: Databases, topic: str, count: int, durable: bool) -> float:
    """The physical limit of this design on this machine, in events per second: one process that
    consumes the usage messages of `topic`, deduplicates them by event id and stores them in
    PostgreSQL in one statement per poll (unnest, ON CONFLICT DO NOTHING), commits, produces one
    message per poll and commits its offsets; no validation, no pricing.

    `durable` stores them in an ordinary table, as the design must (what is acknowledged survives a
    crash of PostgreSQL): its commit waits for the write-ahead log, as every stage's does. Otherwise
    in a temporary table, which writes no WAL and is lost with its session: faster than anything
    that keeps money can be, so it is printed for comparison, never used as the baseline."""
    connection = await asyncpg.connect(databases.urls["rating"].replace("postgresql+asyncpg", "postgresql"))
    # Fetching as the stages' consumers do on this broker: Tansu holds a fetch for its whole wait,
    # and aiokafka's default of 500 ms there cut the baseline to a third (34,317 against 95,044 ev/s
    # in a quick check).
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=f"bench-raw-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=kafka.fetch_max_wait_ms,
                                session_timeout_ms=6000, heartbeat_interval_ms=500)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all",
                                enable_idempotence=kafka.idempotent_producer)
    await consumer.start()
    await producer.start()
    try:
        await connection.execute("DROP TABLE IF EXISTS raw_usage")
        await connection.execute(f"CREATE {'' if durable else 'TEMP '}TABLE raw_usage (event_id uuid PRIMARY KEY,"
                                 " contract_id text, payload text)")
        seen, started = 0, None
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=RatingSettings().batch_max_records)
            records = [record for partition in batches.values() for record in partition]
            if not records:
                continue
            started = started or time.perf_counter()
            decoded = [json.loads(record.value) for record in records]
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO raw_usage SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])"
                    " ON CONFLICT DO NOTHING", [event["event_id"] for event in decoded],
                    [event["contract_id"] for event in decoded], [record.value.decode() for record in records])
            await producer.send_and_wait("bench.raw-out", json.dumps({"stored": len(records)}).encode())
            await consumer.commit()
            seen += len(records)
        return count / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await connection.execute("DROP TABLE IF EXISTS raw_usage")
        await producer.stop()
        await consumer.stop()
        await connection.close()


async def count(databases: Databases, service: str, table) -> int:
    return await databases.count(service, select(func.count()).select_from(table))


async def time_until(databases: Databases, service: str, table, target: int, what: str, timeout_s: float = 1800) -> float:
    started = time.perf_counter()
    await until_counted(lambda: count(databases, service, table), target, what, timeout_s=timeout_s)
    return time.perf_counter() - started


async def until_counted(read: Callable[[], Awaitable[int]], target: int, what: str, *, timeout_s: float = 1800,
                        finished: Callable[[], Awaitable[bool]] | None = None) -> None:
    """Until `read()` counts `target` (and `finished()` holds). It polls ten times a second only as
    the target nears, by the rate so far: each count scans a table of 100,000s of rows in the very
    database being measured (15-30 ms), and ten a second throughout took a sixth of a core from
    the stages it timed."""
    started = time.perf_counter()
    first = counted = await read()
    while not (counted >= target and (finished is None or await finished())):
        elapsed = time.perf_counter() - started
        if elapsed > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what} ({counted:,} of {target:,})")
        rate = (counted - first) / elapsed if counted > first else 0.0
        await asyncio.sleep(min(2.0, max(0.1, (target - counted) / rate / 2)) if rate else 0.5)
        counted = await read()


async def sustained_rate(databases: Databases, service: str, table, target: int, what: str) -> float:
    """Rows per second from the first row a freshly started worker writes until `target` rows are
    written AND everything they emit is published (its outbox drained): a worker's start (imports,
    migrations, joining its group) is not part of what it sustains, passing its output on is."""
    before = await count(databases, service, table)
    await wait_until(lambda: _reached(databases, service, table, before + 1), timeout_s=600, what=what, poll_s=0.02)
    first = await count(databases, service, table)
    started = time.perf_counter()
    await until_counted(lambda: count(databases, service, table), target, what,
                        finished=lambda: databases.outbox_drained(service))
    return (target - first) / (time.perf_counter() - started)


async def _idle(databases: Databases, kafka: KafkaSettings) -> bool:
    """Every consumer group has consumed its topic to the end, every document has reached payments
    and settlement, rating's period close has looked at every contract loaded, and no outbox holds
    anything: a latency figure then measures the path of an event, not a backlog left by the
    stages before (invoicing still rendering the last run's e-invoices, say)."""
    for service in stage_subscriptions():
        if not await _caught_up(kafka, service):
            return False
    docs = await count(databases, "invoicing", documents)
    inbox = settlement_messaging.inbox
    taxed = await databases.count("settlement", select(func.count()).select_from(inbox)
                                  .where(inbox.c.consumer == "settlement.documents.created"))
    close_pending = (await databases.count("rating", select(func.count()).select_from(contracts)
                                           .where(contracts.c.close_due_on.is_(None)))
                     if RatingSettings().period_close_interval_s > 0 else 0)
    return (await count(databases, "payments", open_items) >= docs and taxed >= docs and not close_pending
            and await databases.outboxes_drained())


async def _caught_up(kafka: KafkaSettings, service: str) -> bool:
    """Every consumer group of the service has consumed its topic to the end."""
    for group, topic in stage_subscriptions()[service]:
        if any((await group_lag(kafka.bootstrap_servers, group, topic)).values()):
            return False
    return True


async def until_rated_and_held(databases: Databases, events: int, what: str, timeout_s: float = 1800) -> None:
    """Until `events` usage events are rated, and every billable item they became held by settlement."""

    async def held() -> bool:
        return (await databases.outbox_drained("rating") and await _reached(
            databases, "settlement", settled_items, await count(databases, "rating", rated_items)))

    await until_counted(lambda: count(databases, "rating", rated_usage), events, what, timeout_s=timeout_s,
                        finished=held)


async def _reached(databases: Databases, service: str, table, target: int) -> bool:
    return await count(databases, service, table) >= target


async def publish(kafka: KafkaSettings, topic: str, events: list) -> None:
    await load.publish(kafka, topic, encoded(events))


def encoded(events: list) -> list[tuple[bytes, bytes]]:
    """The (key, value) messages of events: encoded before a clock starts, as making the load is
    the load generator's work (100,000 pydantic encodes are a second of the machine's CPU)."""
    return [(event.key.encode(), encode_event(event)) for event in events]


async def stage_rating(kafka, databases, workers, specs, results, baseline_rates, processes: int, events: int,
                       label: str) -> float:
    before = await count(databases, "rating", rated_usage)
    await publish(kafka, topics.USAGE_RECORDED, usage_events(events, specs, label))
    workers.start("rating", workers=processes)
    rate = await sustained_rate(databases, "rating", rated_usage, before + events, "rating the backlog")
    record_rss(workers, results)
    workers.stop("rating")
    results.add(f"rating, {processes} worker(s): usage events rated", f"{rate:,.0f} ev/s "
                f"({rate / baseline_rates['raw']:.0%} of the raw pipeline)", key=f"rating {processes}", number=rate,
                unit="ev/s")
    return rate


async def run(config: BenchmarkConfig, root: Path) -> Results:
    results = Results()
    kafka = KafkaSettings()
    await create_topics(kafka)
    databases = Databases()
    workers = Workers(root / "logs")
    try:
        for service, url in databases.urls.items():
            await migrate(service, url)
        specs = contract_specs(config.contracts, "B")
        await save_contracts(databases["rating"], specs)
        print(f"baseline ({config.events:,} messages / rows)")
        rates = await baseline(kafka, databases, usage_events(config.events, specs, "baseline"), results)

        print("stages, each alone on a pre-filled topic")
        one = await stage_rating(kafka, databases, workers, specs, results, rates, 1, config.events, "r1")
        results.add("rating, 1 worker, of the raw pipeline", f"{one / rates['raw']:.0%}", key="rating 1 / raw",
                    number=100 * one / rates["raw"], unit="%")
        workers.start("settlement")
        rated = await count(databases, "rating", rated_usage)
        await until_rated_and_held(databases, rated, "settlement to hold the items rated", timeout_s=600)
        record_rss(workers, results)

        print(f"billing run over {config.run_contracts:,} contracts (documents without PDF)")
        workers.start("rating")
        run_s = await billing_run(kafka, databases, workers, config.run_contracts, "R", render_pdfs=False)
        record_rss(workers, results)
        results.add(f"billing run, {config.run_contracts:,} contracts, to the last document (no PDF)",
                    f"{run_s:,.1f} s ({config.run_contracts / run_s:,.0f} documents/s)",
                    key="billing run" if config.run_contracts == BILLING_RUN_TARGET_CONTRACTS else None,
                    number=run_s, unit="s")
        # What documents cost to render: the plain PDF, and the Factur-X PDF/A-3 with its validated
        # EN 16931 XML on 1 and 2 render processes (INVOICING_RENDER_PROCESSES).
        rendered = max(config.run_contracts // 50, config.rendered_contracts)
        for label, prefix, env in (
                ("plain PDF", "P", {"INVOICING_E_INVOICES": "false"}),
                ("e-invoice, 1 render process", "E1", {"INVOICING_RENDER_PROCESSES": "1"}),
                ("e-invoice, 2 render processes", "E2", {"INVOICING_RENDER_PROCESSES": "2"})):
            print(f"billing run over {rendered:,} contracts (documents with {label})")
            run_s = await billing_run(kafka, databases, workers, rendered, prefix, render_pdfs=True, env=env)
            record_rss(workers, results)
            results.add(f"billing run, {rendered:,} contracts, to the last document (with {label})",
                        f"{run_s:,.1f} s ({rendered / run_s:,.0f} documents/s)", key=f"documents with {label}",
                        number=rendered / run_s, unit="documents/s")

        print(f"billing runs over the stage's {len(specs):,} contracts")
        settled_rate = await settle_backlog(kafka, databases, specs)
        results.add(f"settlement: billable items settled ({len(specs):,} runs)", f"{settled_rate:,.0f} items/s",
                    key="items settled", number=settled_rate, unit="items/s")

        print(f"latency usage.recorded -> items.rated at {config.latency_rate:,} ev/s offered")
        workers.start("payments")
        await wait_until(lambda: _idle(databases, kafka), timeout_s=1800, what="the billing runs' backlog to drain")
        add_latency(results, await measure_latency(kafka, specs, config, "latency"), "latency")
        record_rss(workers, results)

        print("whole pipeline, all workers running: usage published -> items in settlement")
        whole_s = await work_off(kafka, databases, specs, config.events, "whole")
        results.add("whole pipeline: usage events to settlement", f"{config.events / whole_s:,.0f} ev/s",
                    key="whole pipeline", number=config.events / whole_s, unit="ev/s")
        record_rss(workers, results)

        if config.burst_events:
            print(f"a burst of {config.burst_events:,} usage events, then {config.latency_rate:,} ev/s again")
            burst_s = await work_off(kafka, databases, specs, config.burst_events, "burst")
            results.add(f"burst of {config.burst_events:,} events worked off (to settlement)",
                        f"{burst_s:,.1f} s ({config.burst_events / burst_s:,.0f} ev/s)", key="burst",
                        number=config.burst_events / burst_s, unit="ev/s")
            add_latency(results, await measure_latency(kafka, specs, config, "after-burst"), "latency after burst")
            record_rss(workers, results)

        if config.period_events:
            print(f"one contract, {config.period_events:,} usage events in one period, to its invoice")
            await one_big_period(kafka, databases, config.period_events, load.publish, results.add)
            record_rss(workers, results)

        # Everything above went through the real pipeline: the four services must agree on every
        # contract's money, as `billing reconcile` checks it, once the last documents are booked.
        print("billing reconcile over every contract")
        await wait_until(lambda: _idle(databases, kafka), timeout_s=1800, what="the last documents to be booked")
        reconciliation = await examine(databases, kafka.bootstrap_servers)
        differences = reconciliation.differences()
        results.add("billing reconcile: every contract", f"{len(reconciliation.per_contract):,} contracts, "
                    f"{len(differences)} difference(s)", key="reconcile", number=len(differences),
                    unit="differences")
        for line in differences[:20]:
            print(f"  {line}")

        # Last: after a `--workers 2` process stops, the local broker (Tansu) may never let its
        # consumer group be joined again, so nothing may come after this stage.
        for service in list(workers.processes):
            workers.stop(service)  # the stage alone, as the one-worker figure was measured
        two = await stage_rating(kafka, databases, workers, specs, results, rates, 2, config.events, "r2")
        results.add("rating: 2 workers / 1 worker", f"{two / one:.2f}", key="rating 2 / 1", number=two / one)

        print("peak RSS per worker (VmHWM)")
        for service, rss in sorted(results.rss_mb.items()):
            results.add(f"{service} worker peak RSS", f"{rss:,.0f} MB", key=f"peak rss {service}", number=rss,
                        unit="MB")
    finally:
        workers.stop_all()
        await databases.dispose()
    return results


async def billing_run(kafka: KafkaSettings, databases: Databases, workers: Workers, contracts: int, prefix: str,
                      *, render_pdfs: bool, env: dict[str, str] | None = None) -> float:
    """Seconds from publishing one billing run request per contract (each with one rated item) to
    the last document; invoicing is (re)started to render PDFs or not, with `env` (or its defaults),
    and has caught up with the contracts before the requests are published."""
    specs = contract_specs(contracts, prefix)
    await save_contracts(databases["rating"], specs)
    settled_before = await count(databases, "settlement", settled_items)
    await publish(kafka, topics.USAGE_RECORDED, usage_events(contracts, specs, f"run-{prefix}"))
    await time_until(databases, "settlement", settled_items, settled_before + contracts, "the run's items to settle")
    if "invoicing" in workers.processes:
        workers.stop("invoicing")
    for name in ("INVOICING_E_INVOICES", "INVOICING_RENDER_PROCESSES"):
        workers.env.pop(name, None)
    workers.env.update({"INVOICING_RENDER_PDFS": "true" if render_pdfs else "false", **(env or {})})
    log = workers.log_dir / "invoicing.log"
    starts = _started_lines(log)
    workers.start("invoicing")
    await wait_until(lambda: _async(_started_lines(log) > starts), timeout_s=120, what="invoicing to start")
    # The clock starts once invoicing holds every contract's terms, as a running invoicing would
    # from the import on: it is started here, and would otherwise first read the run's contracts.
    await wait_until(lambda: _caught_up(kafka, "invoicing"), timeout_s=600, what="invoicing to hold the contracts")
    docs_before = await count(databases, "invoicing", documents)
    now = datetime.now(UTC)
    requests = encoded([BillingRunRequested(event_id=derive_id(f"bench-run-{prefix}", spec.contract_id),
                                            occurred_at=now, contract_id=spec.contract_id, cutoff=now) for spec in specs])
    started = time.perf_counter()
    await load.publish(kafka, topics.BILLING_RUNS_REQUESTED, requests)
    await time_until(databases, "invoicing", documents, docs_before + contracts, "documents of the run")
    return time.perf_counter() - started


async def settle_backlog(kafka: KafkaSettings, databases: Databases, specs: list[ContractSpec]) -> float:
    """Items settled per second, from requesting a billing run for each contract to every item they
    hold settled (in settlement's database)."""
    unsettled = settled_items.c.settlement_run_id.is_(None)
    contract_ids = [spec.contract_id for spec in specs]

    async def settled() -> int:
        return await databases.count("settlement", select(func.count()).select_from(settled_items).where(~unsettled))

    backlog = await databases.count("settlement", select(func.count()).select_from(settled_items)
                                    .where(unsettled, settled_items.c.contract_id.in_(contract_ids)))
    settled_before = await settled()
    now = datetime.now(UTC)
    requests = encoded([BillingRunRequested(event_id=derive_id("bench-settle", contract_id), occurred_at=now,
                                            contract_id=contract_id, cutoff=now) for contract_id in contract_ids])
    started = time.perf_counter()
    await load.publish(kafka, topics.BILLING_RUNS_REQUESTED, requests)

    await until_counted(settled, settled_before + backlog, "the stage's items to settle")
    return backlog / (time.perf_counter() - started)


def _started_lines(log: Path) -> int:
    return log.read_text().count("started successfully") if log.exists() else 0


async def _async(value: bool) -> bool:
    return value


async def work_off(kafka: KafkaSettings, databases: Databases, specs: list[ContractSpec], events: int,
                   label: str) -> float:
    """Seconds from publishing `events` usage events (as fast as the producer can) until every one
    is rated and settlement holds every item they became. The events are made and encoded before
    the clock starts (`encoded`)."""
    before = await count(databases, "rating", rated_usage)
    usage = encoded(usage_events(events, specs, label))
    started = time.perf_counter()
    await load.publish(kafka, topics.USAGE_RECORDED, usage)
    await until_rated_and_held(databases, before + events, f"{events:,} events ({label}) rated and held by settlement",
                               timeout_s=3600)
    return time.perf_counter() - started


def add_latency(results: Results, latencies: list[float], label: str) -> None:
    quantiles = statistics.quantiles(latencies, n=100)
    results.add(f"{label} p50 / p95 / p99 ({len(latencies):,} events)",
                f"{quantiles[49]:.0f} / {quantiles[94]:.0f} / {quantiles[98]:.0f} ms")
    results.figures[f"{label} p50"] = (f"{label} p50", quantiles[49], "ms")
    results.figures[f"{label} p99"] = (f"{label} p99", quantiles[98], "ms")


async def measure_latency(kafka: KafkaSettings, specs: list[ContractSpec], config: BenchmarkConfig,
                          label: str) -> list[float]:
    """Publish at a steady rate and time each event until its rated item can be read off items.rated.

    Both ends are librdkafka (ops.load), as an upstream product and a downstream reader would be,
    spending little of the machine they share with what they measure: the producer lingers 5 ms
    (librdkafka's default: a request per few events), the loop wakes only to send what is due,
    and the reader takes of each item only the ids of the events it rated. The clock starts once
    a few events went all the way through untimed (`LATENCY_WARM_UP_EVENTS`): until then the two
    clients are still connecting and the reader has not fetched yet, which the first 0.7 s of
    events waited for (300-650 ms), so that they were the slowest percent."""
    warm_up, timed = _latency_events(specs, label, int(config.latency_rate * config.latency_seconds))
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    warmed: set[str] = set()

    def rated(value: bytes, arrived: float) -> None:
        for event_id in json.loads(value)["source_event_ids"]:
            if event_id in sent_at:
                latencies.append((arrived - sent_at[event_id]) * 1000)
            else:
                warmed.add(event_id)

    reader = load.TopicReader(kafka, topics.ITEMS_RATED, rated)
    try:
        producer = load.LoadProducer(kafka)
        for _, key, payload in warm_up:
            producer.send(topics.USAGE_RECORDED, key, payload)
        await asyncio.to_thread(producer.flush)
        await wait_until(lambda: _async(len(warmed) >= len(warm_up)), timeout_s=300, what="the warm-up's rated items")
        interval = 1 / config.latency_rate
        began = time.perf_counter()
        sent = 0
        while sent < len(timed):
            due = min(len(timed), int((time.perf_counter() - began) / interval) + 1)
            for event_id, key, payload in timed[sent:due]:
                sent_at[event_id] = time.perf_counter()
                producer.send(topics.USAGE_RECORDED, key, payload)
            sent = due
            await asyncio.sleep(max(0.0, began + sent * interval - time.perf_counter()))
        await asyncio.to_thread(producer.flush)
        await wait_until(lambda: _async(len(latencies) >= len(timed)), timeout_s=300, what="every event's rated item")
    finally:
        await asyncio.to_thread(reader.close)
    return latencies


# Events sent through before the latency clock starts (measure_latency).
LATENCY_WARM_UP_EVENTS = 20


def _latency_events(specs: list[ContractSpec], label: str, count: int
                    ) -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes]]]:
    """(event id, key, payload) of the untimed warm-up events and of the `count` timed ones."""
    messages = [(str(event.event_id), event.key.encode(), encode_event(event))
                for event in usage_events(LATENCY_WARM_UP_EVENTS + count, specs, label)]
    return messages[:LATENCY_WARM_UP_EVENTS], messages[LATENCY_WARM_UP_EVENTS:]


def run_benchmark(config: BenchmarkConfig) -> dict[str, list[Results]]:
    """Each broker's results, each run measured on a fresh stack of its own under
    config.root/<broker>/<run>; then a summary per broker over its runs."""
    root = config.root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    os.environ.setdefault("BILLING_KAFKA_SESSION_TIMEOUT_MS", "6000")
    os.environ.setdefault("BILLING_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
    os.environ.setdefault("SETTLEMENT_SCHEDULER_INTERVAL_S", "0")  # the benchmark requests its runs itself
    # The one-period phase's month (October 2026) is long over: it closes the month itself, once
    # every event is rated, as the worker's period close would after the grace days.
    os.environ.setdefault("RATING_PERIOD_CLOSE_INTERVAL_S", "0")
    measured: dict[str, list[Results]] = {}
    for broker in config.brokers or (chosen_broker(),):
        for number in range(1, config.runs + 1):
            stack_root = root / broker / f"run-{number}"
            os.environ["BILLING_STACK_DIR"] = str(stack_root)  # this process and its workers use that stack
            stack = LocalStack(stack_root, free_port(), broker=broker)
            print(f"on {describe_broker(broker)}, run {number} of {config.runs}", flush=True)
            stack.up()
            try:
                measured.setdefault(broker, []).append(asyncio.run(run(config, stack_root)))
            finally:
                stack.down()
        print(f"\nsummary on {describe_broker(broker)}, {config.runs} run(s) ({platform.node()}, {processor()}, "
              f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}):\n{summary(measured[broker])}\n", flush=True)
    if len(measured) > 1:
        print(side_by_side({broker: runs[0] for broker, runs in measured.items()}))
    return measured


def processor() -> str:
    """The CPU's model and clock as Linux names them: the figures of two hosts with as many cores
    differed by half (the raw pipeline 43,684 and 74,616 ev/s on the same day), so they say which."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "processor unknown"
    fields = {name.strip(): value.strip() for name, _, value in (line.partition(":") for line in info.splitlines())}
    model = fields.get("model name") or platform.processor() or "processor unknown"
    clock = fields.get("cpu MHz")
    return f"{model} at {float(clock) / 1000:.1f} GHz" if clock else model


def side_by_side(measured: dict[str, Results]) -> str:
    """A Markdown table: one row per figure, one column per broker."""
    values = {broker: dict(results.lines) for broker, results in measured.items()}
    labels = list(dict.fromkeys(label for results in measured.values() for label, _ in results.lines))
    rows = [f"| figure | {' | '.join(describe_broker(broker) for broker in measured)} |",
            f"|---|{'---|' * len(measured)}"]
    rows += [f"| {label} | {' | '.join(values[broker].get(label, '') for broker in measured)} |" for label in labels]
    return "\n".join(rows)
