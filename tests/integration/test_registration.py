"""Registration, credentials and honest health, end to end: real hub and agent processes, real clusters."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.sealing import generate_private_key, public_key_of
from clusternet_hub import tokens
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import api_request, kubectl, parent_token, wait_for
from clusternet_testing.processes import BOOTSTRAP_TOKEN, Proc, agent_proc, hub_proc, install_bootstrap

pytestmark = pytest.mark.integration


def mcls(parent: ControlPlane) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl(parent, "get", "mcls", "-A", "-o", "json").stdout)["items"]
    return {i["metadata"]["name"]: i for i in items}


def ready(mc: dict[str, Any] | None) -> str | None:
    if not mc:
        return None
    conds = (mc.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conds if c["type"] == "Ready"), None)


def cluster_id(cp: ControlPlane) -> str:
    return kubectl(cp, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def hub(parent: ControlPlane, logdir: Path) -> Iterator[Proc]:
    install_bootstrap(parent)
    # Earlier modules may have registered child1 already (registrations outlive modules), and labels then
    # count as a later change, which the hub applies only under its prefix policy (clusterlabels.py).
    proc = hub_proc(parent, logdir, "--cluster-label-prefixes=env,team").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agents(hub: Proc, parent: ControlPlane, child1: ControlPlane, child2: ControlPlane,
           logdir: Path) -> Iterator[dict[str, Proc]]:
    a1 = agent_proc(child1, parent, logdir, "child1", "--cluster-sync-mode=Dual",
                    "--feature-gates=AppPusher=true,SocketConnection=true", "--cluster-labels=env=dev,team=a").start()
    a2 = agent_proc(child2, parent, logdir, "child2", "--cluster-sync-mode=Pull").start()
    procs = {"child1": a1, "child2": a2}
    yield procs
    for p in procs.values():
        p.stop()


def test_two_agents_register_and_report(parent: ControlPlane, child1: ControlPlane, agents: dict[str, Proc]) -> None:
    def both_ready() -> dict[str, dict[str, Any]] | None:
        m = mcls(parent)
        ok = ready(m.get("child1")) == "True" and ready(m.get("child2")) == "True" and \
            (m["child1"]["metadata"].get("labels") or {}).get("env") == "dev" and \
            not m["child1"]["spec"].get("taints")  # a taint from an earlier silence goes on the next check
        return m if ok else None

    found = wait_for(both_ready, timeout=60, what="both clusters Ready, child1 with its --cluster-labels")
    c1, c2 = found["child1"], found["child2"]
    assert c1["spec"]["syncMode"] == "Dual" and c2["spec"]["syncMode"] == "Pull"
    assert c1["spec"]["clusterId"] == cluster_id(child1)
    assert c1["metadata"]["labels"]["env"] == "dev" and c1["metadata"]["labels"][known.LABEL_CLUSTER_ID]
    assert c1["status"]["k8sVersion"].startswith("v1.20")
    assert c1["status"]["appPusher"] is True and c2["status"]["appPusher"] is False
    assert c1["status"]["heartbeatFrequencySeconds"] == 2
    assert c1["metadata"]["namespace"] != c2["metadata"]["namespace"]
    assert not c1["spec"].get("taints")
    # what a person sees: the real kubectl table with our printer columns
    table = kubectl(parent, "get", "mcls", "-A").stdout.splitlines()
    assert table[0].split()[:7] == ["NAMESPACE", "NAME", "CLUSTER", "ID", "SYNC", "MODE", "KUBERNETES"]
    row1 = next(r for r in table if " child1 " in f" {r} ")
    assert "Dual" in row1 and "v1.20" in row1 and "true" in row1 and "True" in row1
    row2 = next(r for r in table if " child2 " in f" {r} ")
    assert "Pull" in row2
    # credentials stored in the child, with the parent CA pinned
    secret = json.loads(kubectl(child1, "get", "secret", "parent-cluster", "-n", "clusternet-system",
                                "-o", "json").stdout)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["apiserver-advertise-url"] == parent.url
    assert data["namespace"] == c1["metadata"]["namespace"]
    assert data["ca.crt"].strip() == parent.ca_pem.decode().strip()
    crr = json.loads(kubectl(parent, "get", "clsrr", f"clusternet-{cluster_id(child1)}", "-o", "json").stdout)
    assert crr["status"]["result"] == "Approved"
    assert crr["metadata"]["annotations"][known.ANNOTATION_TOKEN_SEALING] == "x25519-hkdf-fernet"
    # the sealed blob is not the token
    assert base64.b64decode(crr["status"]["token"]).decode() != data["token"]


def test_child_identity_is_least_privilege(parent: ControlPlane, child1: ControlPlane,
                                           agents: dict[str, Proc]) -> None:
    m = mcls(parent)
    own_ns, other_ns = m["child1"]["metadata"]["namespace"], m["child2"]["metadata"]["namespace"]
    secret = json.loads(kubectl(child1, "get", "secret", "parent-cluster", "-n", "clusternet-system",
                                "-o", "json").stdout)
    token = base64.b64decode(secret["data"]["token"]).decode()

    def as_child(*args: str) -> Any:
        return kubectl(parent, *args, check=False, token=token)

    assert as_child("get", "mcls", "-n", own_ns).returncode == 0
    assert as_child("get", "clsrr", f"clusternet-{cluster_id(child1)}").returncode == 0
    for forbidden in (("get", "mcls", "-n", other_ns), ("get", "secrets", "-n", "kube-system"),
                      ("get", "secrets", "-n", other_ns), ("get", "clsrr"), ("get", "namespaces"),
                      ("get", "clsrr", f"clusternet-{m['child2']['spec']['clusterId']}"),
                      ("create", "namespace", "evil")):
        result = as_child(*forbidden)
        assert result.returncode != 0 and "Forbidden" in result.stderr, (forbidden, result.stderr)
    assert as_child("auth", "can-i", "get", "secrets", "-n", own_ns).stdout.strip() == "no"
    # chart credentials the hub copies for Pull mode: read, in its own namespace only, never written
    pull = f"secrets/{known.CHART_PULL_SECRET}"
    assert as_child("auth", "can-i", "get", pull, "-n", own_ns).stdout.strip() == "yes"
    for verb, ns in (("get", other_ns), ("patch", own_ns), ("delete", own_ns)):
        assert as_child("auth", "can-i", verb, pull, "-n", ns).stdout.strip() == "no", (verb, ns)
    denied = as_child("get", "secret", known.CHART_PULL_SECRET, "-n", other_ns)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    # the bootstrap token itself can only create and get registration requests
    boot = kubectl(parent, "get", "secrets", "-n", own_ns, check=False, token=BOOTSTRAP_TOKEN)
    assert boot.returncode != 0 and "Forbidden" in boot.stderr


MC_PATH = "/apis/clusters.clusternet.io/v1beta1/namespaces/{ns}/managedclusters/{name}"
CRR_PATH = "/apis/clusters.clusternet.io/v1beta1/clusterregistrationrequests/{name}"


def test_child_may_not_relabel_its_managed_cluster(parent: ControlPlane, child1: ControlPlane,
                                                   agents: dict[str, Proc]) -> None:
    """Labels decide which Subscriptions bind a cluster: the child's identity writes only the status."""
    mc = mcls(parent)["child1"]
    ns, name = mc["metadata"]["namespace"], mc["metadata"]["name"]
    user = f"system:serviceaccount:{ns}:clusternet-agent"
    # a real request with the token the agent actually holds
    token = parent_token(child1)
    path = MC_PATH.format(ns=ns, name=name)
    code, answer = api_request(parent, "PATCH", path, {"metadata": {"labels": {"secret-team": "yes"}}}, token=token)
    assert code == 403 and answer["reason"] == "Forbidden", (code, answer)
    assert user in answer["message"]
    # the status is writable (heartbeats), but a label smuggled in through it is dropped
    code, answer = api_request(parent, "PATCH", path + "/status", {
        "metadata": {"labels": {"secret-team": "yes"}}, "status": {"platform": mc["status"]["platform"]}},
        token=token)
    assert code == 200, (code, answer)
    assert "secret-team" not in mcls(parent)["child1"]["metadata"]["labels"]

    def can(verb: str, resource: str, *extra: str) -> str:
        return str(kubectl(parent, "auth", "can-i", verb, resource, *extra, f"--as={user}", check=False)
                   .stdout.strip())

    assert can("patch", f"managedclusters.clusters.clusternet.io/{name}", "-n", ns) == "no"
    assert can("update", f"managedclusters.clusters.clusternet.io/{name}", "-n", ns) == "no"
    assert can("update", f"managedclusters.clusters.clusternet.io/{name}", "-n", ns, "--subresource=status") == "yes"
    assert can("patch", f"managedclusters.clusters.clusternet.io/{name}", "-n", ns, "--subresource=status") == "yes"
    # it may patch its own registration request (to ask for labels), and no other
    own, other = f"clusternet-{cluster_id(child1)}", f"clusternet-{mcls(parent)['child2']['spec']['clusterId']}"
    assert can("patch", f"clusterregistrationrequests.clusters.clusternet.io/{own}") == "yes"
    assert can("patch", f"clusterregistrationrequests.clusters.clusternet.io/{other}") == "no"
    assert can("update", f"clusterregistrationrequests.clusters.clusternet.io/{own}") == "no"
    # the registration's labels are there, recorded as the request's (so only those may ever be removed by it)
    assert {"env": "dev", "team": "a"}.items() <= mc["metadata"]["labels"].items()
    assert json.loads(mc["metadata"]["annotations"]["clusters.clusternet.io/labels-from-request"]) == \
        {"env": "dev", "team": "a"}
    assert ready(mcls(parent)["child1"]) == "True"


