"""`kubectl clusternet approve|deny` write a verdict on pending requests only (audit F10)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from clusternet_api import known
from clusternet_api.kube import Kube
from clusternet_kubectl import session
from clusternet_kubectl.commands.approve import verdict_command

from .fakekube import FakeKube

CID = "5f6a0f2b-43ea-4a2b-9d8c-0a7d1e2c3b4a"
NAME = f"clusternet-{CID}"


def parent(status: dict[str, Any]) -> FakeKube:
    return FakeKube({"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ClusterRegistrationRequest",
                     "metadata": {"name": NAME, "uid": "uid-1"}, "spec": {"clusterId": CID}, "status": status})


async def run(kube: FakeKube, verdict: str, reason: str = "") -> int:
    return await verdict_command(session.Session(cast(Kube, kube), "default"), (CID,), verdict, reason)


def annotations(kube: FakeKube) -> dict[str, str]:
    crr = kube.find("ClusterRegistrationRequest", None, NAME)
    assert crr is not None
    return {k: v for k, v in (crr["metadata"].get("annotations") or {}).items() if v is not None}  # null: removed


async def test_deny_on_an_approved_cluster_is_refused_and_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    kube = parent({"result": "Approved", "dedicatedNamespace": "clusternet-abcde", "managedClusterName": "child1"})
    assert await run(kube, "Denied", "gone") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: clusterregistrationrequest.clusters.clusternet.io/{NAME} is already approved")
    assert "kubectl delete namespace clusternet-abcde" in err and "Remove or re-add a cluster" in err
    assert len(err.splitlines()) == 1
    assert kube.writes == [] and annotations(kube) == {}


async def test_approve_on_a_denied_cluster_is_refused_and_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    kube = parent({"result": "Denied", "errorMessage": "cluster removed from the parent: ..."})
    assert await run(kube, "Approved") == 1
    err = capsys.readouterr().err.strip()
    assert "is already denied (cluster removed from the parent: ...)" in err
    assert f"kubectl delete clusterregistrationrequest {NAME}" in err
    assert kube.writes == []


async def test_repeating_the_result_writes_nothing_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    kube = parent({"result": "Approved"})
    assert await run(kube, "Approved") == 0
    assert capsys.readouterr().out.strip() == f"clusterregistrationrequest.clusters.clusternet.io/{NAME} " \
                                              "already approved"
    assert kube.writes == []


@pytest.mark.parametrize("verdict", ["Denied", "Approved"])
@pytest.mark.parametrize("why", [known.DENIED_FOR_NO_KEY, known.DENIED_FOR_OLD_KEY_RULE])
async def test_a_verdict_on_a_request_denied_for_a_reason_of_the_hubs_is_recorded(
        verdict: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The hub looks at such a request again once it no longer refuses it (the flag back, a key, the hub upgraded
    to seal to X25519 keys): under Manual approval its AwaitingApproval event says to approve it, and an admin's
    denial must keep it denied (review s34, finding 7; re-review s34, finding 3)."""
    kube = parent({"result": "Denied", "errorMessage": why})
    assert await run(kube, verdict, "keep it out" if verdict == "Denied" else "") == 0
    assert capsys.readouterr().out.strip() == f"clusterregistrationrequest.clusters.clusternet.io/{NAME} " \
                                              f"{verdict.lower()}"
    assert annotations(kube)[known.ANNOTATION_APPROVAL] == verdict
    if verdict == "Approved":
        assert annotations(kube)[known.ANNOTATION_APPROVED_UID] == "uid-1"


async def test_a_request_denied_for_another_reason_takes_no_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    kube = parent({"result": "Denied", "errorMessage": "cluster removed from the parent: ..."})
    assert await run(kube, "Denied") == 0 and "already denied" in capsys.readouterr().out
    assert kube.writes == []


async def test_a_pending_request_gets_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    kube = parent({})
    assert await run(kube, "Denied", "not ours") == 0
    assert capsys.readouterr().out.strip() == f"clusterregistrationrequest.clusters.clusternet.io/{NAME} denied"
    assert annotations(kube) == {known.ANNOTATION_APPROVAL: "Denied", known.ANNOTATION_DENIAL_REASON: "not ours"}


async def test_an_unknown_request_is_not_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(FakeKube(), "Approved") == 1
    err = capsys.readouterr().err
    assert "(NotFound)" in err and f'"{NAME}" not found' in err


async def test_a_request_is_found_by_the_cluster_name_its_agent_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    """Audit 6: `approve child1` answered NotFound "clusternet-child1", while --cluster-id takes names too."""
    kube = parent({})
    kube.find("ClusterRegistrationRequest", None, NAME)["spec"]["clusterName"] = "child1"  # type: ignore[index]
    assert await verdict_command(session.Session(cast(Kube, kube), "default"), ("child1",), "Approved", "") == 0
    assert annotations(kube)[known.ANNOTATION_APPROVAL] == "Approved"
    assert annotations(kube)[known.ANNOTATION_APPROVED_UID] == "uid-1", "the approval names the request it read"
    assert await verdict_command(session.Session(cast(Kube, kube), "default"), ("child9",), "Approved", "") == 1
    assert "give a cluster ID, a request's name or the cluster name" in capsys.readouterr().err
