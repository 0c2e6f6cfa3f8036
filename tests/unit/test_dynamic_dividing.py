"""Dynamic Dividing: the predictor's arithmetic (capacity.py), the Spread split (dynamic.py) and the scheduler."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet_core.capacity import acceptable_replicas, node_fits, requested
from clusternet_core.dynamic import dynamic_split, shortfall_note, unplaced_as_written
from clusternet_core.scheduling import divide_replicas, schedule
from tests.unit.test_scheduling import DEPLOY_KEY, cluster, subscription


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: int = 110, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None, unschedulable: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods)}}}


def pod(node_name: str | None, cpu: str = "1", phase: str = "Running", init_cpu: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"resources": {"requests": {"cpu": cpu}}}]}
    if node_name:
        spec["nodeName"] = node_name
    if init_cpu:
        spec["initContainers"] = [{"resources": {"requests": {"cpu": init_cpu}}}]
    return {"spec": spec, "status": {"phase": phase}}


ONE_CPU = {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}


# --- the predictor's arithmetic -------------------------------------------------------------------------------------


def test_each_node_fits_its_smallest_resource_and_the_cluster_sums_them() -> None:
    nodes = [node("a", cpu="4", memory="2Gi"), node("b", cpu="2500m", memory="16Gi")]
    assert acceptable_replicas(ONE_CPU, nodes, []) == 2 + 2  # a: memory for 2; b: 2.5 cpu for 2


def test_pods_bound_to_a_node_use_its_room_and_ended_pods_do_not() -> None:
    nodes = [node("a", cpu="4")]
    pods = [pod("a", "1"), pod("a", "500m"), pod("a", "2", phase="Succeeded")]
    assert acceptable_replicas({"resources": {"requests": {"cpu": "1"}}}, nodes, pods) == 2  # 2.5 cpu left


def test_pods_waiting_for_a_node_take_room_first() -> None:
    """Replicas given before that found no node yet: without them a full cluster reported the same room at every
    resync and was given more each time."""
    nodes, one_cpu = [node("a", cpu="4"), node("b", cpu="4")], {"resources": {"requests": {"cpu": "1"}}}
    assert acceptable_replicas(one_cpu, nodes, [pod(None, "1", phase="Pending")] * 3) == 5
    assert acceptable_replicas(one_cpu, nodes, [pod(None, "1500m", phase="Pending")] * 3) == 3  # 4.5 CPUs: 5
    assert acceptable_replicas(one_cpu, nodes, [pod(None, "100m", phase="Pending")] * 30) == 5  # 3 CPUs, not 30
    assert acceptable_replicas(one_cpu, nodes, [pod(None, "1", phase="Pending")] * 12) == 0
    assert acceptable_replicas({}, [node("a", pods=5)], [pod(None, "1", phase="Pending")] * 2) == 3


def test_pod_slots_limit_a_replica_that_asks_for_nothing() -> None:
    assert acceptable_replicas({}, [node("a", pods=3)], [pod("a", "0")]) == 2


def test_pods_workloads_have_not_created_yet_take_room_too() -> None:
    """A Deployment given 3 more replicas a moment ago has not created their pods: they are coming all the same."""
    def workload(kind: str, replicas: int | None, have: int | None, owner: str | None = None) -> dict[str, Any]:
        return {"kind": kind, "metadata": {"ownerReferences": [{"kind": owner}] if owner else []},
                "spec": {"template": {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}},
                         **({"replicas": replicas} if replicas is not None else {})},
                "status": {"replicas": have} if have is not None else {}}

    one_cpu, nodes = {"resources": {"requests": {"cpu": "1"}}}, [node("a", cpu="8")]
    assert acceptable_replicas(one_cpu, nodes, [], [workload("Deployment", 5, 2)]) == 5
    assert acceptable_replicas(one_cpu, nodes, [], [workload("StatefulSet", None, None)]) == 7  # 1 when unset
    assert acceptable_replicas(one_cpu, nodes, [], [workload("ReplicaSet", 5, 2, owner="Deployment")]) == 8
    assert acceptable_replicas(one_cpu, nodes, [], [workload("ReplicaSet", 5, 2)]) == 5
    assert acceptable_replicas(one_cpu, nodes, [], [workload("Deployment", 2, 4)]) == 8  # surging: none coming


def test_an_init_container_counts_when_it_asks_for_more_than_the_containers() -> None:
    assert requested(pod("a", "1", init_cpu="3"))["cpu"] == 3


@pytest.mark.parametrize(("requirements", "fits"), [
    ({"nodeSelector": {"zone": "a"}}, True),
    ({"nodeSelector": {"zone": "b"}}, False),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["3"]}]}]}}}}, True),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}, False),
])
def test_node_selector_and_required_affinity_choose_nodes(requirements: dict[str, Any], fits: bool) -> None:
    assert node_fits(requirements, node("n", labels={"zone": "a", "gen": "5"})) is fits


def test_tainted_cordoned_and_lost_nodes_take_nothing_unless_tolerated() -> None:
    lost = node("lost", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}])
    cordoned = node("cordoned", unschedulable=True)
    preferred = node("preferred", taints=[{"key": "x", "effect": "PreferNoSchedule"}])
    assert acceptable_replicas(ONE_CPU, [lost, cordoned, preferred], []) == 4
    tolerant = {**ONE_CPU, "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]}
    assert acceptable_replicas(tolerant, [lost, cordoned, preferred], []) == 8


def test_a_full_node_counts_as_zero_not_negative() -> None:
    assert acceptable_replicas(ONE_CPU, [node("a", cpu="1"), node("b", cpu="2")], [pod("a", "3")]) == 2


# --- the Spread split -----------------------------------------------------------------------------------------------


def split(desired: int, previous: dict[str, int], room: dict[str, int]) -> tuple[list[int], int]:
    result = dynamic_split(desired, ["a", "b", "c"], previous, room, divide_replicas)
    return result.replicas, result.unplaced


def test_the_first_scheduling_follows_the_room_each_cluster_has() -> None:
    assert split(8, {}, {"a": 4, "b": 12, "c": 0}) == ([2, 6, 0], 0)


def test_a_scale_up_divides_only_the_new_replicas_by_room() -> None:
    assert split(12, {"a": 2, "b": 6, "c": 0}, {"a": 1, "b": 1, "c": 2}) == ([3, 7, 2], 0)


def test_a_scale_down_takes_from_each_cluster_by_its_share_and_never_below_zero() -> None:
    assert split(6, {"a": 3, "b": 9, "c": 0}, {}) == ([2, 4, 0], 0)  # gives back 1.5 and 4.5: the tie to the larger
    for desired in range(0, 12):
        replicas, _ = split(desired, {"a": 1, "b": 9, "c": 2}, {})
        assert sum(replicas) == desired and min(replicas) >= 0


def test_no_change_keeps_the_split_whatever_the_predictors_say_now() -> None:
    assert split(5, {"a": 1, "b": 4, "c": 0}, {"a": 100, "b": 0, "c": 100}) == ([1, 4, 0], 0)


def test_replicas_that_find_no_room_are_counted_and_each_cluster_takes_all_it_can() -> None:
    assert split(10, {"a": 1}, {"a": 2, "b": 3}) == ([3, 3, 0], 4)


def test_a_cluster_no_longer_bound_has_its_replicas_placed_again() -> None:
    result = dynamic_split(6, ["a", "b"], {"a": 2, "b": 2, "gone": 2}, {"a": 1, "b": 1}, divide_replicas)
    assert result.replicas == [3, 3]


def test_the_note_says_what_found_no_room_and_who_did_not_answer() -> None:
    note = shortfall_note({"apps/v1/Deployment/d/web": 4}, {"ns/c": "its tunnel is down"})
    assert note == ("4 replica(s) of apps/v1/Deployment/d/web found no room in the bound clusters (their predictors "
                    "are asked again at each resync); no prediction from ns/c: its tunnel is down")
    assert shortfall_note({}, {}) is None
    assert shortfall_note({}, {"ns/c": "its tunnel is down"}) is None  # nothing missing: nothing to explain


def test_the_unplaced_count_is_told_from_the_written_split_of_dynamic_subscriptions_only() -> None:
    sub: dict[str, Any] = {"spec": {"dividingScheduling": {"type": "Dynamic"}},
                           "status": {"replicas": {DEPLOY_KEY: [2, 3]}}}
    assert unplaced_as_written(sub, {DEPLOY_KEY: 8}) == {DEPLOY_KEY: 3}
    assert unplaced_as_written(sub, {DEPLOY_KEY: 5}) == {}
    assert unplaced_as_written({**sub, "spec": {"dividingScheduling": {"type": "Static"}}}, {DEPLOY_KEY: 8}) == {}


# --- the scheduler --------------------------------------------------------------------------------------------------


def dynamic_sub(**status: Any) -> dict[str, Any]:
    sub = subscription([{"clusterAffinity": {}}], schedulingStrategy="Dividing",
                       dividingScheduling={"type": "Dynamic", "dynamicDividing": {"strategy": "Spread"}})
    if status:
        sub["status"] = status
    return sub


CLUSTERS = [cluster("ns1", "a"), cluster("ns2", "b")]


def test_a_scale_up_without_predictions_asks_for_them_and_divides_nothing() -> None:
    result = schedule(dynamic_sub(), CLUSTERS, {DEPLOY_KEY: 6})
    assert result.predict == [DEPLOY_KEY] and DEPLOY_KEY not in result.replicas
    assert result.binding_clusters == ["ns1/a", "ns2/b"]


def test_with_predictions_the_replicas_follow_the_room_and_silent_predictors_get_none() -> None:
    result = schedule(dynamic_sub(), CLUSTERS, {DEPLOY_KEY: 6},
                      predictions={"ns1/a": {DEPLOY_KEY: 10}, "ns2/b": {DEPLOY_KEY: 20}})
    assert result.replicas == {DEPLOY_KEY: [2, 4]} and not result.unplaced
    result = schedule(dynamic_sub(), CLUSTERS, {DEPLOY_KEY: 6},
                      predictions={"ns1/a": "its tunnel is down", "ns2/b": {DEPLOY_KEY: 4}})
    assert result.replicas == {DEPLOY_KEY: [0, 4]}
    assert result.unplaced == {DEPLOY_KEY: 2} and result.unanswered == {"ns1/a": "its tunnel is down"}


def test_a_scale_down_or_no_change_needs_no_prediction() -> None:
    written = {"bindingClusters": ["ns1/a", "ns2/b"], "replicas": {DEPLOY_KEY: [2, 4]}}
    assert schedule(dynamic_sub(**written), CLUSTERS, {DEPLOY_KEY: 6}).replicas == {DEPLOY_KEY: [2, 4]}
    assert schedule(dynamic_sub(**written), CLUSTERS, {DEPLOY_KEY: 3}).replicas == {DEPLOY_KEY: [1, 2]}


def test_dynamic_dividing_ignores_weights() -> None:
    result = schedule(dynamic_sub(), CLUSTERS, {DEPLOY_KEY: 4},
                      predictions={"ns1/a": {DEPLOY_KEY: 10}, "ns2/b": {DEPLOY_KEY: 10}})
    assert result.replicas == {DEPLOY_KEY: [2, 2]} and result.message is None
