"""The shadow API through the parent's aggregation layer: templates of any kind as Manifests.

Only the parent and the hub: the hub listens on 127.1.0.10:443, named by an ExternalName Service, registered as
APIServices v1alpha1.proxies.clusternet.io and v1alpha1.shadow (as in test_tunnel.py), so every request here goes
through the parent's kube-apiserver and reaches the hub with the user's identity in front-proxy headers.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl, plugin, wait_for
from clusternet_testing.processes import (
    Proc,
    hub_proc,
    hub_tls,
    register_aggregated_api,
    service_account_token,
    unregister_aggregated_api,
)

pytestmark = pytest.mark.integration

HUB_IP = "127.1.0.10"
SHADOW = "/apis/shadow/v1alpha1"
NS = "shadow-x"  # exists only in templates, never on the parent


def deployment(name: str, ns: str = NS, replicas: int = 1, **meta: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, **meta},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}}}


def call(parent: ControlPlane, method: str, path: str, body: Any = None, token: str | None = None,
         content_type: str = "application/json") -> tuple[int, Any]:
    """A request to the parent (admin unless `token`): (status, parsed answer), refusals included."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(parent.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token or parent.admin_token}", "Content-Type": content_type,
        "Accept": "application/json"})
    ctx = ssl.create_default_context(cafile=str(parent.ca_file))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"{}")
        except ValueError:
            return e.code, raw.decode(errors="replace")