def test_a_tampered_request_moves_nothing(parent: ControlPlane, child1: ControlPlane,
                                          agents: dict[str, Proc]) -> None:
    """The agent may patch its own request, so after approval the hub reads nothing of it but clusterLabels:
    a new clusterId, clusterName, clusterNamespace or syncMode neither moves the cluster nor denies it."""
    before = mcls(parent)["child1"]
    crr_name = f"clusternet-{cluster_id(child1)}"
    crr = json.loads(kubectl(parent, "get", "clsrr", crr_name, "-o", "json").stdout)
    tampered = {"clusterId": str(uuid.uuid4()), "clusterName": "stolen", "clusterNamespace": "tampered-ns",
                "syncMode": "Push"}
    # dropping the token's issue time makes the hub approve (and issue a token) again right away
    code, answer = api_request(parent, "PATCH", CRR_PATH.format(name=crr_name), {
        "metadata": {"annotations": {known.ANNOTATION_TOKEN_ISSUED_AT: None}}, "spec": tampered},
        token=parent_token(child1))
    try:
        assert code == 200, (code, answer)

        def approved_again() -> dict[str, Any] | None:
            got: dict[str, Any] = json.loads(kubectl(parent, "get", "clsrr", crr_name, "-o", "json").stdout)
            return got if got["metadata"]["annotations"].get(known.ANNOTATION_TOKEN_ISSUED_AT) else None

        # the hub's own record of the last issue holds a refresh back for tokens.REISSUE_FLOOR: a module run alone
        # registers its clusters less than a minute before
        after_crr = wait_for(approved_again, timeout=tokens.REISSUE_FLOOR + 30,
                             what="the hub handled the tampered request")
        assert after_crr["status"]["result"] == "Approved"
        assert after_crr["status"]["dedicatedNamespace"] == before["metadata"]["namespace"]
        assert after_crr["status"]["managedClusterName"] == "child1"
        assert kubectl(parent, "get", "namespace", "tampered-ns", check=False).returncode != 0
        after = mcls(parent)
        assert "stolen" not in after
        assert after["child1"]["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["child1"]["spec"]["syncMode"] == "Dual"
        assert after["child1"]["spec"]["clusterId"] == cluster_id(child1)
        wait_for(lambda: ready(mcls(parent)["child1"]) == "True", timeout=20, what="child1 still Ready")
    finally:  # what an admin would do: put the request back as it was
        kubectl(parent, "patch", "clsrr", crr_name, "--type=merge", "-p", json.dumps({"spec": crr["spec"]}))


def test_silent_cluster_turns_unknown_then_recovers_without_reregistering(
        parent: ControlPlane, agents: dict[str, Proc]) -> None:
    wait_for(lambda: ready(mcls(parent).get("child2")) == "True", timeout=60)
    before = mcls(parent)["child2"]
    agents["child2"].stop()
    # grace period = 3 x 2s heartbeat; the hub checks every 0.5s
    wait_for(lambda: ready(mcls(parent).get("child2")) == "Unknown", timeout=20, what="child2 Unknown")
    silent = mcls(parent)["child2"]
    assert silent["status"]["readyz"] is False and silent["status"]["livez"] is False
    assert any(t["key"] == known.TAINT_UNSCHEDULABLE and t["effect"] == "NoSchedule"
               for t in silent["spec"]["taints"])
    cond = next(c for c in silent["status"]["conditions"] if c["type"] == "Ready")
    assert cond["reason"] == known.REASON_STATUS_UNKNOWN and "no heartbeat" in cond["message"]
    assert ready(mcls(parent)["child1"]) == "True"  # the other cluster is unaffected
    row = next(r for r in kubectl(parent, "get", "mcls", "-A").stdout.splitlines() if " child2 " in f" {r} ")
    assert "Unknown" in row and "false" in row
    # restart: same namespace, same ManagedCluster, no new registration
    agents["child2"].start()
    wait_for(lambda: ready(mcls(parent).get("child2")) == "True", timeout=30, what="child2 Ready again")
    after = mcls(parent)["child2"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["namespace"] == before["metadata"]["namespace"]
    wait_for(lambda: not mcls(parent)["child2"]["spec"].get("taints"), timeout=10, what="taint removed")
    assert "reusing stored parent credentials" in agents["child2"].output
    assert len(json.loads(kubectl(parent, "get", "ns", "-l", f"{known.LABEL_CLUSTER_ID}="
                                  f"{after['spec']['clusterId']}", "-o", "json").stdout)["items"]) == 1


def test_tokens_never_logged(child1: ControlPlane, hub: Proc, agents: dict[str, Proc]) -> None:
    secret = json.loads(kubectl(child1, "get", "secret", "parent-cluster", "-n", "clusternet-system",
                                "-o", "json").stdout)
    token = base64.b64decode(secret["data"]["token"]).decode()
    logs = hub.output + "".join(a.output for a in agents.values())
    assert "registered as" in logs or "reusing stored" in logs  # the logs are real
    assert token not in logs and token[-20:] not in logs
    assert BOOTSTRAP_TOKEN not in logs and "f395accd246ae52d" not in logs


# --- bad input ---------------------------------------------------------------------------------------------


def test_http_parent_url_is_refused(parent: ControlPlane, child1: ControlPlane, logdir: Path) -> None:
    p = agent_proc(child1, parent, logdir, "plain-http", parent_url=parent.url.replace("https", "http")).start()
    assert p.proc is not None and p.proc.wait(timeout=30) == 2
    assert "must be an https:// URL" in p.output


def test_wrong_token_gets_clear_error_and_creates_nothing(parent: ControlPlane, child1: ControlPlane,
                                                         logdir: Path, hub: Proc) -> None:
    before = kubectl(parent, "get", "clsrr", "-o", "name").stdout
    p = agent_proc(child1, parent, logdir, "wrong-token", "--cluster-id=11111111-2222-4333-8444-555555555555",
                   token="abcdef.0000000000000000").start()
    try:
        wait_for(lambda: "rejected the registration token (HTTP 401)" in p.output, timeout=30)
    finally:
        p.stop()
    assert kubectl(parent, "get", "clsrr", "-o", "name").stdout == before
    assert "abcdef.0000000000000000" not in p.output


def test_unreachable_parent_is_reported(parent: ControlPlane, child1: ControlPlane, logdir: Path) -> None:
    p = agent_proc(child1, parent, logdir, "unreachable", "--cluster-id=11111111-2222-4333-8444-666666666666",
                   parent_url="https://127.0.0.1:1").start()
    try:
        wait_for(lambda: "is unreachable" in p.output, timeout=30)
        assert p.running()  # it keeps retrying instead of crashing
    finally:
        p.stop()


def test_second_agent_cannot_claim_existing_cluster_id(parent: ControlPlane, child1: ControlPlane,
                                                       child2: ControlPlane, logdir: Path,
                                                       agents: dict[str, Proc]) -> None:
    wait_for(lambda: ready(mcls(parent).get("child1")) == "True", timeout=60)
    victim = cluster_id(child1)
    crr_before = json.loads(kubectl(parent, "get", "clsrr", f"clusternet-{victim}", "-o", "json").stdout)
    # an agent in child2 (its own key) pretending to be child1
    p = agent_proc(child2, parent, logdir, "impostor", f"--cluster-id={victim}").start()
    try:
        wait_for(lambda: "carries a public key other than this agent's: another agent registered" in p.output,
                 timeout=30)
    finally:
        p.stop()
    crr_after = json.loads(kubectl(parent, "get", "clsrr", f"clusternet-{victim}", "-o", "json").stdout)
    assert crr_after["metadata"]["annotations"][known.ANNOTATION_AGENT_PUBLIC_KEY] == \
        crr_before["metadata"]["annotations"][known.ANNOTATION_AGENT_PUBLIC_KEY]
    assert ready(mcls(parent)["child1"]) == "True"


def _crr(name: str, cluster: str, **spec: Any) -> str:
    key = public_key_of(generate_private_key())
    doc = {"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ClusterRegistrationRequest",
           "metadata": {"name": name, "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: key}},
           "spec": {"clusterId": cluster, "syncMode": "Pull", **spec}}
    return json.dumps(doc)


def test_tampered_cluster_id_is_denied(parent: ControlPlane, hub: Proc) -> None:
    claimed, real = str(uuid.uuid4()), str(uuid.uuid4())
    kubectl(parent, "create", "-f", "-", input=_crr(f"clusternet-{claimed}", real))

    def result() -> Any:
        crr = json.loads(kubectl(parent, "get", "clsrr", f"clusternet-{claimed}", "-o", "json").stdout)
        return (crr.get("status") or {}).get("result") and crr["status"]

    status = wait_for(result, timeout=30, what="CRR decided")
    assert status["result"] == "Denied"
    assert "does not match its clusterId" in status["errorMessage"]
    assert not status.get("token")
    assert kubectl(parent, "get", "ns", "-l", f"{known.LABEL_CLUSTER_ID}={real}", "-o", "name").stdout == ""


def test_hub_killed_mid_approval_converges_without_duplicates(parent: ControlPlane, hub: Proc,
                                                             logdir: Path) -> None:
    hub.kill()
    ids = [str(uuid.uuid4()) for _ in range(6)]
    for i, cid in enumerate(ids):
        kubectl(parent, "create", "-f", "-", input=_crr(f"clusternet-{cid}", cid, clusterName=f"restart-{i}"))
    second = hub_proc(parent, logdir, port=None)
    second.log = logdir / "hub-restart-1.log"
    second.start()
    import time

    time.sleep(1.0)  # part-way through the approvals
    second.kill()
    hub.start()  # the module's hub again, so later tests keep a running hub

    def all_approved() -> bool:
        for cid in ids:
            out = kubectl(parent, "get", "clsrr", f"clusternet-{cid}", "-o", "jsonpath={.status.result}").stdout
            if out != "Approved":
                return False
        return True

    wait_for(all_approved, timeout=60, what="all CRRs approved after restart")
    for cid in ids:
        namespaces = json.loads(kubectl(parent, "get", "ns", "-l", f"{known.LABEL_CLUSTER_ID}={cid}",
                                        "-o", "json").stdout)["items"]
        assert len(namespaces) == 1
        ns = namespaces[0]["metadata"]["name"]
        mcs = json.loads(kubectl(parent, "get", "mcls", "-n", ns, "-o", "json").stdout)["items"]
        assert len(mcs) == 1 and mcs[0]["spec"]["clusterId"] == cid


def test_requested_namespace_of_someone_else_is_denied_and_left_alone(parent: ControlPlane, hub: Proc) -> None:
    cid = str(uuid.uuid4())
    kubectl(parent, "create", "namespace", "team-owned")
    kubectl(parent, "create", "-f", "-", input=_crr(f"clusternet-{cid}", cid, clusterNamespace="team-owned"))

    def result() -> Any:
        crr = json.loads(kubectl(parent, "get", "clsrr", f"clusternet-{cid}", "-o", "json").stdout)
        return (crr.get("status") or {}).get("result") and crr["status"]

    status = wait_for(result, timeout=30, what="CRR decided")
    assert status["result"] == "Denied"
    assert status["errorMessage"] == f"namespace 'team-owned' already exists and does not belong to cluster {cid}"
    ns = json.loads(kubectl(parent, "get", "ns", "team-owned", "-o", "json").stdout)
    assert known.LABEL_CLUSTER_ID not in (ns["metadata"].get("labels") or {})
    assert kubectl(parent, "get", "sa", "-n", "team-owned", "clusternet-agent", check=False).returncode != 0
    kubectl(parent, "delete", "clsrr", f"clusternet-{cid}")
    kubectl(parent, "delete", "namespace", "team-owned", "--wait=false")
