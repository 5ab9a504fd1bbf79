"""Transient failures: the database goes away and the broker stops answering in the middle of a
run; workers retry with backoff and resume, and nothing is lost or billed twice."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from ops.observe import dead_letters, wait_until
from tests.e2e.conftest import (
    DEADLINE_S,
    given_contract,
    new_contract_id,
    publish_usage,
    rated_event_count,
    request_billing_run,
    usage,
    wait_for_invoice,
    wait_for_settlement_to_hold,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

EVENTS = 60  # 60 x 100 calls x 0.0125 = 75.00


async def assert_billed_exactly_once(pipeline, broker, databases, contract: str) -> None:
    await wait_for_settlement_to_hold(databases, contract, EVENTS, Decimal("75.00"), timeout_s=DEADLINE_S * 2)
    await request_billing_run(broker, contract)
    assert (await wait_for_invoice(databases, contract)).net_total == Decimal("75.00")
    assert await rated_event_count(databases, contract) == EVENTS
    assert not [letter for letter in await dead_letters(pipeline.kafka.bootstrap_servers) if letter.key == contract]


async def test_postgres_restart_in_the_middle_of_a_run_loses_and_duplicates_nothing(pipeline, broker, databases,
                                                                                   reconciled_at_the_end):
    contract = new_contract_id("pgdown")
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    events = [usage(contract, "api-calls", "100") for _ in range(EVENTS)]
    await publish_usage(broker, *events[: EVENTS // 2])
    await wait_until(lambda: _rated_at_least(databases, contract, 1), timeout_s=DEADLINE_S, what="rating to start")

    pipeline.stack.stop_postgres()
    try:
        await publish_usage(broker, *events[EVENTS // 2:])
        await asyncio.sleep(5)  # the outage itself: workers must ride it out, not skip messages
    finally:
        pipeline.stack.start_postgres()

    await assert_billed_exactly_once(pipeline, broker, databases, contract)
    assert not pipeline.workers.crashed()


async def test_a_frozen_broker_loses_and_duplicates_nothing(pipeline, broker, databases, reconciled_at_the_end):
    contract = new_contract_id("kafkafrozen")
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    events = [usage(contract, "api-calls", "100") for _ in range(EVENTS)]
    await publish_usage(broker, *events)
    await wait_until(lambda: _rated_at_least(databases, contract, 1), timeout_s=DEADLINE_S, what="rating to start")

    pipeline.stack.pause_broker()
    try:
        await asyncio.sleep(8)  # longer than the consumers' session timeout: groups must rebalance
    finally:
        pipeline.stack.resume_broker()

    await assert_billed_exactly_once(pipeline, broker, databases, contract)
    assert not pipeline.workers.crashed()


async def _rated_at_least(databases, contract: str, minimum: int) -> bool:
    return await rated_event_count(databases, contract) >= minimum
