"""The child's own RBAC decides what the parent may deploy there, whoever applies (agent pull or hub push).

A child admin limits the parent by pre-creating the deployer ServiceAccount `clusternet-app-deployer` in the
agent's namespace with narrower rights: the agent binds cluster-admin only to an account it creates itself.
Here two extra agents, each with its own agent namespace and cluster ID, run against the session's children:
one pulls (child1), the hub pushes to the other through its tunnel (child2). Their deployer may only manage
ConfigMaps in one namespace. A Subscription with a ConfigMap and a Secret gets the ConfigMap deployed and the
Secret refused, reported as such (Description phase, event, Subscription status), and nothing else breaks.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_core.rendering import manifest_labels, manifest_name
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl, wait_for
from clusternet_testing.processes import (
    BOOTSTRAP_TOKEN,
    Proc,
    hub_proc,
    hub_tls,
    install_bootstrap,
    namespaced_agent_proc,
)

pytestmark = pytest.mark.integration

APPS_NS = "rbac-demo"  # where the restricted deployer may manage ConfigMaps, and nothing else
LABEL = "rbac-test"
SUB = "rbac-limited"
DEPLOYER_SA = "clusternet-app-deployer"
DEPLOYER_ROLE = "rbac-test-configmaps-only"
ALLOWED: dict[str, Any] = {
    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "allowed", "namespace": APPS_NS},
    "data": {"greeting": "hello"}}
REFUSED: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "refused", "namespace": APPS_NS}, "type": "Opaque",
    "data": {"password": base64.b64encode(b"not-for-the-parent").decode()}}
PLURALS = {"ConfigMap": "configmaps", "Secret": "secrets"}

@dataclass
class Restricted:
    """One extra agent whose deployer the child admin restricted."""

    mode: str  # "pull" or "push"
    child: ControlPlane
    name: str  # ManagedCluster name
    agent_ns: str  # the agent's namespace in the child
    cluster_id: str
    proc: Proc | None = None
    dedicated_ns: str = ""  # on the parent, once registered

    @property
    def deployer_user(self) -> str:
        return f"system:serviceaccount:{self.agent_ns}:{DEPLOYER_SA}"


def restrict_deployer(r: Restricted) -> None:
    """What a child admin does before installing the agent: the deployer may manage ConfigMaps in APPS_NS only."""
    child = r.child
    for ns in (APPS_NS, r.agent_ns):
        kubectl(child, "create", "namespace", ns, check=False)
    kubectl(child, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": DEPLOYER_ROLE},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEPLOYER_SA, "namespace": r.agent_ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{r.agent_ns}-deployer", "namespace": APPS_NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DEPLOYER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER_SA, "namespace": r.agent_ns}]},
    ]}))
    # something of the child's own next to what the parent deploys: it must survive everything below
    kubectl(child, "create", "configmap", "childs-own", "-n", APPS_NS, "--from-literal=a=b", check=False)
    denied = kubectl(child, "auth", "can-i", "get", "secrets", "-n", APPS_NS, f"--as={r.deployer_user}",
                     check=False)
    assert denied.stdout.strip() == "no", denied.stdout + denied.stderr
    allowed = kubectl(child, "auth", "can-i", "patch", "configmaps", "-n", APPS_NS, f"--as={r.deployer_user}")
    assert allowed.stdout.strip() == "yes"


def agent_process(r: Restricted, parent: ControlPlane, logdir: Path, **extra: Any) -> Proc:
    opts = {"kubeconfig": str(r.child.kubeconfig), "parent_url": parent.url, "reg_token": BOOTSTRAP_TOKEN,
            "parent_ca_file": str(parent.ca_file), "cluster_name": r.name, "cluster_id": r.cluster_id,
            "namespace": r.agent_ns, "cluster_labels": {LABEL: "restricted"}, "collect_frequency": 1.0,
            "update_frequency": 2.0, "resync_frequency": 2.0, **extra}
    return namespaced_agent_proc(r.name, logdir, **opts)


def store_template(parent: ControlPlane, obj: dict[str, Any]) -> None:
    """What `kubectl clusternet apply` stores: a Manifest in clusternet-reserved."""
    meta = obj["metadata"]
    kubectl(parent, "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps({
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest",
        "metadata": {"name": manifest_name(PLURALS[obj["kind"]], meta["namespace"], meta["name"]),
                     "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(obj)},
        "template": obj}))


def managed_cluster(parent: ControlPlane, r: Restricted) -> dict[str, Any] | None:
    items = json.loads(kubectl(parent, "get", "mcls", "-A", "-l", f"{known.LABEL_CLUSTER_ID}={r.cluster_id}",
                               "-o", "json").stdout)["items"]
    return items[0] if len(items) == 1 else None


def conditions(mc: dict[str, Any] | None) -> dict[str, str]:
    return {c["type"]: c["status"] for c in ((mc or {}).get("status") or {}).get("conditions") or []}


def healthy(parent: ControlPlane, r: Restricted) -> bool:
    mc = managed_cluster(parent, r)
    if conditions(mc).get(known.CONDITION_READY) != "True" or (mc or {}).get("spec", {}).get("taints"):
        return False
    if r.mode == "push":  # the hub may push, through the tunnel
        assert mc is not None
        return mc["status"].get("appPusher") is True and conditions(mc).get(known.CONDITION_SOCKET) == "True"
    return (mc or {}).get("status", {}).get("appPusher") is False


def descriptions(parent: ControlPlane) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl(parent, "get", "desc", "-A", "-l", f"{known.LABEL_SUBS_NAME}={SUB}",
                               "-o", "json").stdout)["items"]
    return {i["metadata"]["namespace"]: i for i in items}


def child_has(child: ControlPlane, kind: str, name: str, ns: str = APPS_NS) -> bool:
    return kubectl(child, "get", kind, name, "-n", ns, check=False).returncode == 0


def subscription_status(parent: ControlPlane) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(kubectl(parent, "get", "subs", SUB, "-n", "default", "-o", "json")
                                        .stdout).get("status") or {}
    return status


@pytest.fixture(scope="module")
def env(parent: ControlPlane, child1: ControlPlane, child2: ControlPlane,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logdir = tmp_path_factory.mktemp("child-rbac")
    install_bootstrap(parent)
    kubectl(parent, "create", "namespace", known.RESERVED_NAMESPACE, check=False)
    ca, crt, key = hub_tls(logdir / "tls", ["127.0.0.1"], ["localhost"])
    hub = hub_proc(parent, logdir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
                   "--resync-interval=2")
    port = next(a.split("=")[1] for a in hub.args if a.startswith("--secure-port"))
    pull = Restricted("pull", child1, "rbac-pull", "rbac-pull-agent", str(uuid.uuid4()))
    push = Restricted("push", child2, "rbac-push", "rbac-push-agent", str(uuid.uuid4()))
    clusters = [pull, push]
    try:
        hub.start()
        for r in clusters:
            restrict_deployer(r)
        pull.proc = agent_process(pull, parent, logdir, sync_mode="Pull").start()
        push.proc = agent_process(push, parent, logdir, sync_mode="Dual",
                                  feature_gates={known.GATE_APP_PUSHER: True, known.GATE_SOCKET_CONNECTION: True},
                                  tunnel_url=f"https://127.0.0.1:{port}", tunnel_ca_file=str(ca)).start()
        wait_for(lambda: all(healthy(parent, r) for r in clusters), timeout=120,
                 what="both restricted clusters Ready (the push one with its tunnel up)")
        for r in clusters:
            r.dedicated_ns = (managed_cluster(parent, r) or {})["metadata"]["namespace"]
        for obj in (ALLOWED, REFUSED):
            store_template(parent, obj)
        yield {"hub": hub, "pull": pull, "push": push, "clusters": clusters, "logdir": logdir}
    finally:
        _clean_up(parent, hub, clusters)


def _clean_up(parent: ControlPlane, hub: Proc, clusters: list[Restricted]) -> None:
    """Leave the parent and the children as they were; the hub runs until the cluster namespaces are gone."""
    kubectl(parent, "delete", "subs", SUB, "-n", "default", "--ignore-not-found", "--wait=false", check=False)
    with contextlib.suppress(AssertionError):  # the agents clean up while they still run
        wait_for(lambda: kubectl(parent, "get", "subs", SUB, "-n", "default", check=False).returncode != 0 and
                 not descriptions(parent), timeout=60, what="subscription gone")
    for r in clusters:
        if r.proc:
            r.proc.stop()
    for r in clusters:
        selector = f"{known.LABEL_CLUSTER_ID}={r.cluster_id}"
        kubectl(parent, "delete", "clsrr", f"clusternet-{r.cluster_id}", "--ignore-not-found", check=False)
        kubectl(parent, "delete", "clusterrolebinding,clusterrole", "-l", selector, "--ignore-not-found",
                check=False)
        kubectl(parent, "delete", "namespace", "-l", selector, "--ignore-not-found", "--wait=false", check=False)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not any(kubectl(parent, "get", "namespace", "-l", f"{known.LABEL_CLUSTER_ID}={r.cluster_id}",
                                         "-o", "name").stdout for r in clusters), timeout=90,
                 what="dedicated namespaces deleted")
    hub.stop()
    for obj in (ALLOWED, REFUSED):
        meta = obj["metadata"]
        kubectl(parent, "delete", "manifest", manifest_name(PLURALS[str(obj["kind"])], meta["namespace"],
                                                            meta["name"]),
                "-n", known.RESERVED_NAMESPACE, "--ignore-not-found", check=False)
    for r in clusters:
        kubectl(r.child, "delete", "namespace", APPS_NS, r.agent_ns, "--ignore-not-found", "--wait=false",
                check=False)
        kubectl(r.child, "delete", "clusterrole", DEPLOYER_ROLE, "--ignore-not-found", check=False)


def test_the_child_rbac_decides_for_pull_and_push(env: dict[str, Any], parent: ControlPlane) -> None:
    clusters: list[Restricted] = env["clusters"]
    feeds = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "namespace": APPS_NS, "name": o["metadata"]["name"]}
             for o in (ALLOWED, REFUSED)]
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
        "metadata": {"name": SUB, "namespace": "default"},
        "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "restricted"}}}], "feeds": feeds}}))

    def both_failed() -> dict[str, dict[str, Any]] | None:
        d = descriptions(parent)
        st = {r.mode: (d.get(r.dedicated_ns) or {}).get("status") or {} for r in clusters}
        return st if all(s.get("phase") == "Failure" for s in st.values()) else None

    statuses = wait_for(both_failed, timeout=120, what="both Descriptions in phase Failure")
    assert statuses is not None
    assert set(descriptions(parent)) == {r.dedicated_ns for r in clusters}  # only the restricted clusters
    for r in clusters:
        reason = statuses[r.mode]["reason"]
        # names the refused object, says the child's RBAC forbade it, and for whom
        assert reason.startswith(f"Secret {APPS_NS}/refused: "), reason
        assert "forbidden" in reason and "HTTP 403" in reason and "RBAC" in reason, reason
        assert r.deployer_user in reason, reason  # the child's deployer identity, also when the hub pushed
        assert "ConfigMap" not in reason, reason  # the allowed object is not reported as failed
        deployed = {(s["kind"], s["name"]) for s in statuses[r.mode]["manifestStatuses"]}
        assert deployed == {("ConfigMap", "allowed")}
        # what the child allowed is there, what it refused is not
        cm = json.loads(kubectl(r.child, "get", "configmap", "allowed", "-n", APPS_NS, "-o", "json").stdout)
        assert cm["data"] == {"greeting": "hello"}
        assert cm["metadata"]["annotations"][known.ANNOTATION_OWNED_BY_DESCRIPTION].startswith(r.dedicated_ns + ".")
        assert not child_has(r.child, "secret", "refused")

    # an UnSuccessfullyDeployed event in each cluster namespace, from whoever applied: agent (pull), hub (push)
    def refusal_events() -> dict[str, list[dict[str, Any]]] | None:
        found = {}
        for r in clusters:
            items = json.loads(kubectl(parent, "get", "events", "-n", r.dedicated_ns, "-o", "json",
                                       "--field-selector=reason=UnSuccessfullyDeployed").stdout)["items"]
            found[r.mode] = [e for e in items if f"Secret {APPS_NS}/refused" in e["message"]]
        return found if all(found.values()) else None

    events = wait_for(refusal_events, timeout=30, what="UnSuccessfullyDeployed events")
    assert events is not None
    assert {e["source"]["component"] for e in events["pull"]} == {"clusternet-agent"}
    assert {e["source"]["component"] for e in events["push"]} == {"clusternet-hub"}
    assert all(e["type"] == "Warning" and e["involvedObject"]["kind"] == "Description"
               for es in events.values() for e in es)

    # the Subscription says neither cluster is done, and why
    def failed_condition() -> dict[str, Any] | None:
        st = subscription_status(parent)
        ready: dict[str, Any] = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
        return st if ready.get("reason") == "ReleasesFailed" and all(
            r.name in ready.get("message", "") for r in clusters) else None

    st = wait_for(failed_condition, timeout=60, what="Subscription Ready=False, ReleasesFailed")
    assert st is not None
    ready = st["conditions"][0]
    assert ready["status"] == "False" and f"Secret {APPS_NS}/refused" in ready["message"]
    assert "forbidden" in ready["message"]
    assert st["desiredReleases"] == 2 and st["completedReleases"] == 0
    assert sorted(st["bindingClusters"]) == sorted(f"{r.dedicated_ns}/{r.name}" for r in clusters)

    # nothing else breaks: the agents stay healthy and a change to the allowed object still gets through
    assert all(healthy(parent, r) for r in clusters)
    store_template(parent, {**ALLOWED, "data": {"greeting": "hello again"}})
    for r in clusters:
        def updated(r: Restricted = r) -> bool:
            cm = json.loads(kubectl(r.child, "get", "configmap", "allowed", "-n", APPS_NS, "-o", "json").stdout)
            return bool(cm["data"] == {"greeting": "hello again"})

        wait_for(updated, timeout=60, what=f"updated ConfigMap in {r.name}")
        assert not child_has(r.child, "secret", "refused")
    assert all(healthy(parent, r) for r in clusters)


def test_deleting_the_subscription_removes_only_what_it_deployed(env: dict[str, Any], parent: ControlPlane) -> None:
    clusters: list[Restricted] = env["clusters"]
    assert all(child_has(r.child, "configmap", "allowed") for r in clusters)  # the previous test deployed it
    kubectl(parent, "delete", "subs", SUB, "-n", "default", "--wait=false")
    for r in clusters:
        def removed(r: Restricted = r) -> bool:
            return not child_has(r.child, "configmap", "allowed")

        wait_for(removed, timeout=90, what=f"the deployed ConfigMap removed from {r.name}")
    wait_for(lambda: kubectl(parent, "get", "subs", SUB, "-n", "default", check=False).returncode != 0 and
             not descriptions(parent), timeout=60, what="Subscription and Descriptions gone")
    for r in clusters:
        # the child's own objects, its namespace and the admin's RBAC are untouched
        assert child_has(r.child, "configmap", "childs-own")
        assert kubectl(r.child, "get", "namespace", APPS_NS).returncode == 0
        assert child_has(r.child, "serviceaccount", DEPLOYER_SA, r.agent_ns)
        assert child_has(r.child, "rolebinding", f"{r.agent_ns}-deployer")
        assert kubectl(r.child, "get", "clusterrole", DEPLOYER_ROLE).returncode == 0
        # the agent never widened its deployer's rights
        can = kubectl(r.child, "auth", "can-i", "get", "secrets", "-n", APPS_NS, f"--as={r.deployer_user}",
                      check=False)
        assert can.stdout.strip() == "no"
        assert r.proc is not None and r.proc.running(), r.proc.output if r.proc else ""
    wait_for(lambda: all(healthy(parent, r) for r in clusters), timeout=30, what="clusters still Ready")


def test_no_tokens_in_logs(env: dict[str, Any]) -> None:
    procs: list[Proc] = [env["hub"], *(r.proc for r in env["clusters"] if r.proc)]
    logs = "".join(p.output for p in procs)
    assert "eyJ" not in logs
