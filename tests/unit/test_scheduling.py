"""Scheduling: selectors, taints and replica division behave like Kubernetes and Clusternet's scheduler."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.models import Feed
from clusternet_core.scheduling import (
    InvalidSelector,
    UnsupportedScheduling,
    cluster_tolerated,
    divide_replicas,
    feed_key,
    label_selector_matches,
    schedule,
    tolerates,
)

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "my-nginx"}
DEPLOY_KEY = "apps/v1/Deployment/foo/my-nginx"


def cluster(ns: str, name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
            **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ManagedCluster",
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}, **meta},
        "spec": {"clusterId": f"id-{name}", "syncMode": "Pull", "taints": taints or []},
    }


def subscription(subscribers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Subscription",
        "metadata": {"namespace": "default", "name": "app"},
        "spec": {"subscribers": subscribers, "feeds": [DEPLOY], **spec},
    }


# --- label selectors -------------------------------------------------------------------------------------


def test_empty_selector_matches_everything_and_none_matches_nothing() -> None:
    assert label_selector_matches({}, {})
    assert label_selector_matches({}, {"a": "b"})
    assert not label_selector_matches(None, {"a": "b"})


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"env": "prod"}}, {"env": "prod", "x": "y"}, True),
        ({"matchLabels": {"env": "prod"}}, {"env": "dev"}, False),
        ({"matchLabels": {"env": "prod"}}, {}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}, {"env": "b"}, True),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["a"]}]}, {}, False),
        # NotIn matches when the key is absent, as in Kubernetes
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["a"]}]}, {"env": "a"}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"gpu": ""}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {}, True),
        # matchLabels and expressions are ANDed
        (
            {"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "zone", "operator": "Exists"}]},
            {"env": "prod"},
            False,
        ),
    ],
)
def test_selector_semantics(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert label_selector_matches(selector, labels) is expected


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ({"key": "env", "operator": "Equals", "values": ["a"]}, "unknown operator 'Equals'"),
        ({"key": "env", "operator": "In"}, "needs at least one value"),
        ({"key": "env", "operator": "NotIn", "values": []}, "needs at least one value"),
        ({"key": "env", "operator": "Exists", "values": ["a"]}, "takes no values"),
        ({"operator": "Exists"}, "has no key"),
    ],
)
def test_invalid_selector_is_reported_not_silently_unmatched(expression: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidSelector, match=fragment):
        label_selector_matches({"matchExpressions": [expression]}, {"env": "a"})


# --- taints ----------------------------------------------------------------------------------------------

UNSCHEDULABLE = {"key": known.TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
         {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),  # empty effect: all
        ({"key": "k", "value": "other"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
        ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": "NoSchedule"}, False),
        ({"operator": "Exists"}, {"key": "anything", "value": "x", "effect": "NoExecute"}, True),  # tolerate all
        ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
        ({"key": "k"}, {"key": "k", "effect": "NoSchedule"}, True),  # Equal with both values empty
    ],
)
def test_toleration_semantics(toleration: dict[str, Any], taint: dict[str, Any], expected: bool) -> None:
    assert tolerates([toleration], taint) is expected


def test_only_noschedule_and_noexecute_taints_filter() -> None:
    soft = cluster("ns1", "c1", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    hard = cluster("ns1", "c1", taints=[UNSCHEDULABLE])
    evict = cluster("ns1", "c1", taints=[{"key": "k", "effect": "NoExecute"}])
    assert cluster_tolerated(soft, [])
    assert not cluster_tolerated(hard, [])
    assert not cluster_tolerated(evict, None)
    assert cluster_tolerated(hard, [{"key": known.TAINT_UNSCHEDULABLE, "operator": "Exists"}])


def _bound(sub: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {**sub, "status": {"bindingClusters": list(keys)}}


def test_noschedule_keeps_a_bound_cluster_bound_and_says_why() -> None:
    """A silent cluster gets the hub's NoSchedule taint: what it runs must stay (Kubernetes' NoSchedule
    never evicts), so the cluster stays bound; the outage is no reason to delete a workload."""
    silent = cluster("ns1", "c1", {"env": "prod"}, taints=[UNSCHEDULABLE])
    sub = _bound(subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}}]), "ns1/c1")
    result = schedule(sub, [silent])
    assert result.binding_clusters == ["ns1/c1"]
    assert "ns1/c1" in result.kept and known.TAINT_UNSCHEDULABLE in result.kept["ns1/c1"]
    assert result.filtered == {}


def test_noschedule_keeps_a_new_subscription_off() -> None:
    silent = cluster("ns1", "c1", {"env": "prod"}, taints=[UNSCHEDULABLE])
    result = schedule(subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}}]), [silent])
    assert result.binding_clusters == []
    assert "ns1/c1" in result.filtered and result.kept == {}


def test_noexecute_unbinds_even_a_bound_cluster() -> None:
    evicting = cluster("ns1", "c1", {"env": "prod"}, taints=[UNSCHEDULABLE, {"key": "k", "effect": "NoExecute"}])
    sub = _bound(subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}}]), "ns1/c1")
    result = schedule(sub, [evicting])
    assert result.binding_clusters == []
    assert "k:NoExecute" in result.filtered["ns1/c1"]


def test_a_bound_cluster_that_no_longer_matches_is_unbound_despite_its_taint() -> None:
    """A user's relabel is a decision; the taint does not keep the old binding alive."""
    silent = cluster("ns1", "c1", {"env": "dev"}, taints=[UNSCHEDULABLE])
    sub = _bound(subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}}]), "ns1/c1")
    assert schedule(sub, [silent]).binding_clusters == []


