"""Feed status: replica summaries, readiness verdicts, and a Subscription status that says what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.models import SubscriptionStatus
from clusternet_api.rawobjects import encode_raw
from clusternet_core.feedstatus import aggregate, feed_verdict
from clusternet_core.workloadready import NOT_REPORTED, is_ready, workload_summary

DEPLOY_FEED = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "my-nginx"}
SVC_FEED = {"apiVersion": "v1", "kind": "Service", "namespace": "foo", "name": "my-nginx"}


def deployment(status: dict[str, Any], generation: int | None = None, replicas: int | None = None) -> dict[str, Any]:
    o: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "status": status}
    if generation is not None:
        o["metadata"]["generation"] = generation
    if replicas is not None:
        o["spec"] = {"replicas": replicas}
    return o


# --- summaries and readiness -----------------------------------------------------------------------------


def test_workload_summary_copies_clusternet_replica_fields() -> None:
    status = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2,
              "availableReplicas": 2, "unavailableReplicas": 1, "conditions": []}
    assert workload_summary(deployment(status)) == {k: v for k, v in status.items() if k != "conditions"}
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet",
          "status": {"desiredNumberScheduled": 4, "numberReady": 3, "currentNumberScheduled": 4,
                     "updatedNumberScheduled": 4, "numberAvailable": 3, "numberUnavailable": 1}}
    assert workload_summary(ds) == {"replicas": 4, "readyReplicas": 3, "currentReplicas": 4, "updatedReplicas": 4,
                                    "availableReplicas": 3, "unavailableReplicas": 1}
    job = {"apiVersion": "batch/v1", "kind": "Job", "status": {"active": 1, "succeeded": 2, "startTime": "x"}}
    assert workload_summary(job) == {"active": 1, "succeeded": 2}
    assert workload_summary({"apiVersion": "v1", "kind": "ConfigMap", "status": {"replicas": 1}}) == {}


@pytest.mark.parametrize(
    ("o", "verdict"),
    [
        (deployment({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}, 2, 3),
         (True, "3/3 ready")),
        (deployment({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}, 2, 3),
         (False, "update not observed yet (generation 2, observed 1)")),
        (deployment({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3},
                    replicas=3),
         (False, "1/3 updated")),
        (deployment({"observedGeneration": 1, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3},
                    replicas=3),
         (False, "1 old replica(s) still running")),
        (deployment({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}),
         (False, "1/3 ready")),
        (deployment({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                     "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "stuck"}]}),
         (False, "progress deadline exceeded: stuck")),
        ({"apiVersion": "apps/v1", "kind": "DaemonSet",
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "numberReady": 1}}, (False, "1/2 ready")),
        ({"apiVersion": "apps/v1", "kind": "DaemonSet",
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "numberReady": 2}}, (True, "2/2 ready")),
        ({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"replicas": 2},
          "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}},
         (True, "2/2 ready")),
        ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"completions": 3}, "status": {"succeeded": 3}},
         (True, "complete")),
        ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"completions": 3}, "status": {"succeeded": 1, "active": 2}},
         (False, "1/3 completed, 2 active")),
        ({"apiVersion": "batch/v1", "kind": "Job", "status": {"failed": 6, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}},
         (False, "failed: BackoffLimitExceeded")),
        ({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Active"}}, (True, "phase Active")),
        ({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Terminating"}}, (False, "phase Terminating")),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, (True, "exists")),
        ({"apiVersion": "v1", "kind": "Service", "status": {"loadBalancer": {}}}, (True, "exists")),
    ],
)
def test_is_ready(o: dict[str, Any], verdict: tuple[bool, str]) -> None:
    assert is_ready(o) == verdict


@pytest.mark.parametrize(
    "o",
    [
        deployment({}, replicas=2),  # what server-side apply returns right after creating it
        deployment({"replicas": 0, "updatedReplicas": 0}, replicas=2),  # no observedGeneration: never synced
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"replicas": 2}, "status": {}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "status": {}},
        {"apiVersion": "batch/v1", "kind": "Job", "spec": {"completions": 1}, "status": {}},
    ],
)
def test_a_workload_status_not_filled_in_yet_is_pending_not_ready(o: dict[str, Any]) -> None:
    assert is_ready(o) == (False, NOT_REPORTED)
    assert NOT_REPORTED == "pending: the cluster has not reported status yet"


def test_desired_replicas_come_from_the_spec_defaulting_to_one() -> None:
    # the status counts pods that exist; with none (no nodes, quota) 0 >= 0 must not pass for ready
    synced = {"observedGeneration": 1}
    assert is_ready({**deployment(synced), "spec": {}}) == (False, "0/1 updated")
    assert is_ready(deployment({**synced, "replicas": 2, "updatedReplicas": 2, "unavailableReplicas": 2},
                               replicas=2)) == (False, "0/2 ready")
    assert is_ready(deployment(synced, replicas=0)) == (True, "0/0 ready")


# --- aggregate -------------------------------------------------------------------------------------------


def mcls(ns: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": {known.LABEL_CLUSTER_NAME: name}},
            "spec": {"clusterId": f"id-{name}", "syncMode": "Pull"}}


CLUSTERS = {f"ns{i}/child{i}": mcls(f"ns{i}", f"child{i}") for i in (1, 2, 3)}


def subscription(bound: list[str]) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "app", "uid": "sub-uid"},
            "spec": {"subscribers": [{"clusterAffinity": {}}], "feeds": [DEPLOY_FEED, SVC_FEED]},
            "status": {"bindingClusters": bound}}


def rendered(feed: dict[str, str], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object as the hub renders it into Description.spec.raw."""
    obj: dict[str, Any] = {"apiVersion": feed["apiVersion"], "kind": feed["kind"],
                           "metadata": {"name": feed["name"], "namespace": feed["namespace"]}}
    if spec is not None:
        obj["spec"] = spec
    return obj


