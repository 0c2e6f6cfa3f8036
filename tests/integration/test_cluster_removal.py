"""Removing and re-adding a cluster (README, "Remove or re-add a cluster"): deleting its namespace or its
ManagedCluster on the parent marks its request removed, the agent stops without a hot loop and says why, the
child's workloads stay (also when the namespace's Descriptions and HelmReleases are deleted before the cluster's
credentials: objects and Helm releases, in Dual and Pull mode), and deleting the request re-adds the cluster into
the same namespace, re-adopting its objects (same UIDs)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from clusternet_agent import stillwanted
from clusternet_api import applier, known
from clusternet_testing.charts import ChartRepo, build_chart
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import (
    api_request,
    feed,
    kubectl,
    mc_for,
    parent_token,
    registered,
    run_plugin,
    store_template,
    wait_for,
)

pytestmark = pytest.mark.integration
LABEL = "removal-test"
OLD_GRACE = 10.0  # seconds a Pull agent gave a missing Base before 2026-12-06
PROBE = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "removal-probe", "namespace": "default"},
         "data": {"k": "v"}}
CHART = "removal-chart"  # the HelmChart, so also the release name; the chart makes ConfigMap <release>-cm-0
CHART_NAMESPACE = "removal-helm"


def cluster_id(cp: ControlPlane) -> str:
    return kubectl(cp, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout


def crr(parent: ControlPlane, cid: str) -> dict[str, Any]:
    out = kubectl(parent, "get", "clsrr", f"clusternet-{cid}", "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def removed_status(parent: ControlPlane, cid: str) -> dict[str, Any]:
    """The request's status once it says the cluster was removed; empty (falsy) until then."""
    status: dict[str, Any] = crr(parent, cid).get("status") or {}
    return status if status.get("result") == "Denied" else {}


def probe_uid(child: ControlPlane) -> str:
    out = kubectl(child, "get", "cm", "removal-probe", "-n", "default", "-o", "jsonpath={.metadata.uid}", check=False)
    return out.stdout if out.returncode == 0 else ""


def release_uids(child: ControlPlane) -> str:
    """The UIDs of the chart's ConfigMap and of Helm's release Secrets, once the release is deployed; empty until
    then. A release uninstalled (or installed again) changes them."""
    cm = kubectl(child, "get", "cm", f"{CHART}-cm-0", "-n", CHART_NAMESPACE, "-o", "jsonpath={.metadata.uid}",
                 check=False)
    secrets = kubectl(child, "get", "secret", "-n", CHART_NAMESPACE, "-l", f"owner=helm,name={CHART},status=deployed",
                      "-o", "jsonpath={.items[*].metadata.uid}", check=False)
    return f"{cm.stdout} {secrets.stdout}" if cm.returncode == 0 and cm.stdout and secrets.stdout else ""


@pytest.fixture(scope="module", autouse=True)
def both_registered_afterwards(hub_and_agents: dict[str, Any], parent: ControlPlane, child1: ControlPlane,
                               child2: ControlPlane) -> Iterator[None]:
    """Whatever these tests leave (one that fails half-way, say), the next module finds both clusters approved:
    the control planes are shared, and a request left removed made every later module's set-up fail."""
    yield
    for agent in (hub_and_agents["pusher"], hub_and_agents["puller"]):
        if not agent.running():
            agent.start()
    for child in (child1, child2):
        cid = cluster_id(child)
        if (crr(parent, cid).get("status") or {}).get("result") != "Approved" or not registered(parent, child):
            kubectl(parent, "delete", "clsrr", f"clusternet-{cid}", check=False)
            wait_for(partial(registered, parent, child), timeout=180, what="the cluster registered again")


