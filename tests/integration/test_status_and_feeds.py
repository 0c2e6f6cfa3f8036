"""What a Subscription's status says before the children report, and feeds that name several templates.

Real parent and children (which have no nodes: a Deployment with replicas never becomes available there),
the real hub and agents (tests/integration/conftest.py). Statuses are checked in every version the parent
stores, from a `kubectl get -w` started before the Subscription exists, not after a wait.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import (
    KubectlWatch,
    descriptions,
    kubectl,
    plugin,
    run_plugin,
    store_template,
    wait_for,
)

pytestmark = pytest.mark.integration

LABEL = "status-test"
SUB_NS = "default"


class SubscriptionWatch(KubectlWatch):
    """Every version of one Subscription the parent stores, as `kubectl get -w -o json` prints them."""

    def __init__(self, parent: ControlPlane, name: str) -> None:
        super().__init__(parent, "subscriptions.apps.clusternet.io", "-n", SUB_NS)
        self.name = name

    def versions(self) -> list[dict[str, Any]]:
        """The Subscription's versions so far, oldest first, each once."""
        return [v for v in super().versions() if (v.get("metadata") or {}).get("name") == self.name]

    def collect(self, seconds: float, until: Any = None, timeout: float = 60) -> list[dict[str, Any]]:
        """The versions after `seconds`, or later once `until(versions)` holds (at most `timeout`)."""
        time.sleep(seconds)
        if until is not None:
            wait_for(lambda: until(self.versions()), timeout=timeout, interval=0.5, what="expected status")
        return self.versions()


def subscription(name: str, feeds: list[dict[str, str]]) -> str:
    return json.dumps({"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
                       "metadata": {"name": name, "namespace": SUB_NS},
                       "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}],
                                "feeds": feeds}})


def ready_condition(sub: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (sub.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def summary(sub: dict[str, Any]) -> str:
    """One line per version, for the test's output: bindings, releases, availability, Ready."""
    status = sub.get("status") or {}
    available = [[d.get("available", "-") for d in a.get("feedStatusDetails") or []]
                 for a in status.get("aggregatedStatuses") or []]
    ready = ready_condition(sub)
    return (f"rv {sub['metadata']['resourceVersion']}: bound {len(status.get('bindingClusters') or [])}, "
            f"completed {status.get('completedReleases')}, available {available}, "
            f"Ready {ready.get('status')} {ready.get('reason')}: {ready.get('message')}")


def sub_events(parent: ControlPlane, name: str, reason: str) -> list[dict[str, Any]]:
    out = kubectl(parent, "get", "events", "-n", SUB_NS, "-o", "json", "--field-selector",
                  f"involvedObject.kind=Subscription,involvedObject.name={name},reason={reason}").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


@pytest.fixture(scope="module")
def env(hub_and_agents: dict[str, Any], parent: ControlPlane) -> dict[str, Any]:
    for mc in (hub_and_agents["mc1"], hub_and_agents["mc2"]):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                f"{LABEL}=yes", "--overwrite")
    return hub_and_agents


@pytest.fixture
def watch(parent: ControlPlane) -> Any:
    watches: list[SubscriptionWatch] = []

    def start(name: str) -> SubscriptionWatch:
        watches.append(SubscriptionWatch(parent, name))
        return watches[-1]

    yield start
    for w in watches:
        w.stop()


# --- issue 10, item 3: nothing is available before the child reported it ----------------------------------


def test_a_deployment_that_cannot_become_available_is_never_reported_available(
        env: dict[str, Any], parent: ControlPlane, watch: Any) -> None:
    suffix = uuid.uuid4().hex[:6]
    ns, name, sub = f"never-{suffix}", "never-ready", f"never-ready-{suffix}"
    store_template(parent, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    store_template(parent, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}}})
    w = watch(sub)
    kubectl(parent, "apply", "-f", "-", input=subscription(sub, [
        {"apiVersion": "v1", "kind": "Namespace", "name": ns},
        {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": name}]))
    def both_reported(versions: list[dict[str, Any]]) -> bool:
        return bool(versions) and ready_condition(versions[-1]).get("message", "").count(
            f"Deployment {ns}/{name} 0/2") == 2

    versions = w.collect(15, until=both_reported)
    print(f"{len(versions)} versions of {sub}:", *map(summary, versions), sep="\n  ")

    with_deploy = []
    for v in versions:
        status = v.get("status") or {}
        assert (status.get("completedReleases") or 0) == 0, status
        for agg in status.get("aggregatedStatuses") or []:
            if agg["kind"] == "Deployment":
                with_deploy.append(agg)
                assert agg["feedStatusSummary"].get("available") is not True, status
                assert all(d.get("available") is not True for d in agg["feedStatusDetails"]), status
        ready = ready_condition(v)
        if not ready:
            continue
        assert ready["status"] == "False", ready
        # A status write from a stale view (a Description event handled while the first reconcile writes the
        # bindings: an older race, reported separately) says "not bound yet": wrong, but never "available".
        assert ready["reason"] in ("ReleasesNotReady", "NoBindingClusters"), ready
        if ready["reason"] == "ReleasesNotReady":
            assert "waiting for" in ready["message"], ready
    # not vacuous: both clusters were bound and reported on, first as pending, then as not ready
    assert with_deploy and len(with_deploy[-1]["feedStatusDetails"]) == 2, versions
    messages = [c["message"] for v in versions if (c := ready_condition(v)).get("reason") == "ReleasesNotReady"]
    assert "pending" in messages[0], messages
    last_message = ready_condition(versions[-1])["message"]
    assert last_message.startswith("0/2 clusters done; waiting for"), last_message
    assert last_message.count(f"Deployment {ns}/{name} 0/2") == 2, last_message
    # kubectl clusternet describe shows the hub's verdict: not available in either cluster
    text = plugin(parent, "describe", "deploy", name, "-n", ns)
    rows = [line.split() for line in text.split("Clusters:\n")[1].splitlines()[1:]]
    assert len(rows) == 2 and all(r[0] == f"{SUB_NS}/{sub}" and r[3] == "false" for r in rows), text


# --- issue 10, item 4: a feed without a namespace that names several templates ------------------------------


def apply_configmaps(parent: ControlPlane, tmp: Path, *where: tuple[str, str]) -> None:
    """Store ConfigMap templates (namespace, name) the way users do: `kubectl clusternet apply -f`."""
    path = tmp / f"configmaps-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
         "data": {"from": f"{ns}/{name}"}} for ns, name in where]))
    plugin(parent, "apply", "-f", str(path))


