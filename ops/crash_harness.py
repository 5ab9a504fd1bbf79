"""The crash harness: the whole pipeline under SIGKILL, duplicates and a replay, then the invariants.

On its own local stack it loads contracts, starts the four workers, and while a chaos task
SIGKILLs a random worker at random moments and restarts it, it publishes a long usage stream
(a share of it published twice), requests billing runs, pays invoices in full and in part, and
finally republishes the whole usage topic from the beginning. With `restart_broker` (Apache Kafka
only: Tansu forgets everything when it stops) it also stops the broker twice while usage is being
published, with SIGTERM and then with SIGKILL, and starts it again on the same log directory.
Then it lets the pipeline settle and checks, from every service's own database:

- every usage event was rated exactly once (nothing lost, nothing twice);
- everything `billing reconcile` checks (ops/reconcile.py): per contract, rated net == settled net ==
  invoiced net; the ledger balance equals the sum of its entries and what payments shows (open items
  minus unassigned credit); every settlement run has its documents and every document its open item;
  nothing parked and no dead letter written (all input was valid);
- nothing is left unsettled after the final runs;
- document numbers are gapless per series;
- every outbox is drained.

It prints its figures and exits non-zero on any violation.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from aiokafka.errors import KafkaError
from sqlalchemy import func, select
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from ops import reconcile
from ops.observe import Databases, read_topic, wait_until
from ops.stack import LocalStack, chosen_broker, create_topics, describe_broker, free_port
from ops.workers import SERVICE_APPS, Workers
from services.invoicing.tables import document_lines, documents
from services.payments.tables import open_items, payments
from services.rating.contracts import ContractSpec, save_contracts
from services.rating.tables import billable_items as rated_items
from services.rating.tables import rated_usage
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import ledger_entries, settlement_runs
from services.settlement.tables import messaging as settlement_messaging
from shared import topics
from shared.db import migrate
from shared.events import BillingRunRequested, Event, PaymentKind, PaymentReceived, UsageRecorded, derive_id
from shared.inbox import is_transient
from shared.runtime import create_broker, publish_event
from shared.money import Money
from shared.settings import KafkaSettings

UNIT_PRICES = ("0.0125", "0.10", "0.42", "1.99", "0.003")
SETTLEMENT_INBOX = settlement_messaging.inbox


@dataclass
class HarnessConfig:
    events: int = 20_000
    contracts: int = 200
    kill_every_s: float = 3.0
    duplicate_share: float = 0.05
    seed: int = 7
    restart_broker: bool = False
    deadline_s: float = 900.0
    root: Path = Path(".stack/harness")


@dataclass
class Figures:
    broker: str = ""
    events: int = 0
    duplicates: int = 0
    replayed: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: Counter[str] = field(default_factory=Counter)
    billing_requests: int = 0
    payments: int = 0
    rated: int = 0
    lost: int = 0
    double_billed: int = 0
    documents: int = 0
    dead_letters: int = 0
    rated_net: Decimal = Decimal(0)
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    def report(self) -> str:
        kills = ", ".join(f"{service} {count}" for service, count in sorted(self.kills.items())) or "none"
        restarts = ", ".join(f"{signal} {count}" for signal, count in sorted(self.broker_restarts.items())) or "none"
        return "\n".join([
            f"broker                   {self.broker}",
            f"usage events published   {self.events} unique + {self.duplicates} duplicates"
            f" + {self.replayed} replayed from the beginning",
            f"workers SIGKILLed        {sum(self.kills.values())} ({kills})",
            f"broker restarts          {sum(self.broker_restarts.values())} ({restarts})",
            f"billing run requests     {self.billing_requests}",
            f"payments                 {self.payments}",
            f"rated                    {self.rated}",
            f"lost                     {self.lost}",
            f"double-billed            {self.double_billed}",
            f"documents                {self.documents}",
            f"dead letters             {self.dead_letters}",
            f"rated net (all EUR)      {self.rated_net}",
            f"took                     {self.seconds:.1f}s",
            f"violations               {len(self.violations)}",
            *(f"  - {violation}" for violation in self.violations[:50]),
        ])


class Chaos:
    """SIGKILLs a random worker every few seconds and starts it again right away."""

    def __init__(self, workers: Workers, rng: random.Random, every_s: float, figures: Figures) -> None:
        self.workers, self.rng, self.every_s, self.figures = workers, rng, every_s, figures
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.every_s > 0:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.3, 1.7) * self.every_s)
            service = self.rng.choice(sorted(SERVICE_APPS))
            self.workers.stop(service, kill=True)
            self.workers.start(service)
            self.figures.kills[service] += 1


class BrokerRestarts:
    """Stops the broker while the second half of the usage stream is being published (every worker
    is consuming by then: the first half has reached settlement), a quarter of the way in with
    SIGTERM (a clean shutdown) and three quarters in with SIGKILL (a crash), and starts it again on
    the same log directory each time; publishers and workers ride out the outage."""

    def __init__(self, stack: LocalStack, events: int, figures: Figures) -> None:
        self.stack, self.figures = stack, figures
        self.due = [(events // 4, "SIGTERM"), (events * 3 // 4, "SIGKILL")]
        self.published = 0
        self._restarts: list[asyncio.Task[None]] = []
        self._one_at_a_time = asyncio.Lock()

    def count_published(self) -> None:
        self.published += 1
        while self.due and self.published >= self.due[0][0]:
            self._restarts.append(asyncio.create_task(self._restart(self.due.pop(0)[1])))

    async def _restart(self, signal_name: str) -> None:
        async with self._one_at_a_time:
            # In threads: the stream goes on being published while the broker stops and starts.
            await asyncio.to_thread(self.stack.stop_broker, kill=signal_name == "SIGKILL")
            await asyncio.to_thread(self.stack.start_broker)
            self.figures.broker_restarts[signal_name] += 1

    async def finished(self) -> None:
        await asyncio.gather(*self._restarts)


def contracts(config: HarnessConfig, rng: random.Random) -> list[ContractSpec]:
    return [
        ContractSpec.model_validate({
            "contract_id": f"H-{number:05d}",
            "customer": {"customer_id": f"HC-{number // 3:05d}", "name": f"Harness customer {number // 3}",
                         "country": "DE"},
            "currency": "EUR",
            "starts_on": "2026-01-01",
            "items": [{"item_code": "api-calls", "description": "API calls", "unit_price": rng.choice(UNIT_PRICES)},
                      {"item_code": "storage-gb", "description": "Storage", "unit_price": rng.choice(UNIT_PRICES)}],
        })
        for number in range(config.contracts)
    ]


def usage_stream(config: HarnessConfig, specs: list[ContractSpec], rng: random.Random) -> list[UsageRecorded]:
    return [
        UsageRecorded(
            event_id=derive_id(f"harness:{config.seed}", f"usage:{number}"),
            occurred_at=datetime(2026, 11, rng.randint(1, 20), rng.randint(0, 23), rng.randint(0, 59), tzinfo=UTC),
            contract_id=rng.choice(specs).contract_id,
            item_code=rng.choice(["api-calls", "storage-gb"]),
            quantity=Decimal(rng.randint(0, 50_000)).scaleb(-rng.randint(0, 3)),
        )
        for number in range(config.events)
    ]


async def publish_usage(broker, events: list[UsageRecorded], rng: random.Random, share: float,
                        restarts: BrokerRestarts | None) -> int:
    duplicates = 0
    for event in events:
        await publish_resilient(broker, topics.USAGE_RECORDED, event)
        if restarts:
            restarts.count_published()
        if rng.random() < share:
            await publish_resilient(broker, topics.USAGE_RECORDED, event)
            duplicates += 1
    return duplicates


def _broker_away(error: BaseException) -> bool:
    """Connection lost, timed out, or a partition without a leader yet: a restarting broker."""
    return is_transient(error) or (isinstance(error, KafkaError) and error.retriable)


async def publish_resilient(broker, topic: str, event: Event) -> None:
    """Like an upstream product: a send that failed while the broker was away or starting is sent
    again (the same event id, which the consumers' inboxes take once)."""
    async for attempt in AsyncRetrying(retry=retry_if_exception(_broker_away), wait=wait_exponential(0.1, max=2),
                                       stop=stop_after_delay(120), reraise=True):
        with attempt:
            await publish_event(broker, topic, event, event.key)


async def request_runs(broker, specs: list[ContractSpec], label: str) -> int:
    now = datetime.now(UTC)
    for spec in specs:
        request = BillingRunRequested(event_id=derive_id(f"harness-run:{label}", spec.contract_id), occurred_at=now,
                                      contract_id=spec.contract_id, cutoff=now, requested_by="crash-harness")
        await publish_resilient(broker, topics.BILLING_RUNS_REQUESTED, request)
    return len(specs)


async def pay_some_invoices(broker, databases: Databases, rng: random.Random) -> int:
    async with databases["invoicing"].transaction() as session:
        invoices = (await session.execute(select(documents).where(documents.c.document_type == "invoice"))).all()
    paid = 0
    for invoice in invoices:
        share = rng.choice([None, None, Decimal(1), Decimal("0.5")])  # unpaid, unpaid, in full, in part
        if share is None or invoice.gross_total <= 0:
            continue
        amount = Money.round(invoice.gross_total * share, invoice.currency)
        if amount.is_zero():
            continue
        payment = PaymentReceived(
            event_id=derive_id("harness", f"payment:{invoice.number}"), occurred_at=datetime.now(UTC),
            contract_id=invoice.contract_id, payment_id=f"HP-{invoice.number}", kind=PaymentKind.PAYMENT,
            provider="harness-bank", customer_id=invoice.customer_id, currency=invoice.currency,
            amount=amount.amount, invoice_number=invoice.number,
        )
        await publish_resilient(broker, topics.PAYMENTS_RECEIVED, payment)
        paid += 1
    return paid


async def replay_usage_topic(broker, bootstrap_servers: str) -> int:
    """Republish everything on usage.recorded, as a consumer reset or a producer bug would."""
    messages = await read_topic(bootstrap_servers, topics.USAGE_RECORDED, timeout_s=120)
    for value in messages:
        event = UsageRecorded.model_validate_json(value)
        await publish_resilient(broker, topics.USAGE_RECORDED, event)
    return len(messages)


async def rows(databases: Databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        return list((await session.execute(statement)).all())


async def quiet(databases: Databases, unique_events: int, payments_sent: int) -> bool:
    """Everything that was sent has gone all the way through."""
    rated = (await rows(databases, "rating", select(func.count()).select_from(rated_usage)))[0][0]
    rated_item_count = (await rows(databases, "rating", select(func.count()).select_from(rated_items)))[0][0]
    unsettled = (await rows(databases, "settlement", select(func.count()).select_from(settled_items)
                            .where(settled_items.c.settlement_run_id.is_(None))))[0][0]
    settled = (await rows(databases, "settlement", select(func.count()).select_from(settled_items)))[0][0]
    runs = (await rows(databases, "settlement", select(func.count()).select_from(settlement_runs)))[0][0]
    docs = (await rows(databases, "invoicing", select(func.count()).select_from(documents)))[0][0]
    items = (await rows(databases, "payments", select(func.count()).select_from(open_items)))[0][0]
    paid = (await rows(databases, "payments", select(func.count()).select_from(payments)))[0][0]
    ledger_paid = (await rows(databases, "settlement", select(func.count()).select_from(ledger_entries)
                              .where(ledger_entries.c.entry_type == "Payment")))[0][0]
    taxed = (await rows(databases, "settlement", select(func.count()).select_from(SETTLEMENT_INBOX)
                        .where(SETTLEMENT_INBOX.c.consumer == "settlement.documents.created")))[0][0]
    return (rated >= unique_events and settled >= rated_item_count and unsettled == 0 and docs >= runs and items >= docs
            and taxed >= docs and paid >= payments_sent and ledger_paid >= payments_sent
            and await databases.outboxes_drained())


async def check_invariants(databases: Databases, figures: Figures, published_ids: set[uuid.UUID],
                           bootstrap_servers: str) -> None:
    problems = figures.violations
    rated = await rows(databases, "rating", select(rated_items.c.contract_id, rated_items.c.net))
    rated_ids = Counter(row.event_id for row in await rows(databases, "rating", select(rated_usage.c.event_id)))
    figures.rated = rated_ids.total()
    figures.lost = len(published_ids - set(rated_ids))
    figures.double_billed = sum(count - 1 for count in rated_ids.values() if count > 1)
    if figures.lost:
        problems.append(f"{figures.lost} usage events were never rated")
    if set(rated_ids) - published_ids:
        problems.append(f"{len(set(rated_ids) - published_ids)} rated items have no published usage event")

    figures.rated_net = sum((row.net for row in rated), Decimal(0))
    settled_count = (await rows(databases, "settlement", select(func.count()).select_from(settled_items)))[0][0]
    line_count = (await rows(databases, "invoicing", select(func.count()).select_from(document_lines)))[0][0]
    figures.double_billed += max(0, settled_count - len(rated)) + max(0, line_count - settled_count)

    # Money across the services (rated == settled == invoiced, ledger == entries == open items minus
    # credit, every run documented and every document in payments), and no dead letters: all input was valid.
    reconciliation = await reconcile.examine(databases, bootstrap_servers)
    problems += reconciliation.differences()
    problems += [f"{contract_id}: {contract.show(contract.unsettled)} left unsettled after the final runs"
                 for contract_id, contract in reconciliation.per_contract.items() if contract.unsettled]
    figures.dead_letters = len(reconciliation.dead_letters)

    docs = await rows(databases, "invoicing", select(documents.c.number))
    figures.documents = len(docs)
    series: dict[str, list[int]] = defaultdict(list)
    for doc in docs:
        prefix, sequence = doc.number.rsplit("-", 1)
        series[prefix].append(int(sequence))
    for prefix, numbers in series.items():
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            problems.append(f"series {prefix} is not gapless: {len(numbers)} documents, highest {max(numbers)}")
    if not await databases.outboxes_drained():
        problems.append("an outbox still has unpublished events")


async def run(config: HarnessConfig, stack: LocalStack, workers: Workers) -> Figures:
    rng = random.Random(config.seed)
    figures = Figures(broker=describe_broker(stack.broker))
    started = time.monotonic()
    kafka = KafkaSettings()
    await create_topics(kafka)
    databases = Databases()
    try:
        for service, url in databases.urls.items():
            await migrate(service, url)
        specs = contracts(config, rng)
        await save_contracts(databases["rating"], specs)
        events = usage_stream(config, specs, rng)
        figures.events = len(events)
        workers.start_all()
        chaos = Chaos(workers, rng, config.kill_every_s, figures)
        half = len(events) // 2
        restarts = BrokerRestarts(stack, len(events) - half, figures) if config.restart_broker else None
        async with create_broker(kafka, client_id="crash-harness") as broker:
            await broker.start()
            chaos.start()
            published_ids = {event.event_id for event in events}
            figures.duplicates += await publish_usage(broker, events[:half], rng, config.duplicate_share, None)
            # Runs settle what has reached settlement; request them once the first half is there.
            await wait_until(lambda: _all_in_settlement(databases, len({e.event_id for e in events[:half]})),
                             timeout_s=config.deadline_s, what="the first half to reach settlement", poll_s=0.5)
            figures.billing_requests += await request_runs(broker, specs, "first")
            figures.duplicates += await publish_usage(broker, events[half:], rng, config.duplicate_share, restarts)
            if restarts:
                await restarts.finished()
            await wait_until(lambda: _invoiced_every_run(databases), timeout_s=config.deadline_s,
                             what="invoices for the first runs", poll_s=1.0)
            figures.payments += await pay_some_invoices(broker, databases, rng)
            figures.replayed = await replay_usage_topic(broker, kafka.bootstrap_servers)
            await chaos.stop()
            await wait_until(lambda: _all_in_settlement(databases, len(published_ids)), timeout_s=config.deadline_s,
                             what="every usage event to be rated and reach settlement", poll_s=1.0)
            figures.billing_requests += await request_runs(broker, specs, "final")
            await wait_until(lambda: quiet(databases, len(published_ids), figures.payments),
                             timeout_s=config.deadline_s, what="the pipeline to settle", poll_s=1.0)
        await check_invariants(databases, figures, published_ids, kafka.bootstrap_servers)
    finally:
        await databases.dispose()
    if workers.crashed():
        figures.violations.append(f"workers exited on their own: {workers.crashed()}")
    figures.seconds = time.monotonic() - started
    return figures


async def _all_in_settlement(databases: Databases, unique_events: int) -> bool:
    """Every event rated and every item it was rated into in settlement: the final run must come
    after that, or it leaves items unsettled."""
    rated = (await rows(databases, "rating", select(func.count()).select_from(rated_usage)))[0][0]
    items = (await rows(databases, "rating", select(func.count()).select_from(rated_items)))[0][0]
    held = (await rows(databases, "settlement", select(func.count()).select_from(settled_items)))[0][0]
    return rated >= unique_events and held >= items and await databases.outbox_drained("rating")


async def _invoiced_every_run(databases: Databases) -> bool:
    runs = (await rows(databases, "settlement", select(func.count()).select_from(settlement_runs)))[0][0]
    docs = (await rows(databases, "invoicing", select(func.count()).select_from(documents)))[0][0]
    return runs > 0 and docs >= runs


def run_harness(config: HarnessConfig) -> Figures:
    import os
    import shutil

    root = config.root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    stack = LocalStack(root, free_port(), broker=chosen_broker())
    os.environ["BILLING_STACK_DIR"] = str(root)  # workers and this process resolve the same servers
    os.environ.setdefault("BILLING_KAFKA_SESSION_TIMEOUT_MS", "6000")
    os.environ.setdefault("BILLING_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
    os.environ["SETTLEMENT_SCHEDULER_INTERVAL_S"] = "0"  # the harness requests its runs itself
    os.environ["RATING_PERIOD_CLOSE_INTERVAL_S"] = "0"  # its fixed November dates must not turn late
    stack.up()
    workers = Workers(root / "logs")
    try:
        return asyncio.run(run(config, stack, workers))
    finally:
        workers.stop_all()
        stack.down()
