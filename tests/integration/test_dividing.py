"""Dividing on two real children. Static: subscriber weights 1 and 2 split a Deployment's replicas, as in
Clusternet's examples/static-dividing-scheduling, and a new replica count in the template re-divides them; with
the FailOver gate, a silent cluster's share is taken on by the other while it keeps its own, and given back once
the returning cluster runs its own again. Dynamic: the agents'
built-in predictors, asked through their tunnels, say how many replicas fit on each child's Nodes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import descriptions, feed, kubectl, run_plugin, store_template, wait_for

pytestmark = pytest.mark.integration
HUB_ARGS = ["--feature-gates=FailOver=true"]  # Clusternet's scheduler chart ships it on
AGENT_ARGS = ["--feature-gates=Predictor=true"]  # Clusternet's agent chart ships it on

NS = "dividing-app"
LABEL = "dividing-test"
SUB = "web-dividing"
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
HEAVY_KEY = f"apps/v1/Deployment/{NS}/heavy"


def deployment(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"tolerations": [{"operator": "Exists"}],  # run_pods' Node
                                           "containers": [{"name": "web", "image": "nginx:1.25", "resources": {
                                               "requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}


def child_deploy(child: ControlPlane) -> dict[str, Any] | None:
    out = kubectl(child, "get", "deploy", "web", "-n", NS, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def child_replicas(child: ControlPlane) -> int | None:
    deploy = child_deploy(child)
    return deploy["spec"]["replicas"] if deploy is not None else None


def run_pods(child: ControlPlane, app: str) -> None:
    """What a kubelet would do, done by hand: the app's pods bound to a Node and reported Running and Ready, so
    its Deployment turns available (no kubelet runs in these children). The Node's heartbeat never comes: some
    40 s later the node lifecycle controller marks its pods not ready again."""
    kubectl(child, "apply", "-f", "-", input=json.dumps(node("failback-node", "8")))
    pods = json.loads(kubectl(child, "get", "pods", "-n", NS, "-l", f"app={app}", "-o", "json").stdout)["items"]
    for pod in pods:
        name = pod["metadata"]["name"]
        if not pod["spec"].get("nodeName"):
            kubectl(child, "create", "--raw", f"/api/v1/namespaces/{NS}/pods/{name}/binding", "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                      "target": {"apiVersion": "v1", "kind": "Node", "name": "failback-node"}}))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kubectl(child, "patch", "pod", name, "-n", NS, "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"phase": "Running", "conditions": [
                {"type": condition, "status": "True", "lastTransitionTime": now}
                for condition in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]}}))


def release_pods(child: ControlPlane) -> None:
    """run_pods' pods deleted at once: a pod bound to a Node waits for its kubelet to confirm it stopped, which
    none does, and the namespace kept Terminating held the next test's feeds back for a minute."""
    kubectl(child, "delete", "pods", "-n", NS, "--all", "--force", "--grace-period=0", "--ignore-not-found",
            check=False)


def available(child: ControlPlane, name: str = "web") -> int:
    out = kubectl(child, "get", "deploy", name, "-n", NS, "-o", "json", check=False)
    return int((json.loads(out.stdout).get("status") or {}).get("availableReplicas") or 0) if out.returncode == 0 \
        else 0


def cluster_ready(parent: ControlPlane, mc: dict[str, Any]) -> str | None:
    """The ManagedCluster's Ready status now."""
    out = json.loads(kubectl(parent, "get", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                             "-o", "json").stdout)
    return next((c["status"] for c in out["status"].get("conditions") or [] if c["type"] == "Ready"), None)


def sub_ready(parent: ControlPlane) -> dict[str, Any]:
    """The Subscription's Ready condition ({} when none)."""
    return next((c for c in sub_status(parent).get("conditions") or [] if c["type"] == "Ready"), {})


def heavy_split(parent: ControlPlane) -> dict[str, int]:
    """Binding key -> the heavy Deployment's share, as status.replicas says."""
    status = sub_status(parent)
    return dict(zip(status.get("bindingClusters") or [], (status.get("replicas") or {}).get(HEAVY_KEY) or [],
                    strict=False))


