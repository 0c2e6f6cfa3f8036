"""The parent's objects the hub deletes after a look are deleted only as they were looked at (review F8).

Each DELETE carries the uid (and the resourceVersion where the decision read something that changes) of the object
judged; an object deleted and created again, or written, between the look and the DELETE (FakeKube.meanwhile) is
a 409 for the API server, and never becomes a delete of the newer object.
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import cast

import pytest

from clusternet_api import known
from clusternet_api.kube import Kube
from clusternet_api.preconditions import Deleted, delete_as_read, preconditions
from clusternet_core import helmrender
from clusternet_core import plan as planning
from clusternet_hub import registration, removal
from clusternet_hub.controller import Controller, pusher
from clusternet_hub.peers import COORDINATION
from clusternet_hub.peerstreams import Peer
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_cluster_removal import CID, NAME, SETTINGS, Parent, approved_parent, namespace_of
from tests.unit.test_controller import (
    BASE,
    DESC,
    NS,
    SUB,
    cached_sub,
    cluster,
    config_map_manifest,
    primed,
    push_secret,
    subscription,
)
from tests.unit.test_helm import FEED, HELM_DESC, HR, chart, deploy, helm_controller
from tests.unit.test_hub_peers import TOKEN, peer_lease, peers_of
from tests.unit.test_token_secrets import token_secret


def deletes(kube: FakeKube, kind: str) -> list[Obj | None]:
    """What each DELETE of `kind` sent (its preconditions), in order."""
    return [body for (verb, k, _), body in zip(kube.writes, kube.bodies, strict=True) if (verb, k) == ("delete", kind)]


def as_read(obj: Obj | None, unchanged: bool) -> Obj:
    assert obj is not None
    return {"preconditions": preconditions(obj, unchanged=unchanged)}


async def test_a_delete_as_read_says_deleted_gone_or_changed(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}})
    read = kube.find("ConfigMap", "n", "c")
    assert read is not None
    kube.touch("ConfigMap", "n", "c")
    with caplog.at_level(logging.INFO, logger="clusternet_api.preconditions"):
        assert await delete_as_read(kube, "v1", "ConfigMap", read, unchanged=True, then="left") is Deleted.CHANGED
    assert "ConfigMap n/c was created again or changed since it was read: left" in caplog.text
    assert kube.find("ConfigMap", "n", "c") is not None
    assert await delete_as_read(kube, "v1", "ConfigMap", read, unchanged=False, then="left") is Deleted.DONE
    assert await delete_as_read(kube, "v1", "ConfigMap", read, unchanged=False, then="left") is Deleted.GONE


# --- token Secrets an agent could read -------------------------------------------------------------------------


async def test_a_token_secret_is_deleted_by_its_uid_and_one_replaced_meanwhile_by_credentials_is_kept() -> None:
    kube = FakeKube(token_secret(known.DEPLOYER_SECRET))
    read = kube.find("Secret", NS, known.DEPLOYER_SECRET)
    await registration.drop_token_secrets(kube, NS)
    assert deletes(kube, "Secret") == [as_read(read, unchanged=False)]

    kube = FakeKube(token_secret(known.DEPLOYER_SECRET))
    read = kube.find("Secret", NS, known.DEPLOYER_SECRET)

    def replaced_by_push_credentials() -> None:  # the agent's own, between the hub's look and its DELETE
        kube.recreate("Secret", NS, known.DEPLOYER_SECRET)["type"] = "Opaque"

    kube.meanwhile[("delete", "Secret")] = replaced_by_push_credentials
    await registration.drop_token_secrets(kube, NS)
    assert deletes(kube, "Secret") == [as_read(read, unchanged=False)]  # one DELETE, refused: looked at again
    kept = kube.find("Secret", NS, known.DEPLOYER_SECRET)
    assert kept is not None and kept["type"] == "Opaque"


async def test_the_pusher_deletes_the_token_secret_it_read_not_the_credentials_written_since() -> None:
    c, parent, _ = await primed(cluster(), token_secret(known.DEPLOYER_SECRET))
    read = parent.find("Secret", NS, known.DEPLOYER_SECRET)

    def replaced_by_push_credentials() -> None:
        replaced = parent.recreate("Secret", NS, known.DEPLOYER_SECRET)
        replaced.update(type="Opaque", data=push_secret()["data"])

    parent.meanwhile[("delete", "Secret")] = replaced_by_push_credentials
    assert await c.pusher.child_client(cluster()) == pusher.DEPLOYER_CREDENTIALS_MISSING  # not used unread
    assert deletes(parent, "Secret") == [as_read(read, unchanged=False)]
    assert not isinstance(await c.pusher.child_client(cluster()), str)  # read at the next push: push credentials
    assert len(deletes(parent, "Secret")) == 1


# --- the namespace an approval made when an earlier registration's wins ------------------------------------------


def earlier_registration() -> Parent:
    """A parent where this cluster was registered before, in namespace team-a, and its new request."""
    labels = {known.LABEL_CLUSTER_ID: CID}
    request: Obj = {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ClusterRegistrationRequest",
                    "metadata": {"name": NAME}, "spec": {"clusterId": CID, "clusterName": "child1"}}
    return Parent(request, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": labels}},
                  {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
                   "metadata": {"name": "old", "namespace": "team-a", "labels": labels}})


async def test_the_namespace_an_approval_made_is_deleted_by_its_uid_and_one_made_again_meanwhile_is_kept() -> None:
    parent = earlier_registration()
    made: list[Obj] = []
    create = parent.create

    async def recorded(obj: Obj, namespace: str | None = None) -> Obj:
        made.append(await create(obj, namespace))
        return made[-1]

    parent.create = recorded  # type: ignore[method-assign]
    wanted = registration.dedicated_namespace_name(parent.objects[("ClusterRegistrationRequest", "", NAME)])
    parent.meanwhile[("delete", "Namespace")] = lambda: parent.recreate("Namespace", None, wanted)
    result = await registration.approve(cast(Kube, parent), parent.objects[("ClusterRegistrationRequest", "", NAME)],
                                        SETTINGS)
    assert (result["result"], result["dedicatedNamespace"]) == ("Approved", "team-a")
    [namespace] = [o for o in made if o["kind"] == "Namespace"]
    assert deletes(parent, "Namespace") == [as_read(namespace, unchanged=False)]
    again = parent.find("Namespace", None, wanted)
    assert again is not None and again["metadata"]["uid"] != namespace["metadata"]["uid"]  # not ours to delete


# --- cluster removal: the agent's ServiceAccount and cluster-wide RBAC -------------------------------------------


RBAC = ("ClusterRoleBinding", "ClusterRole")


async def test_removal_deletes_the_account_and_rbac_as_read_before_the_request_was_confirmed() -> None:
    parent, crr = await approved_parent()
    ns = namespace_of(crr)
    account = parent.find("ServiceAccount", ns, registration.AGENT_SERVICE_ACCOUNT)
    rbac = {kind: parent.find(kind, None, NAME) for kind in RBAC}
    await removal.mark_removed(cast(Kube, parent), crr, "its ManagedCluster was deleted")
    assert deletes(parent, "ServiceAccount") == [as_read(account, unchanged=False)]
    for kind in RBAC:
        assert deletes(parent, kind) == [as_read(rbac[kind], unchanged=True)]
        assert parent.find(kind, None, NAME) is None
    assert parent.find("ServiceAccount", ns, registration.AGENT_SERVICE_ACCOUNT) is None


async def test_removal_leaves_an_account_made_again_and_rbac_written_again_since_it_looked() -> None:
    """The cluster registered anew meanwhile: its new ServiceAccount, and the RBAC its approval wrote again, are
    the new registration's."""
    parent, crr = await approved_parent()
    ns = namespace_of(crr)
    parent.meanwhile[("delete", "ServiceAccount")] = lambda: parent.recreate(
        "ServiceAccount", ns, registration.AGENT_SERVICE_ACCOUNT)
    parent.meanwhile[("delete", "ClusterRole")] = lambda: parent.touch("ClusterRole", None, NAME)
    parent.meanwhile[("delete", "ClusterRoleBinding")] = lambda: parent.touch("ClusterRoleBinding", None, NAME)
    await removal.mark_removed(cast(Kube, parent), crr, "its ManagedCluster was deleted")
    assert parent.objects[("ClusterRegistrationRequest", "", NAME)]["status"]["result"] == "Denied"
    assert parent.find("ServiceAccount", ns, registration.AGENT_SERVICE_ACCOUNT) is not None
    assert all(parent.find(kind, None, NAME) is not None for kind in RBAC)
    assert [len(deletes(parent, kind)) for kind in ("ServiceAccount", *RBAC)] == [1, 1, 1]  # no second try


