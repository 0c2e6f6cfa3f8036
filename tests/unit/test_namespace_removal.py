"""Deleting a cluster's namespace keeps its workloads whatever order the namespace controller deletes its content in
(clusternet_api.namespaceguard): a Description or HelmRelease being deleted while its namespace terminates (or is
gone) is released without touching the child, by the hub in every sync mode and by the agent in Pull mode; an agent
that may not read its namespace (an older hub's RBAC) keeps the finalizer and says why, never deleting on doubt."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_agent import helmpuller, puller
from clusternet_api import applier, known, namespaceguard, ownership
from clusternet_api.kube import ApiException
from clusternet_hub import registration
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import DESC, NS, cluster, deployed_controller, namespace, push_secret, unsubscribe
from tests.unit.test_helm import FEED, HR, Deployer, chart, deploy, helm_controller, subscription

GONE = "2026-01-01T00:00:00Z"
PULL = {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
        "metadata": {"name": "child1", "namespace": NS}, "spec": {"syncMode": "Pull"}, "status": {"appPusher": False}}


def terminating(parent: FakeKube) -> None:
    parent.objects[("Namespace", "", NS)]["metadata"]["deletionTimestamp"] = GONE


def deleting(obj: Obj) -> Obj:
    return {**obj, "metadata": {**obj["metadata"], "deletionTimestamp": GONE}}


class Refusing(FakeKube):
    """A parent whose GET of a `refused_kind` answers `refusal` (an agent's identity set up by an older hub: 403)."""

    refusal: ApiException | None = None
    refused_kind = "Namespace"

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if kind == self.refused_kind and self.refusal is not None:
            raise self.refusal
        return await super().get(api_version, kind, name, namespace)


# --- the guard itself -----------------------------------------------------------------------------------------


async def test_a_live_namespace_is_no_removal_a_terminating_or_missing_one_is_and_a_refusal_is_unknown() -> None:
    parent = Refusing(namespace())
    assert not await namespaceguard.namespace_removed(parent, NS)
    assert await namespaceguard.namespace_removed(parent, "clusternet-gone")
    terminating(parent)
    assert await namespaceguard.namespace_removed(parent, NS)
    parent.refusal = ApiException(403, "forbidden")
    with pytest.raises(namespaceguard.NamespaceUnknown, match=f"cluster namespace {NS} is being deleted"):
        await namespaceguard.namespace_removed(parent, NS)
    parent.refusal = ApiException(500, "etcd")
    with pytest.raises(ApiException):  # any other doubt is no answer either
        await namespaceguard.namespace_removed(parent, NS)


# --- the hub: Generic Descriptions and HelmReleases, every sync mode --------------------------------------------


async def hub_with_deleting_description(mode: str = "Push") -> tuple[Any, FakeKube, FakeKube]:
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    assert child.find("ConfigMap", "default", "cfg") is not None
    mc = cluster()
    mc["spec"]["syncMode"] = mode
    c.store.caches.clusters[(NS, "child1")] = mc
    unsubscribe(parent, c)  # an ordinary deletion, unless the cluster is being removed
    c.store.on_description("MODIFIED", deleting(parent.find("Description", *DESC)))
    parent.writes.clear()
    child.writes.clear()
    return c, parent, child


@pytest.mark.parametrize("mode", ["Push", "Pull"])
async def test_the_hub_releases_a_description_of_a_terminating_namespace_without_touching_the_child(
        mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """Push: it would have deleted the child's objects. Pull: the agent's Role may be gone, so the hub lets go of it,
    or the namespace's deletion would hang on the finalizer."""
    c, parent, child = await hub_with_deleting_description(mode)
    terminating(parent)
    caplog.set_level("INFO")
    await c.pusher.push(DESC)
    assert child.writes == [] and child.find("ConfigMap", "default", "cfg") is not None
    assert parent.writes == [("patch", "Description", "/".join(DESC))]  # the finalizer only: no status, no event
    assert known.FINALIZER_APPS not in parent.find("Description", *DESC)["metadata"]["finalizers"]
    assert f"cluster namespace {NS} is being deleted: the cluster is being removed; its workloads in the child " \
           "stay" in caplog.text


async def test_the_hub_releases_a_description_whose_namespace_is_gone_and_cleans_up_one_whose_namespace_lives(
) -> None:
    c, parent, child = await hub_with_deleting_description()
    del parent.objects[("Namespace", "", NS)]
    await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS not in parent.find("Description", *DESC)["metadata"][
        "finalizers"]
    c, parent, child = await hub_with_deleting_description()
    await c.pusher.push(DESC)  # an ordinary deletion
    assert child.writes == [("delete", "ConfigMap", "default/cfg")]


async def hub_with_deleting_release(mode: str = "Push") -> tuple[Any, FakeKube, FakeHelm]:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    assert ("abc", "mysql") in helm.releases
    mc = cluster()
    mc["spec"]["syncMode"] = mode
    c.store.caches.clusters[(NS, "child1")] = mc
    unsubscribe(parent, c)  # an ordinary deletion, unless the cluster is being removed
    c.store.on_helmrelease("MODIFIED", deleting(c.store.caches.helmreleases[HR]))
    parent.writes.clear()
    return c, parent, helm


@pytest.mark.parametrize("mode", ["Push", "Pull"])
async def test_the_hub_releases_a_helmrelease_of_a_terminating_namespace_without_uninstalling_it(mode: str) -> None:
    c, parent, helm = await hub_with_deleting_release(mode)
    terminating(parent)
    calls = len(helm.calls)
    await c.releases.push(HR)
    assert ("abc", "mysql") in helm.releases and len(helm.calls) == calls
    assert parent.writes == [("patch", "HelmRelease", "/".join(HR))]  # nor the Pull-mode chart credentials
    assert known.FINALIZER_APPS not in parent.find("HelmRelease", *HR)["metadata"]["finalizers"]


async def test_the_hub_still_uninstalls_a_helmrelease_deleted_in_a_live_namespace() -> None:
    c, _, helm = await hub_with_deleting_release()
    await c.releases.push(HR)
    assert ("abc", "mysql") not in helm.releases


# --- the agent, Pull mode ----------------------------------------------------------------------------------------


def pulled_description() -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Description",
            "metadata": {"name": "d", "namespace": NS, "finalizers": [known.FINALIZER_APPS],
                         "deletionTimestamp": GONE},
            "spec": {"deployer": "Generic"}, "status": {"phase": "Success"}}


async def agent_puller(monkeypatch: pytest.MonkeyPatch) -> tuple[puller.Puller, Refusing, list[str]]:
    parent = Refusing(namespace(), copy.deepcopy(PULL), pulled_description())
    cleaned: list[str] = []

    async def cleanup(child: Any, d: Obj, claimants: Any = None) -> Any:
        cleaned.append(d["metadata"]["name"])
        return ownership.Released()

    monkeypatch.setattr(applier, "cleanup", cleanup)
    return puller.Puller(parent, FakeKube(), NS, "child1", 30), parent, cleaned  # type: ignore[arg-type]


def stored(parent: FakeKube, kind: str, name: str) -> Obj:
    found = parent.find(kind, NS, name)
    assert found is not None
    return copy.deepcopy(found)


async def test_the_agent_releases_a_description_of_a_terminating_namespace_without_cleaning_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent, parent, cleaned = await agent_puller(monkeypatch)
    terminating(parent)
    await agent.process(stored(parent, "Description", "d"), PULL, resync=True)
    assert cleaned == [] and stored(parent, "Description", "d")["metadata"]["finalizers"] == []


async def test_the_agent_whose_role_is_gone_leaves_the_release_to_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    agent, parent, cleaned = await agent_puller(monkeypatch)
    terminating(parent)
    parent.fail[("patch", "Description")] = ApiException(403, "forbidden")
    await agent.process(stored(parent, "Description", "d"), PULL, resync=True)  # no error: the hub releases it
    assert cleaned == []


async def test_an_agent_that_may_not_read_its_namespace_cleans_up_nothing_says_why_and_heals_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent, parent, cleaned = await agent_puller(monkeypatch)
    parent.refusal = ApiException(403, "namespaces is forbidden")
    await agent.process(stored(parent, "Description", "d"), PULL, resync=True)
    desc = stored(parent, "Description", "d")
    assert cleaned == [] and desc["metadata"]["finalizers"] == [known.FINALIZER_APPS]
    assert desc["status"]["reason"].startswith(f"cleanup pending: cannot tell whether cluster namespace {NS} is "
                                               "being deleted (HTTP 403")
    assert "update the hub before the agents" in desc["status"]["reason"]
    assert desc["status"]["phase"] == "Success"  # what it last reported: the workloads still run
    writes = len(parent.writes)
    await agent.process(desc, PULL, resync=True)  # the next resync: said already
    assert len(parent.writes) == writes and cleaned == []
    parent.refusal = None  # the upgraded hub granted `get` on the namespace
    await agent.process(stored(parent, "Description", "d"), PULL, resync=True)
    assert cleaned == ["d"] and stored(parent, "Description", "d")["metadata"]["finalizers"] == []


def pulled_release() -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "HelmRelease",
            "metadata": {"name": "r", "namespace": NS, "generation": 1, "finalizers": [known.FINALIZER_APPS],
                         "deletionTimestamp": GONE},
            "spec": {"repo": "https://charts.example", "chart": "mysql", "version": "8.6.2",
                     "targetNamespace": "abc", "releaseName": "mysql"}}