@pytest.fixture(scope="module")
def hub(parent: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    logdir = tmp_path_factory.mktemp("shadow")
    kubectl(parent, "create", "namespace", known.RESERVED_NAMESPACE, check=False)
    ca, crt, key = hub_tls(logdir / "tls", [HUB_IP, "127.0.0.1"], ["clusternet-hub.clusternet-system.svc"])
    register_aggregated_api(parent, HUB_IP, ca, shadow=True)
    proc = hub_proc(parent, logdir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
                    f"--requestheader-client-ca-file={parent.front_proxy_ca_file}", port=443)
    proc.args = [a if not a.startswith("--bind-address") else f"--bind-address={HUB_IP}" for a in proc.args]
    proc.start()
    try:
        def served() -> bool:
            status, body = call(parent, "GET", SHADOW)
            return status == 200 and any(r["name"] == "deployments" for r in body.get("resources") or [])

        wait_for(served, timeout=60, what="shadow/v1alpha1 served through the aggregation layer")
        yield proc
    finally:
        proc.stop()
        unregister_aggregated_api(parent)


def test_discovery_mirrors_the_parents_kinds(parent: ControlPlane, hub: Proc) -> None:
    listed = json.loads(kubectl(parent, "get", "--raw", SHADOW).stdout)
    names = {r["name"]: r for r in listed["resources"]}
    assert names["deployments"]["kind"] == "Deployment" and names["deployments"]["namespaced"]
    assert names["configmaps"]["kind"] == "ConfigMap"
    assert names["clusterroles"]["namespaced"] is False
    assert "manifests" not in names and "sockets" not in names and not any("/" in n for n in names)
    assert "watch" in names["deployments"]["verbs"]
    group = json.loads(kubectl(parent, "get", "--raw", "/apis/shadow").stdout)
    assert group["preferredVersion"]["groupVersion"] == "shadow/v1alpha1"


def test_crud_of_a_deployment_template(parent: ControlPlane, hub: Proc, tmp_path: Path) -> None:
    base = f"{SHADOW}/namespaces/{NS}/deployments"
    f = tmp_path / "web.json"
    f.write_text(json.dumps(deployment("web", labels={"tier": "front"})))
    created = json.loads(kubectl(parent, "create", "--raw", base, "-f", str(f)).stdout)
    assert created["kind"] == "Deployment" and created["metadata"]["namespace"] == NS
    assert created["metadata"]["resourceVersion"] and created["metadata"]["uid"]
    # stored exactly as `kubectl clusternet apply` stores it, and seen by `kubectl clusternet get`
    manifest = json.loads(kubectl(parent, "get", "manifests.apps.clusternet.io", "-n", known.RESERVED_NAMESPACE,
                                  f"deployments.{NS}.web", "-o", "json").stdout)
    assert manifest["metadata"]["labels"][known.LABEL_CONFIG_KIND] == "Deployment"
    assert manifest["metadata"]["labels"]["tier"] == "front"
    assert manifest["template"]["spec"]["replicas"] == 1
    assert created["metadata"]["uid"] == manifest["metadata"]["uid"]
    assert "web" in plugin(parent, "get", "deploy", "-n", NS)
    # read, list
    got = json.loads(kubectl(parent, "get", "--raw", f"{base}/web").stdout)
    assert got["spec"]["replicas"] == 1
    assert got["metadata"]["resourceVersion"] == manifest["metadata"]["resourceVersion"]
    listed = json.loads(kubectl(parent, "get", "--raw", base).stdout)
    assert listed["kind"] == "DeploymentList" and [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    assert json.loads(kubectl(parent, "get", "--raw", f"{base}?labelSelector=tier%3Dback").stdout)["items"] == []
    # again: AlreadyExists
    status, body = call(parent, "POST", base, deployment("web"))
    assert status == 409 and body["reason"] == "AlreadyExists", body
    # update with the current resourceVersion, then a stale one is refused
    got["spec"]["replicas"] = 3
    f.write_text(json.dumps(got))
    replaced = json.loads(kubectl(parent, "replace", "--raw", f"{base}/web", "-f", str(f)).stdout)
    assert replaced["spec"]["replicas"] == 3
    assert json.loads(plugin(parent, "get", "deploy", "web", "-n", NS, "-o", "json"))["spec"]["replicas"] == 3
    status, body = call(parent, "PUT", f"{base}/web", got)  # got still carries the old resourceVersion
    assert status == 409 and body["reason"] == "Conflict", body
    # merge patch
    status, body = call(parent, "PATCH", f"{base}/web", {"spec": {"replicas": 2}},
                        content_type="application/merge-patch+json")
    assert status == 200 and body["spec"]["replicas"] == 2, body
    status, body = call(parent, "PATCH", f"{base}/web", {"spec": {"replicas": 2}},
                        content_type="application/strategic-merge-patch+json")
    assert status == 415, body
    # delete
    kubectl(parent, "delete", "--raw", f"{base}/web")
    status, body = call(parent, "GET", f"{base}/web")
    assert status == 404 and body["reason"] == "NotFound" and body["message"] == 'deployments.apps "web" not found'
    assert kubectl(parent, "get", "manifests.apps.clusternet.io", "-n", known.RESERVED_NAMESPACE,
                   f"deployments.{NS}.web", check=False).returncode != 0


def test_a_template_applied_by_the_plugin_is_served(parent: ControlPlane, hub: Proc) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-plugin", "namespace": NS},
          "data": {"k": "v"}}
    proc = subprocess.run([*plugin_cmd(parent), "apply", "-f", "-"], input=json.dumps(cm), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(kubectl(parent, "get", "--raw", f"{SHADOW}/namespaces/{NS}/configmaps/from-plugin").stdout)
    assert got["data"] == {"k": "v"}
    kubectl(parent, "delete", "--raw", f"{SHADOW}/namespaces/{NS}/configmaps/from-plugin")
    assert "from-plugin" not in plugin(parent, "get", "cm", "-n", NS)


def plugin_cmd(parent: ControlPlane) -> list[str]:
    from clusternet_testing.helpers import PLUGIN

    return [*PLUGIN, f"--kubeconfig={parent.kubeconfig}"]


def test_watch(parent: ControlPlane, hub: Proc) -> None:
    ns = "shadow-w"
    watcher = subprocess.Popen(
        ["kubectl", f"--kubeconfig={parent.kubeconfig}", "get", "--raw",
         f"{SHADOW}/namespaces/{ns}/deployments?watch=1&timeoutSeconds=6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        status, body = call(parent, "POST", f"{SHADOW}/namespaces/{ns}/deployments", deployment("watched", ns))
        assert status == 201, body
        status, body = call(parent, "DELETE", f"{SHADOW}/namespaces/{ns}/deployments/watched")
        assert status == 200, body
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    seen = [(e["type"], e["object"]["kind"], e["object"]["metadata"]["name"]) for e in events]
    assert ("ADDED", "Deployment", "watched") in seen and ("DELETED", "Deployment", "watched") in seen, seen


def test_the_users_rbac_on_manifests_decides(parent: ControlPlane, hub: Proc) -> None:
    # rights on the shadow group (so the aggregation layer lets the request through), none on Manifests
    parent.apply_manifest({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                           "metadata": {"name": "shadow-only"},
                           "rules": [{"apiGroups": ["shadow"], "resources": ["*"], "verbs": ["*"]}]})
    token = service_account_token(parent, "shadow-test", "nobody", "shadow-only")
    status, body = call(parent, "GET", f"{SHADOW}/namespaces/{NS}/deployments", token=token)
    assert status == 403, body
    assert "manifests" in body["message"] and "system:serviceaccount:shadow-test:nobody" in body["message"], body
    status, body = call(parent, "POST", f"{SHADOW}/namespaces/{NS}/deployments", deployment("nope"), token=token)
    assert status == 403, body
    assert kubectl(parent, "get", "manifests.apps.clusternet.io", "-n", known.RESERVED_NAMESPACE,
                   f"deployments.{NS}.nope", check=False).returncode != 0


def test_an_invalid_object_is_refused_by_the_dry_run(parent: ControlPlane, hub: Proc) -> None:
    bad = deployment("bad")
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}  # does not match the template's labels
    status, body = call(parent, "POST", f"{SHADOW}/namespaces/{NS}/deployments", bad)
    assert status == 422 and body["reason"] == "Invalid", body
    assert "selector" in body["message"]
    # skip-validating stores it anyway
    bad["metadata"]["annotations"] = {known.ANNOTATION_SKIP_VALIDATING: "true"}
    status, body = call(parent, "POST", f"{SHADOW}/namespaces/{NS}/deployments", bad)
    assert status == 201, body
    assert call(parent, "DELETE", f"{SHADOW}/namespaces/{NS}/deployments/bad")[0] == 200


def test_preconditions_dry_run_and_the_namespace_controller(parent: ControlPlane, hub: Proc) -> None:
    """A delete honours the caller's DeleteOptions (F11 of the delete review): a stale uid is refused with 409 and a
    dry run deletes nothing. Then the parent's namespace controller, which deletes through the shadow API with
    protobuf DeleteOptions and uid preconditions, empties a parent namespace of its templates and the namespace
    goes away."""
    ns = "shadow-gone"
    kubectl(parent, "create", "namespace", ns)
    path = f"{SHADOW}/namespaces/{ns}/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one", "namespace": ns}, "data": {"k": "v"}}
    status, created = call(parent, "POST", path, cm)
    assert status == 201, created
    stale = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "0000-stale"}}
    status, body = call(parent, "DELETE", f"{path}/one", stale)
    assert status == 409 and body["reason"] == "Conflict" and "Precondition failed" in body["message"], body
    status, body = call(parent, "DELETE", f"{path}/one?dryRun=All")
    assert status == 200, body
    assert call(parent, "GET", f"{path}/one")[0] == 200  # neither deleted it
    kubectl(parent, "delete", "namespace", ns, "--wait=false")

    def gone() -> bool:
        return kubectl(parent, "get", "namespace", ns, check=False).returncode != 0

    wait_for(gone, timeout=120, what=f"namespace {ns} emptied through the shadow API and deleted")
    assert kubectl(parent, "get", "manifests.apps.clusternet.io", "-n", known.RESERVED_NAMESPACE,
                   f"configmaps.{ns}.one", check=False).returncode != 0


def test_last_a_hub_serving_watches_stops_within_seconds(parent: ControlPlane, hub: Proc) -> None:
    """Last in this module (it stops the hub). The third audit: with the shadow API registered, the parent's
    controllers hold watches through the hub that never end, and a SIGTERM'd hub waited aiohttp's 60 s for them
    (40-130 s measured), past the kubelet's 30-s grace."""
    watchers = [subprocess.Popen(
        ["kubectl", f"--kubeconfig={parent.kubeconfig}", "get", "--raw",
         f"{SHADOW}/namespaces/{ns}/deployments?watch=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for ns in ("shadow-s1", "shadow-s2")]
    try:
        time.sleep(2)
        assert all(w.poll() is None for w in watchers)  # watching through the hub
        stopping = time.monotonic()
        assert hub.stop(timeout=60) == 0
        assert time.monotonic() - stopping < 10
    finally:
        for watcher in watchers:
            watcher.kill()
            watcher.wait()