def test_noschedule_keeps_a_cluster_holding_the_subscriptions_objects_bound() -> None:
    """F7: a silent cluster unbound by a short-lived change still holds its Description (deleting, its cleanup
    pending). Once the change is undone it is bound again, as if still in bindingClusters: kept off, its cleanup
    would run on its return and delete what the Subscription wants again."""
    silent = cluster("ns1", "c1", {"env": "prod"}, taints=[UNSCHEDULABLE])
    sub = subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}}])
    result = schedule(sub, [silent], holding={"ns1/c1"})
    assert result.binding_clusters == ["ns1/c1"]
    assert known.TAINT_UNSCHEDULABLE in result.kept["ns1/c1"] and result.filtered == {}
    assert schedule(sub, [silent], holding={"ns2/c1"}).binding_clusters == []  # another cluster's objects


def test_holding_objects_binds_no_cluster_the_subscription_does_not_match_or_that_is_evicting() -> None:
    """Holding only stands in for bindingClusters: a relabel, an affinity change or NoExecute still unbind."""
    sub = subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}}])
    relabelled = cluster("ns1", "c1", {"env": "dev"}, taints=[UNSCHEDULABLE])
    evicting = cluster("ns1", "c1", {"env": "prod"}, taints=[UNSCHEDULABLE, {"key": "k", "effect": "NoExecute"}])
    assert schedule(sub, [relabelled], holding={"ns1/c1"}).binding_clusters == []
    assert schedule(sub, [evicting], holding={"ns1/c1"}).binding_clusters == []


def test_a_kept_cluster_keeps_its_share_of_divided_replicas() -> None:
    clusters = [cluster("ns1", "c1", {"env": "prod"}, taints=[UNSCHEDULABLE]), cluster("ns2", "c2", {"env": "prod"})]
    sub = _bound(subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}, "weight": 1}],
                              schedulingStrategy="Dividing", dividingScheduling={"type": "Static"}), "ns1/c1", "ns2/c2")
    result = schedule(sub, clusters, {DEPLOY_KEY: 4})
    assert result.binding_clusters == ["ns1/c1", "ns2/c2"]
    assert result.replicas[DEPLOY_KEY] == [2, 2]


# --- scheduling ------------------------------------------------------------------------------------------


