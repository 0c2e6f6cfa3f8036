"""kubectl clusternet describe: what it says about a template and about a Clusternet object."""

from __future__ import annotations

from datetime import UTC, datetime

from clusternet_api import known
from clusternet_api.rawobjects import encode_raw
from clusternet_kubectl.commands.describe import describe_object, describe_template, rendered_replicas

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
    "name": "my-nginx", "namespace": "foo", "labels": {"app": "nginx"}}, "spec": {"replicas": 3}}
MANIFEST = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest", "template": DEPLOY,
            "metadata": {"name": "deployments.foo.my-nginx", "namespace": "clusternet-reserved",
                         "creationTimestamp": "2026-12-02T11:48:00Z"}}
FEED = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "my-nginx"}
KEY = "apps/v1/Deployment/foo/my-nginx"


def subscription(status: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "app-demo", "namespace": "default"},
            "spec": {"feeds": [{"apiVersion": "v1", "kind": "Namespace", "name": "foo"}, FEED]}, "status": status}


def test_a_template_shows_where_it_is_deployed_and_how_it_is_doing_there() -> None:
    status = {"bindingClusters": ["clusternet-a/child1", "clusternet-b/child2"], "aggregatedStatuses": [
        {**FEED, "feedStatusDetails": [
            {"clusterId": "1", "clusterName": "child1", "available": True,
             "replicaStatus": {"replicas": 3, "readyReplicas": 3}},
            {"clusterId": "2", "clusterName": "child2", "available": False,
             "replicaStatus": {"replicas": 3, "readyReplicas": 1}}]}]}
    other = {"metadata": {"name": "unrelated", "namespace": "default"},
             "spec": {"feeds": [{**FEED, "name": "other"}]}}
    text = describe_template(MANIFEST, [subscription(status), other], NOW)
    assert "Name:           my-nginx" in text and "Namespace:      foo" in text and "app=nginx" in text
    assert "Manifest clusternet-reserved/deployments.foo.my-nginx (12m ago)" in text
    assert "Subscriptions:  default/app-demo\n" in text and "unrelated" not in text
    rows = text.split("Clusters:\n")[1].splitlines()
    assert rows[0].split() == ["SUBSCRIPTION", "CLUSTER", "NAMESPACE", "AVAILABLE", "REPLICAS"]
    assert rows[1].split() == ["default/app-demo", "child1", "clusternet-a", "true", "3/3", "ready"]
    assert rows[2].split() == ["default/app-demo", "child2", "clusternet-b", "false", "1/3", "ready"]


def test_a_template_nobody_deploys_or_not_yet_reported_says_so() -> None:
    assert "<none>: stored, but no Subscription deploys it" in describe_template(MANIFEST, [], NOW)
    pending = describe_template(MANIFEST, [subscription({"bindingClusters": ["clusternet-a/child1"]})], NOW)
    assert pending.split("Clusters:\n")[1].splitlines()[1].split() == [
        "default/app-demo", "child1", "clusternet-a", "unknown", "-"]
    assert "no cluster is bound yet" in describe_template(MANIFEST, [subscription({})], NOW)
    # the hub leaves `available` out until the cluster reported on the object: unknown, never true
    reported_nothing = subscription({"bindingClusters": ["clusternet-a/child1"], "aggregatedStatuses": [
        {**FEED, "feedStatusDetails": [{"clusterId": "1", "clusterName": "child1"}]}]})
    assert describe_template(MANIFEST, [reported_nothing], NOW).split("Clusters:\n")[1].splitlines()[1].split() == [
        "default/app-demo", "child1", "clusternet-a", "unknown", "-"]


def test_an_object_shows_spec_status_and_its_events_oldest_first() -> None:
    desc = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Description",
            "metadata": {"name": "app-demo-1-generic", "namespace": "clusternet-a",
                         "creationTimestamp": "2026-12-02T11:00:00Z",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"deployer": "Generic"}, "status": {"phase": "Failure", "reason": "Secret demo/db: refused"}}
    events = [{"type": "Warning", "reason": "UnSuccessfullyDeployed", "message": "Secret demo/db: refused",
               "lastTimestamp": "2026-12-02T11:59:00Z", "source": {"component": "clusternet-hub"}},
              {"type": "Normal", "reason": "SuccessfullyDeployed", "message": "Description successfully deployed",
               "lastTimestamp": "2026-12-02T11:30:00Z", "source": {"component": "clusternet-hub"}}]
    text = describe_object(desc, events, NOW)
    assert "Annotations:  <none>" in text and "Created:      60m ago" in text
    assert "Spec:\n  deployer: Generic" in text and "  phase: Failure" in text
    lines = text.split("Events:\n")[1].splitlines()
    assert lines[0].split() == ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
    assert lines[1].split()[:4] == ["Normal", "SuccessfullyDeployed", "30m", "clusternet-hub"]
    assert lines[2].split()[:4] == ["Warning", "UnSuccessfullyDeployed", "60s", "clusternet-hub"]
    assert describe_object({**desc, "status": {}}, [], NOW).endswith("Events:  <none>")