@pytest.fixture(scope="module")
def deployed(hub_and_agents: dict[str, Any], parent: ControlPlane, child2: ControlPlane,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """child2 (Pull) runs a ConfigMap and a Helm release of a Subscription that binds it alone."""
    mc = hub_and_agents["mc2"]
    kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"], f"{LABEL}=yes",
            "--overwrite")
    store_template(parent, PROBE)
    root = tmp_path_factory.mktemp("removal-charts")
    with ChartRepo(root / "repo") as repo:
        repo.add(build_chart(root, "demo", "0.1.0"))
        chart = {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart",
                 "metadata": {"name": CHART, "namespace": "default"},
                 "spec": {"repo": repo.url, "chart": "demo", "version": "0.1.0", "targetNamespace": CHART_NAMESPACE}}
        kubectl(parent, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [chart, {
            "apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
            "metadata": {"name": "removal", "namespace": "default"},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}],
                     "feeds": [feed(PROBE), feed(chart)]}}]}))
        uid = wait_for(lambda: probe_uid(child2), timeout=60, what="the probe ConfigMap in child2")
        wait_for(lambda: release_uids(child2), timeout=120, what="the chart's release in child2")
        yield {**hub_and_agents, "uid": uid}
        kubectl(parent, "delete", "sub", "removal", "-n", "default", "--wait=false", check=False)
        kubectl(parent, "delete", "chart", CHART, "-n", "default", "--wait=false", check=False)


def readd(parent: ControlPlane, child: ControlPlane, cid: str, ns: str, uid: str) -> None:
    """Delete the request: the agent registers again into the same namespace and re-adopts the probe."""
    kubectl(parent, "delete", "clsrr", f"clusternet-{cid}")
    # approved again: a ManagedCluster that stayed (a revoked cluster's) says nothing of the new request
    wait_for(lambda: (crr(parent, cid).get("status") or {}).get("result") == "Approved" and registered(parent, child),
             timeout=120, what="the cluster registered again")
    mc = mc_for(parent, child)
    assert mc["metadata"]["namespace"] == ns
    assert kubectl(parent, "get", "clusterrole,clusterrolebinding", f"clusternet-{cid}", "-o", "name").stdout
    kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", ns, f"{LABEL}=yes", "--overwrite")
    wait_for(lambda: kubectl(parent, "get", "desc", "-n", ns, "-l", f"{known.LABEL_SUBS_NAME}=removal",
                             "-o", "name").stdout or None, timeout=60, what="its Description back")
    time.sleep(5)  # a couple of the agent's resyncs: the probe would be re-created by now if it were
    assert probe_uid(child) == uid


def test_deny_on_an_approved_cluster_is_refused(parent: ControlPlane, child1: ControlPlane,
                                                hub_and_agents: dict[str, Any]) -> None:
    cid = cluster_id(child1)
    done = run_plugin(parent, "deny", cid)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "already approved" in lines[0]
    assert known.ANNOTATION_APPROVAL not in (crr(parent, cid)["metadata"].get("annotations") or {})