def subscribe_dynamically(parent: ControlPlane, value: str, replicas: int, **spec: Any) -> None:
    """A Dynamic Dividing (Spread) Subscription of the namespace and heavy(replicas) for the clusters labelled
    LABEL=value."""
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
        "metadata": {"name": SUB, "namespace": "default"},
        "spec": {"schedulingStrategy": "Dividing",
                 "dividingScheduling": {"type": "Dynamic", "dynamicDividing": {"strategy": "Spread"}},
                 "subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: value}}}],
                 "feeds": [feed(NAMESPACE), feed(heavy(replicas))], **spec}}))


def sub_status(parent: ControlPlane) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(kubectl(parent, "get", "subs", SUB, "-o", "json").stdout).get("status") or {}
    return status


def sub_events(parent: ControlPlane) -> list[str]:
    """The reasons of the Events of the Subscription as it is now (not of one of the same name an earlier test
    deleted)."""
    uid = json.loads(kubectl(parent, "get", "subs", SUB, "-o", "json").stdout)["metadata"]["uid"]
    out = kubectl(parent, "get", "events", "-n", "default", "--field-selector",
                  f"involvedObject.kind=Subscription,involvedObject.name={SUB},involvedObject.uid={uid}",
                  "-o", "json").stdout
    return [e["reason"] for e in json.loads(out)["items"]]


def label_both(env: dict[str, Any], parent: ControlPlane, value: str) -> tuple[str, str]:
    """Both ManagedClusters labelled LABEL=value; their binding keys."""
    for mc in (env["mc1"], env["mc2"]):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                f"{LABEL}={value}", "--overwrite")
    key1, key2 = (f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in (env["mc1"], env["mc2"]))
    return key1, key2


def tidy_up(env: dict[str, Any], parent: ControlPlane) -> None:
    """What a test stopped or set, undone: child2's agent running, the Subscription deleted, the labels removed."""
    if not env["puller"].running():
        env["puller"].start()
    kubectl(parent, "delete", "subs", SUB, "--ignore-not-found", "--wait=false")
    for mc in (env["mc1"], env["mc2"]):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"], f"{LABEL}-",
                check=False)


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
        tidy_up(env, parent)
    # deleting the Subscription takes its FeedInventory (owner reference) and the workloads with it
    wait_for(lambda: kubectl(parent, "get", "finv", SUB, "-n", "default", check=False).returncode != 0,
             timeout=120, what="FeedInventory garbage-collected")
    for child in (child1, child2):
        wait_for(lambda c=child: child_replicas(c) is None, timeout=120, what=f"{child.name} cleaned up")
    assert descriptions(parent, SUB) == {}


