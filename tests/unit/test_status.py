from ops.status import GroupStatus, StageStatus, Status
from shared.backlog import Backlog


def stage(name: str, lag: dict[int, int], outbox: int = 0) -> StageStatus:
    return StageStatus(name, [GroupStatus(f"{name}.topic", "topic", 1, lag)], Backlog(outbox, 0.0, 0, {}), 0)


def test_the_bottleneck_is_the_stage_with_most_to_do():
    status = Status([stage("rating", {0: 5, 1: 0}), stage("settlement", {0: 2}, outbox=7), stage("invoicing", {0: 0})])
    assert status.bottleneck.stage == "settlement"
    assert status.as_json()["bottleneck"] == "settlement"
    assert status.render().endswith("bottleneck: settlement (2 message(s) to apply, 7 to publish)")


def test_no_bottleneck_when_every_stage_caught_up():
    status = Status([stage("rating", {0: 0}), stage("settlement", {0: 0})])
    assert status.bottleneck is None
    assert status.render().endswith("bottleneck: none, every stage has caught up")
    assert "rating.topic" in status.render()