def test_deleting_the_namespace_removes_the_cluster_without_a_hot_loop(
        parent: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    cid, ns, agent = cluster_id(child2), deployed["ns2"], deployed["puller"]
    kubectl(parent, "delete", "ns", ns, "--wait=false")
    status: dict[str, Any] = wait_for(lambda: removed_status(parent, cid), timeout=60,
                                      what="the request marked removed")
    assert f"dedicated namespace {ns} was deleted" in status["errorMessage"]
    before = len(agent.output)
    time.sleep(15)
    recent = agent.output[before:]
    assert recent.count("registering again") <= 3, recent[-3000:]
    assert "cluster removed from the parent" in agent.output
    assert agent.running() and probe_uid(child2) == deployed["uid"]  # its workloads stay
    wait_for(lambda: kubectl(parent, "get", "ns", ns, check=False).returncode != 0, timeout=120,
             what="the namespace gone")
    readd(parent, child2, cid, ns, deployed["uid"])


def test_deleting_the_managed_cluster_of_a_stopped_agent_removes_it_and_a_restart_says_so(
        parent: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    cid, ns, agent = cluster_id(child2), deployed["ns2"], deployed["puller"]
    agent.stop()
    mc = mc_for(parent, child2)
    kubectl(parent, "delete", "mcls", mc["metadata"]["name"], "-n", ns)
    status: dict[str, Any] = wait_for(lambda: removed_status(parent, cid), timeout=60,
                                      what="the request marked removed")
    assert f"ManagedCluster {ns}/{mc['metadata']['name']} was deleted" in status["errorMessage"]
    assert kubectl(parent, "get", "sa", "clusternet-agent", "-n", ns, check=False).returncode != 0  # revoked
    wait_for(lambda: kubectl(parent, "get", "clusterrole,clusterrolebinding", f"clusternet-{cid}",
                             "--ignore-not-found", "-o", "name").stdout.strip() == "", timeout=30,
             what="its ClusterRole and ClusterRoleBinding deleted")
    before = len(agent.output)
    agent.start()
    wait_for(lambda: "cluster removed from the parent" in agent.output[before:], timeout=60,
             what="the restarted agent saying it was removed")
    assert "does not exist on the parent" not in agent.output[before:]
    assert probe_uid(child2) == deployed["uid"]
    readd(parent, child2, cid, ns, deployed["uid"])


def test_deleting_the_managed_cluster_of_a_running_agent_keeps_its_workloads(
        parent: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    """The delete review (F3): the running Pull agent judged removal from its last heartbeat's copy of the
    ManagedCluster, and the garbage-collected Descriptions and HelmReleases made it clean up and uninstall."""
    cid, ns = cluster_id(child2), deployed["ns2"]
    release = wait_for(lambda: release_uids(child2), timeout=60, what="the chart's release in child2")
    mc = mc_for(parent, child2)
    kubectl(parent, "delete", "mcls", mc["metadata"]["name"], "-n", ns)
    wait_for(lambda: removed_status(parent, cid), timeout=60, what="the request marked removed")
    wait_for(partial(no_descriptions, parent, ns), timeout=60, what="its Descriptions and HelmReleases released")
    time.sleep(5)  # a couple of the agent's resyncs
    assert probe_uid(child2) == deployed["uid"] and release_uids(child2) == release
    readd(parent, child2, cid, ns, deployed["uid"])


def test_an_agent_that_drops_its_public_key_loses_its_credentials_and_keeps_its_workloads(
        parent: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    """Review M2: an agent may patch its own request. Dropping its public key got the request Denied at the next
    token refresh, yet left its ServiceAccount and RBAC, so the Denied cluster could go on minting its own tokens.
    Now the refresh revokes it as a removal does; its workloads stay and deleting the request re-adds it."""
    cid, ns = cluster_id(child2), deployed["ns2"]
    token, name = parent_token(child2), f"clusternet-{cid}"
    mcls_path = f"/apis/{known.CLUSTERS_API_VERSION}/namespaces/{ns}/managedclusters"
    assert api_request(parent, "GET", mcls_path, None, token=token)[0] == 200
    # without the token's issue time the token is due at once; a spec change wakes the hub's handler
    crr_path = f"/apis/{known.CLUSTERS_API_VERSION}/clusterregistrationrequests/{name}"
    code, answer = api_request(parent, "PATCH", crr_path,
                               {"metadata": {"annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: None,
                                                             known.ANNOTATION_TOKEN_ISSUED_AT: None}},
                                "spec": {"clusterName": "no-key"}}, token=token)
    assert code == 200, (code, answer)
    # the hub's own record of the last issue holds a refresh back for tokens.REISSUE_FLOOR (60 s) after it
    status: dict[str, Any] = wait_for(lambda: removed_status(parent, cid), timeout=130, what="the request denied")
    assert "removed or broke the public key" in status["errorMessage"]
    assert known.ANNOTATION_AGENT_PUBLIC_KEY in status["errorMessage"]
    assert kubectl(parent, "get", "sa", "clusternet-agent", "-n", ns, check=False).returncode != 0
    assert kubectl(parent, "get", "clusterrole,clusterrolebinding", f"clusternet-{cid}", "--ignore-not-found",
                   "-o", "name").stdout.strip() == ""
    # its tokens are dead, once kube-apiserver's cache of authenticated tokens (10 s) lets go of it
    wait_for(lambda: api_request(parent, "GET", mcls_path, None, token=token)[0] == 401, timeout=30,
             what="the agent's token refused")
    assert kubectl(parent, "get", "mcls", "-n", ns, "-o", "name").stdout.strip()  # the cluster itself stays
    time.sleep(5)  # a couple of the agent's resyncs
    assert probe_uid(child2) == deployed["uid"]
    readd(parent, child2, cid, ns, deployed["uid"])


def test_a_base_deleted_by_hand_in_a_pull_cluster_comes_back_and_keeps_its_workloads(
        parent: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    """The Pull agent read the Base to tell a Description deleted by the garbage collector (its Base deleted by hand)
    from an unbinding: when it read it before the hub had written it back, it cleaned up (the ConfigMap deleted,
    the release uninstalled) and the hub deployed everything anew. The hub is paused here so that the agent
    finds the Base missing; it waits for the Base to come back instead (however long: the hub says on the
    ManagedCluster that it marks its unbindings, stillwanted)."""
    ns, agent, hub = deployed["ns2"], deployed["puller"], deployed["hub"]
    release = wait_for(lambda: release_uids(child2), timeout=60, what="the chart's release in child2")
    selector = f"{known.LABEL_SUBS_NAME}=removal"
    bases = json.loads(kubectl(parent, "get", "base", "-n", ns, "-l", selector, "-o", "json").stdout)["items"]
    assert len(bases) == 1
    name, uid = bases[0]["metadata"]["name"], bases[0]["metadata"]["uid"]
    before = len(agent.output)
    assert hub.proc is not None
    os.killpg(hub.proc.pid, signal.SIGSTOP)  # the hub cannot write the Base back before the agent looks
    try:
        kubectl(parent, "delete", "base", name, "-n", ns, "--wait=false")
        # the garbage collector marks its Descriptions deleting (on fresh control planes it may take a while to
        # know the kinds): what the agent must find with the Base gone
        wait_for(lambda: all(kubectl(parent, "get", "desc", "-n", ns, "-l", selector, "-o",
                                     "jsonpath={.items[*].metadata.deletionTimestamp}").stdout.split()[i:i + 1]
                             for i in range(2)), timeout=120, what="the Descriptions deleting")
        time.sleep(OLD_GRACE + 5)  # a hub busy past the 10 s the agent used to give it (review s31, F5)
    finally:
        os.killpg(hub.proc.pid, signal.SIGCONT)

    def base_back() -> bool:
        out = kubectl(parent, "get", "base", name, "-n", ns, "-o", "jsonpath={.metadata.uid}", check=False)
        return out.returncode == 0 and out.stdout not in ("", uid)

    wait_for(base_back, timeout=30, what="the hub writing the Base back")
    wait_for(lambda: "still wants it: released without touching the child" in agent.output[before:],
             timeout=stillwanted.BASE_GRACE_SECONDS + 30, what="the agent letting the Description go")
    wait_for(lambda: len(kubectl(parent, "get", "desc,hr", "-n", ns, "-l", selector, "-o", "name").stdout.split())
             == 3, timeout=60, what="the Descriptions and the HelmRelease back")
    time.sleep(5)  # a couple of the agent's resyncs
    assert probe_uid(child2) == deployed["uid"] and release_uids(child2) == release
    said = agent.output[before:]
    assert "did not come back" not in said and "cleaned up Description" not in said
    assert "waiting up to" not in said  # never on a grace: its hub marks (the status says so after QUIET_SECONDS)

    # the sixth audit: deleted in the foreground, the Base stays (deleting) until the garbage collector has deleted
    # its Descriptions, which the agent took for an unbinding: the child's objects deleted, the release uninstalled
    uid = kubectl(parent, "get", "base", name, "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout
    before = len(agent.output)
    kubectl(parent, "delete", "base", name, "-n", ns, "--cascade=foreground", "--wait=false")
    wait_for(base_back, timeout=60, what="the Base gone and written back")
    wait_for(lambda: len(kubectl(parent, "get", "desc,hr", "-n", ns, "-l", selector, "-o", "name").stdout.split())
             == 3, timeout=60, what="the Descriptions and the HelmRelease back")
    time.sleep(5)
    assert probe_uid(child2) == deployed["uid"] and release_uids(child2) == release
    assert "cleaned up Description" not in agent.output[before:] and "uninstalled" not in agent.output[before:]


def test_an_unbinding_in_a_pull_cluster_is_cleaned_up_at_once_on_the_hubs_mark(
        parent: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    """The hub marks the deleting Description and HelmRelease its Subscription no longer wants, and the Pull agent
    cleans up on reading the mark, well before a missing Base's grace (stillwanted.BASE_GRACE_SECONDS) runs out.
    The cluster is bound again afterwards, as the module's later tests expect."""
    ns, agent, mc = deployed["ns2"], deployed["puller"], mc_for(parent, child2)
    wait_for(lambda: probe_uid(child2) and release_uids(child2), timeout=120, what="the probe and release in child2")
    before = len(agent.output)
    kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", ns, f"{LABEL}-")
    wait_for(lambda: not probe_uid(child2) and not release_uids(child2), timeout=stillwanted.BASE_GRACE_SECONDS - 30,
             what="the probe deleted and the release uninstalled")
    said = agent.output[before:]
    marked = [line for line in said.splitlines() if "the hub says its Subscription no longer wants it" in line]
    assert {kind for kind in ("Description", "HelmRelease") if any(f" {kind} " in line for line in marked)} == {
        "Description", "HelmRelease"}, said
    assert "did not come back" not in said
    kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", ns, f"{LABEL}=yes", "--overwrite")
    deployed["uid"] = wait_for(lambda: probe_uid(child2), timeout=60, what="the probe deployed again")
    wait_for(lambda: release_uids(child2), timeout=120, what="the release installed again")


def test_a_base_deleted_by_hand_under_a_refused_subscription_keeps_its_workloads(
        parent: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    """A Subscription the hub refuses (an invalid selector) gets no Base written back and no mark: the hub cannot
    tell what it wants. Its Pull agent used to take the missing Base for an unbinding after 120 s and delete the
    child's objects (the first-rule review's F3(b)); in Push mode the hub kept them. Now the agent of a hub that
    says it marks its unbindings waits for the Base or the mark however long it takes, and says why in the
    statuses; fixed, the Subscription's Base comes back and the objects keep their UIDs. Then: the hub writes its
    promise back on a ManagedCluster whose annotation someone removed."""
    ns, agent, mc = deployed["ns2"], deployed["puller"], mc_for(parent, child2)
    assert mc["metadata"]["annotations"][known.ANNOTATION_HUB_MARKS_UNBINDINGS] == "true"  # since its approval
    release = wait_for(lambda: release_uids(child2), timeout=120, what="the chart's release in child2")
    probe = wait_for(lambda: probe_uid(child2), timeout=60, what="the probe in child2")
    selector = f"{known.LABEL_SUBS_NAME}=removal"
    before = len(agent.output)
    subscribers = [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}]
    refused = [{"clusterAffinity": {"matchExpressions": [{"key": LABEL, "operator": "In", "values": []}]}}]
    kubectl(parent, "patch", "sub", "removal", "-n", "default", "--type=merge", "-p",
            json.dumps({"spec": {"subscribers": refused}}))
    try:
        wait_for(lambda: "needs at least one value" in kubectl(parent, "get", "sub", "removal", "-n", "default",
                                                                "-o", "json").stdout, timeout=30,
                 what="the hub refusing the Subscription")
        kubectl(parent, "delete", "base", "-n", ns, "-l", selector, "--wait=false")

        def statuses() -> list[str]:
            items = json.loads(kubectl(parent, "get", "desc,hr", "-n", ns, "-l", selector, "-o", "json").stdout)
            return [str(item.get("status") or {}) for item in items["items"] if item.get("kind") == "HelmRelease"
                    or (item.get("spec") or {}).get("deployer") == "Generic"]

        wait_for(lambda: (said := statuses()) and all(applier.AWAITING_HUB in s for s in said) and len(said) == 2,
                 timeout=stillwanted.QUIET_SECONDS + 30, what="the agent waiting for the hub, and saying so in both "
                 "statuses")
        time.sleep(5)  # a few more of the agent's resyncs (2 s), and of the hub's (2 s)
        assert probe_uid(child2) == probe and release_uids(child2) == release
        assert "did not come back" not in agent.output[before:] and "waiting up to" not in agent.output[before:]
    finally:
        kubectl(parent, "patch", "sub", "removal", "-n", "default", "--type=merge", "-p",
                json.dumps({"spec": {"subscribers": subscribers}}))
    wait_for(lambda: len(kubectl(parent, "get", "desc,hr", "-n", ns, "-l", selector, "-o", "json").stdout.split(
        '"deletionTimestamp"')) == 1 and len(kubectl(parent, "get", "desc,hr", "-n", ns, "-l", selector, "-o",
                                                     "name").stdout.split()) == 3,
             timeout=90, what="the Base back, the Descriptions and the HelmRelease written again")
    time.sleep(5)  # a couple of the agent's resyncs
    assert probe_uid(child2) == probe and release_uids(child2) == release
    said = agent.output[before:]
    assert "cleaned up Description" not in said and "uninstalled" not in said, said

    name, key = mc["metadata"]["name"], known.ANNOTATION_HUB_MARKS_UNBINDINGS
    kubectl(parent, "annotate", "mcls", name, "-n", ns, f"{key}-")
    wait_for(lambda: mc_for(parent, child2)["metadata"].get("annotations", {}).get(key) == "true", timeout=30,
             what="the hub saying again that it marks its unbindings")


HOLD = "clusternet-test/hold"
"""A finalizer of this test's: what it holds outlives the namespace's other content, the worst order the namespace
controller may delete things in."""


def hold(parent: ControlPlane, kind: str, name: str, ns: str, on: bool) -> None:
    got = kubectl(parent, "get", kind, name, "-n", ns, "-o", "json", check=False)
    if got.returncode != 0:
        return
    finalizers = [f for f in json.loads(got.stdout)["metadata"].get("finalizers") or [] if f != HOLD]
    kubectl(parent, "patch", kind, name, "-n", ns, "--type=merge", "-p",
            json.dumps({"metadata": {"finalizers": [*finalizers, HOLD] if on else finalizers}}))


def no_descriptions(parent: ControlPlane, ns: str) -> bool:
    return not kubectl(parent, "get", "desc,hr", "-n", ns, "-o", "name", check=False).stdout


def namespace_gone(parent: ControlPlane, ns: str) -> bool:
    return kubectl(parent, "get", "ns", ns, check=False).returncode != 0


def held(mc_name: str) -> list[tuple[str, str]]:
    """What keeps the cluster deploying while its namespace terminates: its ManagedCluster (the hub's and the agent's
    view of it), the agent's ServiceAccount (its token) and Role, and the hub's push credentials."""
    return [("mcls", mc_name), ("serviceaccount", "clusternet-agent"), ("role", "clusternet-managedcluster-role"),
            ("rolebinding", "clusternet-managedcluster-role"), ("secret", known.DEPLOYER_SECRET)]


def test_deleting_the_namespace_keeps_the_workloads_when_its_descriptions_go_before_the_cluster(
        parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, deployed: dict[str, Any]) -> None:
    """The namespace controller deletes in no fixed order. Here the Descriptions go while the ManagedCluster, the
    agent's token and Role and the push credentials still work, in Dual mode (the hub pushes to child1) and in Pull
    mode (child2's agent applies): neither the hub nor the agent may take that for an ordinary deletion."""
    children = {"1": child1, "2": child2}
    mc1 = mc_for(parent, child1)
    kubectl(parent, "label", "mcls", mc1["metadata"]["name"], "-n", deployed["ns1"], f"{LABEL}=yes", "--overwrite")
    uids = {"1": wait_for(lambda: probe_uid(child1), timeout=60, what="the probe ConfigMap pushed to child1"),
            "2": wait_for(lambda: probe_uid(child2), timeout=60, what="the probe ConfigMap in child2")}
    releases = {"1": wait_for(lambda: release_uids(child1), timeout=120, what="the release pushed to child1"),
                "2": wait_for(lambda: release_uids(child2), timeout=120, what="the release in child2")}
    holds = {i: held(mc_for(parent, children[i])["metadata"]["name"]) for i in children}
    for i, objects in holds.items():
        for kind, name in objects:
            hold(parent, kind, name, deployed[f"ns{i}"], on=True)
    try:
        for i in children:
            kubectl(parent, "delete", "ns", deployed[f"ns{i}"], "--wait=false")
        for i in children:  # released (the hub does so in every mode), not cleaned up
            wait_for(partial(no_descriptions, parent, deployed[f"ns{i}"]), timeout=60,
                     what=f"the Descriptions and HelmReleases of ns{i} gone")
        time.sleep(5)  # a couple of resyncs of the hub and the agents
        assert probe_uid(child1) == uids["1"] and probe_uid(child2) == uids["2"]  # their workloads stay
        assert release_uids(child1) == releases["1"] and release_uids(child2) == releases["2"]  # not uninstalled
        logs = deployed["hub"].output + deployed["puller"].output
        for i in children:  # either reason may come first (both the namespace and the ManagedCluster are going)
            ns = deployed[f"ns{i}"]
            assert f"cluster namespace {ns} is being deleted: the cluster is being removed" in logs or (
                f"ManagedCluster {ns}/" in logs and "is gone or being deleted: the cluster is being removed" in logs)
    finally:
        for i, objects in holds.items():
            for kind, name in objects:
                hold(parent, kind, name, deployed[f"ns{i}"], on=False)
    for i, child in children.items():
        wait_for(partial(namespace_gone, parent, deployed[f"ns{i}"]), timeout=120, what=f"ns{i} gone")
        readd(parent, child, cluster_id(child), deployed[f"ns{i}"], uids[i])
