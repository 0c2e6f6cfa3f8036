"""Deleting only a cluster's ManagedCluster removes the cluster and keeps its workloads (README, "Remove or re-add a
cluster"), whoever deploys: every deployer asks namespaceguard, which reads the ManagedCluster afresh.

Two ways it used to delete them: a Pull agent took its heartbeats' copy of the ManagedCluster (clusterview.py,
trusted for a report period and a half) for the parent's answer and cleaned up the Descriptions the deletion's
unbinding deleted; and the hub counted a ManagedCluster held by someone's finalizer (a deletionTimestamp) as live,
so the next resync unbound it and the hub cleaned up the child."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest

from clusternet_agent import agent, helmpuller, puller
from clusternet_agent.clusterview import ClusterView
from clusternet_api import applier, known, namespaceguard, ownership
from clusternet_api.kube import ApiException
from tests.unit import test_namespace_removal
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_agent_reregistration import CID, Parent, approved, opts
from tests.unit.test_controller import DESC, NS, namespace
from tests.unit.test_helm import HR, Deployer
from tests.unit.test_namespace_removal import (
    GONE,
    PULL,
    deleting,
    hub_with_deleting_description,
    hub_with_deleting_release,
    pulled_description,
    pulled_release,
)


class Refusing(test_namespace_removal.Refusing):
    """A parent whose ManagedCluster GET answers `refusal`."""

    refused_kind = "ManagedCluster"


# --- the guard ---------------------------------------------------------------------------------------------------


async def test_a_missing_or_deleting_managed_cluster_is_a_removal_and_a_failed_read_no_answer() -> None:
    parent = Refusing(namespace(), copy.deepcopy(PULL))
    assert await namespaceguard.removal_reason(parent, NS, "child1") is None
    assert "ManagedCluster" in (await namespaceguard.removal_reason(parent, NS, "other") or "")
    parent.objects[("ManagedCluster", NS, "child1")]["metadata"]["deletionTimestamp"] = GONE
    assert await namespaceguard.removal_reason(parent, NS, "child1") == namespaceguard.cluster_removed_message(
        NS, "child1")
    parent.refusal = ApiException(403, "forbidden")
    with pytest.raises(namespaceguard.NamespaceUnknown, match=f"ManagedCluster {NS}/child1 is being deleted"):
        await namespaceguard.removal_reason(parent, NS, "child1")
    parent.refusal = ApiException(500, "etcd")
    with pytest.raises(ApiException):
        await namespaceguard.removal_reason(parent, NS, "child1")


# --- the hub --------------------------------------------------------------------------------------------------------


def held(mc: Obj) -> Obj:
    """A ManagedCluster deleted and held by another party's finalizer."""
    return {**mc, "metadata": {**mc["metadata"], "deletionTimestamp": GONE, "finalizers": ["example.com/backup"]}}


async def test_the_hub_releases_a_description_of_a_managed_cluster_held_by_a_finalizer_without_touching_the_child(
) -> None:
    c, parent, child = await hub_with_deleting_description("Push")
    c.store.caches.clusters[(NS, "child1")] = held(c.store.caches.clusters[(NS, "child1")])
    await c.pusher.push(DESC)
    assert child.writes == [] and child.find("ConfigMap", "default", "cfg") is not None
    assert known.FINALIZER_APPS not in parent.find("Description", *DESC)["metadata"]["finalizers"]


async def test_the_hub_reads_the_managed_cluster_afresh_before_it_cleans_up() -> None:
    """Its cache lags the deletion: the fresh read decides, not the copy."""
    c, parent, child = await hub_with_deleting_description("Push")
    key = ("ManagedCluster", NS, "child1")
    parent.objects[key] = held(parent.objects[key])
    await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS not in parent.find("Description", *DESC)["metadata"][
        "finalizers"]
    c, parent, child = await hub_with_deleting_description("Push")
    del parent.objects[key]  # gone altogether, still cached
    await c.pusher.push(DESC)
    assert child.writes == []


async def test_the_hub_keeps_a_helm_release_of_a_managed_cluster_held_by_a_finalizer_installed() -> None:
    c, parent, helm = await hub_with_deleting_release("Push")
    c.store.caches.clusters[(NS, "child1")] = held(c.store.caches.clusters[(NS, "child1")])
    await c.releases.push(HR)
    assert ("abc", "mysql") in helm.releases
    assert known.FINALIZER_APPS not in parent.find("HelmRelease", *HR)["metadata"]["finalizers"]


async def test_the_hub_still_cleans_up_an_ordinary_deletion_of_a_live_cluster() -> None:
    c, _, child = await hub_with_deleting_description("Push")
    await c.pusher.push(DESC)
    assert child.writes == [("delete", "ConfigMap", "default/cfg")]
    c, _, helm = await hub_with_deleting_release("Push")
    await c.releases.push(HR)
    assert ("abc", "mysql") not in helm.releases


