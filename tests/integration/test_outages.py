"""What users fear most from a multi-cluster manager: an outage that deletes what the children run.

Each test records the UID of every deployed object in both children, causes an outage longer than the
clusters' heartbeat grace period (3 x 2 s here), and compares the UIDs once everything is Ready again:
a deleted and re-created object has a new UID, so equality proves nothing was touched.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import descriptions, feed, kubectl, store_template, wait_for
from clusternet_testing.processes import Proc

pytestmark = pytest.mark.integration

NS = "sentinel"
LABEL = "outage-test"
OBJECTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep", "namespace": NS},
     "data": {"precious": "yes"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
     "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}},
]
LATE: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late", "namespace": NS},
                        "data": {"late": "yes"}}
GRACE = 6.0  # 3 x the agents' 2 s heartbeat (clusternet_testing/processes.py)


def subscription(name: str, objects: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}],
                                "feeds": [feed(o) for o in objects]}})


def uids(child: ControlPlane) -> dict[str, str]:
    """UID of every object the Subscription deployed, by kind/name."""
    out = json.loads(kubectl(child, "get", "ns/sentinel", "cm/keep", "deploy/web", "-n", NS, "-o", "json").stdout)
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["uid"] for o in out["items"]}


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def clusters(parent: ControlPlane, env: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(kubectl(parent, "get", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                               "-o", "json").stdout) for mc in (env["mc1"], env["mc2"])]


def all_ready(parent: ControlPlane, env: dict[str, Any], sub: str = "keeper") -> bool:
    """Both clusters Ready and untainted, both Descriptions Success, the Subscription Ready."""
    for mc in clusters(parent, env):
        taints = (mc.get("spec") or {}).get("taints") or []
        if ready_condition(mc).get("status") != "True" or any(t["key"] == known.TAINT_UNSCHEDULABLE for t in taints):
            return False
    descs = descriptions(parent, sub)
    if {env["ns1"], env["ns2"]} - set(descs) or any(
            (d.get("status") or {}).get("phase") != "Success" for d in descs.values()):
        return False
    status = json.loads(kubectl(parent, "get", "subs", sub, "-n", "default", "-o", "json").stdout)
    return bool(ready_condition(status).get("status") == "True")


@pytest.fixture(scope="module")
def env(hub_and_agents: dict[str, Any], parent: ControlPlane, child1: ControlPlane,
        child2: ControlPlane) -> dict[str, Any]:
    """Both clusters labelled, the sentinel application deployed to both and Ready."""
    for mc in (hub_and_agents["mc1"], hub_and_agents["mc2"]):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                f"{LABEL}=yes", "--overwrite")
    for obj in [*OBJECTS, LATE]:
        store_template(parent, obj)
    kubectl(parent, "apply", "-f", "-", input=subscription("keeper", OBJECTS))
    wait_for(lambda: all_ready(parent, hub_and_agents), timeout=90, what="the sentinel application Ready")
    return hub_and_agents


def assert_nothing_removed(env: dict[str, Any]) -> None:
    hub_log = env["hub"].output
    assert "removing its Base" not in hub_log
    assert "cleaned up" not in hub_log


def test_parent_apiserver_outage_keeps_every_workload(env: dict[str, Any], parent: ControlPlane,
                                                      child1: ControlPlane, child2: ControlPlane) -> None:
    """kill -9 the parent's kube-apiserver, keep it down past the grace period, start it again."""
    before = {c.name: uids(c) for c in (child1, child2)}
    assert all(len(u) == 3 for u in before.values())
    parent.restart_apiserver(down_seconds=GRACE + 2)
    wait_for(lambda: all_ready(parent, env), timeout=90, what="everything Ready again after the parent's outage")
    assert {c.name: uids(c) for c in (child1, child2)} == before
    assert_nothing_removed(env)
    # a hub that has just regained its parent has not watched for a grace period: no live cluster is judged
    assert "no heartbeat from the cluster agent" not in env["hub"].output


