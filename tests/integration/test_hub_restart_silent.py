"""A cluster the hub reaches directly: a hub that starts while its agent is dead deletes nothing in it until the
agent reports (review F9); a child that stops answering fails the hub's pushes fast, not one worker per request
for two minutes (audit s36, controllers, finding 7).

The agent of a cluster the hub reaches directly (SocketConnection off, so no tunnel goes down with the agent)
dies while the hub is stopped, and the user deletes the Subscription meanwhile. The ManagedCluster still says
Ready=True, as the agent left it, and the starting hub judges no cluster for a grace period. Before, the hub ran
the cleanup through the child's API server within seconds of starting, although nothing reported from the
cluster. It now waits for a report to arrive while it watches, says so in the Description's status, and cleans
up once the agent is back: the user's deletion is carried out then, as for any offline cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.charts import ChartRepo, build_chart
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import descriptions, feed, kubectl, mc_for, registered, store_template, wait_for
from clusternet_testing.processes import Proc, agent_proc, hub_proc, install_bootstrap

pytestmark = pytest.mark.integration

LABEL = "unheard-test"
# The agent's heartbeat period, long enough that the restarted hub's health grace (3 x 20 s) outlasts the
# garbage collector's deletion of the Description (16 s once): the wait seen is the one for a first report
HEARTBEAT = 20
CONFIG_MAP: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "unheard", "namespace": "default"}, "data": {"k": "v"}}
SUBSCRIPTION = json.dumps({
    "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
    "metadata": {"name": "unheard", "namespace": "default"},
    "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}], "feeds": [feed(CONFIG_MAP)]}})


def ready(mc: dict[str, Any]) -> str | None:
    return next((c["status"] for c in (mc.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"),
                None)


@pytest.fixture(scope="module")
def direct(parent: ControlPlane, child1: ControlPlane,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    """The hub and child1's agent in Push mode without a tunnel: the hub reaches its API server directly."""
    logdir = tmp_path_factory.mktemp("unheard")
    install_bootstrap(parent)
    kubectl(parent, "create", "namespace", known.RESERVED_NAMESPACE, check=False)
    hub = hub_proc(parent, logdir, "--resync-interval=2").start()
    agent = agent_proc(child1, parent, logdir, "child1", "--cluster-sync-mode=Push",
                       "--feature-gates=AppPusher=true,SocketConnection=false",
                       f"--cluster-status-update-frequency={HEARTBEAT}s").start()
    try:
        def direct_and_ready() -> bool:
            if not registered(parent, child1):
                return False
            mc = mc_for(parent, child1)
            return ready(mc) == "True" and mc["status"].get("useSocket") is False
        wait_for(direct_and_ready, timeout=90, what="child1 Ready without a tunnel")
        mc = mc_for(parent, child1)
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"], f"{LABEL}=yes",
                "--overwrite")
        yield {"hub": hub, "agent": agent}
    finally:
        agent.stop()
        hub.stop()
        mc = mc_for(parent, child1)
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"], f"{LABEL}-",
                check=False)


def config_map_uid(child: ControlPlane) -> str | None:
    got = kubectl(child, "get", "cm", "unheard", "-n", "default", "-o", "jsonpath={.metadata.uid}", check=False)
    return got.stdout or None if got.returncode == 0 else None


def test_a_restarted_hub_waits_for_a_report_before_cleaning_up_in_a_directly_reached_cluster(
        direct: dict[str, Proc], parent: ControlPlane, child1: ControlPlane) -> None:
    hub, agent = direct["hub"], direct["agent"]
    store_template(parent, CONFIG_MAP)
    kubectl(parent, "apply", "-f", "-", input=SUBSCRIPTION)
    ns = mc_for(parent, child1)["metadata"]["namespace"]
    wait_for(lambda: (descriptions(parent, "unheard").get(ns, {}).get("status") or {}).get("phase") == "Success",
             timeout=60, what="the ConfigMap pushed to child1")
    uid = config_map_uid(child1)
    assert uid
    hub.stop()
    agent.kill()  # dies while no hub runs: its ManagedCluster still says Ready=True
    assert ready(mc_for(parent, child1)) == "True"
    kubectl(parent, "delete", "subs", "unheard", "-n", "default", "--wait=false")  # held by the hub's finalizer
    mark = len(hub.output)
    hub.start()

    def waiting() -> str | None:
        desc = descriptions(parent, "unheard").get(ns)
        reason = ((desc or {}).get("status") or {}).get("reason") or ""
        return reason if desc and desc["metadata"].get("deletionTimestamp") and "pending" in reason else None

    said = wait_for(waiting, timeout=3 * HEARTBEAT - 10, what="the Description deleting, its cleanup pending")
    assert "first heartbeat since the hub started" in said, said
    assert ready(mc_for(parent, child1)) == "True"  # not judged yet: only the missing report holds it back
    assert config_map_uid(child1) == uid
    assert "cleaned up" not in hub.output[mark:]
    agent.start()  # back: the user's deletion is carried out now
    wait_for(lambda: config_map_uid(child1) is None, timeout=60, what="the ConfigMap cleaned up once child1 reports")
    wait_for(lambda: kubectl(parent, "get", "subs", "unheard", "-n", "default", check=False).returncode != 0,
             timeout=30, what="the Subscription gone")


def subscription(name: str, cm: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}],
                                "feeds": [feed(cm)]}})


