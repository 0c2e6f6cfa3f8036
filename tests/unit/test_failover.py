"""Dividing while a bound cluster is silent, with the FailOver gate (clusternet_core/failover.py): the clusters
that answer divide each feed's whole count, the silent one keeps the share it was last given, nothing of it is
rewritten; without the gate, or with nowhere to fail over to, the usual split stands."""

from __future__ import annotations

from typing import Any

from clusternet_api import known
from clusternet_core.failover import failover_note
from clusternet_core.scheduling import schedule

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "web", "name": "web"}
KEY = "apps/v1/Deployment/web/web"
SILENT = {"key": known.TAINT_UNSCHEDULABLE, "value": "ClusterUnknown", "effect": "NoSchedule"}
ADMIN = {"key": "maintenance", "effect": "NoSchedule"}


def cluster(name: str, *taints: dict[str, Any], ready: str | None = None) -> dict[str, Any]:
    """A ManagedCluster; one with the hub's taint is Ready Unknown (silent) unless `ready` says otherwise."""
    ready = ready or ("Unknown" if SILENT in taints else "True")
    return {"metadata": {"namespace": f"ns-{name}", "name": name, "labels": {"env": "prod"}},
            "spec": {"clusterId": f"id-{name}", "taints": list(taints)},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def dividing(weights: dict[str, int], status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "app"},
            "spec": {"schedulingStrategy": "Dividing", "dividingScheduling": {"type": "Static"}, "feeds": [DEPLOY],
                     "subscribers": [{"clusterAffinity": {"matchLabels": {"env": "prod"}}, "weight": 1}], **spec},
            "status": status or {}}


def split(result: Any) -> dict[str, int]:
    return dict(zip(result.binding_clusters, result.replicas[KEY], strict=True))


BOUND = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [2, 2, 2]}}


def test_the_clusters_that_answer_take_a_silent_clusters_replicas_on_and_it_keeps_its_own() -> None:
    result = schedule(dividing({}, BOUND), [cluster("a"), cluster("b"), cluster("c", SILENT)], {KEY: 6},
                      fail_over=True)
    assert split(result) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 2}
    assert result.failed_over == ["ns-c/c"] and "ns-c/c" in result.kept


def test_without_the_gate_the_usual_split_stands() -> None:
    result = schedule(dividing({}, BOUND), [cluster("a"), cluster("b"), cluster("c", SILENT)], {KEY: 6})
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2} and result.failed_over == []


def test_a_silent_cluster_keeps_what_it_was_given_even_when_the_count_changes_meanwhile() -> None:
    """Its Description is not rewritten while it is silent: it runs what it was last given, and the others divide
    the new count."""
    result = schedule(dividing({}, BOUND), [cluster("a"), cluster("b"), cluster("c", SILENT)], {KEY: 9},
                      fail_over=True)
    assert split(result) == {"ns-a/a": 5, "ns-b/b": 4, "ns-c/c": 2}


def test_a_second_silent_cluster_keeps_the_share_it_had_taken_on() -> None:
    failed_over = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [3, 3, 2]}}
    result = schedule(dividing({}, failed_over), [cluster("a"), cluster("b", SILENT), cluster("c", SILENT)],
                      {KEY: 6}, fail_over=True)
    assert split(result) == {"ns-a/a": 6, "ns-b/b": 3, "ns-c/c": 2}
    assert result.failed_over == ["ns-b/b", "ns-c/c"]


def test_back_to_the_usual_split_once_it_reports_again() -> None:
    failed_over = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [3, 3, 2]}}
    result = schedule(dividing({}, failed_over), [cluster("a"), cluster("b"), cluster("c")], {KEY: 6},
                      fail_over=True)
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2} and result.failed_over == []


def test_nowhere_to_fail_over_to_leaves_the_usual_split() -> None:
    result = schedule(dividing({}, BOUND), [cluster("a", SILENT), cluster("b", SILENT), cluster("c", SILENT)],
                      {KEY: 6}, fail_over=True)
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2} and result.failed_over == []


def test_a_silent_cluster_without_a_recorded_share_keeps_its_usual_one() -> None:
    bound = {"bindingClusters": ["ns-a/a", "ns-c/c"]}
    result = schedule(dividing({}, bound), [cluster("a"), cluster("c", SILENT)], {KEY: 6}, fail_over=True)
    assert split(result) == {"ns-a/a": 6, "ns-c/c": 3}


def test_only_the_hubs_silence_taint_fails_over_not_an_administrators_noschedule() -> None:
    """A NoSchedule taint an administrator adds keeps new bindings off and moves nothing, as in Kubernetes."""
    result = schedule(dividing({}, BOUND), [cluster("a"), cluster("b"), cluster("c", ADMIN)], {KEY: 6},
                      fail_over=True)
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2}