def test_with_failover_the_other_cluster_takes_a_silent_clusters_share_on_and_nothing_there_is_touched(
        hub_and_agents: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """child2's agent stops: once the hub judges the cluster silent (Ready Unknown, its NoSchedule taint), child1
    runs all 4 replicas while child2 keeps its 2 (its Description is not rewritten, its Deployment keeps its UID).
    When the agent is back, child1 keeps its 4 while child2's 2 are not available (no kubelet runs them); once
    they run, the split is 2 and 2 again, still the same Deployments. Without the gate, child1 stays at 2 (checked
    by hand: the wait for 4 times out)."""
    env = hub_and_agents
    key1, key2 = label_both(env, parent, "both")
    deploy_key = f"apps/v1/Deployment/{NS}/web"
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

    try:
        wait_for(lambda: (child_replicas(child1), child_replicas(child2)) == (2, 2), timeout=120,
                 what="2 replicas in each child")
        uids = {c.name: (child_deploy(c) or {})["metadata"]["uid"] for c in (child1, child2)}
        generation = descriptions(parent, SUB)[env["ns2"]]["metadata"]["generation"]
        env["puller"].stop()
        wait_for(lambda: cluster_ready(parent, env["mc2"]) == "Unknown", timeout=60, what="child2 judged silent")
        wait_for(lambda: child_replicas(child1) == 4, timeout=60, what="child1 running all 4 replicas")
        assert divided({key1: 4, key2: 2})
        ready_message = next(c["message"] for c in sub_status(parent)["conditions"] if c["type"] == "Ready")
        assert f"failed over: {key2} silent" in ready_message
        wait_for(lambda: "FailedOver" in sub_events(parent), timeout=30, what="a FailedOver event")
        assert descriptions(parent, SUB)[env["ns2"]]["metadata"]["generation"] == generation  # not rewritten
        assert child_replicas(child2) == 2 and (child_deploy(child2) or {})["metadata"]["uid"] == uids[child2.name]

        env["puller"].start()
        wait_for(lambda: cluster_ready(parent, env["mc2"]) == "True", timeout=90, what="child2 Ready again")
        wait_for(lambda: "failing back: " in next(c["message"] for c in sub_status(parent)["conditions"]
                                                  if c["type"] == "Ready"), timeout=60, what="Ready naming child2")
        wait_for(lambda: "FailingBack" in sub_events(parent), timeout=30, what="a FailingBack event")
        for _ in range(3):  # three of the hub's resyncs (2 s): child2 reports, its replicas still wait for a node
            assert child_replicas(child1) == 4 and divided({key1: 4, key2: 2}) and available(child2) == 0
            time.sleep(2)
        run_pods(child2, "web")
        wait_for(lambda: divided({key1: 2, key2: 2}), timeout=60, what="status.replicas 2 and 2")
        assert available(child2) == 2  # given back only once child2 runs its share
        wait_for(lambda: (child_replicas(child1), child_replicas(child2)) == (2, 2), timeout=90,
                 what="back to 2 replicas in each child")
        assert {c.name: (child_deploy(c) or {})["metadata"]["uid"] for c in (child1, child2)} == uids
        ready_message = next(c["message"] for c in sub_status(parent)["conditions"] if c["type"] == "Ready")
        assert "failed over" not in ready_message
        wait_for(lambda: "FailedBack" in sub_events(parent), timeout=30, what="a FailedBack event")
    finally:
        tidy_up(env, parent)
        release_pods(child2)
        kubectl(child2, "delete", "node", "-l", "dynamic-test=yes", "--ignore-not-found", check=False)
    for child in (child1, child2):
        wait_for(lambda c=child: child_replicas(c) is None, timeout=120, what=f"{child.name} cleaned up")


def node(name: str, cpu: str) -> dict[str, Any]:
    """A Node no kubelet runs: the predictor reads its allocatable; its Ready heartbeat goes stale, and the node
    lifecycle controller taints it, so the workload below tolerates every taint."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"dynamic-test": "yes"}},
            "status": {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"},
                       "capacity": {"cpu": cpu, "memory": "64Gi", "pods": "110"}}}


def heavy(replicas: int) -> dict[str, Any]:
    """One CPU per replica, tolerating the taints of the kubelet-less Nodes."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "heavy", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "heavy"}},
                     "template": {"metadata": {"labels": {"app": "heavy"}},
                                  "spec": {"tolerations": [{"operator": "Exists"}],
                                           "containers": [{"name": "heavy", "image": "nginx:1.25",
                                                           "resources": {"requests": {"cpu": "1"}}}]}}}}


def heavy_replicas(child: ControlPlane) -> int | None:
    out = kubectl(child, "get", "deploy", "heavy", "-n", NS, "-o", "json", check=False)
    return json.loads(out.stdout)["spec"]["replicas"] if out.returncode == 0 else None


def waiting_pods(child: ControlPlane) -> int:
    """The workload's pods, all waiting for a node (no kubelet runs): the predictor counts them as taking room."""
    pods = json.loads(kubectl(child, "get", "pods", "-n", NS, "-l", "app=heavy", "-o", "json").stdout)["items"]
    return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp"))


