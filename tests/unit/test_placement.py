"""What a Subscription placed in a cluster namespace keeps that cluster bound through NoSchedule (F7): the plan binds
a silent cluster again once a short-lived unbinding is undone, and writes its Base back while the old Description
waits to be let go; nothing of another Subscription, nor of a predecessor under the same name, counts."""

from __future__ import annotations

import copy
from typing import Any

from clusternet_api import known
from clusternet_core import placement, rendering, substatus
from clusternet_core import plan as planning
from tests.unit.test_controller import BASE, DESC, NS, cluster, config_map_manifest, subscription

SILENT = {"key": known.TAINT_UNSCHEDULABLE, "value": "no heartbeat", "effect": "NoSchedule"}
GONE = "2026-01-01T00:00:00Z"
UID = "sub-uid"


def silent_cluster() -> dict[str, Any]:
    mc = cluster(ready="Unknown")
    mc["spec"]["taints"] = [dict(SILENT)]
    return mc


def unbound_subscription(env: str = "prod") -> dict[str, Any]:
    """As the hub left it after a short-lived change unbound the silent cluster: bindingClusters empty."""
    sub = subscription()
    sub["metadata"]["uid"] = UID
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {"env": env}}}]
    sub["status"] = {"bindingClusters": []}
    return sub


def labelled(kind: str, name: str, uid: str = UID, **meta: Any) -> dict[str, Any]:
    labels = {known.LABEL_SUBS_UID: uid, known.LABEL_SUBS_NAME: "app", known.LABEL_SUBS_NAMESPACE: "default"}
    return {"apiVersion": known.APPS_API_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": NS, "labels": labels, "uid": f"{name}-uid", **meta},
            "spec": {"deployer": "Generic"} if kind == "Description" else {"feeds": []}}


def deleting_description(uid: str = UID) -> dict[str, Any]:
    return labelled("Description", DESC[1], uid, deletionTimestamp=GONE, finalizers=[known.FINALIZER_APPS])


def caches(*objects: dict[str, Any]) -> planning.Caches:
    c = planning.Caches(clusters={(NS, "child1"): silent_cluster()})
    manifest = config_map_manifest()
    c.manifests[manifest["metadata"]["name"]] = manifest
    for obj in objects:
        store = c.descriptions if obj["kind"] == "Description" else c.bases
        store[planning.key_of(obj)] = copy.deepcopy(obj)
    return c


def test_a_cluster_holding_a_base_or_description_of_the_subscription_is_holding_it() -> None:
    sub, mc = unbound_subscription(), silent_cluster()
    _, long = rendering.base_names(sub)
    held = {f"{NS}/child1"}
    for found in (deleting_description(), labelled("Base", BASE[1]),
                  labelled("Description", rendering.description_name(long, "Helm"))):
        c = caches(found)
        assert placement.holding_clusters(sub, [mc], c.bases, c.descriptions) == held, found["metadata"]["name"]
    for found in (deleting_description(uid="predecessor"), {**deleting_description(), "metadata": {
            **deleting_description()["metadata"], "namespace": "clusternet-other"}}):
        c = caches(found)
        assert placement.holding_clusters(sub, [mc], c.bases, c.descriptions) == set()
    unlabelled = deleting_description()
    unlabelled["metadata"]["labels"] = {}
    c = caches(unlabelled)  # nobody's, not even a Subscription's without a uid (never matched by a missing label)
    assert placement.holding_clusters({**sub, "metadata": {"name": "app", "namespace": "default"}}, [mc], c.bases,
                                      c.descriptions) == set()


def test_an_unbinding_undone_while_the_cluster_is_silent_binds_it_again_and_writes_its_base_back() -> None:
    plan = planning.plan_subscription(unbound_subscription(), caches(deleting_description()), force=False)
    assert plan.status is not None and plan.status.bindings == [f"{NS}/child1"]
    [cluster_plan] = plan.clusters
    assert planning.key_of(cluster_plan.base) == BASE and cluster_plan.apply_base
    assert cluster_plan.description is None  # the new one waits for the old one to be let go (same name)
    assert cluster_plan.errors == [planning.being_deleted(NS, DESC[1])]
    assert plan.delete_bases == []


def test_an_unbinding_that_stands_keeps_the_silent_cluster_unbound() -> None:
    plan = planning.plan_subscription(unbound_subscription(env="prdo"),
                                      caches(deleting_description(), labelled("Base", BASE[1])), force=False)
    assert plan.status is not None and plan.status.bindings == [] and plan.clusters == []
    assert [planning.key_of(b) for b in plan.delete_bases] == [BASE]


def test_a_new_subscription_stays_off_a_silent_cluster_its_predecessor_deployed_to() -> None:
    """Deleted and created again under the same name: another uid, a new Subscription, which NoSchedule keeps off."""
    plan = planning.plan_subscription(unbound_subscription(), caches(deleting_description(uid="predecessor")),
                                      force=False)
    assert plan.status is not None and plan.status.bindings == [] and plan.clusters == []


def test_a_description_waiting_for_its_predecessor_is_no_render_failure() -> None:
    """The fifth audit: while the silent cluster's old `-helm` Description was deleting, the Subscription said
    RenderFailed "... is still being cleaned up", and its generic Description took that message in (its
    render-errors annotation and a RenderFailed Warning event on it): nothing had failed."""
    sub = unbound_subscription()
    chart = {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart",
             "metadata": {"name": "mysql", "namespace": "default"},
             "spec": {"repo": "https://charts.example", "chart": "mysql", "version": "8.6.2", "targetNamespace": "x"},
             "status": {"phase": "Found"}}
    sub["spec"]["feeds"].append({"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart", "namespace": "default",
                                 "name": "mysql"})
    helm = labelled("Description", rendering.description_name(BASE[1], "Helm"), deletionTimestamp=GONE,
                    finalizers=[known.FINALIZER_APPS])
    c = caches(helm)
    c.helmcharts[("default", "mysql")] = chart
    [cluster_plan] = planning.plan_subscription(sub, c, force=False).clusters
    assert cluster_plan.description is not None and cluster_plan.helm_description is None
    annotations = cluster_plan.description["metadata"].get("annotations") or {}
    assert annotations.get(planning.ANNOTATION_RENDER_ERRORS) == "" and cluster_plan.announce == {}
    assert cluster_plan.errors == [planning.being_deleted(NS, helm["metadata"]["name"])]
    assert substatus.problems_reason(cluster_plan.errors) == planning.REASON_PREVIOUS_DELETING
    assert substatus.problems_reason([*cluster_plan.errors, "a broken override"]) == "RenderFailed"