# --- Bases of clusters a Subscription no longer binds --------------------------------------------------------------


async def test_an_unbound_base_is_deleted_as_the_cache_held_it_and_one_written_again_meanwhile_is_kept() -> None:
    for meanwhile in (False, True):
        c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
        await c.subscriptions.reconcile(SUB, force=False)
        cached = c.store.caches.bases[BASE]
        c.store.caches.clusters[(NS, "child1")] = cluster(env="dev")
        if meanwhile:  # a new hub leader created it again while this one, paused, still planned on its old copy
            parent.meanwhile[("delete", "Base")] = lambda p=parent: p.recreate("Base", *BASE)
        await c.subscriptions.reconcile(SUB, force=False)
        assert deletes(parent, "Base") == [as_read(cached, unchanged=True)]
        assert (parent.find("Base", *BASE) is not None) is meanwhile


async def test_a_deleted_subscription_keeps_its_finalizer_while_a_base_it_could_not_delete_as_read_stays() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    sub = parent.find("Subscription", *SUB)
    sub["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    c.store.on_subscription("MODIFIED", sub)
    parent.meanwhile[("delete", "Base")] = lambda: parent.touch("Base", *BASE)
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Base", *BASE) is not None
    assert parent.find("Subscription", *SUB)["metadata"]["finalizers"] == [known.FINALIZER_APPS]
    c.store.on_base("MODIFIED", parent.find("Base", *BASE))  # the watch brings the change: the next plan
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Base", *BASE) is None and parent.find("Subscription", *SUB)["metadata"]["finalizers"] == []


# --- peer Leases that look expired -----------------------------------------------------------------------------


def stored_lease(peer: Peer) -> Obj:
    lease = cast(Obj, peer_lease(peer, "0"))
    lease["metadata"]["namespace"] = known.SYSTEM_NAMESPACE
    return {"apiVersion": COORDINATION, "kind": "Lease", **lease}


async def test_an_expired_peer_lease_is_deleted_as_seen_and_one_renewed_meanwhile_is_kept_live() -> None:
    name = "clusternet-hub-peer-a"
    for renewed in (False, True):
        parent = FakeKube(stored_lease(Peer("a", "10.0.0.1", 8123)))
        b = peers_of(TOKEN, b"")
        b.kube = parent  # type: ignore[assignment]
        seen = parent.find("Lease", known.SYSTEM_NAMESPACE, name)
        assert seen is not None
        await b._observe_all([seen])
        b._seen = {n: (version, at - 3600) for n, (version, at) in b._seen.items()}  # unchanged for an hour
        if renewed:  # its renewal reached the parent, not yet this reader's stalled watch
            parent.meanwhile[("delete", "Lease")] = lambda p=parent: p.touch("Lease", known.SYSTEM_NAMESPACE, name)
        await b._observe_all([seen])
        assert deletes(parent, "Lease") == [as_read(seen, unchanged=True)]
        assert (parent.find("Lease", known.SYSTEM_NAMESPACE, name) is not None) is renewed
        assert list(b.live) == (["a"] if renewed else [])
        if renewed:  # its wait starts again: not deleted at the next look of the same stale copy
            await b._observe_all([seen])
            assert len(deletes(parent, "Lease")) == 1 and list(b.live) == ["a"]


# --- Descriptions of a deployer the Subscription no longer feeds ----------------------------------------------


CONFIG_MAP_FEED = subscription()["spec"]["feeds"][0]


def refeed(c: Controller, parent: FakeKube, *feeds: Obj) -> None:
    """The Subscription's feeds edited, as the watch brings the edit."""
    sub = copy.deepcopy(parent.find("Subscription", *SUB))
    sub["spec"]["feeds"] = list(feeds)
    parent.objects[("Subscription", *SUB)] = sub
    c.store.on_subscription("MODIFIED", sub)


async def test_a_description_no_longer_fed_is_deleted_as_the_plan_saw_it_and_one_written_again_meanwhile_stays(
        ) -> None:
    """Generic (only HelmChart feeds left) and Helm (no HelmChart feed left). Written again meanwhile (a new hub
    leader, planning a Subscription that feeds that deployer again): left to the next plan, on the watch's copy."""
    for gone, feeds in ((HELM_DESC, [CONFIG_MAP_FEED]), (DESC, [FEED])):
        for meanwhile in (None, FakeKube.touch, FakeKube.recreate):
            c, parent, _ = await helm_controller(cluster(), config_map_manifest(), chart(), push_secret(),
                                                 subscription(feeds=[CONFIG_MAP_FEED, FEED]))
            await c.subscriptions.reconcile(SUB, force=False)
            cached = c.store.caches.descriptions[gone]
            refeed(c, parent, *feeds)
            if meanwhile is not None:
                parent.meanwhile[("delete", "Description")] = functools.partial(meanwhile, parent, "Description", *gone)
            await c.subscriptions.reconcile(SUB, force=False)
            assert deletes(parent, "Description") == [as_read(cached, unchanged=True)]
            assert (parent.find("Description", *gone) is None) is (meanwhile is None)
            if meanwhile is not None:  # the watch brings it: the next plan deletes the newer copy
                newer = parent.find("Description", *gone)
                c.store.on_description("MODIFIED", newer)
                await c.subscriptions.reconcile(SUB, force=False)
                assert deletes(parent, "Description")[1:] == [as_read(newer, unchanged=True)]
                assert parent.find("Description", *gone) is None


# --- the FeedInventory of a Subscription that no longer divides ------------------------------------------------


async def test_a_feed_inventory_no_longer_wanted_is_deleted_as_the_plan_saw_it_and_one_written_meanwhile_stays(
        ) -> None:
    for meanwhile in (False, True):
        c, parent, _ = await primed(cluster(), config_map_manifest(), subscription(
            schedulingStrategy="Dividing", dividingScheduling={"type": "Static"}))
        sub = cached_sub(c)
        await c.subscriptions.apply(sub, planning.plan_subscription(sub, c.store.caches, force=False))
        cached = c.store.caches.inventories[SUB]
        replicated = {**sub, "spec": {**sub["spec"], "schedulingStrategy": "Replication"}}
        if meanwhile:  # a new hub leader wrote it again, for a Subscription it saw dividing again
            parent.meanwhile[("delete", "FeedInventory")] = lambda p=parent: p.touch("FeedInventory", *SUB)
        await c.subscriptions.apply(replicated, planning.plan_subscription(replicated, c.store.caches, force=False))
        assert deletes(parent, "FeedInventory") == [as_read(cached, unchanged=True)]
        assert (parent.find("FeedInventory", *SUB) is not None) is meanwhile
        assert (SUB in c.store.caches.inventories) is meanwhile  # the watch keeps that entry, not this delete
    newer = parent.find("FeedInventory", *SUB)
    c.store.on_feed_inventory("MODIFIED", newer)  # its spec unchanged: the periodic resync plans again
    await c.subscriptions.apply(replicated, planning.plan_subscription(replicated, c.store.caches, force=False))
    assert deletes(parent, "FeedInventory")[1:] == [as_read(newer, unchanged=True)]
    assert parent.find("FeedInventory", *SUB) is None and SUB not in c.store.caches.inventories


# --- HelmReleases of a Helm Description -------------------------------------------------------------------------


REDIS_FEED = {**FEED, "name": "redis"}
REDIS_HR = (NS, helmrender.release_name(HELM_DESC[1], "default", "redis"))


def redis_chart() -> Obj:
    redis = chart()
    redis["metadata"]["name"] = redis["spec"]["chart"] = "redis"
    return redis


def revisits(c: Controller) -> list[object]:
    """The work add_after will bring back (its timers cancelled: nothing runs after the test)."""
    for timer, _ in c.store.queue._later.values():
        timer.cancel()
    return list(c.store.queue._later)


async def test_a_release_of_a_chart_dropped_is_deleted_as_cached_and_one_written_meanwhile_is_looked_at_again(
        ) -> None:
    for meanwhile in (False, True):
        c, parent, _ = await helm_controller(cluster(), chart(), redis_chart(), push_secret(),
                                             subscription(feeds=[FEED, REDIS_FEED]))
        await c.subscriptions.reconcile(SUB, force=False)
        await c.helm_descriptions.sync(HELM_DESC)
        cached = c.store.caches.helmreleases[REDIS_HR]
        refeed(c, parent, FEED)
        await c.subscriptions.reconcile(SUB, force=False)
        if meanwhile:  # its labels or owner written again (a new hub leader), not yet in this hub's cache
            parent.meanwhile[("delete", "HelmRelease")] = lambda p=parent: p.touch("HelmRelease", *REDIS_HR)
        await c.helm_descriptions.sync(HELM_DESC)
        assert deletes(parent, "HelmRelease") == [as_read(cached, unchanged=True)]
        assert (parent.find("HelmRelease", *REDIS_HR) is not None) is meanwhile
        assert revisits(c) == ([("helm", *HELM_DESC)] if meanwhile else [])
    newer = parent.find("HelmRelease", *REDIS_HR)
    c.store.on_helmrelease("MODIFIED", newer)
    await c.helm_descriptions.sync(HELM_DESC)  # the revisit
    assert deletes(parent, "HelmRelease")[1:] == [as_read(newer, unchanged=True)]
    assert parent.find("HelmRelease", *REDIS_HR) is None and parent.find("HelmRelease", *HR) is not None


async def test_a_deleted_helm_description_keeps_its_finalizer_while_a_release_changed_under_its_delete_stays(
        ) -> None:
    c, parent, _ = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    cached = c.store.caches.helmreleases[HR]
    desc = parent.find("Description", *HELM_DESC)
    c.store.on_description("MODIFIED", {**desc, "metadata": {**desc["metadata"], "deletionTimestamp": "now"}})
    parent.meanwhile[("delete", "HelmRelease")] = lambda: parent.touch("HelmRelease", *HR)
    await c.helm_descriptions.sync(HELM_DESC)
    assert deletes(parent, "HelmRelease") == [as_read(cached, unchanged=True)]
    assert parent.find("HelmRelease", *HR) is not None
    assert parent.find("Description", *HELM_DESC)["metadata"]["finalizers"] == [known.FINALIZER_APPS]
    assert revisits(c) == [("helm", *HELM_DESC)]
    newer = parent.find("HelmRelease", *HR)
    c.store.on_helmrelease("MODIFIED", newer)
    await c.helm_descriptions.sync(HELM_DESC)  # the revisit
    assert deletes(parent, "HelmRelease")[1:] == [as_read(newer, unchanged=True)]
    assert parent.find("HelmRelease", *HR) is None
    c.store.on_helmrelease("DELETED", newer)  # its deployer let it go
    await c.helm_descriptions.sync(HELM_DESC)
    assert parent.find("Description", *HELM_DESC)["metadata"]["finalizers"] == []