def test_dynamic_dividing_follows_the_room_each_childs_predictor_reports(
        hub_and_agents: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """child1 has 4 CPUs and child2 12: 8 replicas of one CPU go 2 and 6 (Spread, in proportion to the room); 12
    add the 4 new ones the same way (3 and 9: the pods waiting for a node take their room); 6 take the 6 back in
    proportion to the split (2 and 4); with child2's agent stopped, 12 give child1 the 2 it has room for (4 and 4),
    and Ready says 4 found no room and names child2's silent predictor, which takes them once back (4 and 8); 30 do
    not fit: each child gets all it can run (4 and 12), Ready says 14 found no room, and the resyncs after it give no
    more. The Deployments keep their UIDs."""
    env = hub_and_agents
    key1, key2 = label_both(env, parent, "dynamic")
    deploy_key = HEAVY_KEY
    for child, name, cpus in ((child1, "dyn-a", "4"), (child2, "dyn-b", "8"), (child2, "dyn-c", "4")):
        kubectl(child, "apply", "-f", "-", input=json.dumps(node(name, cpus)))
    store_template(parent, NAMESPACE)
    store_template(parent, heavy(8))

    def split() -> dict[str, int]:
        return heavy_split(parent)

    def ready() -> dict[str, Any]:
        return sub_ready(parent)

    try:
        mc1 = env["mc1"]["metadata"]
        mc_status = json.loads(kubectl(parent, "get", "mcls", mc1["name"], "-n", mc1["namespace"], "-o",
                                       "json").stdout)["status"]
        assert (mc_status.get("predictorEnabled"), mc_status.get("predictorAddress"),
                mc_status.get("predictorDirectAccess")) == (True, "http://predictor.clusternet.local", False)
        # the stop below tests a silent predictor; the failover of a silent cluster is the next test's
        subscribe_dynamically(parent, "dynamic", 8, clusterTolerations=[
            {"key": "clusters.clusternet.io/unschedulable", "operator": "Exists"}])
        wait_for(lambda: split() == {key1: 2, key2: 6}, timeout=120, what="status.replicas 2 and 6")
        wait_for(lambda: (heavy_replicas(child1), heavy_replicas(child2)) == (2, 6), timeout=120,
                 what="child1 with 2 replicas and child2 with 6")
        wait_for(lambda: (waiting_pods(child1), waiting_pods(child2)) == (2, 6), timeout=60,
                 what="2 and 6 pods waiting for a node")
        uids = {c.name: json.loads(kubectl(c, "get", "deploy", "heavy", "-n", NS, "-o", "json").stdout)[
            "metadata"]["uid"] for c in (child1, child2)}

        for replicas, shares in ((12, (3, 9)), (6, (2, 4))):
            store_template(parent, heavy(replicas))
            wait_for(lambda s=shares: split() == {key1: s[0], key2: s[1]}, timeout=60,
                     what=f"status.replicas {shares}")
            wait_for(lambda s=shares: (heavy_replicas(child1), heavy_replicas(child2)) == s, timeout=90,
                     what=f"{shares} replicas in the children")
            wait_for(lambda s=shares: (waiting_pods(child1), waiting_pods(child2)) == s, timeout=60,
                     what=f"{shares} pods waiting for a node")  # what the next prediction counts
            assert ready().get("reason") != "InsufficientCapacity"

        # child2's agent stopped: its predictor cannot answer, so of 6 new replicas child1 takes the 2 it has room
        # for, and Ready says why the other 4 wait; back, child2 takes them
        env["puller"].stop()
        store_template(parent, heavy(12))
        wait_for(lambda: split() == {key1: 4, key2: 4}, timeout=60, what="status.replicas 4 and 4")
        condition = ready()  # written with the split
        assert condition["status"] == "False" and condition["reason"] == "InsufficientCapacity", condition
        assert f"4 replica(s) of {deploy_key} found no room" in condition["message"], condition
        assert f"no prediction from {key2}: its tunnel is down" in condition["message"], condition
        wait_for(lambda: sub_events(parent).count("InsufficientCapacity") == 1, timeout=30,
                 what="an InsufficientCapacity event")
        env["puller"].start()
        wait_for(lambda: split() == {key1: 4, key2: 8}, timeout=60, what="status.replicas 4 and 8")
        assert ready().get("reason") != "InsufficientCapacity"
        wait_for(lambda: (waiting_pods(child1), waiting_pods(child2)) == (4, 8), timeout=90, what="4 and 8 pods")

        store_template(parent, heavy(30))
        wait_for(lambda: split() == {key1: 4, key2: 12}, timeout=60, what="status.replicas 4 and 12")
        condition = ready()  # written with the split
        assert condition["status"] == "False" and condition["reason"] == "InsufficientCapacity", condition
        assert f"14 replica(s) of {deploy_key} found no room" in condition["message"], condition
        wait_for(lambda: sub_events(parent).count("InsufficientCapacity") == 2, timeout=30,
                 what="a second InsufficientCapacity event")
        wait_for(lambda: (heavy_replicas(child1), heavy_replicas(child2)) == (4, 12), timeout=90,
                 what="4 and 12 replicas in the children")
        wait_for(lambda: (waiting_pods(child1), waiting_pods(child2)) == (4, 12), timeout=60, what="their pods")
        time.sleep(6)  # three resyncs ask the predictors again: the pods waiting for a node fill the room
        assert split() == {key1: 4, key2: 12}
        assert {c.name: json.loads(kubectl(c, "get", "deploy", "heavy", "-n", NS, "-o", "json").stdout)[
            "metadata"]["uid"] for c in (child1, child2)} == uids
    finally:
        tidy_up(env, parent)
        for child in (child1, child2):
            kubectl(child, "delete", "node", "-l", "dynamic-test=yes", "--ignore-not-found", check=False)
    for child in (child1, child2):
        wait_for(lambda c=child: heavy_replicas(c) is None, timeout=120, what=f"{child.name} cleaned up")


def test_dynamic_dividing_with_failover_spreads_a_silent_clusters_share_and_gives_it_back(
        hub_and_agents: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """Both children have 8 CPUs: 4 replicas of one CPU go 2 and 2. child2's agent stops: once the hub judges it
    silent, child1's predictor is asked and child1 takes child2's 2 on (4 and 2: child2 keeps its own). Back,
    child2 is waited for until its 2 replicas are available, then child1 gives the 2 back (2 and 2). The
    Deployments keep their UIDs."""
    env = hub_and_agents
    key1, key2 = label_both(env, parent, "dynamic-failover")
    for child, name in ((child1, "dyn-a"), (child2, "dyn-b")):
        kubectl(child, "apply", "-f", "-", input=json.dumps(node(name, "8")))
    store_template(parent, NAMESPACE)
    store_template(parent, heavy(4))

    def ready_message() -> str:
        return str(sub_ready(parent).get("message") or "")

    try:
        subscribe_dynamically(parent, "dynamic-failover", 4)
        wait_for(lambda: heavy_split(parent) == {key1: 2, key2: 2}, timeout=120, what="status.replicas 2 and 2")
        wait_for(lambda: (heavy_replicas(child1), heavy_replicas(child2)) == (2, 2), timeout=120,
                 what="2 replicas in each child")
        uids = {c.name: json.loads(kubectl(c, "get", "deploy", "heavy", "-n", NS, "-o", "json").stdout)[
            "metadata"]["uid"] for c in (child1, child2)}

        env["puller"].stop()
        wait_for(lambda: cluster_ready(parent, env["mc2"]) == "Unknown", timeout=60, what="child2 judged silent")
        wait_for(lambda: heavy_split(parent) == {key1: 4, key2: 2}, timeout=60, what="status.replicas 4 and 2")
        assert f"failed over: {key2} silent" in ready_message()
        assert sub_status(parent).get("failedOverClusters") == [key2]
        wait_for(lambda: "FailedOver" in sub_events(parent), timeout=30, what="a FailedOver event")
        wait_for(lambda: heavy_replicas(child1) == 4, timeout=60, what="child1 running 4 replicas")
        assert heavy_replicas(child2) == 2

        env["puller"].start()
        wait_for(lambda: cluster_ready(parent, env["mc2"]) == "True", timeout=90, what="child2 Ready again")
        wait_for(lambda: "failing back: " in ready_message(), timeout=60, what="Ready naming child2")
        for _ in range(3):  # three of the hub's resyncs (2 s): child2's replicas still wait for a node
            assert heavy_split(parent) == {key1: 4, key2: 2} and available(child2, "heavy") == 0
            time.sleep(2)
        run_pods(child2, "heavy")
        wait_for(lambda: heavy_split(parent) == {key1: 2, key2: 2}, timeout=60, what="status.replicas 2 and 2 again")
        assert available(child2, "heavy") == 2  # given back only once child2 runs its share
        assert "failedOverClusters" not in sub_status(parent)
        wait_for(lambda: (heavy_replicas(child1), heavy_replicas(child2)) == (2, 2), timeout=90,
                 what="2 replicas in each child again")
        wait_for(lambda: "FailedBack" in sub_events(parent), timeout=30, what="a FailedBack event")
        assert {c.name: json.loads(kubectl(c, "get", "deploy", "heavy", "-n", NS, "-o", "json").stdout)[
            "metadata"]["uid"] for c in (child1, child2)} == uids
    finally:
        tidy_up(env, parent)
        release_pods(child2)
        for child in (child1, child2):
            kubectl(child, "delete", "node", "-l", "dynamic-test=yes", "--ignore-not-found", check=False)
    for child in (child1, child2):
        wait_for(lambda c=child: heavy_replicas(c) is None, timeout=120, what=f"{child.name} cleaned up")
