"""Offsets committed behind applied batches (shared.offsets): in order, the newest merged in, only
partitions still assigned, and a failed commit logged instead of stopping the consumer."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from shared.offsets import OffsetsBehind

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

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

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
