"""Work behind a consumer's polls (shared.offsets). Offsets committed behind applied batches: in
order, the newest merged in, only partitions still assigned, and a failed commit logged instead of
stopping the consumer. Batches applied one behind the poll: one at a time and in order, and a
failed one rewound together with the batch polled behind it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from shared.offsets import AppliedBehind, NotApplied, OffsetsBehind

pytestmark = pytest.mark.asyncio

P0, P1, P2 = (TopicPartition("usage.recorded", partition) for partition in range(3))


def records(partition: TopicPartition, *offsets: int) -> list[ConsumerRecord]:
    return [ConsumerRecord(partition.topic, partition.partition, offset, 0, 0, None, b"", None, 0, 0, [])
            for offset in offsets]


class SlowCoordinator:
    """A consumer whose commits take a while and may fail; it records what was committed, in order."""

    def __init__(self, assigned: set[TopicPartition], fail_first: bool = False) -> None:
        self.assigned = assigned
        self.fail_next = fail_first
        self.committed: list[dict[TopicPartition, int]] = []
        self.in_flight = 0
        self.positions: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, partition: TopicPartition, offset: int) -> None:
        assert partition in self.assigned, "aiokafka refuses to seek a partition not assigned"
        self.positions[partition] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.in_flight += 1
        assert self.in_flight == 1, "two commits in flight at once"
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        if self.fail_next:
            self.fail_next = False
            raise CommitFailedError("rebalanced")
        self.committed.append(offsets)


async def test_batches_applied_while_a_commit_is_in_flight_are_merged_into_the_next_one():
    consumer = SlowCoordinator({P0, P1})
    offsets = OffsetsBehind(logging.getLogger("test"))
    offsets.applied(consumer, records(P0, 10, 11))
    await asyncio.sleep(0)  # the first commit is on its way
    offsets.applied(consumer, records(P0, 12) + records(P1, 5))
    offsets.applied(consumer, records(P0, 13))
    await offsets.flush()
    # The offset to commit is the next one to read: the last applied + 1.
    assert consumer.committed == [{P0: 12}, {P0: 14, P1: 6}]


async def test_a_revoked_partition_is_not_committed():
    consumer = SlowCoordinator({P0})
    offsets = OffsetsBehind(logging.getLogger("test"))
    offsets.applied(consumer, records(P0, 3) + records(P2, 7))
    await offsets.flush()
    assert consumer.committed == [{P0: 4}]


async def test_a_failed_commit_is_logged_and_a_later_one_covers_it(caplog):
    consumer = SlowCoordinator({P0}, fail_first=True)
    offsets = OffsetsBehind(logging.getLogger("test"))
    offsets.applied(consumer, records(P0, 1))
    await offsets.flush()
    assert consumer.committed == []
    assert "not committed" in caplog.text
    offsets.applied(consumer, records(P0, 2))
    await offsets.flush()
    assert consumer.committed == [{P0: 3}]


def applied_behind(from_records: int) -> AppliedBehind:
    return AppliedBehind(OffsetsBehind(logging.getLogger("test")), logging.getLogger("test"), from_records)


class Database:
    """Applies batches, taking a while each, and records their order; fails those it is told to."""

    def __init__(self, failing: int | None = None) -> None:
        self.failing = failing
        self.applied: list[int] = []
        self.in_flight = 0

    def apply(self, batch: int):
        async def apply() -> None:
            self.in_flight += 1
            assert self.in_flight == 1, "two batches applied at once"
            await asyncio.sleep(0.01)
            self.in_flight -= 1
            if batch == self.failing:
                raise ConnectionRefusedError("the database is away")
            self.applied.append(batch)
        return apply


async def test_batches_are_applied_one_at_a_time_in_order_while_the_next_is_polled():
    consumer, database = SlowCoordinator({P0}), Database()
    behind = applied_behind(from_records=1)
    await behind.follow(consumer, records(P0, 0, 1), database.apply(1))
    # The poll returns while the first batch is applied: the next batch is polled meanwhile.
    assert database.applied == []
    await behind.follow(consumer, records(P0, 2), database.apply(2))
    assert database.applied == [1]
    await behind.follow(consumer, records(P0, 3), database.apply(3))
    await behind.drain()
    assert database.applied == [1, 2, 3]
    # Offsets only behind applied batches: the last one committed is that of the last batch.
    assert consumer.committed[-1] == {P0: 4}
    assert consumer.positions == {}


async def test_a_failed_batch_is_rewound_with_the_one_polled_behind_it_and_neither_is_committed(caplog):
    consumer, database = SlowCoordinator({P0, P1, P2}), Database(failing=2)
    behind = applied_behind(from_records=1)
    await behind.follow(consumer, records(P0, 0), database.apply(1))
    await behind.follow(consumer, records(P0, 1, 2) + records(P1, 7), database.apply(2))
    with pytest.raises(NotApplied):
        await behind.follow(consumer, records(P0, 3) + records(P1, 8) + records(P2, 4), database.apply(3))
    # Each partition back to its first record not applied: the failed batch's where it had one.
    assert consumer.positions == {P0: 1, P1: 7, P2: 4}
    assert database.applied == [1]
    await behind.drain()
    assert consumer.committed == [{P0: 1}]
    assert "rewound" in caplog.text
    # Delivered again, they are applied in order.
    database.failing = None
    await behind.follow(consumer, records(P0, 1, 2) + records(P1, 7), database.apply(2))
    await behind.follow(consumer, records(P0, 3) + records(P1, 8) + records(P2, 4), database.apply(3))
    await behind.drain()
    assert database.applied == [1, 2, 3]
    assert consumer.committed[-1] == {P0: 4, P1: 9, P2: 5}


async def test_a_failed_batch_is_rewound_at_once_even_when_no_batch_follows_it():
    consumer, database = SlowCoordinator({P0}), Database(failing=1)
    behind = applied_behind(from_records=1)
    await behind.follow(consumer, records(P0, 5, 6), database.apply(1))
    await asyncio.sleep(0.05)
    assert consumer.positions == {P0: 5}


async def test_a_draining_consumer_applies_each_batch_before_the_next_poll():
    consumer, database = SlowCoordinator({P0}), Database()
    behind = applied_behind(from_records=1)
    await behind.drain()
    await behind.follow(consumer, records(P0, 0), database.apply(1))
    assert database.applied == [1]


async def test_a_small_batch_is_applied_before_the_next_poll_and_a_big_one_behind_it():
    consumer, database = SlowCoordinator({P0}), Database()
    behind = applied_behind(from_records=3)
    await behind.follow(consumer, records(P0, 0, 1), database.apply(1))
    assert database.applied == [1]
    await behind.follow(consumer, records(P0, 2, 3, 4), database.apply(2))
    assert database.applied == [1]
    await behind.follow(consumer, records(P0, 5), database.apply(3))
    assert database.applied == [1, 2, 3]
    await behind.drain()
    assert consumer.committed[-1] == {P0: 6}


async def test_a_small_batch_that_failed_has_rewound_itself_and_the_next_poll_applies_what_it_delivers(caplog):
    consumer, database = SlowCoordinator({P0}), Database(failing=1)
    behind = applied_behind(from_records=3)
    await behind.follow(consumer, records(P0, 0, 1), database.apply(1))
    assert consumer.positions == {P0: 0}
    assert "rewound" in caplog.text
    database.failing = None
    await behind.follow(consumer, records(P0, 0, 1), database.apply(1))
    assert database.applied == [1]
