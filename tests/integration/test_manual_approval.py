"""Manual approval: with --cluster-approval=Manual new clusters wait for an admin's `approve` or `deny`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import api_request, kubectl, new_registration_request, run_plugin, wait_for
from clusternet_testing.processes import BOOTSTRAP_TOKEN, Proc, hub_proc, install_bootstrap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def manual_hub(parent: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    install_bootstrap(parent)
    proc = hub_proc(parent, tmp_path_factory.mktemp("manual"), "--cluster-approval=Manual").start()
    yield proc
    proc.stop()


@pytest.fixture
def request_id(parent: ControlPlane) -> Iterator[str]:
    """A registration request for a new cluster, as an agent would create it; removed afterwards."""
    cid = new_registration_request(parent, "manual")
    yield cid
    kubectl(parent, "delete", "clsrr", f"clusternet-{cid}", "--ignore-not-found", check=False)
    kubectl(parent, "delete", "ns", "-l", f"{known.LABEL_CLUSTER_ID}={cid}", "--wait=false", check=False)


def crr_status(parent: ControlPlane, cid: str) -> dict[str, Any]:
    crr = json.loads(kubectl(parent, "get", "clsrr", f"clusternet-{cid}", "-o", "json").stdout)
    return dict(crr.get("status") or {})


def namespaces_of(parent: ControlPlane, cid: str) -> list[str]:
    out = kubectl(parent, "get", "ns", "-l", f"{known.LABEL_CLUSTER_ID}={cid}", "-o", "name").stdout
    return out.split()


def awaiting_events(parent: ControlPlane, cid: str, saying: str = "") -> list[dict[str, Any]] | None:
    events = json.loads(kubectl(parent, "get", "events", "-A", "--field-selector=reason=AwaitingApproval",
                                "-o", "json").stdout)["items"]
    return [e for e in events if e["involvedObject"]["name"] == f"clusternet-{cid}" and saying in e["message"]] or None


def test_request_waits_for_an_admin_then_approve_creates_the_cluster(parent: ControlPlane, manual_hub: Proc,
                                                                     request_id: str) -> None:
    events = wait_for(lambda: awaiting_events(parent, request_id), timeout=30, what="AwaitingApproval event")
    assert f"kubectl clusternet approve clusternet-{request_id}" in events[0]["message"]
    # where `kubectl describe` looks for a cluster-scoped object's events (kopf's own named namespace default)
    described = kubectl(parent, "describe", "clsrr", f"clusternet-{request_id}").stdout
    assert "AwaitingApproval" in described.split("Events:")[-1], described
    time.sleep(2)  # the hub had every chance to approve by itself
    assert crr_status(parent, request_id).get("result") is None
    assert namespaces_of(parent, request_id) == []

    done = run_plugin(parent, "approve", request_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"clusterregistrationrequest.clusters.clusternet.io/clusternet-{request_id} approved"
    status = wait_for(lambda: (s := crr_status(parent, request_id)).get("result") and s, timeout=30,
                      what="CRR approved")
    assert status["result"] == "Approved" and status["token"]
    assert namespaces_of(parent, request_id) == [f"namespace/{status['dedicatedNamespace']}"]
    mcs = json.loads(kubectl(parent, "get", "mcls", "-n", status["dedicatedNamespace"], "-o", "json").stdout)["items"]
    assert [m["spec"]["clusterId"] for m in mcs] == [request_id]


def test_deny_gives_the_agent_the_reason_and_creates_nothing(parent: ControlPlane, manual_hub: Proc,
                                                             request_id: str) -> None:
    done = run_plugin(parent, "deny", f"clusternet-{request_id}", "--reason", "not one of our clusters")
    assert done.returncode == 0, done.stderr
    status = wait_for(lambda: (s := crr_status(parent, request_id)).get("result") and s, timeout=30,
                      what="CRR denied")
    assert status["result"] == "Denied"
    assert status["errorMessage"] == "denied by a parent cluster administrator: not one of our clusters"
    assert not status.get("token") and not status.get("dedicatedNamespace")
    assert namespaces_of(parent, request_id) == []


def test_verdict_on_an_unknown_request_is_a_clear_error(parent: ControlPlane, manual_hub: Proc) -> None:
    missing = str(uuid.uuid4())
    done = run_plugin(parent, "approve", missing)
    assert done.returncode == 1
    assert "NotFound" in done.stderr and f"clusternet-{missing}" in done.stderr


def test_an_approval_its_requester_wrote_at_creation_is_ignored(parent: ControlPlane, manual_hub: Proc) -> None:
    """The sixth audit: with the registration token alone it created a request already annotated Approved, and the
    hub approved it. An approval counts only beside the uid the server gave the request, which the registration
    token can read but never write."""
    from clusternet_api.sealing import generate_private_key, public_key_of

    cid = str(uuid.uuid4())
    name, path = f"clusternet-{cid}", "/apis/clusters.clusternet.io/v1beta1/clusterregistrationrequests"
    forged = {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ClusterRegistrationRequest",
              "metadata": {"name": name, "annotations": {
                  known.ANNOTATION_AGENT_PUBLIC_KEY: public_key_of(generate_private_key()),
                  known.ANNOTATION_APPROVAL: "Approved", known.ANNOTATION_APPROVED_UID: "guessed"}},
              "spec": {"clusterId": cid, "clusterName": f"forged-{cid[:5]}", "syncMode": "Pull"}}
    code, created = api_request(parent, "POST", path, forged, token=BOOTSTRAP_TOKEN, content_type="application/json")
    assert code == 201, created
    try:
        events = wait_for(lambda: awaiting_events(parent, cid, "is ignored"), timeout=30,
                          what="AwaitingApproval event saying the approval is ignored")
        assert known.ANNOTATION_APPROVED_UID in events[0]["message"]
        assert crr_status(parent, cid).get("result") is None and namespaces_of(parent, cid) == []
        code, _ = api_request(parent, "PATCH", f"{path}/{name}", {"metadata": {"annotations": {
            known.ANNOTATION_APPROVED_UID: created["metadata"]["uid"]}}}, token=BOOTSTRAP_TOKEN)
        assert code == 403, "the registration token may not write the request it created"
        done = run_plugin(parent, "approve", cid)
        assert done.returncode == 0, done.stderr
        status = wait_for(lambda: (s := crr_status(parent, cid)).get("result") and s, timeout=30,
                          what="CRR approved by the admin")
        assert status["result"] == "Approved"
    finally:
        kubectl(parent, "delete", "clsrr", name, "--ignore-not-found", check=False)
        kubectl(parent, "delete", "ns", "-l", f"{known.LABEL_CLUSTER_ID}={cid}", "--wait=false", check=False)
