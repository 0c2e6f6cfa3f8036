"""The agent never loops hot when the parent rejects a token its still-Approved request holds (audit F3)."""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import logging
from typing import Any

import pytest

from clusternet_agent import agent, registration
from clusternet_agent.options import AgentOptions
from clusternet_api import known
from clusternet_api.sealing import generate_private_key, public_key_of

CID = "5f6a0f2b-43ea-4a2b-9d8c-0a7d1e2c3b4a"
NAME = f"clusternet-{CID}"
KEY = generate_private_key()


def approved(token: str) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: public_key_of(KEY)}},
            "status": {"result": "Approved", "token": base64.b64encode(token.encode()).decode(),
                       "dedicatedNamespace": "clusternet-abcde", "managedClusterName": "child1"}}


class Parent:
    """The parent's CRR as the bootstrap token reads it; `later` replaces it after `after` reads."""

    def __init__(self, crr: dict[str, Any], later: dict[str, Any] | None = None, after: int = 2) -> None:
        self.crr, self.later, self.after, self.reads = crr, later, after, 0
        self.cached: list[bool] = []

    def __call__(self, *_: Any, **__: Any) -> Parent:  # stands in for the Kube class
        return self

    async def __aenter__(self) -> Parent:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None

    async def create_or_get(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return copy.deepcopy(self.crr), False

    async def get(self, *_: Any, cached: bool = False) -> dict[str, Any]:
        self.reads += 1
        self.cached.append(cached)
        if self.later is not None and self.reads >= self.after:
            self.crr = self.later
        return copy.deepcopy(self.crr)


def opts() -> AgentOptions:
    return AgentOptions(parent_url="https://parent:6443", reg_token="abcdef.0123456789abcdef",
                        parent_insecure_skip_tls_verify=True)


async def test_a_rejected_token_is_not_taken_again_and_the_admin_is_told_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    parent = Parent(approved("dead"))
    monkeypatch.setattr(registration, "Kube", parent)
    with caplog.at_level(logging.WARNING), pytest.raises(registration.RegistrationError) as failed:
        await registration.register(opts(), CID, KEY, approval_timeout=0.5, stale_token="dead")
    assert "still holds the token the parent rejected" in str(failed.value) and failed.value.retry
    hints = [r.getMessage() for r in caplog.records if "rejects the token it holds" in r.getMessage()]
    assert len(hints) == 1 and f"kubectl delete clusterregistrationrequest {NAME}" in hints[0]
    assert parent.reads >= 2  # it kept looking (slowly) instead of storing the dead token


async def test_a_token_the_hub_issues_again_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registration, "Kube", Parent(approved("dead"), later=approved("fresh")))
    access = await registration.register(opts(), CID, KEY, approval_timeout=5, stale_token="dead")
    assert access.creds.token == "fresh" and access.namespace == "clusternet-abcde"


async def test_a_cluster_the_hub_marked_removed_stops_with_the_hubs_words(monkeypatch: pytest.MonkeyPatch) -> None:
    removed = {**approved("dead"), "status": {"result": "Denied", "errorMessage": "cluster removed from the parent: "
                                              f"... kubectl delete clusterregistrationrequest {NAME}"}}
    monkeypatch.setattr(registration, "Kube", Parent(approved("dead"), later=removed))
    with pytest.raises(registration.RegistrationError) as failed:
        await registration.register(opts(), CID, KEY, approval_timeout=5, stale_token="dead")
    assert "cluster removed from the parent" in str(failed.value) and not failed.value.retry