def test_a_frozen_child_fails_the_hubs_pushes_fast_and_they_resume_after(
        direct: dict[str, Proc], parent: ControlPlane, child1: ControlPlane, chart_repo: str) -> None:
    """child1's kube-apiserver frozen (SIGSTOP: its connections stay open and nothing is answered), as behind a
    partition. A push used to wait 120 s per request; now a request on a connection kept alive gives up after 65 s
    of silence, a new connection after 10 s, and the pushes after it fail at once with the same words, until the
    child can be reached again. Nothing deployed is touched, and what was created meanwhile is deployed once it
    is back. So is a Helm release asked for as the child froze: its pre-flight gives up after 15 s, saying so,
    instead of holding a release worker for Helm's own timeouts."""
    before_cm = {**CONFIG_MAP, "metadata": {"name": "partition-before", "namespace": "default"}}
    during_cm = {**CONFIG_MAP, "metadata": {"name": "partition-during", "namespace": "default"}}
    ns = mc_for(parent, child1)["metadata"]["namespace"]

    def reason(sub: str) -> str:
        return str(((descriptions(parent, sub).get(ns) or {}).get("status") or {}).get("reason") or "")

    def phase(sub: str) -> str | None:
        return ((descriptions(parent, sub).get(ns) or {}).get("status") or {}).get("phase")

    store_template(parent, before_cm)
    store_template(parent, during_cm)
    kubectl(parent, "apply", "-f", "-", input=subscription("partition-before", before_cm))
    wait_for(lambda: phase("partition-before") == "Success", timeout=60, what="the first ConfigMap pushed")
    uid = kubectl(child1, "get", "cm", "partition-before", "-n", "default", "-o", "jsonpath={.metadata.uid}").stdout
    kubectl(parent, "apply", "-f", "-", input=json.dumps(helm_chart(chart_repo)))
    wait_for(lambda: chart_phase(parent) == "Found", timeout=60, what="the HelmChart found in its repository")
    try:
        with child1.apiserver_frozen():
            frozen = time.monotonic()
            kubectl(parent, "apply", "-f", "-", input=subscription("partition-during", during_cm))
            # asked for before the agent can tell the child is down (30 s, agent.STALLED_MIN_SECONDS): the
            # cluster is still Ready, so the release is bound and tried, and the pre-flight is what holds it
            kubectl(parent, "apply", "-f", "-", input=helm_subscription())
            told = wait_for(lambda: release_said(parent, ns), timeout=40, what="the release held, saying why")
            print(f"release held {time.monotonic() - frozen:.1f}s after the freeze: {told}")
            said = wait_for(lambda: reason("partition-during") if "cannot be reached" in reason("partition-during")
                            else None, timeout=100, what="the push failing while child1 is frozen")
            took = time.monotonic() - frozen
            print(f"pushes fail {took:.1f}s after child1 froze: {said}")
            assert "asked again by one request at a time" in said and took < 90, said
        wait_for(lambda: phase("partition-during") == "Success", timeout=90, what="pushed once child1 answers")
        wait_for(lambda: release_phase(parent, ns) == "deployed", timeout=120, what="released once child1 answers")
        assert kubectl(child1, "get", "cm", "partition-before", "-n", "default", "-o",
                       "jsonpath={.metadata.uid}").stdout == uid
        assert len(release_secrets(child1)) == 1  # installed once: no revision from an attempt while frozen
    finally:  # and cleaned up, Descriptions included: left deleting, the next module's hub would clean them up
        kubectl(parent, "delete", "subs", "partition-before", "partition-during", "partition-helm", "-n", "default",
                "--wait=false", check=False)
        wait_for(lambda: not any(descriptions(parent, s) for s in ("partition-before", "partition-during",
                                                                   "partition-helm")),
                 timeout=90, what="this test's Descriptions cleaned up")
        wait_for(lambda: release_secrets(child1) == [], timeout=60, what="the release uninstalled")
        kubectl(parent, "delete", "chart", "partition-helm", "-n", "default", check=False)


@pytest.fixture(scope="module")
def chart_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("partition-charts")
    with ChartRepo(root / "repo") as repo:
        repo.add(build_chart(root, "demo", "0.1.0"))
        yield repo.url


def helm_chart(repo: str) -> dict[str, Any]:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart",
            "metadata": {"name": "partition-helm", "namespace": "default"},
            "spec": {"repo": repo, "chart": "demo", "version": "0.1.0", "targetNamespace": "default"}}


def helm_subscription() -> str:
    return json.dumps({"apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
                       "metadata": {"name": "partition-helm", "namespace": "default"},
                       "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}],
                                "feeds": [{"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart",
                                           "namespace": "default", "name": "partition-helm"}]}})


def chart_phase(parent: ControlPlane) -> str | None:
    got = kubectl(parent, "get", "chart", "partition-helm", "-n", "default", "-o", "jsonpath={.status.phase}",
                  check=False)
    return got.stdout or None


def release_status(parent: ControlPlane, ns: str) -> dict[str, Any]:
    items = json.loads(kubectl(parent, "get", "hr", "-n", ns, "-l", f"{known.LABEL_SUBS_NAME}=partition-helm",
                               "-o", "json").stdout)["items"]
    return (items[0].get("status") or {}) if items else {}


def release_said(parent: ControlPlane, ns: str) -> str | None:
    said = str(release_status(parent, ns).get("description") or "")
    return said if "cannot be reached" in said else None


def release_phase(parent: ControlPlane, ns: str) -> str | None:
    return release_status(parent, ns).get("phase")


def release_secrets(child: ControlPlane) -> list[str]:
    """Helm's release Secrets of the HelmRelease (its release name is the HelmChart's)."""
    out = kubectl(child, "get", "secret", "-n", "default", "-l", "owner=helm,name=partition-helm", "-o", "name",
                  check=False)
    return sorted(out.stdout.split())
