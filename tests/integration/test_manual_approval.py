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
from clusternet_testing.helpers import kubectl, new_registration_request, run_plugin, wait_for
from clusternet_testing.processes import Proc, hub_proc, install_bootstrap

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


def test_request_waits_for_an_admin_then_approve_creates_the_cluster(parent: ControlPlane, manual_hub: Proc,
                                                                     request_id: str) -> None:
    def awaiting_event() -> list[dict[str, Any]] | None:
        events = json.loads(kubectl(parent, "get", "events", "-A", "--field-selector=reason=AwaitingApproval",
                                    "-o", "json").stdout)["items"]
        return [e for e in events if e["involvedObject"]["name"] == f"clusternet-{request_id}"] or None

    events = wait_for(awaiting_event, timeout=30, what="AwaitingApproval event")
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
