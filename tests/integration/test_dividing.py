"""Static Dividing on two real children: subscriber weights 1 and 2 split a Deployment's replicas, as in
Clusternet's examples/static-dividing-scheduling, and a new replica count in the template re-divides them; with
the FailOver gate, a silent cluster's share is taken on by the other while it keeps its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import descriptions, feed, kubectl, run_plugin, store_template, wait_for

pytestmark = pytest.mark.integration
HUB_ARGS = ["--feature-gates=FailOver=true"]  # Clusternet's scheduler chart ships it on

NS = "dividing-app"
LABEL = "dividing-test"
SUB = "web-dividing"
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}


def deployment(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.25", "resources": {
                                      "requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}


def child_deploy(child: ControlPlane) -> dict[str, Any] | None:
    out = kubectl(child, "get", "deploy", "web", "-n", NS, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def child_replicas(child: ControlPlane) -> int | None:
    deploy = child_deploy(child)
    return deploy["spec"]["replicas"] if deploy is not None else None


def sub_status(parent: ControlPlane) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(kubectl(parent, "get", "subs", SUB, "-o", "json").stdout).get("status") or {}
    return status


def test_weights_divide_replicas_and_a_new_count_re_divides(hub_and_agents: dict[str, Any], parent: ControlPlane,
                                                             child1: ControlPlane, child2: ControlPlane) -> None:
    env = hub_and_agents
    mc1, mc2 = env["mc1"], env["mc2"]
    key1, key2 = (f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in (mc1, mc2))
    for mc, tier in ((mc1, "one"), (mc2, "two")):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                f"{LABEL}={tier}", "--overwrite")
    store_template(parent, NAMESPACE)
    store_template(parent, deployment(6))
    deploy_key = f"apps/v1/Deployment/{NS}/web"
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
        "metadata": {"name": SUB, "namespace": "default"},
        "spec": {"schedulingStrategy": "Dividing", "dividingScheduling": {"type": "Static"},
                 "subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "one"}}, "weight": 1},
                                 {"clusterAffinity": {"matchLabels": {LABEL: "two"}}, "weight": 2}],
                 "feeds": [feed(NAMESPACE), feed(deployment(6))]}}))
    try:
        # the hub pushes 2 replicas to child1; child2's agent pulls 4
        wait_for(lambda: (child_replicas(child1), child_replicas(child2)) == (2, 4), timeout=120,
                 what="child1 with 2 replicas and child2 with 4")
        status = sub_status(parent)
        expected = {key1: 2, key2: 4}
        assert sorted(status["bindingClusters"]) == sorted(expected)
        assert status["replicas"][deploy_key] == [expected[k] for k in status["bindingClusters"]]  # e.g. [2, 4]
        assert status["replicas"][f"v1/Namespace/{NS}"] == []

        # the FeedInventory, same name and namespace, owned by the Subscription
        assert SUB in kubectl(parent, "get", "finv", "-n", "default").stdout
        finv = json.loads(kubectl(parent, "get", "finv", SUB, "-n", "default", "-o", "json").stdout)
        owner = finv["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("Subscription", SUB)
        orders = {o["kind"]: o for o in finv["spec"]["feeds"]}
        assert orders["Deployment"]["desiredReplicas"] == 6
        assert orders["Deployment"]["replicaJsonPath"] == "/spec/replicas"
        assert orders["Deployment"]["replicaRequirements"]["resources"]["requests"] == {"cpu": "100m",
                                                                                       "memory": "64Mi"}
        assert "desiredReplicas" not in orders["Namespace"]

        # the preview shows the split and who set it
        render = run_plugin(parent, "render", SUB, "-n", "default", "--cluster", mc2["spec"]["clusterId"])
        assert render.returncode == 0, render.stderr
        assert f"# override Subscription default/{SUB} [dividing-scheduler] JSONPatch: /spec/replicas" in render.stdout
        assert "replicas: 4" in render.stdout

        # a user's Localization below priority 1000 applies, but the split wins on replicas
        kubectl(parent, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Localization",
            "metadata": {"name": "more-web", "namespace": env["ns1"]},
            "spec": {"priority": 900, "overridePolicy": "ApplyNow", "feed": feed(deployment(6)),
                     "overrides": [{"name": "more", "type": "MergePatch",
                                    "value": '{"metadata":{"annotations":{"dividing/loc":"seen"}},'
                                             '"spec":{"replicas":5}}'}]}}))

        def annotated() -> bool:
            out = kubectl(child1, "get", "deploy", "web", "-n", NS, "-o", "json").stdout
            return (json.loads(out)["metadata"].get("annotations") or {}).get("dividing/loc") == "seen"

        wait_for(annotated, timeout=120, what="the Localization applied in child1")
        assert child_replicas(child1) == 2

        # nine replicas in the template: 3 and 6
        store_template(parent, deployment(9))
        wait_for(lambda: (child_replicas(child1), child_replicas(child2)) == (3, 6), timeout=120,
                 what="child1 with 3 replicas and child2 with 6")

        def divided(shares: dict[str, int]) -> bool:
            status = sub_status(parent)
            return bool(status["replicas"][deploy_key] == [shares[k] for k in status["bindingClusters"]])

        wait_for(lambda: divided({key1: 3, key2: 6}), timeout=60, what="status.replicas 3 and 6")
        finv = json.loads(kubectl(parent, "get", "finv", SUB, "-n", "default", "-o", "json").stdout)
        assert next(o for o in finv["spec"]["feeds"] if o["kind"] == "Deployment")["desiredReplicas"] == 9
    finally:
        kubectl(parent, "delete", "localization", "more-web", "-n", env["ns1"], "--ignore-not-found")
        kubectl(parent, "delete", "subs", SUB, "--ignore-not-found", "--wait=false")
        for mc in (mc1, mc2):
            kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"], f"{LABEL}-",
                    check=False)
    # deleting the Subscription takes its FeedInventory (owner reference) and the workloads with it
    wait_for(lambda: kubectl(parent, "get", "finv", SUB, "-n", "default", check=False).returncode != 0,
             timeout=120, what="FeedInventory garbage-collected")
    for child in (child1, child2):
        wait_for(lambda c=child: child_replicas(c) is None, timeout=120, what=f"{child.name} cleaned up")
    assert descriptions(parent, SUB) == {}


def test_with_failover_the_other_cluster_takes_a_silent_clusters_share_on_and_nothing_there_is_touched(
        hub_and_agents: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """child2's agent stops: once the hub judges the cluster silent (Ready Unknown, its NoSchedule taint), child1
    runs all 4 replicas while child2 keeps its 2 (its Description is not rewritten, its Deployment keeps its UID);
    when the agent is back, the split is 2 and 2 again, still the same Deployments. Without the gate, child1 stays
    at 2 (checked by hand: the wait for 4 times out)."""
    env = hub_and_agents
    mc1, mc2 = env["mc1"], env["mc2"]
    key1, key2 = (f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in (mc1, mc2))
    deploy_key = f"apps/v1/Deployment/{NS}/web"
    for mc in (mc1, mc2):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                f"{LABEL}=both", "--overwrite")
    store_template(parent, NAMESPACE)
    store_template(parent, deployment(4))
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
        "metadata": {"name": SUB, "namespace": "default"},
        "spec": {"schedulingStrategy": "Dividing", "dividingScheduling": {"type": "Static"},
                 "subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "both"}}, "weight": 1}],
                 "feeds": [feed(NAMESPACE), feed(deployment(4))]}}))

    def divided(shares: dict[str, int]) -> bool:
        status = sub_status(parent)
        return bool((status.get("replicas") or {}).get(deploy_key) == [shares.get(k) for k in status[
            "bindingClusters"]])

    def ready(mc: dict[str, Any]) -> str | None:
        out = json.loads(kubectl(parent, "get", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                                 "-o", "json").stdout)
        return next((c["status"] for c in out["status"].get("conditions") or [] if c["type"] == "Ready"), None)

    try:
        wait_for(lambda: (child_replicas(child1), child_replicas(child2)) == (2, 2), timeout=120,
                 what="2 replicas in each child")
        uids = {c.name: (child_deploy(c) or {})["metadata"]["uid"] for c in (child1, child2)}
        generation = descriptions(parent, SUB)[env["ns2"]]["metadata"]["generation"]
        env["puller"].stop()
        wait_for(lambda: ready(mc2) == "Unknown", timeout=60, what="child2 judged silent")
        wait_for(lambda: child_replicas(child1) == 4, timeout=60, what="child1 running all 4 replicas")
        assert divided({key1: 4, key2: 2})
        ready_message = next(c["message"] for c in sub_status(parent)["conditions"] if c["type"] == "Ready")
        assert f"failed over: {key2} silent" in ready_message
        assert descriptions(parent, SUB)[env["ns2"]]["metadata"]["generation"] == generation  # not rewritten
        assert child_replicas(child2) == 2 and (child_deploy(child2) or {})["metadata"]["uid"] == uids[child2.name]

        env["puller"].start()
        wait_for(lambda: ready(mc2) == "True", timeout=90, what="child2 Ready again")
        wait_for(lambda: (child_replicas(child1), child_replicas(child2)) == (2, 2), timeout=90,
                 what="back to 2 replicas in each child")
        wait_for(lambda: divided({key1: 2, key2: 2}), timeout=30, what="status.replicas 2 and 2")
        assert {c.name: (child_deploy(c) or {})["metadata"]["uid"] for c in (child1, child2)} == uids
        ready_message = next(c["message"] for c in sub_status(parent)["conditions"] if c["type"] == "Ready")
        assert "failed over" not in ready_message
    finally:
        if not env["puller"].running():
            env["puller"].start()
        kubectl(parent, "delete", "subs", SUB, "--ignore-not-found", "--wait=false")
        for mc in (mc1, mc2):
            kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"], f"{LABEL}-",
                    check=False)
    for child in (child1, child2):
        wait_for(lambda c=child: child_replicas(c) is None, timeout=120, what=f"{child.name} cleaned up")