# --- REPLICAS divides by the desired count, as kubectl and the Subscription's condition do -------------------


def rolling(**status: object) -> dict[str, object]:
    """The sixth audit's rollout: 5 wanted, 7 pods (2 surge), none ready yet."""
    return subscription({"bindingClusters": ["clusternet-a/child1"], **status, "aggregatedStatuses": [
        {**FEED, "feedStatusDetails": [{"clusterId": "1", "clusterName": "child1", "available": False,
                                        "replicaStatus": {"replicas": 7, "updatedReplicas": 5, "readyReplicas": 0}}]}]})


def replicas_column(text: str) -> str:
    return " ".join(text.split("Clusters:\n")[1].splitlines()[1].split()[4:])


def test_replicas_divide_by_the_rendered_count_not_the_pods_a_rollout_has() -> None:
    manifest = {**MANIFEST, "template": {**DEPLOY, "spec": {"replicas": 5}}}
    # the rendered object's count (a Localization made it 4 in that cluster), read from its Description
    rendered = {(KEY, "default/app-demo", "clusternet-a"): 4}
    assert replicas_column(describe_template(manifest, [rolling()], NOW, rendered)) == "0/4 ready"
    # without the Description: the Dividing share, else the template's own spec.replicas, never status.replicas
    assert replicas_column(describe_template(manifest, [rolling(replicas={"apps/v1/Deployment/foo/my-nginx": [3]})],
                                             NOW)) == "0/3 ready"
    assert replicas_column(describe_template(manifest, [rolling()], NOW)) == "0/5 ready"
    unset = {**MANIFEST, "template": {**DEPLOY, "spec": {}}}
    assert replicas_column(describe_template(unset, [rolling()], NOW)) == "0/1 ready"  # Kubernetes' default


async def test_the_desired_count_is_read_from_each_clusters_generic_description() -> None:
    rendered = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}},
                {**DEPLOY, "spec": {"replicas": 4}}]
    descs = [{"apiVersion": known.APPS_API_VERSION, "kind": "Description",
              "metadata": {"name": "app-demo-1-generic", "namespace": "clusternet-a"},
              "spec": {"deployer": "Generic", "raw": encode_raw(rendered)}},
             {"apiVersion": known.APPS_API_VERSION, "kind": "Description",
              "metadata": {"name": "app-demo-1-helm", "namespace": "clusternet-a"}, "spec": {"deployer": "Helm"}}]
    asked: list[str | None] = []

    class Listing:
        async def list(self, resource: object, namespace: str | None = None,
                       selector: str | None = None) -> list[dict[str, object]]:
            asked.append(selector)
            return descs

    sub = subscription({})
    found = await rendered_replicas(Listing(), [DEPLOY], [sub])  # type: ignore[arg-type]
    assert found == {(KEY, "default/app-demo", "clusternet-a"): 4}
    assert asked == ["apps.clusternet.io/subs.name=app-demo,apps.clusternet.io/subs.namespace=default"]
    # a template not scaled by spec.replicas asks nothing
    assert await rendered_replicas(Listing(), [{"apiVersion": "v1", "kind": "Service"}], [sub]) == {}  # type: ignore[arg-type]
    assert len(asked) == 1


async def test_each_template_of_a_subscription_shows_its_own_desired_count() -> None:
    """Keyed by Subscription and cluster only, describing `web` and `api` of one Subscription showed api's count
    for both (audit s35)."""
    api = {**DEPLOY, "metadata": {**DEPLOY["metadata"], "name": "api"}, "spec": {"replicas": 7}}
    descs = [{"apiVersion": known.APPS_API_VERSION, "kind": "Description",
              "metadata": {"name": "app-demo-1-generic", "namespace": "clusternet-a"},
              "spec": {"deployer": "Generic", "raw": encode_raw([{**DEPLOY, "spec": {"replicas": 4}}, api])}}]

    class Listing:
        async def list(self, resource: object, namespace: str | None = None,
                       selector: str | None = None) -> list[dict[str, object]]:
            return descs

    sub = {**subscription({}), "spec": {"feeds": [FEED, {**FEED, "name": "api"}]}}
    found = await rendered_replicas(Listing(), [DEPLOY, api], [sub])  # type: ignore[arg-type]
    assert found == {(KEY, "default/app-demo", "clusternet-a"): 4,
                     ("apps/v1/Deployment/foo/api", "default/app-demo", "clusternet-a"): 7}