async def release_puller() -> tuple[helmpuller.ReleasePuller, Refusing, FakeHelm]:
    helm, parent = FakeHelm(), Refusing(namespace(), copy.deepcopy(PULL), pulled_release())
    installed = copy.deepcopy(pulled_release())
    del installed["metadata"]["deletionTimestamp"]
    agent = helmpuller.ReleasePuller(parent, Deployer(), NS, "child1", 30, helm)  # type: ignore[arg-type]
    parent.objects[("HelmRelease", NS, "r")] = installed
    await agent.process(installed, PULL)
    parent.objects[("HelmRelease", NS, "r")] = deleting(stored(parent, "HelmRelease", "r"))
    assert ("abc", "mysql") in helm.releases
    return agent, parent, helm


async def test_the_agent_keeps_a_helm_release_of_a_terminating_namespace_installed() -> None:
    agent, parent, helm = await release_puller()
    terminating(parent)
    await agent.process(stored(parent, "HelmRelease", "r"), PULL)
    assert ("abc", "mysql") in helm.releases
    assert stored(parent, "HelmRelease", "r")["metadata"]["finalizers"] == []


async def test_an_agent_that_may_not_read_its_namespace_uninstalls_nothing_until_it_may() -> None:
    agent, parent, helm = await release_puller()
    parent.refusal = ApiException(403, "namespaces is forbidden")
    await agent.process(stored(parent, "HelmRelease", "r"), PULL)
    hr = stored(parent, "HelmRelease", "r")
    assert ("abc", "mysql") in helm.releases and hr["metadata"]["finalizers"] == [known.FINALIZER_APPS]
    assert hr["status"]["description"].startswith(f"uninstall pending: cannot tell whether cluster namespace {NS}")
    parent.refusal = None
    await agent.process(stored(parent, "HelmRelease", "r"), PULL)
    assert ("abc", "mysql") not in helm.releases


# --- the agent's RBAC ----------------------------------------------------------------------------------------------


def test_each_agent_may_get_its_own_namespace_and_no_other_in_a_role_that_outlives_it() -> None:
    """A ClusterRole: the namespaced Role goes with the namespace, and the agent must still read it then."""
    cluster_role = registration.rbac_manifests("c-1", "clusternet-abcde", "c1")[0]
    assert cluster_role["kind"] == "ClusterRole"
    assert {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["clusternet-abcde"],
            "verbs": ["get"]} in cluster_role["rules"]