def test_replication_binds_union_of_subscribers_sorted_and_filters_taints() -> None:
    clusters = [
        cluster("ns-b", "child2", {"env": "prod"}),
        cluster("ns-a", "child1", {"zone": "eu"}),
        cluster("ns-c", "child3", {"env": "prod"}, taints=[UNSCHEDULABLE]),
        cluster("ns-d", "child4", {"env": "dev"}),
        cluster("ns-e", "child5", {"env": "prod"}, deletionTimestamp="2024-01-01T00:00:00Z"),
    ]
    sub = subscription([
        {"clusterAffinity": {"matchLabels": {"env": "prod"}}},
        {"clusterAffinity": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["eu"]}]}},
    ])
    result = schedule(sub, clusters)
    assert result.binding_clusters == ["ns-a/child1", "ns-b/child2"]
    assert [c.cluster_id for c in result.clusters] == ["id-child1", "id-child2"]
    assert result.replicas == {}
    assert "ns-c/child3" in result.filtered and known.TAINT_UNSCHEDULABLE in result.filtered["ns-c/child3"]
    assert result.message is None


def test_tolerations_let_a_subscription_onto_tainted_clusters() -> None:
    sub = subscription([{"clusterAffinity": {}}], clusterTolerations=[{"operator": "Exists"}])
    result = schedule(sub, [cluster("ns1", "c1", taints=[UNSCHEDULABLE])])
    assert result.binding_clusters == ["ns1/c1"]


def test_no_matching_cluster_is_a_message_not_an_error() -> None:
    result = schedule(subscription([{"clusterAffinity": {"matchLabels": {"env": "prod"}}}]),
                      [cluster("ns1", "c1", {"env": "dev"})])
    assert result.binding_clusters == []
    assert result.message == "no ManagedCluster matches the clusterAffinity of any subscriber"

    tainted = schedule(subscription([{"clusterAffinity": {}}]), [cluster("ns1", "c1", taints=[UNSCHEDULABLE])])
    assert tainted.binding_clusters == []
    assert tainted.message is not None and "ns1/c1: untolerated taint" in tainted.message


def test_invalid_subscriber_affinity_names_the_subscriber() -> None:
    sub = subscription([{"clusterAffinity": {}},
                        {"clusterAffinity": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}])
    with pytest.raises(InvalidSelector, match=r"spec.subscribers\[1\].clusterAffinity"):
        schedule(sub, [cluster("ns1", "c1")])


def test_static_dividing_weights_one_to_two_gives_two_and_four() -> None:
    sub = subscription(
        [
            {"clusterAffinity": {"matchLabels": {"clusters.clusternet.io/cluster-name": "child1"}}, "weight": 1},
            {"clusterAffinity": {"matchLabels": {"clusters.clusternet.io/cluster-name": "child2"}}, "weight": 2},
        ],
        schedulingStrategy="Dividing",
        dividingScheduling={"type": "Static"},
    )
    clusters = [cluster("ns2", "child2", {"clusters.clusternet.io/cluster-name": "child2"}),
                cluster("ns1", "child1", {"clusters.clusternet.io/cluster-name": "child1"})]
    result = schedule(sub, clusters, {DEPLOY_KEY: 6})
    assert result.binding_clusters == ["ns1/child1", "ns2/child2"]
    assert result.replicas == {DEPLOY_KEY: [2, 4]}


def test_cluster_weight_is_the_sum_of_matching_subscribers() -> None:
    sub = subscription(
        [{"clusterAffinity": {}, "weight": 1}, {"clusterAffinity": {"matchLabels": {"big": "true"}}, "weight": 2}],
        schedulingStrategy="Dividing",
    )
    result = schedule(sub, [cluster("ns1", "a"), cluster("ns2", "b", {"big": "true"})], {DEPLOY_KEY: 8})
    assert [c.weight for c in result.clusters] == [1, 3]
    assert result.replicas[DEPLOY_KEY] == [2, 6]


def test_feeds_without_replica_count_get_empty_lists() -> None:
    sub = subscription([{"clusterAffinity": {}, "weight": 1}], schedulingStrategy="Dividing")
    assert schedule(sub, [cluster("ns1", "a")], {}).replicas == {DEPLOY_KEY: []}


