"""Operating a worker: its /metrics follow a run (messages received and processed, consumer lag)
and its readiness follows PostgreSQL going away and coming back."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.observe import wait_until
from ops.stack import free_port
from tests.e2e.conftest import DEADLINE_S, given_contract, new_contract_id, publish_usage, rated_event_count, usage

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

TOPIC = "usage.recorded"
BACKLOG = 20  # published while rating cannot write, so they wait on the partition


class Scrape:
    """One read of a worker's /metrics."""

    def __init__(self, text: str) -> None:
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def total(self, name: str, **labels: str) -> float:
        return sum(sample.value for sample in self.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    @property
    def received(self) -> float:
        return self.total("faststream_received_messages_total", handler=TOPIC)

    @property
    def processed(self) -> float:
        return self.total("faststream_received_processed_messages_total", handler=TOPIC, status="acked")

    @property
    def retries(self) -> float:
        return self.total("billing_retries_total", consumer=f"rating.{TOPIC}")

    @property
    def lag(self) -> float:
        return self.total("billing_consumer_lag", topic=TOPIC)


@pytest.fixture
async def rating_endpoint(pipeline):
    """The session's rating worker, restarted with its HTTP endpoint on (the suite runs them without)."""
    port = free_port()
    workers = pipeline.workers
    workers.stop("rating")
    workers.env.update(RATING_HTTP_PORT=str(port), RATING_METRICS_INTERVAL_S="0.2")
    try:
        workers.start("rating")
    finally:
        del workers.env["RATING_HTTP_PORT"], workers.env["RATING_METRICS_INTERVAL_S"]
    url = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(workers.wait_healthy, "rating", url)
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        yield client


async def test_metrics_follow_a_run_and_readiness_follows_an_outage(pipeline, broker, databases, rating_endpoint,
                                                                   reconciled_at_the_end):
    http = rating_endpoint
    contract = new_contract_id("metrics")
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    events = [usage(contract, "api-calls", "1") for _ in range(BACKLOG + 1)]
    scraped: list[Scrape] = []

    async def scrape() -> Scrape:
        scraped[:] = [Scrape((await http.get("/metrics")).text)]
        return scraped[0]

    async def readiness() -> int:
        return (await http.get("/health/ready")).status_code

    start = await scrape()
    await publish_usage(broker, events[0])
    await wait_until(lambda: _at_least(scrape, "processed", start.processed + 1), timeout_s=DEADLINE_S,
                     what="the processed counter to count the first event")
    assert scraped[0].received >= start.received + 1

    pipeline.stack.stop_postgres()
    try:
        await wait_until(lambda: _equals(readiness, 503), timeout_s=DEADLINE_S, what="readiness to fail")
        failed = (await http.get("/health/ready")).json()["failed"]
        assert "database" in failed
        # Nothing can be committed while rating cannot write: all of them wait as lag.
        await publish_usage(broker, *events[1:])
        await wait_until(lambda: _at_least(scrape, "lag", BACKLOG), timeout_s=DEADLINE_S,
                         what=f"a consumer lag of {BACKLOG}")
        await wait_until(lambda: _at_least(scrape, "retries", 1), timeout_s=DEADLINE_S,
                         what="the worker to count its retries")
    finally:
        pipeline.stack.start_postgres()

    await wait_until(lambda: _equals(readiness, 200), timeout_s=DEADLINE_S, what="readiness to recover")
    await wait_until(lambda: _rated(databases, contract, len(events)), timeout_s=DEADLINE_S,
                     what=f"all {len(events)} events rated")
    await wait_until(lambda: _caught_up(scrape, start.processed + len(events)), timeout_s=DEADLINE_S,
                     what="the processed counter to count them all and the lag to return to 0")


async def _at_least(scrape, figure: str, minimum: float) -> bool:
    return getattr(await scrape(), figure) >= minimum


async def _equals(read, expected) -> bool:
    return await read() == expected


async def _rated(databases, contract: str, expected: int) -> bool:
    return await rated_event_count(databases, contract) == expected


async def _caught_up(scrape, processed: float) -> bool:
    now = await scrape()
    return now.processed >= processed and now.lag == 0


async def test_billing_status_reports_every_stage(pipeline):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.cli", "status", "--json", env=os.environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    status = json.loads(out)
    stages = {stage["stage"]: stage for stage in status["stages"]}
    assert list(stages) == ["rating", "settlement", "invoicing", "payments"]
    [rating_group] = stages["rating"]["groups"]
    assert (rating_group["group"], rating_group["topic"]) == ("rating.usage.recorded", TOPIC)
    assert rating_group["members"] >= 1
    assert len(rating_group["lag_by_partition"]) == pipeline.kafka.partitions
    # The hostile and dead-letter tests leave dead letters behind on purpose; the count is what the topic holds.
    assert all(stage["dead_letters"] >= 0 and "outbox_pending" in stage["backlog"] for stage in stages.values())
    assert status["bottleneck"] in (None, *stages)
