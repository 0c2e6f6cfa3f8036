"""A refused agent registers again as soon as an admin deletes or decides its request anew, through the real
registration code (review s38, L8: the tests of test_agent_reregistration.py stand in for ensure_registered).

Only the parent is a fake: one ClusterRegistrationRequest that an admin changes after a given number of reads, and
a hub that approves a pending request carrying the agent's own key at once. The child's stored credentials are
left out (none stored: a first registration, or a removed cluster's)."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable
from typing import Any

import pytest

from clusternet_agent import agent, registration
from clusternet_agent.options import AgentOptions
from clusternet_api import known
from clusternet_api.sealing import generate_private_key, public_key_of
from tests.unit import test_agent_reregistration as reregistration

CID = "0e6f3c55-6a51-4a8e-9d49-3a1d2b4c5e6f"
NAME = f"clusternet-{CID}"
KEY, OTHER_KEY = generate_private_key(), generate_private_key()
Crr = dict[str, Any]


def request(result: str | None, key: bytes = KEY, token: str = "fresh") -> Crr:
    status: dict[str, Any] = {}
    if result == "Approved":
        status = {"result": "Approved", "token": base64.b64encode(token.encode()).decode(),
                  "dedicatedNamespace": "clusternet-abcde", "managedClusterName": "child1"}
    elif result is not None:
        status = {"result": result, "errorMessage": "cluster removed from the parent"}
    return {"metadata": {"name": NAME, "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: public_key_of(key)}},
            "status": status}


class Parent(reregistration.Parent):
    """The parent as the bootstrap token sees it (standing in for the Kube class, as the one it extends). `admin(reads)`
    may replace the request (None: deleted) before each read; a pending request with the agent's key is approved by
    the hub when read."""

    def __init__(self, crr: Crr | None, admin: Callable[[int], Crr | bool | None]) -> None:
        super().__init__(crr or {})
        self.request, self.admin, self.created = crr, admin, 0

    async def create_or_get(self, obj: Crr) -> tuple[Crr, bool]:
        if self.request is None:
            self.created += 1
            self.request = {"metadata": copy.deepcopy(obj["metadata"]), "status": {}}
            return copy.deepcopy(self.request), True
        return copy.deepcopy(self.request), False

    async def get(self, *_: Any, cached: bool = False) -> Crr | None:
        self.reads += 1
        changed = self.admin(self.reads)
        if changed is not False:
            self.request = changed  # type: ignore[assignment]
        ours = self.request is not None and self.request["metadata"]["annotations"][
            known.ANNOTATION_AGENT_PUBLIC_KEY] == public_key_of(KEY)
        if self.request is not None and ours and not (self.request.get("status") or {}).get("result"):
            self.request = request("Approved")  # the hub approves a pending request at once
        return copy.deepcopy(self.request)


def opts() -> AgentOptions:
    return AgentOptions(parent_url="https://parent:6443", reg_token="abcdef.0123456789abcdef",
                        parent_insecure_skip_tls_verify=True)


@pytest.fixture
def parent_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[Parent], None]:
    """Nothing stored in the child, nothing to store there, no CA to fetch; the request read every 0.05 s."""
    async def nothing(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(registration, "read_stored", nothing)
    monkeypatch.setattr(registration, "store", nothing)
    monkeypatch.setattr(registration, "ensure_bootstrap_ca", nothing)
    monkeypatch.setattr(registration, "REFUSED_RECHECK_SECONDS", 0.05)
    return lambda parent: monkeypatch.setattr(registration, "Kube", parent)


def at(read: int, then: Crr | None) -> Callable[[int], Crr | bool | None]:
    """An admin who changes the request to `then` at the agent's `read`-th read of it (False: left as it is)."""
    return lambda reads: then if reads == read else False


async def register(parent: Parent) -> registration.ParentAccess | None:
    async with asyncio.timeout(5):  # not the minute a refused registration waited before
        return await agent.register_until_done(None, opts(), CID, KEY, asyncio.Event())  # type: ignore[arg-type]


async def test_a_denied_request_deleted_by_an_admin_registers_again(
        parent_only: Callable[[Parent], None]) -> None:
    parent = Parent(request("Denied"), at(3, None))
    parent_only(parent)
    access = await register(parent)
    assert access is not None and access.creds.token == "fresh"
    assert parent.created == 1  # a new request, made once the admin deleted the refused one


async def test_a_denied_request_approved_anew_is_taken(parent_only: Callable[[Parent], None]) -> None:
    """The request's result changed (not deleted): seen at the next read, not a minute later."""
    parent = Parent(request("Denied"), at(3, request("Approved", token="readded")))
    parent_only(parent)
    access = await register(parent)
    assert access is not None and access.creds.token == "readded" and parent.created == 0


async def test_a_request_with_another_key_deleted_by_an_admin_registers_with_ours(
        parent_only: Callable[[Parent], None]) -> None:
    """Another agent's key on a pending request (a re-installed cluster): refused until an admin deletes it."""
    parent = Parent(request(None, key=OTHER_KEY), at(2, None))
    parent_only(parent)
    access = await register(parent)
    assert access is not None and parent.created == 1
    assert parent.request is not None and parent.request["metadata"]["annotations"][
        known.ANNOTATION_AGENT_PUBLIC_KEY] == public_key_of(KEY)