def generic_desc(ns: str, phase: str | None, deploy_status: dict[str, Any] | None, *,
                 sub_uid: str = "sub-uid", reason: str | None = None, replicas: int | None = 3,
                 child_generation: int | None = None, generations: tuple[int, int] | None = None) -> dict[str, Any]:
    """A generic Description: the rendered Deployment (`replicas`; None leaves the field out) and Service,
    what the child reported, and optionally (Description generation, status.observedGeneration)."""
    statuses: list[dict[str, Any]] = [{**SVC_FEED, "observedStatus": {"loadBalancer": {}}}]
    if deploy_status is not None:
        entry = {**DEPLOY_FEED, "observedStatus": deploy_status}
        if child_generation is not None:
            entry["generation"] = child_generation
        statuses.insert(0, entry)
    status: dict[str, Any] = {"manifestStatuses": statuses}
    if phase:
        status["phase"] = phase
    if reason:
        status["reason"] = reason
    meta: dict[str, Any] = {"namespace": ns, "name": "app-12345-generic",
                            "labels": {known.LABEL_SUBS_UID: sub_uid, known.LABEL_SUBS_NAME: "app"}}
    if generations:
        meta["generation"], status["observedGeneration"] = generations
    spec = {"replicas": replicas} if replicas is not None else {}
    raw = encode_raw([rendered(DEPLOY_FEED, spec), rendered(SVC_FEED, {"ports": [{"port": 80}]})])
    return {"metadata": meta, "spec": {"deployer": "Generic", "raw": raw}, "status": status}


READY = {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}
SLOW = {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 1, "availableReplicas": 1,
        "unavailableReplicas": 2}