def test_agents_silent_past_the_grace_period_keep_their_workloads(env: dict[str, Any], parent: ControlPlane,
                                                                  child1: ControlPlane,
                                                                  child2: ControlPlane) -> None:
    """Both agents killed: the clusters turn Unknown and tainted (honest status), a new Subscription stays
    off them, the old one keeps its bindings and Bases, and nothing in the children changes."""
    before = {c.name: uids(c) for c in (child1, child2)}
    agents: list[Proc] = [env["pusher"], env["puller"]]
    for agent in agents:
        agent.kill()
    try:
        def silent() -> bool:
            return all(ready_condition(mc).get("status") == "Unknown" and any(
                t["key"] == known.TAINT_UNSCHEDULABLE and t["effect"] == "NoSchedule"
                for t in (mc.get("spec") or {}).get("taints") or []) for mc in clusters(parent, env))

        wait_for(silent, timeout=GRACE * 3, what="both clusters Unknown and tainted")

        def unconnected() -> bool:  # the hub saw both tunnels end: it says so, not only the heartbeats' silence
            return all(next((c for c in (mc.get("status") or {}).get("conditions") or []
                             if c.get("type") == known.CONDITION_SOCKET), {}).get("status") == "False"
                       for mc in clusters(parent, env))

        wait_for(unconnected, timeout=15, what="both clusters SocketConnected=False")

        def says_silent() -> bool:  # honest: not Ready, and why
            keeper = json.loads(kubectl(parent, "get", "subs", "keeper", "-n", "default", "-o", "json").stdout)
            ready = ready_condition(keeper)
            return ready.get("status") == "False" and ready.get("message", "").count("cluster not reporting") == 2

        wait_for(says_silent, timeout=15, what="the Subscription saying both clusters are not reporting")
        kubectl(parent, "apply", "-f", "-", input=subscription("latecomer", [LATE]))
        time.sleep(3 * 2)  # three of the hub's 2 s resyncs with the clusters silent

        late = json.loads(kubectl(parent, "get", "subs", "latecomer", "-n", "default", "-o", "json").stdout)
        assert not (late.get("status") or {}).get("bindingClusters")
        assert "untolerated taint" in ready_condition(late).get("message", "")
        keeper = json.loads(kubectl(parent, "get", "subs", "keeper", "-n", "default", "-o", "json").stdout)
        assert sorted(keeper["status"]["bindingClusters"]) == sorted(
            f"{mc['metadata']['namespace']}/{mc['metadata']['name']}" for mc in (env["mc1"], env["mc2"]))
        bases = json.loads(kubectl(parent, "get", "bases", "-A", "-l", f"{known.LABEL_SUBS_NAME}=keeper",
                                   "-o", "json").stdout)["items"]
        assert len(bases) == 2 and not any(b["metadata"].get("deletionTimestamp") for b in bases)
        assert {c.name: uids(c) for c in (child1, child2)} == before
    finally:
        for agent in agents:
            agent.start()
    wait_for(lambda: all_ready(parent, env), timeout=90, what="everything Ready again after the agents return")
    assert {c.name: uids(c) for c in (child1, child2)} == before
    assert_nothing_removed(env)
    # the taint is gone, so the latecomer binds both clusters now
    wait_for(lambda: all_ready(parent, env, "latecomer"), timeout=60, what="the latecomer deployed once they return")
    kubectl(parent, "delete", "subs", "latecomer", "-n", "default")


