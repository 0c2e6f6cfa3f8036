"""The test bed itself: three real, independent control planes with our CRDs, behaving like Kubernetes."""

from __future__ import annotations

import asyncio
import json

import pytest

from clusternet_api.kube import Kube
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl, wait_for

pytestmark = pytest.mark.integration

MC = """
apiVersion: clusters.clusternet.io/v1beta1
kind: ManagedCluster
metadata: {name: smoke, namespace: smoke-mc}
spec:
  clusterId: 5f6a0f2b-43ea-4a2b-9d8c-0a7d1e2c3b4a
  clusterType: StandardCluster
  syncMode: Dual
"""


def test_three_independent_clusters(parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    uids = {kubectl(cp, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
            for cp in (parent, child1, child2)}
    assert len(uids) == 3
    kubectl(child1, "create", "namespace", "only-in-child1")
    assert kubectl(child2, "get", "ns", "only-in-child1", check=False).returncode != 0
    assert kubectl(parent, "version", "-o", "json").returncode == 0


def test_all_crds_served_with_short_names(parent: ControlPlane) -> None:
    out = kubectl(parent, "api-resources", "-o", "wide", "--no-headers").stdout
    rows = {line.split()[0]: line for line in out.splitlines() if "clusternet.io" in line}
    expected = {
        "clusterregistrationrequests": ("clsrr", "false"), "managedclusters": ("mcls", "true"),
        "subscriptions": ("sub,subs", "true"), "bases": (None, "true"), "descriptions": ("desc", "true"),
        "manifests": (None, "true"), "helmcharts": ("chart,charts", "true"), "helmreleases": ("hr", "true"),
        "localizations": ("loc,local", "true"), "globalizations": ("glob,global", "false"),
        "feedinventories": ("finv", "true"),
    }
    assert set(rows) == set(expected)
    for plural, (short, namespaced) in expected.items():
        fields = rows[plural].split()
        assert namespaced in fields, rows[plural]
        if short:
            assert fields[1] == short, rows[plural]
    assert "clusternet" in kubectl(parent, "api-resources", "--categories=clusternet", "-o", "name").stdout


def test_managed_cluster_create_watch_patch(parent: ControlPlane) -> None:
    kubectl(parent, "create", "namespace", "smoke-mc")
    kubectl(parent, "apply", "-f", "-", input=MC)

    async def watch_and_patch() -> list[str]:
        from clusternet_api.kube import Credentials

        seen: list[str] = []
        async with Kube(Credentials.from_kubeconfig(parent.kubeconfig)) as kube:
            mc = await kube.get("clusters.clusternet.io/v1beta1", "ManagedCluster", "smoke", "smoke-mc")
            assert mc is not None

            async def watcher() -> None:
                async for ev in kube.watch("clusters.clusternet.io/v1beta1", "ManagedCluster", "smoke-mc",
                                           server_timeout=20, resource_version=mc["metadata"]["resourceVersion"]):
                    seen.append(ev["object"].get("status", {}).get("k8sVersion") or ev["type"])
                    if "v1.20.2" in seen:
                        return

            task = asyncio.create_task(watcher())
            await asyncio.sleep(0.5)
            await kube.patch("clusters.clusternet.io/v1beta1", "ManagedCluster", "smoke",
                             {"status": {"k8sVersion": "v1.20.2", "readyz": True}}, "smoke-mc",
                             subresource="status")
            await asyncio.wait_for(task, 20)
            # metadata only (the hub's tunnel-owner checks): labels and names, not the status just written
            found = await kube.list_metadata("clusters.clusternet.io/v1beta1", "ManagedCluster", "smoke-mc")
            assert [(o["kind"], o["metadata"]["name"], "status" in o) for o in found] == [
                ("PartialObjectMetadata", "smoke", False)]
        return seen

    assert "v1.20.2" in asyncio.run(watch_and_patch())
    table = kubectl(parent, "get", "mcls", "-A").stdout
    header = table.splitlines()[0]
    for column in ("CLUSTER ID", "SYNC MODE", "KUBERNETES", "READYZ", "STATUS", "AGE"):
        assert column in header
    row = next(r for r in table.splitlines() if r.startswith("smoke-mc "))  # other modules' clusters may list
    assert "smoke" in row and "Dual" in row and "v1.20.2" in row and "true" in row


@pytest.mark.parametrize(("manifest", "message"), [
    ("""apiVersion: clusters.clusternet.io/v1beta1
kind: ClusterRegistrationRequest
metadata: {name: clusternet-bad}
spec: {clusterId: not-a-uuid}
""", "spec.clusterId"),
    ("""apiVersion: clusters.clusternet.io/v1beta1
kind: ManagedCluster
metadata: {name: bad-mode, namespace: default}
spec: {clusterId: 5f6a0f2b-43ea-4a2b-9d8c-0a7d1e2c3b4a, syncMode: Sideways}
""", "spec.syncMode"),
    ("""apiVersion: apps.clusternet.io/v1alpha1
kind: Localization
metadata: {name: too-high, namespace: default}
spec:
  priority: 1001
  feed: {apiVersion: apps/v1, kind: Deployment, name: x, namespace: default}
  overrides: [{name: a, type: MergePatch, value: '{}'}]
""", "spec.priority"),
    ("""apiVersion: apps.clusternet.io/v1alpha1
kind: HelmChart
metadata: {name: bad-repo, namespace: default}
spec: {repo: "ftp://example.com/charts", chart: mysql, targetNamespace: default}
""", "spec.repo"),
    ("""apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: no-feeds, namespace: default}
spec:
  subscribers: [{clusterAffinity: {matchLabels: {a: b}}}]
""", "spec.feeds"),
])
def test_invalid_objects_rejected_by_apiserver(parent: ControlPlane, manifest: str, message: str) -> None:
    # --validate=false: prove the apiserver itself (not kubectl's client-side check) rejects it
    result = kubectl(parent, "apply", "--validate=false", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert "Invalid value" in result.stderr or "Required value" in result.stderr or "Unsupported value" in \
        result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_rbac_is_enforced(parent: ControlPlane) -> None:
    kubectl(parent, "create", "namespace", "rbac-smoke")
    kubectl(parent, "create", "serviceaccount", "nobody", "-n", "rbac-smoke")
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    token = parent.request_json("POST", "/api/v1/namespaces/rbac-smoke/serviceaccounts/nobody/token",
                                body)["status"]["token"]  # type: ignore[index]
    denied = kubectl(parent, "get", "secrets", "-n", "kube-system", check=False, token=str(token))
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    kubectl(parent, "create", "role", "read-cm", "--verb=get,list", "--resource=configmaps", "-n", "rbac-smoke")
    kubectl(parent, "create", "rolebinding", "read-cm", "--role=read-cm",
            "--serviceaccount=rbac-smoke:nobody", "-n", "rbac-smoke")
    allowed = wait_for(lambda: kubectl(parent, "get", "configmaps", "-n", "rbac-smoke", check=False,
                                       token=str(token)).returncode == 0)
    assert allowed


def test_namespace_deletion_completes(child1: ControlPlane) -> None:
    kubectl(child1, "create", "namespace", "doomed")
    kubectl(child1, "create", "configmap", "c", "-n", "doomed", "--from-literal=a=b")
    kubectl(child1, "delete", "namespace", "doomed", "--wait=false")
    wait_for(lambda: kubectl(child1, "get", "ns", "doomed", check=False).returncode != 0, timeout=60)


def test_deployment_creates_replicaset(child2: ControlPlane) -> None:
    kubectl(child2, "create", "deployment", "web", "--image=nginx:1.25", "--replicas=2")

    def replicasets() -> list[dict[str, object]]:
        out = kubectl(child2, "get", "rs", "-l", "app=web", "-o", "json").stdout
        items: list[dict[str, object]] = json.loads(out)["items"]
        return items

    rs = wait_for(replicasets, timeout=60)
    assert rs[0]["spec"]["replicas"] == 2  # type: ignore[index]
    # garbage collection: deleting the Deployment removes its ReplicaSet
    kubectl(child2, "delete", "deployment", "web")
    wait_for(lambda: not replicasets(), timeout=60)