def test_aggregate_counts_completed_releases_and_says_what_is_missing() -> None:
    bound = ["ns1/child1", "ns2/child2", "ns3/child3"]
    descs = [generic_desc("ns1", "Success", READY), generic_desc("ns2", "Success", SLOW),
             generic_desc("ns3", "Success", READY)]
    status = aggregate(subscription(bound), descs, CLUSTERS)
    assert status["completedReleases"] == 2
    assert status["desiredReleases"] == 3
    assert status["conditions"] == [{
        "type": "Ready", "status": "False", "reason": "ReleasesNotReady",
        "message": "2/3 clusters done; waiting for child2: Deployment foo/my-nginx 1/3 ready",
    }]

    deploy_status, svc_status = status["aggregatedStatuses"]
    assert {k: deploy_status[k] for k in ("apiVersion", "kind", "namespace", "name")} == DEPLOY_FEED
    assert deploy_status["feedStatusSummary"] == {
        "available": False,
        "replicaStatus": {"observedGeneration": 1, "replicas": 9, "updatedReplicas": 9, "readyReplicas": 7,
                          "availableReplicas": 7, "unavailableReplicas": 2},
    }
    assert [(d["clusterId"], d["clusterName"], d["available"]) for d in deploy_status["feedStatusDetails"]] == [
        ("id-child1", "child1", True), ("id-child2", "child2", False), ("id-child3", "child3", True)]
    assert svc_status["feedStatusSummary"] == {"available": True}
    # The result fits Clusternet's SubscriptionStatus schema.
    SubscriptionStatus.model_validate({k: v for k, v in status.items() if k != "conditions"})


def test_all_done_is_ready_true() -> None:
    bound = ["ns1/child1", "ns2/child2"]
    status = aggregate(subscription(bound), [generic_desc("ns1", "Success", READY),
                                             generic_desc("ns2", "Success", READY)], CLUSTERS)
    assert status["completedReleases"] == 2
    assert status["conditions"][0] == {"type": "Ready", "status": "True", "reason": "AllReleasesReady",
                                       "message": "2/2 clusters done"}


def test_a_silent_cluster_is_not_done_and_its_state_unknown() -> None:
    """A cluster the hub marked Unknown keeps its workloads, but its last report is no verdict for now."""
    silent = mcls("ns2", "child2")
    silent["status"] = {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "ClusterStatusUnknown",
                                        "lastTransitionTime": "2026-12-03T08:00:00Z"}]}
    bound = ["ns1/child1", "ns2/child2"]
    status = aggregate(subscription(bound), [generic_desc("ns1", "Success", READY),
                                             generic_desc("ns2", "Success", READY)],
                       {**CLUSTERS, "ns2/child2": silent})
    assert status["completedReleases"] == 1
    ready = status["conditions"][0]
    assert ready["status"] == "False"
    assert "child2: cluster not reporting (Ready Unknown since 2026-12-03T08:00:00Z)" in ready["message"]
    details = status["aggregatedStatuses"][0]["feedStatusDetails"]
    assert details[0]["available"] is True and "available" not in details[1]
    assert status["aggregatedStatuses"][0]["feedStatusSummary"]["available"] is False


def test_missing_failed_and_unreported_releases_are_explained() -> None:
    bound = ["ns1/child1", "ns2/child2", "ns3/child3"]
    descs = [
        generic_desc("ns1", "Failure", None, reason="deployments.apps is forbidden"),
        generic_desc("ns2", "Success", None),  # applied, but the workload status was never reported
        generic_desc("ns3", "Success", READY, sub_uid="another-subscription"),  # not ours: ignored
    ]
    status = aggregate(subscription(bound), descs, CLUSTERS)
    assert status["completedReleases"] == 0
    cond = status["conditions"][0]
    assert cond["reason"] == "ReleasesFailed"
    assert cond["message"] == (
        "0/3 clusters done; waiting for child1: generic deploy failed: deployments.apps is forbidden; "
        "child2: Deployment foo/my-nginx pending: the cluster has not reported status yet; "
        "child3: no generic Description yet"
    )


def test_no_binding_clusters() -> None:
    status = aggregate(subscription([]), [], CLUSTERS)
    assert status["completedReleases"] == 0
    assert status["conditions"][0]["reason"] == "NoBindingClusters"
    assert status["aggregatedStatuses"][0]["feedStatusSummary"] == {"available": False}


