"""A polled batch topped up with what arrived while the previous one was applied (shared.runtime):
the fresh records come after the polled ones, never more than the batch has room for, and the
message FastStream counts and rewinds is the whole batch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from shared.runtime import topped_up, topping_up

pytestmark = pytest.mark.asyncio

P0, P1, P2 = (TopicPartition("usage.recorded", partition) for partition in range(3))


def records(partition: TopicPartition, *offsets: int) -> tuple[ConsumerRecord, ...]:
    return tuple(ConsumerRecord(partition.topic, partition.partition, offset, 0, 0, None, b"", None, 0, 0, [])
                 for offset in offsets)


class Fetcher:
    """A consumer whose next fetch holds `fresh`; it records how it was polled."""

    def __init__(self, fresh: dict[TopicPartition, tuple[ConsumerRecord, ...]], error: KafkaError | None = None) -> None:
        self.fresh = fresh
        self.error = error
        self.polls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.polls.append((timeout_ms, max_records))
        if self.error is not None:
            raise self.error
        taken: dict[TopicPartition, list[ConsumerRecord]] = {}
        for partition, fetched in self.fresh.items():
            taken[partition] = list(fetched[:max_records - sum(map(len, taken.values()))])
        return {partition: found for partition, found in taken.items() if found}


def offsets(batch) -> list[tuple[int, int]]:
    return [(record.partition, record.offset) for record in batch]


async def test_the_records_fetched_meanwhile_follow_the_polled_ones():
    consumer = Fetcher({P0: records(P0, 12, 13), P2: records(P2, 7)})
    batch = await topped_up(consumer, records(P0, 10, 11) + records(P1, 4), max_records=500, wait_ms=10)
    assert offsets(batch) == [(0, 10), (0, 11), (1, 4), (0, 12), (0, 13), (2, 7)]
    assert consumer.polls == [(10, 497)]


async def test_a_top_up_takes_no_more_than_the_batch_has_room_for():
    consumer = Fetcher({P0: records(P0, 12, 13, 14)})
    batch = await topped_up(consumer, records(P0, 10, 11), max_records=3, wait_ms=10)
    assert offsets(batch) == [(0, 10), (0, 11), (0, 12)]


async def test_a_full_batch_and_a_broker_that_holds_fetches_are_not_topped_up():
    consumer = Fetcher({P0: records(P0, 12)})
    assert offsets(await topped_up(consumer, records(P0, 10, 11), max_records=2, wait_ms=10)) == [(0, 10), (0, 11)]
    assert offsets(await topped_up(consumer, records(P0, 10, 11), max_records=500, wait_ms=0)) == [(0, 10), (0, 11)]
    assert consumer.polls == []


async def test_the_message_faststream_counts_and_rewinds_is_the_whole_batch():
    consumer = Fetcher({P2: records(P2, 7, 8)})

    async def parse_polled(batch):
        return SimpleNamespace(consumer=consumer, raw_message=batch)

    parse = topping_up(max_records=500, wait_ms=10)
    message = await parse(records(P0, 10, 11) + records(P1, 4), parse_polled)
    assert offsets(message.raw_message) == [(0, 10), (0, 11), (1, 4), (2, 7), (2, 8)]
    assert topping_up(max_records=500, wait_ms=0) is None  # FastStream's own parser


async def test_a_top_up_that_fails_leaves_the_polled_batch_to_be_applied():
    consumer = Fetcher({P0: records(P0, 12)}, error=TopicAuthorizationFailedError())
    batch = await topped_up(consumer, records(P0, 10, 11), max_records=500, wait_ms=10)
    assert offsets(batch) == [(0, 10), (0, 11)]
