"""`billing status`: one screen for an operator. Per stage its consumer groups (members, lag per
partition), outbox backlog, parked messages and dead letters, and which stage is behind most.

Lag is what a group has not committed: each partition's end offset minus the group's committed
offset, asked with a consumer of that group that never joins it (`AIOKafkaConsumer.committed()`;
the admin client's offset listing breaks its connection to the local broker).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from ops.observe import MESSAGING, Databases, dead_letters, topic_partitions
from shared.backlog import Backlog, committed_lag, read_backlog
from shared.settings import KafkaSettings, kafka_client


@dataclass
class GroupStatus:
    group: str
    topic: str
    members: int
    lag_by_partition: dict[int, int]

    @property
    def lag(self) -> int:
        return sum(self.lag_by_partition.values())


@dataclass
class StageStatus:
    stage: str
    groups: list[GroupStatus]
    backlog: Backlog
    dead_letters: int

    @property
    def lag(self) -> int:
        return sum(group.lag for group in self.groups)

    @property
    def parked(self) -> int:
        return sum(self.backlog.parked.values())

    @property
    def waiting(self) -> int:
        """Everything this stage has still to do: messages to apply and events to publish."""
        return self.lag + self.backlog.outbox_pending


@dataclass
class Status:
    stages: list[StageStatus] = field(default_factory=list)

    @property
    def bottleneck(self) -> StageStatus | None:
        """The stage with the most waiting, if anything waits at all."""
        behind = max(self.stages, key=lambda stage: stage.waiting, default=None)
        return behind if behind is not None and behind.waiting else None

    def as_json(self) -> dict:
        return {
            "stages": [{**asdict(stage), "lag": stage.lag, "parked": stage.parked} for stage in self.stages],
            "bottleneck": self.bottleneck.stage if self.bottleneck else None,
        }

    def render(self) -> str:
        lines = [f"{'STAGE':<11} {'CONSUMER GROUP':<34} {'MEMBERS':>7} {'LAG':>7}  LAG PER PARTITION"]
        for stage in self.stages:
            for group in stage.groups:
                partitions = " ".join(f"{partition}:{lag}" for partition, lag in sorted(group.lag_by_partition.items()))
                lines.append(f"{stage.stage:<11} {group.group:<34} {group.members:>7} {group.lag:>7}  {partitions}")
        lines += ["", f"{'STAGE':<11} {'OUTBOX':>7} {'OLDEST':>8} {'QUARANTINED':>11} {'PARKED':>7} {'DEAD LETTERS':>12}"]
        for stage in self.stages:
            backlog = stage.backlog
            lines.append(f"{stage.stage:<11} {backlog.outbox_pending:>7} {backlog.outbox_oldest_age_s:>7.1f}s "
                         f"{backlog.outbox_quarantined:>11} {stage.parked:>7} {stage.dead_letters:>12}")
        behind = self.bottleneck
        lines.append("")
        lines.append(f"bottleneck: {behind.stage} ({behind.lag} message(s) to apply, "
                     f"{behind.backlog.outbox_pending} to publish)" if behind
                     else "bottleneck: none, every stage has caught up")
        return "\n".join(lines)


def stage_subscriptions() -> dict[str, list[tuple[str, str]]]:
    """Each stage's (consumer group, topic), as its worker subscribes them."""
    from services.invoicing.app import runtime as invoicing
    from services.payments.app import runtime as payments
    from services.rating.app import runtime as rating
    from services.settlement.app import runtime as settlement

    return {runtime.name: [(subscription.group_id, subscription.topic) for subscription in runtime.subscriptions]
            for runtime in (rating, settlement, invoicing, payments)}


async def group_lag(bootstrap_servers: str, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**kafka_client(bootstrap_servers), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap_servers, topic)
        return {tp.partition: lag for tp, lag in (await committed_lag(consumer, partitions)).items()}
    finally:
        await consumer.stop()


async def _members(bootstrap_servers: str, groups: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap_servers))
    await admin.start()
    try:
        # One group per request: the local broker answers a request for several in a shape aiokafka cannot read.
        described = [response for group in groups for response in await admin.describe_consumer_groups([group])]
    finally:
        await admin.close()
    # DescribeGroups v0-v2 entries: (error_code, group_id, state, protocol_type, protocol, members)
    return {group_id: len(members) for response in described for _, group_id, _, _, _, members, *_ in response.groups}


async def gather_status(kafka: KafkaSettings, databases: Databases) -> Status:
    stages = stage_subscriptions()
    members = await _members(kafka.bootstrap_servers, [group for groups in stages.values() for group, _ in groups])
    letters = Counter(letter.consumer for letter in await dead_letters(kafka.bootstrap_servers))
    status = Status()
    for stage, subscriptions in stages.items():
        groups = [GroupStatus(group, topic, members.get(group, 0),
                              await group_lag(kafka.bootstrap_servers, group, topic))
                  for group, topic in subscriptions]
        status.stages.append(StageStatus(stage, groups, await read_backlog(databases[stage], MESSAGING),
                                         sum(letters[group] for group, _ in subscriptions)))
    return status


async def watch(interval_s: float, as_json: bool, show) -> None:
    """Gather and `show` the status, then again every `interval_s` (until interrupted) if it is > 0."""
    databases = Databases()
    try:
        while True:
            status = await gather_status(KafkaSettings(), databases)
            show(json.dumps(status.as_json()) if as_json else status.render())
            if interval_s <= 0:
                return
            await asyncio.sleep(interval_s)
    finally:
        await databases.dispose()