def test_all_zero_weights_divide_nothing_and_say_so() -> None:
    sub = subscription([{"clusterAffinity": {}}], schedulingStrategy="Dividing")
    result = schedule(sub, [cluster("ns1", "a")], {DEPLOY_KEY: 3})
    assert result.replicas == {DEPLOY_KEY: []}
    assert result.message is not None and "weight 0" in result.message


def test_binpack_and_unknown_dividing_types_are_refused_clearly() -> None:
    binpack = subscription([{"clusterAffinity": {}}], schedulingStrategy="Dividing",
                           dividingScheduling={"type": "Dynamic", "dynamicDividing": {"strategy": "Binpack"}})
    with pytest.raises(UnsupportedScheduling, match="'Binpack' is not supported: only Spread"):
        schedule(binpack, [cluster("ns1", "a")])
    odd = subscription([{"clusterAffinity": {}}], schedulingStrategy="Dividing", dividingScheduling={"type": "Odd"})
    with pytest.raises(UnsupportedScheduling, match="'Odd' is not supported"):
        schedule(odd, [cluster("ns1", "a")])


def test_scheduling_by_subgroup_keeps_min_clusters_per_subscriber() -> None:
    """Accepted and ignored until 2026-12-06: all three clusters were bound."""
    groups = [{"clusterAffinity": {"matchLabels": {"region": "bj"}}, "subGroupStrategy": {"minClusters": 1}},
              {"clusterAffinity": {"matchLabels": {"region": "sh"}}, "subGroupStrategy": {"minClusters": 1}}]
    prefer_not = [{"key": "spot", "effect": "PreferNoSchedule"}]
    clusters = [cluster("ns1", "a", {"region": "bj"}, prefer_not), cluster("ns2", "b", {"region": "bj"}),
                cluster("ns3", "c", {"region": "sh"})]
    sub = subscription(groups, schedulingBySubGroup=True)
    assert schedule(sub, clusters).binding_clusters == ["ns2/b", "ns3/c"]  # a: a PreferNoSchedule taint
    sub["status"] = {"bindingClusters": ["ns1/a", "ns3/c"]}
    assert schedule(sub, clusters).binding_clusters == ["ns1/a", "ns3/c"]  # what runs is never moved
    sub["status"] = {"bindingClusters": ["ns1/a", "ns2/b", "ns3/c"]}  # bound by a hub that ignored the setting
    assert schedule(sub, clusters).binding_clusters == ["ns1/a", "ns2/b", "ns3/c"]  # nothing taken off
    assert schedule(subscription(groups), clusters).binding_clusters == ["ns1/a", "ns2/b", "ns3/c"]
    with pytest.raises(UnsupportedScheduling, match=r"subscribers\[1\].subGroupStrategy.minClusters"):
        schedule(subscription([groups[0], {"clusterAffinity": {}}], schedulingBySubGroup=True), clusters)


@pytest.mark.parametrize(
    ("replicas", "weights", "expected"),
    [
        (6, [1, 2], [2, 4]),
        (5, [1, 1, 2], [1, 1, 3]),
        (3, [5, 2], [2, 1]),  # largest remainder (6/7) wins the leftover replica
        (2, [1, 1, 1], [1, 1, 0]),  # equal remainders and weights: earlier clusters first
        (0, [1, 2], [0, 0]),
        (7, [0, 1], [0, 7]),
    ],
)
def test_divide_replicas(replicas: int, weights: list[int], expected: list[int]) -> None:
    assert divide_replicas(replicas, weights) == expected
    assert sum(expected) == (replicas if sum(weights) else 0)


def test_feed_key_matches_the_model() -> None:
    assert feed_key(DEPLOY) == Feed.model_validate(DEPLOY).key() == DEPLOY_KEY
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "name": "foos.x.io"}
    assert feed_key(crd) == Feed.model_validate(crd).key()
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "foo", "name": "cfg"}}
    assert feed_key(obj) == "v1/ConfigMap/foo/cfg"
