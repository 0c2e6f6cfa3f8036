"""A Description or HelmRelease deleted while its Subscription still wants it (the garbage collector after a Base
was deleted by hand, a restore with new UIDs, a person) is let go without touching the child: the hub re-creates it
under the same name and keeps the child's objects with their UIDs (controller/wanted.py). Every ordinary deletion
(Subscription deleted or re-created, cluster unbound, deployer or chart no longer fed) still cleans up, and a failed
read of the Subscription deletes nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_hub.controller import wanted
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import DESC, NS, SUB, cluster, deployed_controller, push_secret
from tests.unit.test_helm import FEED, HR, chart, deploy, helm_controller, subscription

GONE = "2026-01-01T00:00:00Z"


async def deleted_by_someone_else() -> tuple[Any, FakeKube, FakeKube]:
    """A pushed Description marked deleted by the garbage collector, its Subscription unchanged."""
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    assert child.find("ConfigMap", "default", "cfg") is not None
    desc = parent.find("Description", *DESC)
    desc["metadata"]["deletionTimestamp"] = GONE
    c.store.on_description("MODIFIED", copy.deepcopy(desc))
    child.writes.clear()
    return c, parent, child


def finalizers(parent: FakeKube, kind: str, key: tuple[str, str]) -> list[str]:
    found = parent.find(kind, *key)
    assert found is not None
    return list(found["metadata"].get("finalizers") or [])


async def test_a_description_deleted_while_its_subscription_wants_it_comes_back_and_keeps_the_childs_objects(
) -> None:
    c, parent, child = await deleted_by_someone_else()
    uid = child.find("ConfigMap", "default", "cfg")["metadata"]["uid"]
    await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS not in finalizers(parent, "Description", DESC)
    # the parent deletes it; the store brings its Subscription back at once, which writes it again
    gone = parent.objects.pop(("Description", *DESC))
    c.store.queue.drain()
    c.store.on_description("DELETED", gone)
    assert (("sub", *SUB), False) in c.store.queue.drain()
    await c.subscriptions.reconcile(SUB, force=False)
    again = parent.find("Description", *DESC)
    assert again is not None and again["metadata"]["uid"] != gone["metadata"]["uid"]
    await c.pusher.push(DESC)
    assert child.find("ConfigMap", "default", "cfg")["metadata"]["uid"] == uid  # adopted, never deleted
    assert not [w for w in child.writes if w[0] == "delete"]


def unbound(parent: FakeKube, c: Any) -> None:
    c.store.caches.clusters[(NS, "child1")] = cluster(env="dev")


def resubscribed(parent: FakeKube, c: Any) -> None:
    parent.objects[("Subscription", *SUB)]["metadata"]["uid"] = "another"


def unsubscribing(parent: FakeKube, c: Any) -> None:
    parent.objects[("Subscription", *SUB)]["metadata"]["deletionTimestamp"] = GONE


def unsubscribed(parent: FakeKube, c: Any) -> None:
    del parent.objects[("Subscription", *SUB)]


def helm_only(parent: FakeKube, c: Any) -> None:
    parent.objects[("Subscription", *SUB)]["spec"]["feeds"] = [FEED]


def unlabelled(parent: FakeKube, c: Any) -> None:
    desc = c.store.caches.descriptions[DESC]
    desc["metadata"]["labels"] = {}


@pytest.mark.parametrize("change", [unbound, resubscribed, unsubscribing, unsubscribed, helm_only, unlabelled])
async def test_an_ordinary_deletion_still_cleans_up(change: Any) -> None:
    c, parent, child = await deleted_by_someone_else()
    change(parent, c)
    await c.pusher.push(DESC)
    assert child.writes == [("delete", "ConfigMap", "default/cfg")]
    assert known.FINALIZER_APPS not in finalizers(parent, "Description", DESC)


class Unreadable(FakeKube):
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if kind == "Subscription":
            raise ApiException(500, "etcd")
        return await super().get(api_version, kind, name, namespace)


async def test_a_subscription_that_cannot_be_read_deletes_nothing() -> None:
    c, parent, child = await deleted_by_someone_else()
    parent.__class__ = Unreadable
    with pytest.raises(ApiException):
        await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS in finalizers(parent, "Description", DESC)


async def helm_release_deleted() -> tuple[Any, FakeKube, Any]:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    assert ("abc", "mysql") in helm.releases
    hr = c.store.caches.helmreleases[HR]
    c.store.on_helmrelease("MODIFIED", {**hr, "metadata": {**hr["metadata"], "deletionTimestamp": GONE}})
    return c, parent, helm


async def test_a_helm_release_deleted_while_its_subscription_wants_it_stays_installed() -> None:
    c, parent, helm = await helm_release_deleted()
    calls = len(helm.calls)
    await c.releases.push(HR)
    assert ("abc", "mysql") in helm.releases and len(helm.calls) == calls
    assert known.FINALIZER_APPS not in finalizers(parent, "HelmRelease", HR)


async def test_a_helm_release_of_a_chart_no_longer_fed_is_uninstalled() -> None:
    c, parent, helm = await helm_release_deleted()
    other = {**FEED, "name": "postgres"}
    parent.objects[("Subscription", *SUB)]["spec"]["feeds"] = [other]
    await c.releases.push(HR)
    assert ("abc", "mysql") not in helm.releases


def test_wanted_names_follow_binding_and_feeds() -> None:
    sub = copy.deepcopy(subscription(feeds=[FEED, {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
                                                   "name": "cfg"}]))
    sub["metadata"]["uid"] = "u"
    assert wanted.wanted_names(sub, cluster()) == {DESC[1], HR[1].rsplit("-default-mysql", 1)[0], HR[1]}
    assert wanted.wanted_names(sub, cluster(env="dev")) == set()
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchExpressions": [{"key": "env", "operator": "Bad"}]}}]
    assert wanted.wanted_names(sub, cluster()) == set()  # refused: nobody's plan we can tell