async def test_a_revoked_request_whose_key_was_changed_says_the_hubs_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sixth audit: after a key was broken on the request and the hub revoked it, the agent said the cluster
    was "registered on the parent by another agent" (the keys differ) instead of the hub's reason and re-add hint."""
    revoked = {"metadata": {"name": NAME, "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: "not a key"}},
               "status": {"result": "Denied", "errorMessage": "its agent removed or broke the public key ... "
                                                             f"kubectl delete clusterregistrationrequest {NAME}"}}
    monkeypatch.setattr(registration, "Kube", Parent(revoked))
    with pytest.raises(registration.RegistrationError) as failed:
        await registration.register(opts(), CID, KEY, approval_timeout=5)
    assert "removed or broke the public key" in str(failed.value) and "another agent" not in str(failed.value)
    pending = {"metadata": revoked["metadata"]}  # not denied: the keys differ, both causes are named
    monkeypatch.setattr(registration, "Kube", Parent(pending))
    with pytest.raises(registration.RegistrationError, match=r"another agent registered .* or the key on the "
                                                            r"request was changed since"):
        await registration.register(opts(), CID, KEY, approval_timeout=5)


async def test_rejected_stored_credentials_are_the_stale_token(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = {"metadata": {"name": known.PARENT_CREDENTIALS_SECRET, "labels": {}}, "data": {
        k: base64.b64encode(v.encode()).decode() for k, v in
        {"token": "dead", "namespace": "clusternet-abcde", "apiserver-advertise-url": "https://parent:6443"}.items()}}
    asked: list[str | None] = []

    async def read_stored(*_: Any) -> dict[str, Any]:
        return secret

    async def rejected(*_: Any) -> bool:
        return False

    async def register(*_: Any, stale_token: str | None = None, **__: Any) -> registration.ParentAccess:
        asked.append(stale_token)
        raise registration.RegistrationError("stop here")

    monkeypatch.setattr(registration, "read_stored", read_stored)
    monkeypatch.setattr(registration, "credentials_work", rejected)
    monkeypatch.setattr(registration, "register", register)
    with pytest.raises(registration.RegistrationError):
        await registration.ensure_registered(None, opts(), CID, KEY)  # type: ignore[arg-type]
    assert asked == ["dead"]


def test_re_registrations_back_off_to_five_minutes_and_start_again_after_a_good_run() -> None:
    cycles = agent.CycleBackoff()
    pauses = [cycles.after(0.05) for _ in range(12)]
    assert 0.8 <= pauses[0] <= 1.2 and 1.6 <= pauses[1] <= 2.4
    assert all(b > a for a, b in itertools.pairwise(pauses[:8]))  # doubling beats the jitter
    assert max(pauses) <= 300 * 1.2 and pauses[-1] >= 300 * 0.8
    assert 0.8 <= cycles.after(300.0) <= 1.2  # five minutes registered: no loop, start from 1 s


async def test_a_missing_managed_cluster_of_a_removed_cluster_leads_to_registration_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """An agent restarted after an admin deleted its ManagedCluster warned that it did not exist at every report
    until its token was refused (the day-2 audit): when the request says Denied, it goes to registration,
    which says the cluster was removed."""
    from clusternet_api.kube import Credentials

    class NoCluster(Parent):
        async def get(self, api_version: str, kind: str, *_: Any, cached: bool = False) -> dict[str, Any] | None:
            return None if kind == "ManagedCluster" else await super().get()

        async def patch(self, *_: Any, **__: Any) -> dict[str, Any]:
            raise AssertionError("no status to patch")

    access = registration.ParentAccess(Credentials(server="https://parent:6443", token="t"), "clusternet-abcde",
                                       "child1", CID)
    removed = {**approved("t"), "status": {**approved("t")["status"], "result": "Denied"}}
    parents: Any = (NoCluster(removed),)
    outcome = await agent.report_once(parents[0], parents, opts(), access, "child1", {}, {}, None)
    assert outcome == "reregister"
    live: Any = (NoCluster(approved("t")),)  # deleted, and the hub has not noticed yet: a warning, as before
    assert await agent.report_once(live[0], live, opts(), access, "child1", {}, {}, None) == "failed"


async def test_a_removed_cluster_registers_again_as_soon_as_an_admin_deletes_its_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """README, "Remove or re-add a cluster": `kubectl delete clsrr` re-adds it. The agent of a removed cluster
    retried once a minute, so a re-add waited up to 72 s; now it reads its request every few seconds meanwhile and
    registers again once the request is gone."""
    removed = {**approved("dead"), "status": {"result": "Denied", "errorMessage": "cluster removed"}}
    parent = Parent(removed, later=None)
    monkeypatch.setattr(registration, "Kube", parent)
    monkeypatch.setattr(registration, "REFUSED_RECHECK_SECONDS", 0.05)
    attempts: list[int] = []

    async def ensure_registered(*_: Any) -> str:
        attempts.append(parent.reads)
        if len(attempts) == 1:
            raise registration.RegistrationError("the parent denied registration: cluster removed", retry=False,
                                                 request=(NAME, "Denied"))
        return "access"

    async def deleted_after_three_reads(*_: Any, **__: Any) -> dict[str, Any] | None:
        parent.reads += 1
        return None if parent.reads >= 3 else copy.deepcopy(removed)

    monkeypatch.setattr(agent, "ensure_registered", ensure_registered)
    monkeypatch.setattr(parent, "get", deleted_after_three_reads)
    async with asyncio.timeout(5):  # not the minute of a refused registration's retry
        assert await agent.register_until_done(None, opts(), CID, KEY, asyncio.Event()) == "access"  # type: ignore[arg-type]
    assert attempts == [0, 3]  # once the request was gone, not before


async def test_a_request_that_stays_refused_or_cannot_be_read_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    removed = {**approved("dead"), "status": {"result": "Denied", "errorMessage": "cluster removed"}}
    parent = Parent(removed)
    monkeypatch.setattr(registration, "Kube", parent)
    monkeypatch.setattr(registration, "REFUSED_RECHECK_SECONDS", 0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await registration.wait_while_refused(opts(), (NAME, "Denied"), 0.5)
    assert loop.time() - start >= 0.5 and parent.reads >= 5
    assert all(parent.cached)  # from the parent's watch cache, as the pending request's polls

    async def unreadable(*_: Any, **__: Any) -> dict[str, Any]:
        parent.reads += 1
        raise OSError("the bootstrap token was deleted")

    monkeypatch.setattr(parent, "get", unreadable)
    parent.reads, start = 0, loop.time()
    await registration.wait_while_refused(opts(), (NAME, "Denied"), 0.5)
    assert loop.time() - start >= 0.5 and parent.reads == 1  # asked once, then waited


async def test_a_request_refused_for_long_is_read_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thousand clusters removed at once must not cost the parent 200 GETs a second for ever."""
    parent = Parent({**approved("dead"), "status": {"result": "Denied"}})
    monkeypatch.setattr(registration, "Kube", parent)
    monkeypatch.setattr(registration, "REFUSED_RECHECK_SECONDS", 0.05)
    monkeypatch.setattr(registration, "REFUSED_RECHECK_SLOW_SECONDS", 0.25)
    await registration.wait_while_refused(opts(), (NAME, "Denied"), 0.5, refused_for=registration.REFUSED_BRISK_SECONDS)
    assert parent.reads == 2


def test_a_request_pending_for_long_is_read_less_often() -> None:
    """PATIENT_SHARE: a request pending for minutes (a hub working through a thousand registrations, or a person
    approving) is read a tenth of its wait apart, at most every 30 s; below 50 s of waiting the schedule stands."""
    pause = registration.poll_pause
    assert pause(registration.POLL_CAP, 1.0) == registration.POLL_CAP
    assert pause(registration.SLOW_POLL_CAP, 49.0) == registration.SLOW_POLL_CAP
    assert pause(registration.SLOW_POLL_CAP, 120.0) == pytest.approx(12.0)
    assert pause(registration.SLOW_POLL_CAP, 3600.0) == registration.PATIENT_POLL_CAP
    reads, waited = 0, 0.0  # one wait of 300 s (register's approval_timeout), schedule as Approval.wait keeps it
    delay = 0.1
    while waited < 300.0:
        waited += pause(delay, waited)
        delay = registration.next_scheduled(delay, waited)
        reads += 1
    assert reads <= 55, reads  # 83 when every read was 5 s apart after the brisk ones