def test_an_affinity_typo_undone_while_the_agents_are_silent_deletes_nothing(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """Review finding F7: a silent cluster unbound by a short-lived change (an affinity typo fixed a minute later)
    is bound again once the change is undone, although the hub has tainted it NoSchedule, and its old Description,
    left deleting with the cleanup pending, is let go without touching the child, by the hub (Push) or by the
    returning agent (Pull). It used to stay off the Subscription and have its workloads deleted on its return."""
    wait_for(lambda: not descriptions(parent, "latecomer"), timeout=60, what="the last test's cleanup done")
    before = {c.name: uids(c) for c in (child1, child2)}
    agents: list[Proc] = [env["pusher"], env["puller"]]
    logs = {"hub": env["hub"], "pusher": env["pusher"], "puller": env["puller"]}
    start = {name: len(p.output) for name, p in logs.items()}

    def affinity(value: str, objects: list[dict[str, Any]] = OBJECTS) -> None:
        kubectl(parent, "patch", "subs", "keeper", "-n", "default", "--type=merge", "-p", json.dumps(
            {"spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: value}}}],
                      "feeds": [feed(o) for o in objects]}}))

    def bases() -> list[dict[str, Any]]:
        return list(json.loads(kubectl(parent, "get", "bases", "-A", "-l", f"{known.LABEL_SUBS_NAME}=keeper",
                                       "-o", "json").stdout)["items"])

    for agent in agents:
        agent.kill()
    try:
        wait_for(lambda: all(any(t["key"] == known.TAINT_UNSCHEDULABLE for t in (mc.get("spec") or {}).get("taints")
                                 or []) for mc in clusters(parent, env)), timeout=GRACE * 3, what="both tainted")
        affinity("yse")  # the typo
        wait_for(lambda: not bases() and len(descriptions(parent, "keeper")) == 2 and all(
            d["metadata"].get("deletionTimestamp") for d in descriptions(parent, "keeper").values()),
            timeout=30, what="both Bases gone, both Descriptions deleting with their cleanup pending")
        # fixed a minute later, and in the same edit the ConfigMap's feed is dropped (the fifth audit: that
        # object stayed for good, the re-created Description not knowing what its predecessor deployed)
        affinity("yes", [o for o in OBJECTS if o["kind"] != "ConfigMap"])
        wait_for(lambda: len([b for b in bases() if not b["metadata"].get("deletionTimestamp")]) == 2,
                 timeout=30, what="both clusters bound again through NoSchedule, their Bases back")
        assert {c.name: uids(c) for c in (child1, child2)} == before
    finally:
        for agent in agents:
            agent.start()
    wait_for(lambda: all_ready(parent, env), timeout=90, what="everything Ready again after the agents return")

    def kept(child: ControlPlane) -> dict[str, str]:
        out = json.loads(kubectl(child, "get", "ns/sentinel", "deploy/web", "-n", NS, "-o", "json").stdout)
        return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["uid"] for o in out["items"]}

    def pruned(child: ControlPlane) -> bool:
        return kubectl(child, "get", "cm/keep", "-n", NS, check=False).returncode != 0

    wait_for(lambda: all(pruned(c) for c in (child1, child2)), timeout=60, what="the dropped feed's ConfigMap gone")
    assert {c.name: kept(c) for c in (child1, child2)} == {
        name: {k: v for k, v in u.items() if k != "ConfigMap/keep"} for name, u in before.items()}
    new = {name: p.output[start[name]:] for name, p in logs.items()}
    assert not any("cleaned up" in text for text in new.values()), new
    assert "released without touching the child" in new["hub"] + new["puller"], new
    kubectl(parent, "apply", "-f", "-", input=subscription("keeper", OBJECTS))  # as the module left it
    wait_for(lambda: all_ready(parent, env), timeout=90, what="the ConfigMap deployed again")


def test_a_push_waits_for_the_clusters_tunnel_and_never_dials_its_advertised_url(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane) -> None:
    """Clusternet's useSocket rule: the hub reaches a cluster whose agent uses a tunnel through that tunnel alone.
    With the Dual agent killed, a changed template is not pushed to the URL its agent advertised (reachable from
    the hub here, and the hub used to push there); the Description says what it waits for, and the push follows
    once the agent is back."""
    wait_for(lambda: all_ready(parent, env), timeout=90, what="everything Ready")
    config_map = next(o for o in OBJECTS if o["kind"] == "ConfigMap")

    def data() -> dict[str, str]:
        return dict(json.loads(kubectl(child1, "get", "cm/keep", "-n", NS, "-o", "json").stdout)["data"])

    def socket(mc: dict[str, Any]) -> str:
        return str(next((c for c in (mc.get("status") or {}).get("conditions") or []
                         if c.get("type") == known.CONDITION_SOCKET), {}).get("status"))

    agent = env["pusher"]
    agent.kill()
    try:
        wait_for(lambda: socket(clusters(parent, env)[0]) == "False", timeout=15, what="child1 SocketConnected=False")
        store_template(parent, {**config_map, "data": {"precious": "changed"}})
        wait_for(lambda: (descriptions(parent, "keeper")[env["ns1"]].get("status") or {}).get("reason", "").startswith(
            "waiting for the cluster's tunnel"), timeout=20, what="child1's Description waiting for the tunnel")
        time.sleep(2)  # a push of its own (the old code's) would have landed by now
        assert data() == {"precious": "yes"}
    finally:
        agent.start()
    wait_for(lambda: data() == {"precious": "changed"}, timeout=30, what="the change pushed once the tunnel is back")
    wait_for(lambda: all_ready(parent, env), timeout=90, what="everything Ready again")
    store_template(parent, config_map)  # as the module left it
    wait_for(lambda: data() == {"precious": "yes"}, timeout=30, what="the template restored")
