"""Static Dividing end to end without a cluster: FeedInventory parsing, scheduling with its replica counts,
each cluster's share, and the render step that writes the share into the object."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.models import FeedInventory
from clusternet_core.feedinventory import (
    PARSED_KINDS,
    UnparseableFeed,
    build_feed_inventory,
    format_resource_quantity,
    is_dividing,
    parse_workload,
    replica_splits,
)
from clusternet_core.plan import inputs_hash
from clusternet_core.rendering import DIVIDING_PRIORITY, ReplicaSplit, render_generic
from clusternet_core.scheduling import schedule

KEY = "apps/v1/Deployment/app/web"
FEED = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "app", "name": "web"}
SERVICE_FEED = {"apiVersion": "v1", "kind": "Service", "namespace": "app", "name": "web"}


def workload(kind: str = "Deployment", api_version: str = "apps/v1", replicas: Any = 6,
             pod_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": pod_spec or {"containers": [{"name": "web", "image": "nginx"}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "web", "namespace": "app"}, "spec": spec}


def manifest(template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest",
            "metadata": {"name": "deployments.app.web", "namespace": known.RESERVED_NAMESPACE}, "template": template}


def subscription(*feeds: dict[str, str], strategy: str = "Dividing") -> dict[str, Any]:
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
            "metadata": {"name": "web-sub", "namespace": "default", "uid": "0a1b-uid"},
            "spec": {"schedulingStrategy": strategy, "dividingScheduling": {"type": "Static"},
                     "subscribers": [{"clusterAffinity": {"matchLabels": {"tier": "one"}}, "weight": 1},
                                     {"clusterAffinity": {"matchLabels": {"tier": "two"}}, "weight": 2}],
                     "feeds": list(feeds or [FEED])}}


def cluster(ns: str, name: str, tier: str) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": {"tier": tier}}, "spec": {"clusterId": name}}


# --- the in-tree parser ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("api_version", "kind"), sorted(PARSED_KINDS))
def test_every_in_tree_workload_kind_yields_replicas_and_the_replica_pointer(api_version: str, kind: str) -> None:
    replicas, requirements, path = parse_workload(workload(kind, api_version, replicas=4))
    assert (replicas, path) == (4, "/spec/replicas")
    assert requirements is not None


def test_in_tree_kinds_are_clusternets() -> None:
    for api_version in ("apps/v1", "apps/v1beta1", "apps/v1beta2", "extensions/v1beta1"):
        assert (api_version, "Deployment") in PARSED_KINDS and (api_version, "StatefulSet") in PARSED_KINDS
    assert ("apps/v1", "ReplicaSet") in PARSED_KINDS and ("extensions/v1beta1", "ReplicaSet") in PARSED_KINDS


@pytest.mark.parametrize("obj", [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"replicas": 3}},
    {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"}, "spec": {}},
    {"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": 3}},
])
def test_other_kinds_are_not_parsed(obj: dict[str, Any]) -> None:
    assert parse_workload(obj) == (None, None, None)


def test_unset_replicas_count_as_kubernetes_default_of_one() -> None:
    assert parse_workload(workload(replicas=None))[0] == 1
    assert parse_workload(workload(replicas=0))[0] == 0


@pytest.mark.parametrize("bad", ["6", -1, True, 2.5])
def test_a_replica_count_that_is_not_a_count_is_refused_with_a_reason(bad: Any) -> None:
    with pytest.raises(UnparseableFeed, match=r"spec\.replicas must be a non-negative integer"):
        parse_workload(workload(replicas=bad))


def test_replica_requirements_come_from_the_pod_template() -> None:
    pod = {"nodeSelector": {"disk": "ssd"},
           "tolerations": [{"key": "gpu", "operator": "Exists", "effect": ""},
                           {"key": "zone", "operator": "Equal", "value": "a", "effect": "NoSchedule"}],
           "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
               "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]}}},
           "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                                      "limits": {"cpu": "1", "memory": "1Gi"}}},
                          {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"},
                                                      "limits": {"cpu": 1}}},
                          {"name": "c"}],
           "initContainers": [{"name": "big-init", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}]}
    _, requirements, _ = parse_workload(workload(pod_spec=pod))
    assert requirements is not None
    data = requirements.to_dict()
    assert data["nodeSelector"] == {"disk": "ssd"}
    # an empty effect means "every effect": left out, not sent as ""
    assert data["tolerations"] == [{"key": "gpu", "operator": "Exists"},
                                   {"key": "zone", "operator": "Equal", "value": "a", "effect": "NoSchedule"}]
    assert data["affinity"] == pod["affinity"]
    # containers summed; an init container counts when it alone needs more (cpu 2 > 750m)
    assert data["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"},
                                 "requests": {"cpu": "2", "memory": "1536Mi"}}


def test_a_pod_template_without_anything_gives_empty_requirements() -> None:
    _, requirements, _ = parse_workload(workload())
    assert requirements is not None and requirements.to_dict() == {"resources": {}}


@pytest.mark.parametrize(("pod", "reason"), [
    ({"containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]}, "containers\\[0\\]"),
    ({"containers": "nginx"}, "must be a list of containers"),
    ({"containers": [], "tolerations": [{"operator": "Sometimes"}]}, "tolerations"),
])
def test_a_broken_pod_template_names_the_field(pod: dict[str, Any], reason: str) -> None:
    with pytest.raises(UnparseableFeed, match=reason):
        parse_workload(workload(pod_spec=pod))


@pytest.mark.parametrize(("value", "binary", "text"), [
    (Decimal("1.5"), False, "1500m"), (Decimal("0.1"), False, "100m"), (Decimal(2), False, "2"),
    (Decimal(2000), False, "2k"), (Decimal(1536 * 1024**2), True, "1536Mi"), (Decimal(1024**3), True, "1Gi"),
    (Decimal(1000), True, "1000"), (Decimal("0.0000005"), False, "500n"), (Decimal(0), False, "0"),
])
def test_summed_quantities_print_like_kubernetes(value: Decimal, binary: bool, text: str) -> None:
    assert format_resource_quantity(value, binary) == text


# --- the inventory ------------------------------------------------------------------------------------------


def test_inventory_is_named_and_owned_like_its_subscription_and_lists_every_feed_in_order() -> None:
    sub = subscription(SERVICE_FEED, FEED)
    result = build_feed_inventory(sub, {KEY: manifest(workload())})
    body = result.body()
    assert body["apiVersion"] == "apps.clusternet.io/v1alpha1" and body["kind"] == "FeedInventory"
    assert (body["metadata"]["name"], body["metadata"]["namespace"]) == ("web-sub", "default")
    assert body["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription", "name": "web-sub",
        "uid": "0a1b-uid", "controller": True, "blockOwnerDeletion": True}]
    assert body["metadata"]["labels"][known.LABEL_SUBS_UID] == "0a1b-uid"
    service, deploy = body["spec"]["feeds"]
    # a Service is listed (so the inventory covers the whole Subscription) but has nothing to divide
    assert service == SERVICE_FEED
    assert deploy["desiredReplicas"] == 6 and deploy["replicaJsonPath"] == "/spec/replicas"
    assert result.desired_replicas() == {KEY: 6} and result.problems == []
    FeedInventory.from_dict(body)  # the CRD's model accepts it


def test_a_missing_template_is_listed_without_replicas_and_left_to_the_renderer_to_report() -> None:
    result = build_feed_inventory(subscription(FEED), {})
    assert result.body()["spec"]["feeds"] == [FEED]
    assert result.desired_replicas() == {} and result.problems == []


def test_an_unparseable_template_is_a_problem_for_people_and_is_not_divided() -> None:
    result = build_feed_inventory(subscription(FEED), {KEY: workload(replicas="six")})
    assert result.desired_replicas() == {}
    assert result.problems == ["cannot read the replicas of apps/v1/Deployment app/web: spec.replicas must be a "
                               "non-negative integer, got 'six'"]


def test_only_dividing_subscriptions_divide() -> None:
    assert is_dividing(subscription())
    assert not is_dividing(subscription(strategy="Replication"))
    assert not is_dividing({"spec": {}})


# --- scheduling with the inventory and each cluster's share ---------------------------------------------------


def test_weights_one_and_two_split_six_replicas_two_and_four() -> None:
    sub = subscription(FEED, SERVICE_FEED)
    inventory = build_feed_inventory(sub, {KEY: manifest(workload(replicas=6))})
    clusters = [cluster("clusternet-b", "child2", "two"), cluster("clusternet-a", "child1", "one")]
    result = schedule(sub, clusters, inventory.desired_replicas())
    assert result.binding_clusters == ["clusternet-a/child1", "clusternet-b/child2"]
    assert result.replicas == {KEY: [2, 4], "v1/Service/app/web": []}
    shares = [replica_splits(result.replicas, result.binding_clusters, key, inventory.inventory, "default/web-sub")
              for key in result.binding_clusters]
    assert shares == [{KEY: ReplicaSplit(2, "default/web-sub")}, {KEY: ReplicaSplit(4, "default/web-sub")}]
    # nine replicas re-divide to three and six
    nine = build_feed_inventory(sub, {KEY: manifest(workload(replicas=9))})
    assert schedule(sub, clusters, nine.desired_replicas()).replicas[KEY] == [3, 6]


def test_no_share_for_an_unbound_cluster_a_feed_without_replicas_or_a_short_list() -> None:
    inventory = build_feed_inventory(subscription(FEED, SERVICE_FEED), {KEY: workload()}).inventory
    replicas = {KEY: [2, 4], "v1/Service/app/web": []}
    assert replica_splits(replicas, ["a/x", "b/y"], "c/z", inventory, "default/s") == {}
    assert replica_splits({KEY: [2]}, ["a/x", "b/y"], "b/y", inventory, "default/s") == {}
    assert set(replica_splits(replicas, ["a/x", "b/y"], "a/x", inventory, "default/s")) == {KEY}


# --- the render step ------------------------------------------------------------------------------------------

CLUSTER = cluster("clusternet-a", "child1", "one")


def loc(name: str, priority: int, replicas: int, namespace: str = "clusternet-a",
        kind: str = "Localization") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": "2024-01-01T00:00:00Z"}
    if kind == "Localization":
        meta["namespace"] = namespace
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": kind, "metadata": meta,
            "spec": {"priority": priority, "feed": FEED,
                     "overrides": [{"name": name, "type": "MergePatch", "value": {"spec": {"replicas": replicas}}}]}}


def render(template: dict[str, Any], share: int | None, globs: list[dict[str, Any]] | None = None,
           locs: list[dict[str, Any]] | None = None, path: str = "/spec/replicas") -> Any:
    splits = {KEY: ReplicaSplit(share, "default/web-sub", path)} if share is not None else None
    result = render_generic([FEED], {KEY: manifest(template)}, CLUSTER, globs or [], locs or [], splits)
    return result.items[0]


def test_the_share_is_written_at_the_replica_pointer_and_shows_who_set_it() -> None:
    item = render(workload(replicas=6), 2)
    assert item.object["spec"]["replicas"] == 2
    applied = item.applied[-1]
    assert (applied.kind, applied.namespace, applied.name) == ("Subscription", "default", "web-sub")
    assert applied.changed_paths == ("/spec/replicas",) and applied.type == "JSONPatch"
    assert DIVIDING_PRIORITY == 1000


def test_without_a_share_nothing_changes() -> None:
    item = render(workload(replicas=6), None)
    assert item.object["spec"]["replicas"] == 6 and item.applied == []


def test_the_share_is_set_even_when_the_template_leaves_replicas_out() -> None:
    assert render(workload(replicas=None), 3).object["spec"]["replicas"] == 3


def test_user_overrides_below_priority_1000_lose_to_the_split_and_higher_localizations_win() -> None:
    globs = [loc("glob-high", 1000, 50, kind="Globalization")]
    low = loc("loc-low", 999, 10)
    assert render(workload(), 2, globs, [low]).object["spec"]["replicas"] == 2
    at = loc("loc-1000", 1000, 10)
    assert render(workload(), 2, globs, [at]).object["spec"]["replicas"] == 2
    high = loc("loc-high", 1001, 7)
    item = render(workload(), 2, globs, [low, high])
    assert item.object["spec"]["replicas"] == 7
    assert [a.name for a in item.applied] == ["glob-high", "loc-low", "web-sub", "loc-high"]


def test_a_replica_pointer_that_cannot_be_set_is_reported_not_raised() -> None:
    item = render(workload(), 2, path="/spec/nothing/replicas")
    assert item.object["spec"]["replicas"] == 6
    assert item.errors and "dividing-scheduler" in item.errors[0].message


def test_the_rendered_objects_are_not_the_template_objects() -> None:
    template = workload(replicas=6)
    before = copy.deepcopy(template)
    render(template, 2)
    assert template == before


# --- re-rendering ---------------------------------------------------------------------------------------------


def test_inputs_hash_follows_the_share_and_is_unchanged_for_replication() -> None:
    spec, templates = subscription()["spec"], {KEY: manifest(workload())}
    assert inputs_hash(spec, templates) == inputs_hash(spec, templates, {})
    assert inputs_hash(spec, templates, {KEY: 2}) != inputs_hash(spec, templates, {KEY: 3})
    assert inputs_hash(spec, templates, {KEY: 2}) != inputs_hash(spec, templates)