def test_a_subscription_that_tolerates_silence_divides_as_usual() -> None:
    tolerant = dividing({}, BOUND, clusterTolerations=[{"key": known.TAINT_UNSCHEDULABLE, "operator": "Exists"}])
    result = schedule(tolerant, [cluster("a"), cluster("b"), cluster("c", SILENT)], {KEY: 6}, fail_over=True)
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2}
    # review s44: also when another taint (an administrator's) keeps the cluster bound through NoSchedule
    result = schedule(tolerant, [cluster("a"), cluster("b"), cluster("c", SILENT, ADMIN)], {KEY: 6}, fail_over=True)
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2} and result.failed_over == []


def test_a_cluster_whose_agent_reports_not_ready_moves_nothing() -> None:
    """Review s44: the hub taints a cluster at once when its agent reports Ready=False (one failed probe of its API
    server). The agent is heard and its workloads most likely run: failing over at each such blip scaled every
    Dividing Subscription up elsewhere and back down a heartbeat later."""
    result = schedule(dividing({}, BOUND), [cluster("a"), cluster("b"), cluster("c", SILENT, ready="False")],
                      {KEY: 6}, fail_over=True)
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2} and result.failed_over == []


def test_a_feed_added_while_a_cluster_is_silent_gives_it_its_usual_share() -> None:
    """A silent cluster has no recorded share of a new feed: it is given its usual one, which it applies on its
    return, and the others divide the whole count meanwhile."""
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "web", "name": "api"}
    sub = dividing({}, BOUND, feeds=[DEPLOY, other])
    result = schedule(sub, [cluster("a"), cluster("b"), cluster("c", SILENT)],
                      {KEY: 6, "apps/v1/Deployment/web/api": 3}, fail_over=True)
    assert split(result) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 2}
    assert result.replicas["apps/v1/Deployment/web/api"] == [2, 1, 1]


def test_replication_is_untouched() -> None:
    sub = dividing({}, BOUND, schedulingStrategy="Replication")
    result = schedule(sub, [cluster("a"), cluster("c", SILENT)], {KEY: 6}, fail_over=True)
    assert result.replicas == {} and result.failed_over == []


def test_the_note_names_the_silent_clusters() -> None:
    assert failover_note([]) is None
    assert failover_note(["ns-c/c"]) == ("failed over: ns-c/c silent (Ready Unknown); its replicas are kept there "
                                         "and the other clusters run each feed's whole count until it reports again")
    several = failover_note(["ns-c/c", "ns-b/b"])
    assert several is not None and several.startswith("failed over: ns-b/b, ns-c/c silent (Ready Unknown); their ")
    assert several.endswith("until they report again")


def test_a_rewrite_without_a_reconcile_keeps_saying_what_is_failed_over() -> None:
    """Review s44: the Ready note came only from a reconcile's findings, so a status rewrite without them (a report
    arriving, or anything a restarted hub wrote before its first reconcile of the Subscription) dropped it until the
    next one. It is now told from the status's `failedOverClusters` (review s46; from the written split before)."""
    from clusternet_core import substatus
    from clusternet_core.naming import manifest_labels, manifest_name
    from clusternet_core.plan import Caches

    template = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "web", "name": "web"},
                "spec": {"replicas": 6}}
    name = manifest_name("deployments", "web", "web")
    manifest = {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": template,
                "metadata": {"name": name, "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(template)}}

    silent_c = cluster("c", SILENT)
    sub = {**dividing({}, {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [3, 3, 2]},
                           "failedOverClusters": ["ns-c/c"]}),
           "metadata": {"namespace": "default", "name": "app", "uid": "u1", "generation": 1}}
    inventory = {"spec": {"feeds": [{**DEPLOY, "desiredReplicas": 6}]}}
    caches = Caches(clusters={("ns-a", "a"): cluster("a"), ("ns-b", "b"): cluster("b"), ("ns-c", "c"): silent_c},
                    subscriptions={("default", "app"): sub}, inventories={("default", "app"): inventory},
                    manifests={name: manifest})
    _, ready = substatus.subscription_status(sub, None, caches)
    assert "failed over: ns-c/c silent" in ready.get("message", ""), ready
    # the usual split written (the gate off, or the cluster back): nothing said
    usual = {**sub, "status": {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [2, 2, 2]}}}
    _, ready = substatus.subscription_status(usual, None, caches)
    assert "failed over" not in ready.get("message", "")