# --- the agent, Pull mode -------------------------------------------------------------------------------------------


def heartbeat_view(parent: FakeKube) -> ClusterView:
    """What the last heartbeat left: the ManagedCluster as it was, trusted for minutes."""
    view = ClusterView(parent, NS, "child1", max_age=270.0)  # type: ignore[arg-type]
    view.saw(copy.deepcopy(PULL))
    return view


async def pull_agent(monkeypatch: pytest.MonkeyPatch, *objects: Obj) -> tuple[puller.Puller, Refusing, list[str]]:
    parent = Refusing(namespace(), pulled_description(), *objects)
    cleaned: list[str] = []

    async def cleanup(child: Any, d: Obj, claimants: Any = None) -> Any:
        cleaned.append(d["metadata"]["name"])
        return ownership.Released()

    monkeypatch.setattr(applier, "cleanup", cleanup)
    view = heartbeat_view(parent)
    return puller.Puller(parent, FakeKube(), NS, "child1", 30, view), parent, cleaned  # type: ignore[arg-type]


async def test_a_pull_agent_keeps_the_workloads_when_only_its_managed_cluster_is_deleted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent_, parent, cleaned = await pull_agent(monkeypatch)  # the parent has no ManagedCluster any more
    desc = parent.find("Description", NS, "d")
    assert desc is not None
    await agent_.process(copy.deepcopy(desc), await agent_.view.get(), resync=False)
    assert cleaned == [] and parent.find("Description", NS, "d")["metadata"]["finalizers"] == []


@pytest.mark.parametrize("failure", [403, 500])
async def test_a_pull_agent_that_cannot_read_its_managed_cluster_cleans_up_nothing(
        monkeypatch: pytest.MonkeyPatch, failure: int) -> None:
    agent_, parent, cleaned = await pull_agent(monkeypatch, copy.deepcopy(PULL))
    parent.refusal = ApiException(failure, "no")
    desc = copy.deepcopy(parent.find("Description", NS, "d"))
    with contextlib.suppress(ApiException):  # _safely logs it; the next resync asks again
        await agent_.process(desc, PULL, resync=True)
    assert cleaned == [] and parent.find("Description", NS, "d")["metadata"]["finalizers"] == [known.FINALIZER_APPS]
    parent.refusal = None
    await agent_.process(copy.deepcopy(parent.find("Description", NS, "d")), PULL, resync=True)
    assert cleaned == ["d"]  # an ordinary deletion of a live cluster: cleaned up


async def test_a_pull_agent_keeps_a_helm_release_when_only_its_managed_cluster_is_deleted() -> None:
    helm, parent = FakeHelm(), Refusing(namespace(), copy.deepcopy(PULL), pulled_release())
    installed = copy.deepcopy(pulled_release())
    del installed["metadata"]["deletionTimestamp"]
    parent.objects[("HelmRelease", NS, "r")] = installed
    view = heartbeat_view(parent)
    agent_ = helmpuller.ReleasePuller(parent, Deployer(), NS, "child1", 30, helm, view)  # type: ignore[arg-type]
    await agent_.process(installed, await view.get())
    assert ("abc", "mysql") in helm.releases
    del parent.objects[("ManagedCluster", NS, "child1")]  # kubectl delete mcls child1
    parent.objects[("HelmRelease", NS, "r")] = deleting(parent.objects[("HelmRelease", NS, "r")])
    await agent_.process(copy.deepcopy(parent.objects[("HelmRelease", NS, "r")]), await view.get())
    assert ("abc", "mysql") in helm.releases
    assert parent.find("HelmRelease", NS, "r")["metadata"]["finalizers"] == []


async def test_a_heartbeat_that_finds_no_managed_cluster_drops_the_agents_copy() -> None:
    from clusternet_agent import registration
    from clusternet_api.kube import Credentials

    class NoCluster(Parent):
        async def get(self, api_version: str, kind: str, *_: Any, cached: bool = False) -> dict[str, Any] | None:
            return None if kind == "ManagedCluster" else await super().get()

    parents: Any = (NoCluster(approved("t")),)
    access = registration.ParentAccess(Credentials(server="https://parent:6443", token="t"), "clusternet-abcde",
                                       "child1", CID)
    view = ClusterView(parents[0], "clusternet-abcde", "child1", max_age=270.0)
    view.saw(copy.deepcopy(PULL))
    assert await agent.report_once(parents[0], parents, opts(), access, "child1", {}, {}, None, view) == "failed"
    assert view.mc is None and await view.get() is None and view.reads == 1
