"""The real pipeline for end-to-end tests: the local stack and four `faststream run` workers.

Started once per test session by the project's own code (ops.stack, ops.workers) on a fresh
directory and a free port, so a running demo never interferes. Tests isolate themselves by
using contract ids of their own, and wait on outcomes with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from faststream.kafka import KafkaBroker
from pypdf import PdfReader
from sqlalchemy import func, select

from ops.cli import prepare
from ops.observe import Databases, dead_letters, wait_until
from ops.operators import issue_tokens
from ops.stack import LocalStack, chosen_broker, describe_broker, free_port
from ops.workers import Workers
from services.invoicing.tables import documents
from services.rating.contracts import ContractSpec, save_contracts
from services.rating.tables import billable_items as rated_items
from services.rating.tables import rated_usage
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import messaging as settlement_messaging
from shared import topics
from shared.access.domain import Role
from shared.access.guard import Guard
from shared.events import BillingRunRequested, DeadLetter, PaymentKind, PaymentReceived, UsageRecorded, derive_id
from shared.runtime import create_broker, publish_event
from shared.settings import KafkaSettings

# Group joins on the local broker take seconds, and the first test also waits for all workers.
DEADLINE_S = 90.0


def as_role(role: Role = Role.admin) -> dict[str, str]:
    """The headers of a machine client holding a token of `role` (issued when the pipeline starts;
    kept in the environment, since pytest's conftest module and the tests' import of it differ)."""
    return {"Authorization": f"Bearer {os.environ[f'TESTS_{role.name.upper()}_TOKEN']}"}


BROKER_RUN_ON = pytest.StashKey[str]()
SESSION_SUMMARY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Every run says which broker its end-to-end results come from, and shows the drills' figures."""
    for text in config.stash.get(SESSION_SUMMARY, []):
        terminalreporter.write_line(text)
    if BROKER_RUN_ON in config.stash:
        terminalreporter.write_line(f"end-to-end tests ran on {config.stash[BROKER_RUN_ON]} "
                                    "(BILLING_LOCAL_BROKER=kafka|tansu chooses)")


@pytest.fixture
def session_summary(pytestconfig: pytest.Config) -> list[str]:
    """Lines to print at the end of the test session, passed or not (e.g. a drill's counts)."""
    return pytestconfig.stash.setdefault(SESSION_SUMMARY, [])


@dataclass
class Pipeline:
    root: Path
    kafka: KafkaSettings
    workers: Workers
    stack: LocalStack


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("stack")
    env = {
        "BILLING_STACK_DIR": str(root),
        "BILLING_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "BILLING_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        # Tests use fixed November 2026 dates; the workers' own period-end schedulers (settlement's
        # runs, rating's period close) would race what the tests do once the real clock passes the
        # period's end. Both are tested with a controlled clock instead.
        "SETTLEMENT_SCHEDULER_INTERVAL_S": "0",
        "RATING_PERIOD_CLOSE_INTERVAL_S": "0",
    }
    os.environ.update(env)  # the tests resolve the same servers as the workers they start
    stack = LocalStack(root, kafka_port=free_port(), broker=chosen_broker())
    pytestconfig.stash[BROKER_RUN_ON] = describe_broker(stack.broker)
    workers = Workers(root / "logs", env=env)
    stack.up()
    try:
        asyncio.run(prepare())
        # Every HTTP surface and data-changing command asks for credentials: a token per role, the
        # administrator's for the operator commands the tests run (ACCESS_TOKEN).
        tokens = asyncio.run(issue_tokens({f"tests-{role.name}": role for role in Role}, "tests"))
        os.environ.update({f"TESTS_{role.name.upper()}_TOKEN": tokens[f"tests-{role.name}"] for role in Role})
        os.environ["ACCESS_TOKEN"] = tokens["tests-admin"]
        workers.start_all()
        yield Pipeline(root, KafkaSettings(), workers, stack)
        assert not workers.crashed(), f"workers died during the tests; see {root / 'logs'}"
    finally:
        workers.stop_all()
        stack.down()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def reconciled_at_the_end(pipeline: Pipeline) -> AsyncIterator[set[str]]:
    """Contracts whose tests expect a clean end state; add yours. Once every test is done, `billing
    reconcile` must find nothing differing for them across the four services, nothing parked and no
    dead letter keyed by them.

    Only those, because other tests leave differences on purpose: they put a rated item, a run or a
    document on a topic themselves (so no service upstream has it), reverse a payment on the ledger
    alone, or send messages meant to be dead-lettered.
    """
    contracts: set[str] = set()
    yield contracts
    if contracts:
        await _reconciled(sorted(contracts))


