"""Deploying an application to two real child clusters: one pushed to by the hub, one pulling.

Follows the overview's walkthrough (a Namespace, a Service and a Deployment, one Subscription matching
both children), then overrides, ApplyNow/ApplyLater, drift, relabelling and deletion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import PLURALS, descriptions, feed, kubectl, mc_for, plugin, store_template, wait_for
from clusternet_testing.processes import Proc

pytestmark = pytest.mark.integration

NS = "demo-app"
LABEL = "deploy-test"
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "my-nginx", "namespace": NS},
    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "nginx"}},
             "template": {"metadata": {"labels": {"app": "nginx"}},
                          "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "my-nginx-svc", "namespace": NS},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "nginx"}}}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}


def subscription(name: str, feeds: list[dict[str, str]], selector: dict[str, str] | None = None) -> str:
    return json.dumps({"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": selector or {LABEL: "yes"}}}],
                                "feeds": feeds}})


def child_annotations(child: ControlPlane) -> dict[str, str]:
    out = kubectl(child, "get", "deploy", "my-nginx", "-n", NS, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    annotations: dict[str, str] = json.loads(out.stdout)["metadata"].get("annotations") or {}
    return annotations


@pytest.fixture(scope="module")
def env(hub_and_agents: dict[str, Any], parent: ControlPlane) -> dict[str, Any]:
    """The hub and agents (tests/integration/conftest.py), both clusters labelled, the templates stored."""
    for mc in (hub_and_agents["mc1"], hub_and_agents["mc2"]):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                f"{LABEL}=yes", "--overwrite")
    for obj in (NAMESPACE, SERVICE, DEPLOYMENT):
        store_template(parent, obj)
    return hub_and_agents


def test_overview_example_reaches_both_children(env: dict[str, Any], parent: ControlPlane, child1: ControlPlane,
                                                child2: ControlPlane) -> None:
    kubectl(parent, "apply", "-f", "-", input=subscription("app-demo", [feed(o) for o in
                                                                         (NAMESPACE, SERVICE, DEPLOYMENT)]))

    def both_success() -> bool:
        d = descriptions(parent, "app-demo")
        return {env["ns1"], env["ns2"]} <= set(d) and all(
            (d[ns].get("status") or {}).get("phase") == "Success" for ns in (env["ns1"], env["ns2"]))

    wait_for(both_success, timeout=60, what="both Descriptions Success")
    for child in (child1, child2):
        assert kubectl(child, "get", "ns", NS).returncode == 0
        assert kubectl(child, "get", "svc", "my-nginx-svc", "-n", NS).returncode == 0
        ann = child_annotations(child)
        assert ann[known.ANNOTATION_OWNED_BY_DESCRIPTION].endswith("-generic")
    table = kubectl(parent, "get", "desc", "-A").stdout
    rows = [r for r in table.splitlines() if "app-demo" in r]
    assert len(rows) == 2 and all("Generic" in r and "Success" in r for r in rows)
    # the hub pushed to child1 (Dual + AppPusher); child2's agent pulled
    events = kubectl(parent, "get", "events", "-A", "--field-selector=reason=SuccessfullyDeployed",
                     "-o", "json").stdout
    sources = {(e["metadata"]["namespace"], e["source"].get("component")) for e in json.loads(events)["items"]}
    assert (env["ns1"], "clusternet-hub") in sources
    assert (env["ns2"], "clusternet-agent") in sources
    # status flows back: bindings, releases and a readiness verdict computed from the children's objects
    def status() -> dict[str, Any]:
        s: dict[str, Any] = json.loads(kubectl(parent, "get", "subs", "app-demo", "-o", "json").stdout)["status"]
        return s if s.get("completedReleases") == 2 else {}

    st = wait_for(status, timeout=60, what="completedReleases 2")
    assert st["desiredReleases"] == 2 and len(st["bindingClusters"]) == 2
    assert st["conditions"][0]["status"] == "True"
    deploy_status = next(a for a in st["aggregatedStatuses"] if a["kind"] == "Deployment")
    assert len(deploy_status["feedStatusDetails"]) == 2
    # kubectl clusternet describe: the template with where it runs, a Description with its status and events
    text = plugin(parent, "describe", "deploy", "my-nginx", "-n", NS)
    rows = [line.split() for line in text.split("Clusters:\n")[1].splitlines()[1:]]
    assert sorted(r[2] for r in rows) == sorted([env["ns1"], env["ns2"]]), text
    assert all(r[0] == "default/app-demo" and r[3] == "true" for r in rows), text
    name = descriptions(parent, "app-demo")[env["ns1"]]["metadata"]["name"]
    text = plugin(parent, "describe", "desc", name, "-n", env["ns1"])
    assert "phase: Success" in text and "SuccessfullyDeployed" in text, text


def test_overrides_apply_in_documented_order(env: dict[str, Any], parent: ControlPlane, child1: ControlPlane,
                                             child2: ControlPlane) -> None:
    target = feed(DEPLOYMENT)

    def override(kind: str, name: str, priority: int, value: str, namespace: str | None = None,
                 policy: str = "ApplyNow", type_: str = "MergePatch") -> str:
        meta: dict[str, Any] = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        return json.dumps({"apiVersion": "apps.clusternet.io/v1alpha1", "kind": kind, "metadata": meta,
                           "spec": {"priority": priority, "overridePolicy": policy, "feed": target,
                                    "overrides": [{"name": name, "type": type_, "value": value}]}})

    order = '{"metadata":{"annotations":{"demo/order":"%s"}}}'
    kubectl(parent, "apply", "-f", "-", input=override("Globalization", "g600", 600, order % "glob-600"))
    kubectl(parent, "apply", "-f", "-", input=override("Globalization", "g100", 100, order % "glob-100"))
    kubectl(parent, "apply", "-f", "-", input=override("Localization", "l100", 100, order % "loc-100",
                                                       env["ns1"]))
    # Glob(100) -> Glob(600) -> Loc(100): the Localization wins in child1, Glob(600) in child2
    wait_for(lambda: child_annotations(child1).get("demo/order") == "loc-100", timeout=30, what="child1 order")
    wait_for(lambda: child_annotations(child2).get("demo/order") == "glob-600", timeout=30, what="child2 order")
    # a broken override is reported, and the cluster keeps what it runs until it applies (without it an object
    # could move, be renamed or revert: clusternet_core/heldback.py)
    deployed = descriptions(parent, "app-demo")[env["ns1"]]["spec"]["raw"]
    kubectl(parent, "apply", "-f", "-", input=override(
        "Localization", "broken", 700, '[{"op":"replace","path":"/spec/replicaz","value":3}]', env["ns1"],
        type_="JSONPatch"))

    def reported() -> bool:
        events = json.loads(kubectl(parent, "get", "events", "-n", env["ns1"], "-o", "json").stdout)["items"]
        return any(e["reason"] == "OverrideFailed" and "broken" in e["message"] and "replicaz" in e["message"]
                   for e in events)

    wait_for(reported, timeout=30, what="OverrideFailed event")
    # where a user looks first (audit 6: the event had no uid, and describe showed none)
    described = kubectl(parent, "describe", "localization", "broken", "-n", env["ns1"]).stdout
    assert "OverrideFailed" in described.split("Events:")[-1], described
    assert child_annotations(child1).get("demo/order") == "loc-100"
    # what it deploys is unchanged (a resync may record the errors in its annotation, with the same raw)
    assert descriptions(parent, "app-demo")[env["ns1"]]["spec"]["raw"] == deployed

    def render_failed() -> bool:
        status = json.loads(kubectl(parent, "get", "subs", "app-demo", "-o", "json").stdout).get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return ready.get("reason") == "RenderFailed" and "replicaz" in ready.get("message", "")

    wait_for(render_failed, timeout=30, what="Ready: RenderFailed naming the broken override")
    # one in a namespace that is no cluster's applies to nothing, and says so
    kubectl(parent, "apply", "-f", "-", input=override("Localization", "stray", 100, order % "stray", "default"))

    def stray_warned() -> bool:
        events = json.loads(kubectl(parent, "get", "events", "-n", "default", "-o", "json").stdout)["items"]
        return any(e["reason"] == "NotInClusterNamespace" and e["involvedObject"]["name"] == "stray"
                   for e in events)

    wait_for(stray_warned, timeout=30, what="NotInClusterNamespace event")
    assert not any(e["reason"] == "NotInClusterNamespace" for e in json.loads(kubectl(
        parent, "get", "events", "-n", env["ns1"], "-o", "json").stdout)["items"])
    kubectl(parent, "delete", "localization", "stray", "-n", "default")
    # while "broken" fails, child1's Description is held back: it goes first, then deleting an ApplyNow override
    # rolls it back
    kubectl(parent, "delete", "localization", "broken", "-n", env["ns1"])
    kubectl(parent, "delete", "localization", "l100", "-n", env["ns1"])
    wait_for(lambda: child_annotations(child1).get("demo/order") == "glob-600", timeout=30, what="rollback")


def test_an_apply_now_override_deleted_while_the_hub_is_down_is_rolled_back(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """Audit 7: only the event of an ApplyNow override's deletion re-rendered; deleted while no hub watched (a
    restart, an upgrade, a leader failover), its effect stayed in every child for good."""
    glob = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Globalization", "metadata": {"name": "while-down"},
            "spec": {"priority": 800, "overridePolicy": "ApplyNow", "feed": feed(DEPLOYMENT),
                     "overrides": [{"name": "mark", "type": "MergePatch",
                                    "value": '{"metadata":{"annotations":{"demo/while-down":"yes"}}}'}]}}
    kubectl(parent, "apply", "-f", "-", input=json.dumps(glob))
    wait_for(lambda: all(child_annotations(c).get("demo/while-down") == "yes" for c in (child1, child2)),
             timeout=30, what="the override applied in both children")
    hub: Proc = env["hub"]
    hub.kill()
    try:
        kubectl(parent, "delete", "globalization", "while-down")
    finally:
        hub.start()
    wait_for(lambda: not any("demo/while-down" in child_annotations(c) for c in (child1, child2)),
             timeout=60, what="the override rolled back in both children")


def test_apply_later_waits_for_the_next_feed_change(env: dict[str, Any], parent: ControlPlane,
                                                    child2: ControlPlane) -> None:
    later = json.dumps({"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Localization",
                        "metadata": {"name": "later", "namespace": env["ns2"]},
                        "spec": {"overridePolicy": "ApplyLater", "feed": feed(DEPLOYMENT),
                                 "overrides": [{"name": "later", "type": "MergePatch",
                                                "value": '{"metadata":{"annotations":{"demo/later":"yes"}}}'}]}})
    kubectl(parent, "apply", "-f", "-", input=later)
    import time

    time.sleep(6)  # several resyncs: an ApplyLater override must not be picked up by them
    assert "demo/later" not in child_annotations(child2)
    changed = json.loads(json.dumps(DEPLOYMENT))
    changed["metadata"]["labels"] = {"version": "2"}
    store_template(parent, changed)  # the feed changes
    wait_for(lambda: child_annotations(child2).get("demo/later") == "yes", timeout=30, what="ApplyLater applied")


def test_drift_is_put_back(env: dict[str, Any], child1: ControlPlane, child2: ControlPlane) -> None:
    for child in (child1, child2):
        kubectl(child, "delete", "svc", "my-nginx-svc", "-n", NS)
    for child in (child1, child2):
        wait_for(lambda c=child: kubectl(c, "get", "svc", "my-nginx-svc", "-n", NS, check=False).returncode == 0,
                 timeout=30, what="service re-created")


def test_turning_app_pusher_off_hands_over_to_the_agent_without_redeploying(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane) -> None:
    before = json.loads(kubectl(child1, "get", "deploy", "my-nginx", "-n", NS, "-o", "json").stdout)["metadata"]
    pusher: Proc = env["pusher"]
    pusher.stop()
    pusher.args = [a.replace("AppPusher=true", "AppPusher=false") for a in pusher.args]
    pusher.start()
    wait_for(lambda: mc_for(parent, child1)["status"].get("appPusher") is False, timeout=30,
             what="appPusher reported false")
    # the veto withdraws the hub's push credentials
    wait_for(lambda: kubectl(parent, "get", "secret", "child-cluster-deployer", "-n", env["ns1"],
                             check=False).returncode != 0, timeout=30, what="push credentials withdrawn")
    changed = json.loads(json.dumps(DEPLOYMENT))
    changed["metadata"]["labels"] = {"version": "3"}
    store_template(parent, changed)

    def updated_by_agent() -> bool:
        meta = json.loads(kubectl(child1, "get", "deploy", "my-nginx", "-n", NS, "-o", "json").stdout)["metadata"]
        return (meta.get("labels") or {}).get("version") == "3"

    wait_for(updated_by_agent, timeout=60, what="child1 updated by its agent")
    after = json.loads(kubectl(child1, "get", "deploy", "my-nginx", "-n", NS, "-o", "json").stdout)["metadata"]
    assert after["uid"] == before["uid"]  # handed over, not redeployed
    # the hub holds no credentials for child1 any more, so the agent made that change
    assert kubectl(parent, "get", "secret", "child-cluster-deployer", "-n", env["ns1"], check=False).returncode != 0
    pusher.stop()
    pusher.args = [a.replace("AppPusher=false", "AppPusher=true") for a in pusher.args]
    pusher.start()
    wait_for(lambda: mc_for(parent, child1)["status"].get("appPusher") is True, timeout=30, what="pusher back")


def test_bad_subscriptions_say_what_is_wrong(env: dict[str, Any], parent: ControlPlane) -> None:
    kubectl(parent, "apply", "-f", "-", input=subscription(
        "missing-feed", [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": NS, "name": "nope"}]))
    kubectl(parent, "apply", "-f", "-", input=subscription("nobody", [feed(SERVICE)], {"no-such": "label"}))

    def condition(name: str) -> dict[str, Any]:
        st = json.loads(kubectl(parent, "get", "subs", name, "-o", "json").stdout).get("status") or {}
        return next((c for c in st.get("conditions") or []), {})

    missing = wait_for(lambda: condition("missing-feed") if "not found" in condition("missing-feed").get(
        "message", "") else None, timeout=30, what="missing feed reported")
    assert missing["status"] == "False" and "nope" in missing["message"]
    nobody = wait_for(lambda: condition("nobody") or None, timeout=30, what="no-match reported")
    assert nobody["status"] == "False" and nobody["reason"] == "NoMatchingCluster"
    for name in ("missing-feed", "nobody"):
        kubectl(parent, "delete", "subs", name)


def test_objects_a_child_rejects_are_reported_and_the_rest_deployed(env: dict[str, Any], parent: ControlPlane,
                                                                    child1: ControlPlane) -> None:
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "good", "namespace": "default"},
            "data": {"a": "b"}}
    huge = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge", "namespace": "default"},
            "data": {"blob": "x" * (1024 * 1024 + 10)}}
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}}
    PLURALS.update({"ConfigMap": "configmaps", "Widget": "widgets"})
    for obj in (good, huge, widget):
        store_template(parent, obj)
    only_child1 = {known.LABEL_CLUSTER_ID: env["mc1"]["spec"]["clusterId"]}
    kubectl(parent, "apply", "-f", "-", input=subscription("rejects", [feed(o) for o in (widget, huge, good)],
                                                           only_child1))

    def failed() -> dict[str, Any] | None:
        d = descriptions(parent, "rejects").get(env["ns1"])
        st = (d or {}).get("status") or {}
        return st if st.get("phase") == "Failure" else None

    st = wait_for(failed, timeout=60, what="Description Failure")
    assert "Widget default/w" in st["reason"] and "ConfigMap default/huge" in st["reason"]
    assert kubectl(child1, "get", "configmap", "good", "-n", "default").returncode == 0
    events = kubectl(parent, "get", "events", "-n", env["ns1"], "--field-selector=reason=UnSuccessfullyDeployed",
                     "-o", "json").stdout
    assert any("Widget" in e["message"] for e in json.loads(events)["items"])
    kubectl(parent, "delete", "subs", "rejects")
    wait_for(lambda: kubectl(child1, "get", "configmap", "good", "-n", "default", check=False).returncode != 0,
             timeout=60, what="good ConfigMap removed with its Subscription")


class Watch:
    """`kubectl get -w` of one ConfigMap, each ADDED/DELETED timestamped: how long was it missing?"""

    def __init__(self, child: ControlPlane, name: str) -> None:
        import subprocess
        import threading
        import time

        self.events: list[tuple[float, str, str]] = []  # (monotonic time, type, uid)
        self.proc = subprocess.Popen(
            ["kubectl", f"--kubeconfig={child.kubeconfig}", "get", "configmap", "-n", "default", "-w",
             f"--field-selector=metadata.name={name}", "--output-watch-events",
             "-o", "jsonpath={.type} {.object.metadata.uid}{\"\\n\"}"], stdout=subprocess.PIPE, text=True)

        def read() -> None:
            for line in self.proc.stdout or []:
                self.events.append((time.monotonic(), *line.split()[:2]))  # type: ignore[arg-type]

        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: self.events, timeout=10, what=f"watching {name}")

    def gap(self) -> float:
        """Seconds between the first deletion and the next creation (0 if never deleted)."""
        self.proc.terminate()
        deleted = next((t for t, kind, _ in self.events if kind == "DELETED"), None)
        if deleted is None:
            return 0.0
        return next((t for t, kind, _ in self.events if kind == "ADDED" and t > deleted), float("inf")) - deleted


def test_adopting_and_handing_over_between_two_subscriptions(env: dict[str, Any], parent: ControlPlane,
                                                             child1: ControlPlane, child2: ControlPlane) -> None:
    """A ConfigMap made by hand is adopted (one `Adopted` event, no false drift) and released, not deleted, with
    its Subscription; one that two Subscriptions feed passes to the second, never missing, when the first goes."""
    import time

    keep = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keepme", "namespace": "default"},
            "data": {"a": "from-parent"}}
    shared = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": "default"},
              "data": {"b": "c"}}
    PLURALS["ConfigMap"] = "configmaps"
    for obj in (keep, shared):
        store_template(parent, obj)
    children = {env["ns1"]: child1, env["ns2"]: child2}
    for child in children.values():
        kubectl(child, "create", "configmap", "keepme", "-n", "default", "--from-literal=a=1")
    kubectl(parent, "apply", "-f", "-", input=subscription("first", [feed(keep), feed(shared)]))
    wait_for(lambda: all((d.get("status") or {}).get("phase") == "Success" for d in descriptions(
        parent, "first").values()) and len(descriptions(parent, "first")) == 2, timeout=60, what="first deployed")
    kubectl(parent, "apply", "-f", "-", input=subscription("second", [feed(shared)]))
    wait_for(lambda: len(descriptions(parent, "second")) == 2 and all("two subscriptions" in str(
        (d.get("status") or {}).get("reason")) for d in descriptions(parent, "second").values()),
        timeout=60, what="second refused")
    time.sleep(5)  # resyncs (every 2 s) re-apply the adopted object: that is no drift

    def events(ns: str, reason: str) -> list[str]:
        items = json.loads(kubectl(parent, "get", "events", "-n", ns, f"--field-selector=reason={reason}",
                                   "-o", "json").stdout)["items"]
        return [e["message"] for e in items if e["involvedObject"]["name"].startswith("first-")]

    for ns, child in children.items():
        cm = json.loads(kubectl(child, "get", "configmap", "keepme", "-n", "default", "-o", "json").stdout)
        assert cm["data"] == {"a": "from-parent"}
        assert [m for m in events(ns, "Adopted") if "ConfigMap default/keepme" in m] != [], ns
        assert len(events(ns, "Adopted")) == 1, events(ns, "Adopted")
        assert events(ns, "DriftCorrected") == [], ns
    watches = {ns: Watch(child, "shared") for ns, child in children.items()}
    uids = {ns: kubectl(c, "get", "cm", "shared", "-n", "default", "-o", "jsonpath={.metadata.uid}").stdout
            for ns, c in children.items()}
    started = time.monotonic()
    kubectl(parent, "delete", "subs", "first")
    wait_for(lambda: all((d.get("status") or {}).get("phase") == "Success" for d in descriptions(
        parent, "second").values()), timeout=60, what="second deployed once first is gone")
    took = time.monotonic() - started
    wait_for(lambda: descriptions(parent, "first") == {}, timeout=60, what="first cleaned up")
    gaps = {ns: w.gap() for ns, w in watches.items()}
    print(f"second Success {took:.1f}s after deleting first; shared ConfigMap missing for {gaps}")
    for ns, child in children.items():
        cm = json.loads(kubectl(child, "get", "configmap", "keepme", "-n", "default", "-o", "json").stdout)
        assert cm["data"] == {"a": "from-parent"}  # kept as it is; what the first Subscription overwrote stays
        assert "apps.clusternet.io/adopted-by-description" not in (cm["metadata"].get("annotations") or {})
        now = kubectl(child, "get", "cm", "shared", "-n", "default", "-o", "jsonpath={.metadata.uid}").stdout
        assert now == uids[ns] and gaps[ns] == 0.0, f"{ns}: shared re-created, missing for {gaps[ns]:.1f}s"
    kubectl(parent, "delete", "subs", "second")
    for child in children.values():
        wait_for(lambda c=child: kubectl(c, "get", "cm", "shared", "-n", "default", check=False).returncode != 0,
                 timeout=60, what="shared deleted with the second Subscription")
        assert kubectl(child, "get", "configmap", "keepme", "-n", "default").returncode == 0


def test_hub_killed_mid_rollout_converges_without_duplicates(env: dict[str, Any], parent: ControlPlane,
                                                             child1: ControlPlane, child2: ControlPlane) -> None:
    import time

    cms = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"rollout-{i}", "namespace": "default"},
            "data": {"i": str(i)}} for i in range(5)]
    PLURALS["ConfigMap"] = "configmaps"
    for obj in cms:
        store_template(parent, obj)
    hub: Proc = env["hub"]
    hub.kill()
    kubectl(parent, "apply", "-f", "-", input=subscription("rollout", [feed(o) for o in cms]))
    hub.start()
    time.sleep(1.5)  # part-way through
    hub.kill()
    hub.start()

    def converged() -> bool:
        d = descriptions(parent, "rollout")
        return {env["ns1"], env["ns2"]} <= set(d) and all(
            (d[ns].get("status") or {}).get("phase") == "Success" for ns in (env["ns1"], env["ns2"]))

    wait_for(converged, timeout=90, what="rollout converged after hub restarts")
    bases = json.loads(kubectl(parent, "get", "base", "-A", "-l", f"{known.LABEL_SUBS_NAME}=rollout",
                               "-o", "json").stdout)["items"]
    assert sorted(b["metadata"]["namespace"] for b in bases) == sorted([env["ns1"], env["ns2"]])
    assert len(descriptions(parent, "rollout")) == 2
    for child in (child1, child2):
        assert kubectl(child, "get", "configmap", "rollout-4", "-n", "default").returncode == 0
    kubectl(parent, "delete", "subs", "rollout")


def test_deleting_a_cluster_namespace_never_leaves_things_stuck(env: dict[str, Any], parent: ControlPlane) -> None:
    import uuid

    ns = "clusternet-doomed"
    kubectl(parent, "create", "namespace", ns)
    cid = str(uuid.uuid4())
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ManagedCluster",
        "metadata": {"name": "doomed", "namespace": ns, "labels": {LABEL: "yes", known.LABEL_CLUSTER_ID: cid}},
        "spec": {"clusterId": cid, "syncMode": "Pull"}}))
    wait_for(lambda: ns in descriptions(parent, "app-demo"), timeout=30, what="Description for the new cluster")
    kubectl(parent, "delete", "namespace", ns, "--wait=false")
    wait_for(lambda: kubectl(parent, "get", "namespace", ns, check=False).returncode != 0, timeout=60,
             what="dedicated namespace deleted (no finalizer left behind)")
    st = json.loads(kubectl(parent, "get", "subs", "app-demo", "-o", "json").stdout)["status"]
    wait_for(lambda: all(not b.startswith(ns + "/") for b in json.loads(kubectl(
        parent, "get", "subs", "app-demo", "-o", "json").stdout)["status"]["bindingClusters"]), timeout=30,
        what="binding dropped")
    assert st["desiredReleases"] >= 2


def test_relabel_removes_only_that_cluster(env: dict[str, Any], parent: ControlPlane, child1: ControlPlane,
                                           child2: ControlPlane) -> None:
    # something the child's own users created next to ours must survive the cleanup
    kubectl(child2, "create", "configmap", "users-own", "-n", NS)
    mc2 = env["mc2"]
    kubectl(parent, "label", "mcls", mc2["metadata"]["name"], "-n", mc2["metadata"]["namespace"], f"{LABEL}-")
    wait_for(lambda: kubectl(child2, "get", "deploy", "my-nginx", "-n", NS, check=False).returncode != 0,
             timeout=60, what="child2 cleaned up")
    assert kubectl(child1, "get", "deploy", "my-nginx", "-n", NS).returncode == 0
    assert env["ns2"] not in descriptions(parent, "app-demo")
    # the Namespace we created holds it: deleting the Namespace would delete it, so the Namespace is kept
    wait_for(lambda: kubectl(parent, "get", "events", "-n", env["ns2"], "--field-selector", "reason=NamespaceKept",
                             "-o", "name").stdout.strip() != "", timeout=30, what="NamespaceKept event")
    assert kubectl(child2, "get", "configmap", "users-own", "-n", NS).returncode == 0
    assert "Terminating" not in kubectl(child2, "get", "ns", NS).stdout


def test_deleting_the_subscription_removes_everything_it_created(env: dict[str, Any], parent: ControlPlane,
                                                                 child1: ControlPlane) -> None:
    kubectl(child1, "create", "configmap", "not-ours", "-n", "default")
    kubectl(parent, "delete", "subs", "app-demo", "--wait=false")
    wait_for(lambda: kubectl(child1, "get", "ns", NS, check=False).returncode != 0 or
             "Terminating" in kubectl(child1, "get", "ns", NS, check=False).stdout, timeout=60,
             what="child1 namespace removed")
    wait_for(lambda: kubectl(parent, "get", "subs", "app-demo", check=False).returncode != 0, timeout=30,
             what="subscription gone")
    assert kubectl(child1, "get", "configmap", "not-ours", "-n", "default").returncode == 0
    assert descriptions(parent, "app-demo") == {}


def test_no_tokens_in_logs(env: dict[str, Any]) -> None:
    logs = "".join(Path(p.log).read_text(errors="replace") for p in (env["hub"], env["pusher"], env["puller"]))
    assert "eyJ" not in logs