def child_configmap(child: ControlPlane, name: str) -> dict[str, Any] | None:
    out = kubectl(child, "get", "configmap", name, "-n", "default", "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_an_ambiguous_feed_is_refused_and_nothing_is_deployed(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, watch: Any,
        tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    name, other, sub = f"twin-{suffix}", f"other-{suffix}", f"twin-{suffix}"
    apply_configmaps(parent, tmp_path, ("default", name), (other, name))
    w = watch(sub)
    kubectl(parent, "apply", "-f", "-", input=subscription(sub, [{"apiVersion": "v1", "kind": "ConfigMap",
                                                                  "name": name}]))
    versions = w.collect(6)  # three resyncs of the hub and of the pulling agent

    candidates = f"ConfigMap default/{name}, ConfigMap {other}/{name}"
    assert [v for v in versions if ready_condition(v)], versions
    for v in versions:  # refused from its first status on, and never scheduled
        ready = ready_condition(v)
        if ready:
            assert (ready["status"], ready["reason"]) == ("False", "AmbiguousFeed"), ready
            assert candidates in ready["message"] and "set the feed's namespace" in ready["message"], ready
        assert not (v.get("status") or {}).get("bindingClusters"), v
    events = sub_events(parent, sub, "AmbiguousFeed")
    assert len(events) == 1, events  # once, not at every resync
    assert events[0]["type"] == "Warning" and candidates in events[0]["message"], events
    assert "set the feed's namespace" in events[0]["message"]
    assert descriptions(parent, sub) == {}
    assert kubectl(parent, "get", "bases", "-A", "-l", f"apps.clusternet.io/subs.name={sub}", "-o",
                   "name").stdout.strip() == ""
    assert child_configmap(child1, name) is None and child_configmap(child2, name) is None
    # kubectl clusternet render says the same instead of picking one
    mc = env["mc1"]["metadata"]
    rendered = render(parent, sub, f"{mc['namespace']}/{mc['name']}")
    assert rendered.returncode == 1 and candidates in rendered.stderr, rendered.stderr
    assert "kind: ConfigMap" not in rendered.stdout


def render(parent: ControlPlane, sub: str, cluster: str) -> subprocess.CompletedProcess[str]:
    """`kubectl clusternet render`, whatever its exit code."""
    return run_plugin(parent, "render", sub, "-n", SUB_NS, "--cluster", cluster)


def test_a_feed_without_namespace_matching_one_template_deploys_it(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, watch: Any,
        tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    name, sub = f"solo-{suffix}", f"solo-{suffix}"
    apply_configmaps(parent, tmp_path, ("default", name))
    w = watch(sub)
    kubectl(parent, "apply", "-f", "-", input=subscription(sub, [{"apiVersion": "v1", "kind": "ConfigMap",
                                                                  "name": name}]))
    for child in (child1, child2):
        cm = wait_for(lambda c=child: child_configmap(c, name), timeout=30, what=f"{name} in {child.name}")
        assert cm["data"] == {"from": f"default/{name}"}

    def done() -> dict[str, Any] | None:
        return next((v for v in reversed(w.versions()) if (v.get("status") or {}).get("completedReleases") == 2),
                    None)

    final = wait_for(done, timeout=30, what="completedReleases 2")
    assert ready_condition(final)["status"] == "True", final
    [agg] = final["status"]["aggregatedStatuses"]
    assert "namespace" not in agg and [d["available"] for d in agg["feedStatusDetails"]] == [True, True]
    assert all(ready_condition(v).get("reason") != "AmbiguousFeed" for v in w.versions())


def test_a_deployed_subscription_that_becomes_ambiguous_keeps_what_it_deployed(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    name, other, sub = f"grow-{suffix}", f"later-{suffix}", f"grow-{suffix}"
    apply_configmaps(parent, tmp_path, ("default", name))
    feed = {"apiVersion": "v1", "kind": "ConfigMap", "name": name}
    kubectl(parent, "apply", "-f", "-", input=subscription(sub, [feed]))
    uids = {}
    for child in (child1, child2):
        cm = wait_for(lambda c=child: child_configmap(c, name), timeout=30, what=f"{name} in {child.name}")
        uids[child.name] = cm["metadata"]["uid"]
    before = {ns: d["metadata"]["generation"] for ns, d in descriptions(parent, sub).items()}
    assert len(before) == 2

    apply_configmaps(parent, tmp_path, (other, name))  # now the feed names two templates

    def refused() -> dict[str, Any]:
        s = json.loads(kubectl(parent, "get", "subs", sub, "-n", SUB_NS, "-o", "json").stdout)
        return s if ready_condition(s).get("reason") == "AmbiguousFeed" else {}

    refusal = ready_condition(wait_for(refused, timeout=20, what="AmbiguousFeed"))
    assert f"ConfigMap default/{name}, ConfigMap {other}/{name}" in refusal["message"]
    time.sleep(6)  # three resyncs: the hub's pushes and the pulling agent's would redeploy or prune by now
    assert len(sub_events(parent, sub, "AmbiguousFeed")) == 1
    assert {ns: d["metadata"]["generation"] for ns, d in descriptions(parent, sub).items()} == before
    for child in (child1, child2):
        cm = child_configmap(child, name)
        assert cm is not None and cm["metadata"]["uid"] == uids[child.name], cm
    assert ready_condition(refused())["reason"] == "AmbiguousFeed"  # resyncs and reports did not overwrite it

    # naming the namespace ends the refusal; the same object stays deployed
    kubectl(parent, "apply", "-f", "-", input=subscription(sub, [{**feed, "namespace": "default"}]))

    def ready_again() -> dict[str, Any]:
        s = json.loads(kubectl(parent, "get", "subs", sub, "-n", SUB_NS, "-o", "json").stdout)
        return s if ready_condition(s).get("status") == "True" else {}

    wait_for(ready_again, timeout=30, what="Ready again")
    for child in (child1, child2):
        cm = child_configmap(child, name)
        assert cm is not None and cm["metadata"]["uid"] == uids[child.name], cm