async def _reconciled(contract_ids: list[str]) -> None:
    """The command an operator runs, until it agrees: the last documents and payments may still be
    on their way to the services that book them when the last test ends."""
    arguments = [arg for contract_id in contract_ids for arg in ("--contract", contract_id)]
    output: list[str] = []

    async def agrees() -> bool:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ops.cli", "reconcile", *arguments, env=os.environ,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output[:] = [(await process.communicate())[0].decode()]
        return process.returncode == 0

    try:
        await wait_until(agrees, timeout_s=DEADLINE_S, what="billing reconcile to find no difference", poll_s=1.0)
    except TimeoutError:
        pytest.fail(f"billing reconcile found differences after the tests:\n{output[0]}")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def broker(pipeline: Pipeline) -> AsyncIterator[KafkaBroker]:
    async with create_broker(pipeline.kafka, client_id="tests") as connected:
        await connected.start()
        yield connected


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def access_guard(pipeline: Pipeline) -> AsyncIterator[Guard]:
    """The access database's checks, for an API app served in the test's own process."""
    guard = await Guard.open()
    yield guard
    await guard.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def databases(pipeline: Pipeline) -> AsyncIterator[Databases]:
    opened = Databases()
    yield opened
    await opened.dispose()


def new_contract_id(label: str) -> str:
    return f"T-{label}-{uuid.uuid4().hex[:10]}"


async def given_contract(
    databases: Databases, contract_id: str, prices: dict[str, str], *, currency: str = "EUR",
    customer_id: str | None = None, country: str = "DE",
) -> ContractSpec:
    spec = ContractSpec(
        contract_id=contract_id,
        customer={"customer_id": customer_id or f"CUST-{contract_id}", "name": f"Customer of {contract_id}",
                  "country": country},
        currency=currency,
        starts_on="2026-01-01",
        items=[{"item_code": code, "description": code.title(), "unit_price": price} for code, price in prices.items()],
    )
    await save_contracts(databases["rating"], [spec])
    return spec


GRADUATED = {"model": "graduated", "free_quantity": "100",
             "tiers": [{"from_quantity": "0", "to_quantity": "1000", "unit_price": "0.02"},
                       {"from_quantity": "1000", "unit_price": "0.01"}]}


async def given_priced_contract(databases: Databases, contract_id: str, customer_id: str) -> None:
    """Storage at 0.10 a unit; API calls with 100 free, then 0.02 up to 1000 and 0.01 beyond."""
    await save_contracts(databases["rating"], [ContractSpec.model_validate({
        "contract_id": contract_id, "currency": "EUR", "starts_on": "2026-01-01",
        "customer": {"customer_id": customer_id, "name": f"Customer of {contract_id}", "country": "DE"},
        "items": [{"item_code": "storage", "description": "Storage", "unit_price": "0.10"},
                  {"item_code": "api-calls", "description": "API calls", "pricing": GRADUATED}]})])


def usage(contract_id: str, item_code: str, quantity: str, day: int = 10) -> UsageRecorded:
    return UsageRecorded(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2026, 11, day, 9, 30, tzinfo=UTC),
        contract_id=contract_id,
        item_code=item_code,
        quantity=Decimal(quantity),
    )


async def publish_usage(broker: KafkaBroker, *events: UsageRecorded) -> None:
    for event in events:
        await publish_event(broker, topics.USAGE_RECORDED, event, event.key)


async def rated_event_count(databases: Databases, contract_id: str) -> int:
    return await databases.count("rating", select(func.count()).select_from(rated_usage)
                                 .where(rated_usage.c.contract_id == contract_id))