def test_helm_feeds_follow_the_helm_description() -> None:
    chart = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "HelmChart", "namespace": "default", "name": "db"}
    sub = subscription(["ns1/child1"])
    sub["spec"]["feeds"] = [chart]
    helm = {"metadata": {"namespace": "ns1", "name": "app-12345-helm"}, "spec": {"deployer": "Helm"},
            "status": {"phase": "Installing"}}
    status = aggregate(sub, [helm], CLUSTERS)
    assert status["conditions"][0]["message"] == "0/1 clusters done; waiting for child1: helm deploy installing"
    helm["status"]["phase"] = "Success"
    status = aggregate(sub, [helm], CLUSTERS)
    assert status["completedReleases"] == 1
    assert status["aggregatedStatuses"][0]["feedStatusDetails"][0]["available"] is True


# --- aggregate: nothing is available before the child said so ------------------------------------------------

JUST_CREATED: dict[str, Any] = {}
NO_NODES = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "unavailableReplicas": 2}


def test_a_deployment_just_created_is_pending_everywhere() -> None:
    bound = ["ns1/child1", "ns2/child2"]
    descs = [generic_desc(ns, "Success", JUST_CREATED, replicas=2, child_generation=1, generations=(1, 1))
             for ns in ("ns1", "ns2")]
    status = aggregate(subscription(bound), descs, CLUSTERS)
    assert status["completedReleases"] == 0
    deploy_status, svc_status = status["aggregatedStatuses"]
    assert deploy_status["feedStatusSummary"] == {"available": False}
    assert deploy_status["feedStatusDetails"] == [  # available left out: unknown, not false and never true
        {"clusterId": "id-child1", "clusterName": "child1"}, {"clusterId": "id-child2", "clusterName": "child2"}]
    assert svc_status["feedStatusSummary"] == {"available": True}
    assert status["conditions"] == [{
        "type": "Ready", "status": "False", "reason": "ReleasesNotReady",
        "message": "0/2 clusters done; waiting for child1: Deployment foo/my-nginx pending: the cluster has not "
                   "reported status yet; child2: Deployment foo/my-nginx pending: the cluster has not reported "
                   "status yet"}]
    SubscriptionStatus.model_validate({k: v for k, v in status.items() if k != "conditions"})


def test_desired_replicas_come_from_the_rendered_object() -> None:
    status = aggregate(subscription(["ns1/child1"]), [generic_desc("ns1", "Success", NO_NODES, replicas=2)],
                       CLUSTERS)
    detail = status["aggregatedStatuses"][0]["feedStatusDetails"][0]
    assert detail["available"] is False and detail["replicaStatus"]["unavailableReplicas"] == 2
    assert status["completedReleases"] == 0
    assert status["conditions"][0]["message"] == (
        "0/1 clusters done; waiting for child1: Deployment foo/my-nginx 0/2 ready")
    # a template without replicas gets Kubernetes' default of 1
    unset = aggregate(subscription(["ns1/child1"]), [generic_desc("ns1", "Success", {"observedGeneration": 1},
                                                                  replicas=None)], CLUSTERS)
    assert unset["conditions"][0]["message"].endswith("Deployment foo/my-nginx 0/1 updated")


def test_a_status_behind_the_objects_generation_is_not_ready() -> None:
    # READY was reported by the controller for generation 1; the hub just applied generation 2
    status = aggregate(subscription(["ns1/child1"]), [generic_desc("ns1", "Success", READY, child_generation=2)],
                       CLUSTERS)
    assert status["completedReleases"] == 0
    assert status["aggregatedStatuses"][0]["feedStatusDetails"][0]["available"] is False
    assert status["conditions"][0]["message"].endswith(
        "Deployment foo/my-nginx update not observed yet (generation 2, observed 1)")
    caught_up = aggregate(subscription(["ns1/child1"]), [generic_desc("ns1", "Success", READY, child_generation=1)],
                          CLUSTERS)
    assert caught_up["completedReleases"] == 1


