"""Dynamic Dividing with the FailOver gate (dynamic.spread): while a bound cluster is silent it keeps its share and
the clusters that answer spread the whole count by the room their predictors report; once it reports again, the
others give back what they took on, in proportion to what they run, when it runs its own share again."""

from __future__ import annotations

from typing import Any

from clusternet_core.dynamic import spread
from clusternet_core.scheduling import divide_replicas, schedule
from tests.unit.test_dynamic_dividing import dynamic_sub
from tests.unit.test_failover import KEY, SILENT, cluster

FEED = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "web", "name": "web"}
KEYS = ["ns-a/a", "ns-b/b", "ns-c/c"]


def sub(replicas: list[int], failed_over: list[str] | None = None, failing_back: list[str] | None = None,
        ) -> dict[str, Any]:
    status: dict[str, Any] = {"bindingClusters": KEYS, "replicas": {KEY: replicas}}
    if failed_over:
        status["failedOverClusters"] = failed_over
    if failing_back:
        status["failingBackClusters"] = failing_back
    s = dynamic_sub(**status)
    s["spec"]["feeds"] = [FEED]
    return s


def test_the_answering_clusters_spread_a_silent_clusters_share_by_room_and_it_keeps_its_own() -> None:
    clusters = [cluster("a"), cluster("b"), cluster("c", SILENT)]
    asking = schedule(sub([2, 2, 2]), clusters, {KEY: 6}, fail_over=True)
    assert asking.predict == [KEY] and asking.not_asked == ["ns-c/c"]  # c's predictor is not asked
    result = schedule(sub([2, 2, 2]), clusters, {KEY: 6}, fail_over=True,
                      predictions={"ns-a/a": {KEY: 1}, "ns-b/b": {KEY: 10}})
    assert result.replicas == {KEY: [2, 4, 2]} and not result.unplaced  # a had room for 1 more, b for 10


def test_without_room_only_what_the_silent_cluster_does_not_keep_is_unplaced() -> None:
    """Review s46: the 2 the silent cluster keeps may still run there, so a failover without room is no
    InsufficientCapacity; replicas beyond them (a scale-up meanwhile) that find no room are."""
    clusters = [cluster("a"), cluster("b"), cluster("c", SILENT)]
    no_room = {"ns-a/a": {KEY: 1}, "ns-b/b": {KEY: 0}}
    result = schedule(sub([2, 2, 2]), clusters, {KEY: 6}, fail_over=True, predictions=no_room)
    assert result.replicas == {KEY: [3, 2, 2]} and result.unplaced == {}
    result = schedule(sub([2, 2, 2]), clusters, {KEY: 9}, fail_over=True, predictions=no_room)
    assert result.replicas == {KEY: [3, 2, 2]} and result.unplaced == {KEY: 2}
    # and a silent cluster's predictor, not asked, is not said to be silent
    result = schedule(sub([2, 2, 2]), clusters, {KEY: 9}, fail_over=True,
                      predictions={**no_room, "ns-c/c": "still applying its last share"})
    assert result.unanswered == {}


def test_once_taken_on_nothing_more_is_asked() -> None:
    result = schedule(sub([3, 3, 2]), [cluster("a"), cluster("b"), cluster("c", SILENT)], {KEY: 6}, fail_over=True)
    assert result.predict == [] and result.replicas == {KEY: [3, 3, 2]} and result.failed_over == ["ns-c/c"]


def test_without_the_gate_a_silent_cluster_keeps_its_share_and_nothing_moves() -> None:
    result = schedule(sub([2, 2, 2]), [cluster("a"), cluster("b"), cluster("c", SILENT)], {KEY: 6})
    assert result.predict == [] and result.replicas == {KEY: [2, 2, 2]} and result.failed_over == []


def test_back_the_others_give_back_what_they_took_on_once_it_runs_its_share() -> None:
    back = [cluster("a"), cluster("b"), cluster("c")]
    held = schedule(sub([4, 2, 2], ["ns-c/c"]), back, {KEY: 6}, fail_over=True, ready=lambda k, f: k != "ns-c/c")
    assert held.replicas == {KEY: [4, 2, 2]} and held.failing_back == ["ns-c/c"] and held.predict == []
    given = schedule(sub([4, 2, 2], ["ns-c/c"]), back, {KEY: 6}, fail_over=True, ready=lambda k, f: True)
    assert given.replicas == {KEY: [3, 1, 2]} and given.failing_back == []  # a and b give back 2 in proportion


def test_a_scale_down_while_it_is_back_waits_for_it_too() -> None:
    """Every cluster gives back in proportion to what it runs, the returning one too; until it runs what it has,
    the others keep theirs, as for any giving back."""
    back = [cluster("a"), cluster("b"), cluster("c")]
    result = schedule(sub([4, 2, 2], ["ns-c/c"]), back, {KEY: 1}, fail_over=True, ready=lambda k, f: False)
    assert result.replicas == {KEY: [4, 2, 2]} and result.failing_back == ["ns-c/c"]
    result = schedule(sub([4, 2, 2], ["ns-c/c"]), back, {KEY: 1}, fail_over=True, ready=lambda k, f: True)
    assert sum(result.replicas[KEY]) == 1 and result.failing_back == []
    result = schedule(sub([4, 2, 2], ["ns-c/c"]), back, {KEY: 2}, fail_over=True, ready=lambda k, f: False)
    assert result.replicas == {KEY: [4, 2, 2]} and result.failing_back == ["ns-c/c"]
    result = schedule(sub([4, 2, 2], ["ns-c/c"]), back, {KEY: 2}, fail_over=True, ready=lambda k, f: True)
    assert result.replicas == {KEY: [0, 0, 2]} and result.failing_back == []


def test_spread_on_its_own() -> None:
    previous = {"a": 2, "b": 2, "c": 2}
    assert spread(6, ["a", "b", "c"], previous, None, divide_replicas, silent={"c"}) is None  # room needed
    split = spread(6, ["a", "b", "c"], previous, {"a": 4, "b": 4}, divide_replicas, silent={"c"})
    assert split is not None and split.replicas == [3, 3, 2]
    # every cluster silent: nowhere to fail over to, nothing moves
    split = spread(6, ["a", "b", "c"], previous, None, divide_replicas, silent={"a", "b", "c"})
    assert split is not None and split.replicas == [2, 2, 2]
    # back with nothing taken on (no room meanwhile): nothing to give back
    split = spread(6, ["a", "b", "c"], previous, None, divide_replicas, returning={"c"})
    assert split is not None and split.replicas == [2, 2, 2]