async def wait_for_settlement_to_hold(databases: Databases, contract_id: str, events: int,
                                      net: Decimal | None = None, timeout_s: float = DEADLINE_S) -> None:
    """Until rating has rated `events` usage events of the contract and settlement holds every
    billable item rating has of it (a poll's events of a period are one item), with `net` in all."""

    async def held() -> bool:
        if await rated_event_count(databases, contract_id) < events:
            return False
        rated = await databases.count("rating", select(func.count()).select_from(rated_items)
                                      .where(rated_items.c.contract_id == contract_id))
        async with databases["settlement"].transaction() as session:
            count, amount = (await session.execute(
                select(func.count(), func.coalesce(func.sum(settled_items.c.net), 0))
                .where(settled_items.c.contract_id == contract_id))).one()
        return count == rated and (net is None or amount == net)

    await wait_until(held, timeout_s=timeout_s, what=f"{events} events of {contract_id} rated and held by settlement")


async def request_billing_run(broker: KafkaBroker, contract_id: str) -> None:
    now = datetime.now(UTC)
    request = BillingRunRequested(
        event_id=derive_id(f"test-run:{now.isoformat()}", contract_id),
        occurred_at=now, contract_id=contract_id, cutoff=now, requested_by="tests",
    )
    await publish_event(broker, topics.BILLING_RUNS_REQUESTED, request, request.key)


def pdf_text_via_admin(number: str, directory: Path) -> tuple[str, bytes]:
    """The stored PDF, fetched by number with the operator command, and its extracted text."""
    target = directory / f"{number}.pdf"
    subprocess.run([sys.executable, "-m", "services.invoicing.admin", "pdf", number, "-o", str(target)],
                   check=True, capture_output=True, env=os.environ.copy(), timeout=60)
    content = target.read_bytes()
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages), content


async def wait_for_invoice(databases: Databases, contract_id: str):
    """The one invoice of the contract, once invoicing has finalized it and settlement has booked its VAT.

    Waiting for the VAT keeps the order of ledger entries the tests assert independent of timing.
    """
    found = []

    async def invoiced() -> bool:
        async with databases["invoicing"].transaction() as session:
            found[:] = (await session.execute(select(documents).where(documents.c.contract_id == contract_id))).all()
        return bool(found)

    await wait_until(invoiced, timeout_s=DEADLINE_S, what=f"an invoice for {contract_id}")
    assert len(found) == 1, f"expected one invoice for {contract_id}, found {len(found)}"
    await wait_for_vat_booked(databases, found[0].document_id)
    return found[0]


async def wait_for_vat_booked(databases: Databases, document_id: uuid.UUID) -> None:
    """Settlement has applied the document's documents.created (and so booked its VAT, if any)."""
    inbox = settlement_messaging.inbox
    await wait_until(lambda: databases.has_exactly("settlement", inbox, 1,
                                                   inbox.c.consumer == "settlement.documents.created",
                                                   inbox.c.event_id == derive_id(document_id, "documents.created")),
                     timeout_s=DEADLINE_S, what=f"settlement booking the VAT of document {document_id}")


async def wait_for_dead_letter(pipeline: Pipeline, contract_id: str, reason_part: str) -> DeadLetter:
    letters: list[DeadLetter] = []

    async def arrived() -> bool:
        letters[:] = [
            letter for letter in await dead_letters(pipeline.kafka.bootstrap_servers)
            if letter.key == contract_id and reason_part in letter.reason
        ]
        return bool(letters)

    await wait_until(arrived, timeout_s=DEADLINE_S, what=f"a dead letter for {contract_id} about {reason_part!r}")
    return letters[0]


