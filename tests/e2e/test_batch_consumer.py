"""Batch consumption (`Consumer.consume_batch`) against a real PostgreSQL: one transaction per poll,
and still every guarantee of the per-message path, message by message.

The handler here is a stand-in that records what it was given, so each case shows exactly which
events a batch handler sees and what reaches the outbox, the inbox and the dead letters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Sequence

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import select

from services.rating.settings import RatingSettings
from services.rating.tables import messaging
from shared import topics
from shared.errors import Rejected
from shared.events import DeadLetter, UsageRecorded, encode_event
from shared.messaging import BatchOutcome, Consumer, Outgoing, OutboxRelay
from shared.settings import KafkaSettings

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


def records(*payloads: bytes | UsageRecorded) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic=topics.USAGE_RECORDED, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                           key=b"C-BATCH", value=payload if isinstance(payload, bytes) else encode_event(payload),
                           checksum=None, serialized_key_size=7, serialized_value_size=0, headers=())
            for offset, payload in enumerate(payloads)]


class Handler:
    """Echoes every event to the outbox, refuses quantities of 13, and breaks on quantity 666."""

    def __init__(self) -> None:
        self.calls: list[list[uuid.UUID]] = []

    async def __call__(self, session, events: Sequence[UsageRecorded]) -> BatchOutcome:
        self.calls.append([event.event_id for event in events])
        if any(event.quantity == 666 for event in events):
            raise RuntimeError("a defect")
        refused = {event.event_id: Rejected("thirteen is refused") for event in events if event.quantity == 13}
        return BatchOutcome([Outgoing(topics.ITEMS_RATED, event) for event in events if event.event_id not in refused],
                            refused)


@pytest.fixture
def consumer(pipeline, databases):
    sink = DeadLetterSink()
    name = f"test-batch-{uuid.uuid4().hex[:8]}"
    settings = RatingSettings(retry_window_s=1)
    relay = OutboxRelay(name, databases["rating"], messaging, KafkaSettings(), settings)  # never started
    return Consumer(name, databases["rating"], messaging, sink, settings, relay), sink


async def outbox_ids(databases, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    async with databases["rating"].transaction() as session:
        return set((await session.execute(select(messaging.outbox.c.event_id)
                                          .where(messaging.outbox.c.event_id.in_(list(ids))))).scalars())


async def inbox_ids(databases, name: str) -> set[uuid.UUID]:
    async with databases["rating"].transaction() as session:
        return set((await session.execute(select(messaging.inbox.c.event_id)
                                          .where(messaging.inbox.c.consumer == name))).scalars())


async def test_one_batch_applies_the_good_drops_duplicates_and_dead_letters_the_bad(consumer, databases):
    consume, sink = consumer
    handler = Handler()
    a, b, refused = usage("1"), usage("2"), usage("13")
    changed = a.model_copy(update={"quantity": Decimal("5")})  # the same id with other content
    batch = records(a, b"{not json", a, refused, changed, b)
    await consume.consume_batch(batch, UsageRecorded, handler)

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
    await consume.consume_batch(batch, UsageRecorded, handler)
    assert handler.calls[1:] == [[refused.event_id]]
    assert await inbox_ids(databases, consume.name) == {a.event_id, b.event_id}


async def test_a_message_that_breaks_the_handler_falls_back_to_one_at_a_time(consumer, databases):
    consume, sink = consumer
    handler = Handler()
    before, poison, after = usage("1"), usage("666"), usage("3")
    await consume.consume_batch(records(before, poison, after), UsageRecorded, handler)

    assert handler.calls == [[before.event_id, poison.event_id, after.event_id],  # rolled back as a whole
                             [before.event_id], [poison.event_id], [after.event_id]]
    assert await outbox_ids(databases, [before.event_id, poison.event_id, after.event_id]) == {
        before.event_id, after.event_id}
    assert [(letter.offset, letter.error_type, letter.reason) for letter in sink.letters] == [
        (1, "RuntimeError", "a defect")]