def test_success_for_an_older_description_generation_is_pending() -> None:
    status = aggregate(subscription(["ns1/child1"]), [generic_desc("ns1", "Success", READY, generations=(3, 2))],
                       CLUSTERS)
    assert status["completedReleases"] == 0
    assert status["conditions"][0]["message"] == (
        "0/1 clusters done; waiting for child1: generic deploy pending: generation 3 not applied yet "
        "(status is for 2)")
    assert all("available" not in d for a in status["aggregatedStatuses"] for d in a["feedStatusDetails"])


def test_a_failed_description_is_not_available_rather_than_unknown() -> None:
    status = aggregate(subscription(["ns1/child1"]), [generic_desc("ns1", "Failure", None, reason="x")], CLUSTERS)
    assert [d["available"] for a in status["aggregatedStatuses"] for d in a["feedStatusDetails"]] == [False, False]


def test_a_feed_without_namespace_finds_its_object_in_the_templates_namespace() -> None:
    loose = {**DEPLOY_FEED, "namespace": ""}
    sub = subscription(["ns1/child1"])
    sub["spec"]["feeds"] = [loose]
    status = aggregate(sub, [generic_desc("ns1", "Success", READY)], CLUSTERS)
    assert status["completedReleases"] == 1
    assert status["aggregatedStatuses"][0]["feedStatusDetails"][0]["replicaStatus"]["readyReplicas"] == 3


def test_feed_verdict_unknown_without_a_report() -> None:
    assert feed_verdict(DEPLOY_FEED, None, None) == (None, NOT_REPORTED, {})
    assert feed_verdict(SVC_FEED, None, None) == (None, NOT_REPORTED, {})  # not applied yet: not "exists"
    assert feed_verdict(SVC_FEED, {**SVC_FEED, "observedStatus": {}}, None) == (True, "exists", {})


def test_an_object_renamed_or_moved_by_an_override_is_found_under_its_rendered_name() -> None:
    """The third audit: a Localization renaming a ConfigMap left the Subscription waiting for the old name for
    ever, while the Description said Success for the new one."""
    desc = generic_desc("ns1", "Success", READY)
    moved = {**DEPLOY_FEED, "name": "my-nginx-renamed", "namespace": "elsewhere"}
    desc["spec"]["raw"] = encode_raw([rendered(moved, {"replicas": 3}), rendered(SVC_FEED, {"ports": [{"port": 80}]})])
    desc["status"]["manifestStatuses"][0].update(name=moved["name"], namespace=moved["namespace"])
    status = aggregate(subscription(["ns1/child1"]), [desc], CLUSTERS)
    assert status["completedReleases"] == 1
    assert status["conditions"][0]["reason"] == "AllReleasesReady"
    assert status["aggregatedStatuses"][0]["feedStatusDetails"][0]["replicaStatus"]["readyReplicas"] == 3
    # a report for the old name alone (before the move reached the child) is not taken for the new object
    desc["status"]["manifestStatuses"][0].update(name="my-nginx", namespace=DEPLOY_FEED["namespace"])
    assert aggregate(subscription(["ns1/child1"]), [desc], CLUSTERS)["completedReleases"] == 0


def test_a_cluster_whose_managedcluster_is_gone_keeps_its_id_from_its_descriptions_or_none() -> None:
    """Audit 6: a removed cluster's entry said clusterId "", which kube-apiserver 1.20 turned into null and
    refused (422) with the whole status. Its Descriptions carry the ID; failing that, the key is left out."""
    bound = ["ns1/child1", "ns2/child2"]
    descs = [generic_desc(ns, "Success", JUST_CREATED, replicas=2, child_generation=1, generations=(1, 1))
             for ns in ("ns1", "ns2")]
    descs[0]["metadata"]["labels"][known.LABEL_CLUSTER_ID] = "id-child1"
    status = aggregate(subscription(bound), descs, {})  # both ManagedClusters gone
    details = status["aggregatedStatuses"][0]["feedStatusDetails"]
    assert details == [{"clusterId": "id-child1", "clusterName": "child1"}, {"clusterName": "child2"}]
    SubscriptionStatus.model_validate({k: v for k, v in status.items() if k != "conditions"})