@contextmanager
def serving_bridge(log_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """The webhook bridge as a uvicorn process of its own, with `env` on top of the pipeline's
    environment (its provider secrets); its URL until the block ends."""
    http = Workers(log_dir, env=env)
    url = http.start_http("bridge", free_port())
    try:
        http.wait_healthy("bridge", url)
        yield url
    finally:
        http.stop_all()


@pytest.fixture(scope="session")
def rating_api_url(pipeline: Pipeline) -> str:
    """Rating's HTTP API as a real uvicorn process on the pipeline's stack."""
    url = pipeline.workers.start_http("rating-api", free_port())
    pipeline.workers.wait_healthy("rating-api", url)
    return url


@pytest.fixture(scope="session")
def settlement_api_url(pipeline: Pipeline) -> str:
    """Settlement's HTTP API as a real uvicorn process on the pipeline's stack."""
    url = pipeline.workers.start_http("settlement-api", free_port())
    pipeline.workers.wait_healthy("settlement-api", url)
    return url


@pytest.fixture(scope="session")
def payments_api_url(pipeline: Pipeline) -> str:
    """Payments' HTTP app (the webhook bridge, with its operator routes) as a real uvicorn process."""
    url = pipeline.workers.start_http("bridge", free_port())
    pipeline.workers.wait_healthy("bridge", url)
    return url


@pytest.fixture(scope="session")
def portal_url(pipeline: Pipeline, rating_api_url: str, settlement_api_url: str, payments_api_url: str) -> str:
    """The customer billing portal as a real uvicorn process on the pipeline's stack, with rating's,
    settlement's and payments' APIs."""
    pipeline.workers.env["PORTAL_RATING_API_URL"] = rating_api_url
    pipeline.workers.env["PORTAL_SETTLEMENT_API_URL"] = settlement_api_url
    pipeline.workers.env["PORTAL_PAYMENTS_API_URL"] = payments_api_url
    url = pipeline.workers.start_http("portal", free_port())
    pipeline.workers.wait_healthy("portal", url)
    return url


async def wait_for_rows(client: httpx.AsyncClient, path: str, total: int, **params) -> dict:
    """The listing at `path` once it has `total` rows (the pipeline is asynchronous)."""
    found: dict = {}

    async def arrived() -> bool:
        found.update((await client.get(path, params=params)).raise_for_status().json())
        return found["total"] == total

    await wait_until(arrived, timeout_s=DEADLINE_S, what=f"{total} rows at {path} {params}")
    return found


async def two_invoices_and_a_payment(broker, databases, client: httpx.AsyncClient, label: str) -> tuple[str, str]:
    """A contract at 0.10 a unit invoiced twice: 1000 units (100.00 + 19.00 VAT = 119.00), then 500 (50.00 +
    9.50 = 59.50); 80.00 paid naming the first invoice. Returns the customer's API base and the contract."""
    contract = new_contract_id(label)
    customer = f"CUST-{contract}"
    base = f"/api/customers/{customer}"
    await given_contract(databases, contract, {"sms": "0.10"}, customer_id=customer)
    for invoices, (quantity, day) in enumerate([("1000", 3), ("500", 17)], start=1):
        await publish_usage(broker, usage(contract, "sms", quantity, day=day))
        await wait_for_rows(client, f"{base}/billable-items", 1, status="unbilled")
        await request_billing_run(broker, contract)
        await wait_for_rows(client, f"{base}/open-items", invoices)
    first = (await client.get(f"{base}/open-items", params={"sort": "-amount"})).json()["items"][0]
    payment = PaymentReceived(
        event_id=derive_id("portal-opos", contract), occurred_at=datetime.now(UTC), contract_id=contract,
        payment_id=f"{contract}-P1", kind=PaymentKind.PAYMENT, provider="test-bank", customer_id=customer,
        currency="EUR", amount=Decimal("80.00"), invoice_number=first["reference"])
    await publish_event(broker, topics.PAYMENTS_RECEIVED, payment, payment.key)
    await wait_until(lambda: open_amounts_are(client, base, ["39.00", "59.50"]), timeout_s=DEADLINE_S,
                     what="the payment assigned to the first invoice")
    return base, contract


async def open_amounts_are(client: httpx.AsyncClient, base: str, expected: list[str]) -> bool:
    """The open amounts of the customer's items, the bigger (first) invoice first."""
    items = (await client.get(f"{base}/open-items", params={"sort": "-amount"})).json()["items"]
    return [item["open_amount"] for item in items] == expected
