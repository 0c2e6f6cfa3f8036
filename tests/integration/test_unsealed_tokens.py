"""Clusternet's agent sends no sealing key: its token is plain text, which only a hub started with
--allow-unsealed-tokens issues. A hub restarted without the flag denies such a cluster at its next token refresh
(keeping its credentials); one started with the flag again looks at the request again at its start and approves
it back into the same namespace, unless an admin denied it meanwhile, whose reason the status then gives (before
2026-12-06 it stayed Denied until someone deleted the request). Real kube-apiserver, real hub processes: what
kopf hands the hub at its start for a Denied request is what this checks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_hub import tokens
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl, run_plugin, wait_for
from clusternet_testing.processes import Proc, hub_proc, install_bootstrap

pytestmark = pytest.mark.integration


def crr(parent: ControlPlane, cid: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(parent, "get", "clsrr", f"clusternet-{cid}", "-o", "json").stdout))


def result(parent: ControlPlane, cid: str) -> str | None:
    return (crr(parent, cid).get("status") or {}).get("result")


def managed_cluster_uid(parent: ControlPlane, ns: str) -> str:
    items = json.loads(kubectl(parent, "get", "mcls", "-n", ns, "-o", "json").stdout)["items"]
    assert len(items) == 1, items
    return str(items[0]["metadata"]["uid"])


def with_hub(parent: ControlPlane, logdir: Path, *flags: str) -> Iterator[Proc]:
    """One hub process for the body of a `for` loop over it (its log in `logdir`)."""
    logdir.mkdir(parents=True, exist_ok=True)
    proc = hub_proc(parent, logdir, *flags).start()
    try:
        yield proc
    finally:
        proc.stop()


def create_keyless(parent: ControlPlane) -> str:
    """A request as Clusternet's agent makes it: no key annotation; its cluster id."""
    cid = str(uuid.uuid4())
    kubectl(parent, "create", "-f", "-", input=json.dumps({
        "apiVersion": known.CLUSTERS_API_VERSION, "kind": "ClusterRegistrationRequest",
        "metadata": {"name": f"clusternet-{cid}"},
        "spec": {"clusterId": cid, "clusterName": f"keyless-{cid[:5]}", "syncMode": "Pull"}}))
    return cid


def remove(parent: ControlPlane, cid: str) -> None:
    kubectl(parent, "delete", "clsrr", f"clusternet-{cid}", "--ignore-not-found", check=False)
    kubectl(parent, "delete", "ns", "-l", f"{known.LABEL_CLUSTER_ID}={cid}", "--wait=false", check=False)


@pytest.fixture
def keyless_request(parent: ControlPlane) -> Iterator[str]:
    install_bootstrap(parent)
    cid = create_keyless(parent)
    yield cid
    remove(parent, cid)


def approved_then_denied_without_the_flag(parent: ControlPlane, cid: str, logdir: Path) -> str:
    """Approved by a hub with the flag, then Denied (NO_KEY) at a token refresh by a hub without it; the
    cluster's namespace."""
    for _ in with_hub(parent, logdir / "with-flag", "--allow-unsealed-tokens"):
        wait_for(lambda: result(parent, cid) == "Approved", timeout=60, what="approved with the flag")
    ns = str(crr(parent, cid)["status"]["dedicatedNamespace"])
    # the token's refresh made due (an issue time long past), as half its lifetime later
    kubectl(parent, "patch", "clsrr", f"clusternet-{cid}", "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"tokenIssuedAt": "2000-01-01T00:00:00Z"}}))
    for _ in with_hub(parent, logdir / "without-flag"):
        wait_for(lambda: result(parent, cid) == "Denied", timeout=60, what="denied without the flag")
    assert crr(parent, cid)["status"]["errorMessage"] == tokens.NO_KEY
    return ns


def test_the_flag_back_approves_the_cluster_again_in_its_namespace(parent: ControlPlane, keyless_request: str,
                                                                   tmp_path: Path) -> None:
    cid = keyless_request
    ns = approved_then_denied_without_the_flag(parent, cid, tmp_path)
    mc_uid = managed_cluster_uid(parent, ns)
    for _ in with_hub(parent, tmp_path / "flag-back", "--allow-unsealed-tokens"):
        wait_for(lambda: result(parent, cid) == "Approved", timeout=60, what="approved again with the flag back")
    status = crr(parent, cid)["status"]
    assert status["dedicatedNamespace"] == ns and status["token"] and not status.get("sealedTo")
    assert managed_cluster_uid(parent, ns) == mc_uid  # the same cluster, nothing made anew


def test_an_admins_denial_keeps_it_denied_when_the_flag_is_back(parent: ControlPlane, keyless_request: str,
                                                                tmp_path: Path) -> None:
    cid = keyless_request
    approved_then_denied_without_the_flag(parent, cid, tmp_path)
    done = run_plugin(parent, "deny", cid, "--reason", "keep it out")
    assert done.returncode == 0 and done.stdout.strip().endswith(" denied"), (done.stdout, done.stderr)
    for _ in with_hub(parent, tmp_path / "flag-back", "--allow-unsealed-tokens"):
        # the hub at work: a new keyless request, created after its start (so after the resume of the denied one,
        # which kopf hands it from its first listing), is approved
        later = create_keyless(parent)
        try:
            wait_for(lambda: result(parent, later) == "Approved", timeout=60,  # noqa: B023 - used at once
                     what="a later request approved")
        finally:
            remove(parent, later)
    status = crr(parent, cid)["status"]  # the admin's reason now, instead of the hub's
    assert status["result"] == "Denied" and status["errorMessage"] == "denied by a parent cluster administrator: " \
                                                                      "keep it out"
