"""Consumption (`Consumer.consume_batch`) against a real PostgreSQL: one transaction per poll, and
still every guarantee message by message: applied once, refused, or parked and re-driven.

The handler here is a stand-in that records what it was given, so each case shows exactly which
events a batch handler sees and what reaches the outbox, the inbox and the dead letters.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Sequence

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import select

from services.rating.settings import RatingSettings
from services.rating.tables import messaging
from shared import topics
from shared.db import COPY_FROM_ROWS
from shared.errors import DependencyNotReady, Rejected
from shared.events import DeadLetter, UsageRecorded, encode_event
from shared.inbox import BatchOutcome, Consumer, ParkedRedrive
from shared.outbox import OUTBOX_CHANNEL, Outgoing

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@dataclass
class DeadLetterSink:
    """Stands in for the broker: what the consumer dead-letters."""

    letters: list[DeadLetter] = field(default_factory=list)

    async def publish(self, payload: bytes, topic: str, key: bytes | None = None) -> None:
        assert topic == topics.DEAD_LETTERS
        self.letters.append(DeadLetter.model_validate_json(payload))


def usage(quantity: str = "1", event_id: uuid.UUID | None = None) -> UsageRecorded:
    return UsageRecorded(event_id=event_id or uuid.uuid4(), occurred_at=datetime(2026, 11, 10, tzinfo=UTC),
                         contract_id="C-BATCH", item_code="api-calls", quantity=Decimal(quantity))


def records(*payloads: bytes | UsageRecorded, first_offset: int = 0) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic=topics.USAGE_RECORDED, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                           key=b"C-BATCH", value=payload if isinstance(payload, bytes) else encode_event(payload),
                           checksum=None, serialized_key_size=7, serialized_value_size=0, headers=())
            for offset, payload in enumerate(payloads, start=first_offset)]


class Handler:
    """Echoes every event to the outbox, refuses quantities of 13, breaks on quantity 666, and parks a
    quantity of 7 until an event with quantity 8 (what it waits for) has been applied."""

    def __init__(self) -> None:
        self.calls: list[list[uuid.UUID]] = []
        self.eight_applied = False

    async def __call__(self, session, events: Sequence[UsageRecorded]) -> BatchOutcome:
        self.calls.append([event.event_id for event in events])
        if any(event.quantity == 666 for event in events):
            raise RuntimeError("a defect")
        refused = {event.event_id: Rejected("thirteen is refused") for event in events if event.quantity == 13}
        parked = {}
        for event in events:
            self.eight_applied = self.eight_applied or event.quantity == 8
            if event.quantity == 7 and not self.eight_applied:
                parked[event.event_id] = DependencyNotReady("the eight")
        return BatchOutcome([Outgoing(topics.ITEMS_RATED, event) for event in events
                             if event.event_id not in refused and event.event_id not in parked], refused, parked)


@pytest.fixture
def consumer(pipeline, databases):
    """A consumer with the stand-in handler, a dead-letter sink for a broker, and its re-drive (not
    started: the tests tick it themselves)."""
    sink = DeadLetterSink()
    handler = Handler()
    settings = RatingSettings(retry_window_s=1)
    redrive = ParkedRedrive("test", interval_s=1)
    consumer = Consumer(f"test-batch-{uuid.uuid4().hex[:8]}", UsageRecorded, handler, databases["rating"], messaging,
                        sink, settings, lambda applied, emitted: redrive.committed(applied))
    redrive.consumers.append(consumer)
    return consumer, sink, handler, redrive


async def outbox_ids(databases, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    async with databases["rating"].transaction() as session:
        return set((await session.execute(select(messaging.outbox.c.event_id)
                                          .where(messaging.outbox.c.event_id.in_(list(ids))))).scalars())


async def inbox_ids(databases, name: str) -> set[uuid.UUID]:
    async with databases["rating"].transaction() as session:
        return set((await session.execute(select(messaging.inbox.c.event_id)
                                          .where(messaging.inbox.c.consumer == name))).scalars())


async def test_one_batch_applies_the_good_drops_duplicates_and_dead_letters_the_bad(consumer, databases):
    consume, sink, handler, _ = consumer
    a, b, refused = usage("1"), usage("2"), usage("13")
    changed = a.model_copy(update={"quantity": Decimal("5")})  # the same id with other content
    batch = records(a, b"{not json", a, refused, changed, b)
    await consume.consume_batch(batch)

    assert handler.calls == [[a.event_id, refused.event_id, b.event_id]]  # once each, in offset order
    assert await outbox_ids(databases, [a.event_id, b.event_id, refused.event_id]) == {a.event_id, b.event_id}
    # The refused event's claim is taken back, so a replay after a fix is applied, not dropped.
    assert await inbox_ids(databases, consume.name) == {a.event_id, b.event_id}
    letters = sorted(sink.letters, key=lambda letter: letter.offset)
    assert [(letter.offset, letter.error_type) for letter in letters] == [
        (1, "InvalidMessage"), (3, "Rejected"), (4, "Rejected")]
    assert letters[1].reason == "thirteen is refused"
    assert "already applied with different content" in letters[2].reason

    # The same batch again (a redelivery): nothing new is applied; the bad ones are dead-lettered again.
    await consume.consume_batch(batch)
    assert handler.calls[1:] == [[refused.event_id]]
    assert await inbox_ids(databases, consume.name) == {a.event_id, b.event_id}


async def test_a_big_batch_claims_every_new_event_once_even_when_it_holds_events_applied_before(consumer,
                                                                                                 databases):
    # Batches of COPY_FROM_ROWS events or more are claimed in bulk, which a single event claimed
    # before makes fail as a whole; then the others are claimed all the same, and only they applied.
    consume, sink, handler, _ = consumer
    earlier = [usage("1") for _ in range(COPY_FROM_ROWS)]
    await consume.consume_batch(records(*earlier))
    assert handler.calls == [[event.event_id for event in earlier]]

    later = [usage("2") for _ in range(COPY_FROM_ROWS)]
    changed = earlier[0].model_copy(update={"quantity": Decimal("5")})
    mixed = [*later[:50], *earlier[:60], changed, *later[50:]]
    await consume.consume_batch(records(*mixed, first_offset=COPY_FROM_ROWS))

    assert handler.calls[1:] == [[event.event_id for event in later]]
    assert await inbox_ids(databases, consume.name) == {event.event_id for event in [*earlier, *later]}
    assert await outbox_ids(databases, [event.event_id for event in later]) == {event.event_id for event in later}
    assert [(letter.offset, letter.error_type) for letter in sink.letters] == [(COPY_FROM_ROWS + 110, "Rejected")]
    assert "already applied with different content" in sink.letters[0].reason


async def test_a_big_batch_writes_every_event_it_emits_to_the_outbox_and_wakes_the_relays(consumer, databases):
    # Many outgoing events go to the outbox with COPY and a notification of their own.
    consume, _, _, _ = consumer
    events = [usage("1") for _ in range(COPY_FROM_ROWS + 1)]
    listener = await asyncpg.connect(databases["rating"].url.replace("postgresql+asyncpg", "postgresql"))
    notified = asyncio.Event()
    try:
        await listener.add_listener(OUTBOX_CHANNEL, lambda *_: notified.set())
        await consume.consume_batch(records(*events))
        await asyncio.wait_for(notified.wait(), timeout=10)
    finally:
        await listener.close()
    async with databases["rating"].transaction() as session:
        written = dict((await session.execute(
            select(messaging.outbox.c.event_id, messaging.outbox.c.payload)
            .where(messaging.outbox.c.event_id.in_([event.event_id for event in events])))).all())
    assert {event_id: bytes(payload) for event_id, payload in written.items()} == {
        event.event_id: encode_event(event) for event in events}


async def test_a_message_that_breaks_the_handler_falls_back_to_one_at_a_time(consumer, databases):
    consume, sink, handler, _ = consumer
    before, poison, after = usage("1"), usage("666"), usage("3")
    await consume.consume_batch(records(before, poison, after))

    assert handler.calls == [[before.event_id, poison.event_id, after.event_id],  # rolled back as a whole
                             [before.event_id], [poison.event_id], [after.event_id]]
    assert await outbox_ids(databases, [before.event_id, poison.event_id, after.event_id]) == {
        before.event_id, after.event_id}
    assert [(letter.offset, letter.error_type, letter.reason) for letter in sink.letters] == [
        (1, "RuntimeError", "a defect")]


async def parked_rows(databases, name: str) -> list:
    async with databases["rating"].transaction() as session:
        return list((await session.execute(select(messaging.parked).where(messaging.parked.c.consumer == name)
                                           .order_by(messaging.parked.c.offset))).all())


async def test_a_message_that_waits_is_parked_and_re_driven_once_what_it_waits_for_is_applied(consumer, databases):
    consume, sink, handler, redrive = consumer
    before, waiting, after = usage("1"), usage("7"), usage("2")
    await consume.consume_batch(records(before, waiting, after))

    # The others are applied in the same transaction; the waiting one is parked, not applied or claimed.
    assert await outbox_ids(databases, [before.event_id, waiting.event_id, after.event_id]) == {
        before.event_id, after.event_id}
    assert await inbox_ids(databases, consume.name) == {before.event_id, after.event_id}
    [row] = await parked_rows(databases, consume.name)
    assert (row.event_id, row.offset, row.key, row.waiting_for, row.attempts) == (
        waiting.event_id, 1, "C-BATCH", "the eight", 0)
    assert bytes(row.payload) == encode_event(waiting)

    # Re-driven too early (its key saw a message applied): still waiting, parked again, tried later.
    assert await redrive._tick() is False
    [row] = await parked_rows(databases, consume.name)
    assert row.attempts == 1 and not sink.letters

    # What it waits for arrives on its contract: the next tick applies it, exactly once.
    eight = usage("8")
    await consume.consume_batch(records(eight, first_offset=3))
    await redrive._tick()
    assert await parked_rows(databases, consume.name) == []
    assert await outbox_ids(databases, [waiting.event_id, eight.event_id]) == {waiting.event_id, eight.event_id}
    assert await inbox_ids(databases, consume.name) == {before.event_id, after.event_id, eight.event_id,
                                                         waiting.event_id}
    # Its original message redelivered (the offset commit was lost): a duplicate, dropped.
    calls = len(handler.calls)
    await consume.consume_batch(records(before, waiting, after))
    assert len(handler.calls) == calls and not sink.letters


async def test_a_message_parked_past_its_timeout_is_dead_lettered_whole_with_what_it_waited_for(consumer, databases):
    consume, sink, _, redrive = consumer
    waiting = usage("7")
    await consume.consume_batch(records(waiting))
    consume.park_timeout_s = 0  # the business timeout has passed
    await redrive._tick()
    assert await parked_rows(databases, consume.name) == []
    [letter] = sink.letters
    assert (letter.offset, letter.error_type, letter.payload_truncated) == (0, "DependencyNotReady", False)
    assert "waiting for: the eight" in letter.reason
    assert letter.original_payload() == encode_event(waiting)  # replayable byte for byte
