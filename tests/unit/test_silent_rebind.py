"""A silent cluster unbound by a short-lived change keeps what it runs once the change is undone (review finding F7).

The hub taints a silent cluster NoSchedule, which never unbinds it; a user's change does (an affinity typo, a
relabel), and its Description is left deleting, its cleanup pending until the cluster returns. Once the change is
undone, the cluster still holding that Description is bound again (clusternet_core.placement), its Base comes back,
and once the cluster is back the deployers' still-wanted checks let the old Description go without touching the
child: the hub's from the Subscription (Push), the agent's from the Base (Pull). The objects keep their UIDs. Had
the change stood, the cleanup would run on the cluster's return, as before.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_agent import puller, stillwanted
from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_core.naming import manifest_labels, manifest_name
from clusternet_hub.controller import Controller
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import (
    BASE,
    DESC,
    NS,
    SUB,
    cluster,
    config_map_manifest,
    deployed_controller,
    push_secret,
)

GONE = "2026-01-01T00:00:00Z"
SILENT = {"key": known.TAINT_UNSCHEDULABLE, "value": "no heartbeat", "effect": "NoSchedule"}
MC = (NS, "child1")


def with_sync_mode(mc: Obj, mode: str) -> Obj:
    mc["spec"]["syncMode"] = mode
    mc["status"]["appPusher"] = mode != "Pull"
    return mc


def cluster_state(c: Controller, parent: FakeKube, silent: bool, mode: str) -> Obj:
    """The cluster as the hub's health checks leave it: silent (Ready Unknown, NoSchedule taint) or back."""
    mc = with_sync_mode(cluster(ready="Unknown" if silent else "True"), mode)
    if silent:
        mc["spec"]["taints"] = [dict(SILENT)]
    old = c.store.caches.clusters.get(MC)
    parent.objects[("ManagedCluster", *MC)] = copy.deepcopy(mc)
    c.store.caches.clusters[MC] = mc
    c.store.on_cluster("MODIFIED", mc, old)
    return mc


async def set_affinity(c: Controller, parent: FakeKube, env: str, feeds: list[Obj] | None = None) -> None:
    """The user edits the Subscription's clusterAffinity (and its feeds, when given); the hub reconciles it, and
    the watch reports the Base it deleted and the Description the garbage collector then marks deleted."""
    sub = parent.objects[("Subscription", *SUB)]
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {"env": env}}}]
    if feeds is not None:
        sub["spec"]["feeds"] = feeds
    c.store.on_subscription("MODIFIED", copy.deepcopy(sub))
    base = parent.find("Base", *BASE)
    await c.subscriptions.reconcile(SUB, force=False)
    if base is not None and parent.find("Base", *BASE) is None:
        c.store.on_base("DELETED", base)
        desc = parent.objects[("Description", *DESC)]
        desc["metadata"]["deletionTimestamp"] = GONE  # the garbage collector; our finalizer holds it
        c.store.on_description("MODIFIED", copy.deepcopy(desc))


def finalizers(parent: FakeKube) -> list[str]:
    desc = parent.find("Description", *DESC)
    assert desc is not None
    return list(desc["metadata"].get("finalizers") or [])


async def released(c: Controller, parent: FakeKube) -> None:
    """The API server removes the Description whose last finalizer went; the watch reports it, and its
    Subscription plans again at once (store._bring_back)."""
    assert finalizers(parent) == []
    gone = parent.objects.pop(("Description", *DESC))
    c.store.on_description("DELETED", gone)
    await c.subscriptions.reconcile(SUB, force=False)


async def typo_while_silent(mode: str, *extra: Obj) -> tuple[Controller, FakeKube, FakeKube, str, Any]:
    """Deployed to the cluster, which goes silent; the user's affinity typo unbinds it. Returns the controller,
    parent, child, the child ConfigMap's uid, and a function that deploys as the cluster's deployer would (the
    hub's pusher, or the Pull agent once it is back)."""
    c, parent, child = await deployed_controller(push_secret(), *extra)
    mc = cluster_state(c, parent, silent=False, mode=mode)
    agent = puller.Puller(parent, child, NS, "child1", 30)  # type: ignore[arg-type]
    agent.grace = stillwanted.BaseGrace(seconds=0)  # a missing Base is an unbinding at once (test_still_wanted.py)

    async def deploy(mc: Obj) -> None:
        if mode == "Pull":
            desc = parent.find("Description", *DESC)
            assert desc is not None
            await agent.process(copy.deepcopy(desc), copy.deepcopy(mc), resync=True)
        else:
            await c.pusher.push(DESC, force=True)

    await deploy(mc)
    uid = child.find("ConfigMap", "default", "cfg")["metadata"]["uid"]
    cluster_state(c, parent, silent=True, mode=mode)
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Base", *BASE) is not None  # NoSchedule never unbinds: bindingClusters keeps it
    await set_affinity(c, parent, "prdo")
    assert parent.find("Base", *BASE) is None and parent.find("Subscription", *SUB)["status"]["bindingClusters"] == []
    await c.pusher.push(DESC, force=True)  # silent: the hub cannot clean up (nor is a Pull agent there to try)
    assert known.FINALIZER_APPS in finalizers(parent) and child.find("ConfigMap", "default", "cfg") is not None
    child.writes.clear()
    return c, parent, child, uid, deploy


async def test_push_a_typo_undone_while_the_cluster_is_silent_deletes_nothing_when_it_returns() -> None:
    c, parent, child, uid, deploy = await typo_while_silent("Push")
    await set_affinity(c, parent, "prod")
    assert parent.find("Subscription", *SUB)["status"]["bindingClusters"] == [f"{NS}/child1"]
    assert parent.find("Base", *BASE) is not None
    await c.pusher.push(DESC, force=True)  # nothing decided while the cluster is silent
    assert known.FINALIZER_APPS in finalizers(parent)
    mc = cluster_state(c, parent, silent=False, mode="Push")
    await c.pusher.push(DESC, force=True)  # back, and still wanted: let go without touching the child
    await released(c, parent)
    assert known.FINALIZER_APPS in finalizers(parent)  # written again, under the same name
    await deploy(mc)
    assert child.find("ConfigMap", "default", "cfg")["metadata"]["uid"] == uid
    assert not [w for w in child.writes if w[0] == "delete"]


async def test_pull_a_typo_undone_while_the_cluster_is_silent_deletes_nothing_when_it_returns() -> None:
    c, parent, child, uid, deploy = await typo_while_silent("Pull")
    await set_affinity(c, parent, "prod")
    base = parent.find("Base", *BASE)  # what the agent's still-wanted check reads
    assert base is not None and base["metadata"]["labels"][known.LABEL_SUBS_UID] == parent.find(
        "Subscription", *SUB)["metadata"]["uid"]
    mc = cluster_state(c, parent, silent=False, mode="Pull")
    await deploy(mc)  # the agent is back: the deleting Description is let go, the child untouched
    assert not [w for w in child.writes if w[0] == "delete"]
    await released(c, parent)
    await deploy(mc)
    assert child.find("ConfigMap", "default", "cfg")["metadata"]["uid"] == uid
    assert not [w for w in child.writes if w[0] == "delete"]


async def test_a_change_that_stands_is_carried_out_when_the_cluster_returns() -> None:
    for mode in ("Push", "Pull"):
        c, parent, child, _, deploy = await typo_while_silent(mode)
        await c.subscriptions.reconcile(SUB, force=False)  # still unbound: the held Description binds nothing
        assert parent.find("Base", *BASE) is None
        await deploy(cluster_state(c, parent, silent=False, mode=mode))
        assert child.find("ConfigMap", "default", "cfg") is None, mode
        assert finalizers(parent) == [], mode


def other_config_map() -> Obj:
    manifest = config_map_manifest()
    manifest["template"]["metadata"]["name"] = "cfg2"
    manifest["metadata"]["name"] = manifest_name("configmaps", "default", "cfg2")
    manifest["metadata"]["labels"] = manifest_labels(manifest["template"])
    return manifest


async def test_a_feed_removed_while_the_typo_is_undone_is_pruned_when_the_cluster_returns() -> None:
    """The fifth audit: the typo fixed and a feed dropped in one edit while the cluster was silent. The released
    Description's list of what it deployed goes to its successor (clusternet_api.carried), so the dropped feed's
    object is pruned on the cluster's return; it used to stay for good, marked, listed by nothing."""
    for mode in ("Push", "Pull"):
        c, parent, child, _, deploy = await typo_while_silent(mode, other_config_map())
        await set_affinity(c, parent, "prod", [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
                                               "name": "cfg2"}])
        mc = cluster_state(c, parent, silent=False, mode=mode)
        if mode == "Push":
            await c.pusher.push(DESC, force=True)  # the cluster is back: the hub lets it go
        else:
            await deploy(mc)  # the agent is back and lets it go
        await released(c, parent)
        await deploy(cluster_state(c, parent, silent=False, mode=mode))
        assert child.find("ConfigMap", "default", "cfg") is None, mode
        assert child.find("ConfigMap", "default", "cfg2") is not None, mode
        assert [w for w in child.writes if w[0] == "delete"] == [("delete", "ConfigMap", "default/cfg")], mode


async def test_the_hubs_mark_is_taken_back_when_the_typo_is_undone_before_the_base_is_written() -> None:
    """Pull: the hub marks the unbound Description no longer wanted (wanted.say_unwanted); the agent cleans up at once
    on the mark when the Base is missing. Undoing the typo takes the mark back before the Base is written, so an
    agent that looks in between waits for the Base instead (review s32, finding 7)."""
    c, parent, _, _, _ = await typo_while_silent("Pull")
    marked = parent.find("Description", *DESC)
    assert (marked["metadata"].get("annotations") or {}).get(known.ANNOTATION_NO_LONGER_WANTED)
    assert c.store.marked == {NS: {("Description", DESC[1])}}  # indexed from the answer, before the watch's echo
    parent.writes.clear()
    await set_affinity(c, parent, "prod")
    unmarked = parent.find("Description", *DESC)
    assert known.ANNOTATION_NO_LONGER_WANTED not in (unmarked["metadata"].get("annotations") or {})
    taken, base = (parent.writes.index(w) for w in (("patch", "Description", "/".join(DESC)),
                                                     ("apply", "Base", "/".join(BASE))))
    assert taken < base  # before the Base is written
    c.store.on_description("MODIFIED", copy.deepcopy(unmarked))
    assert c.store.marked == {}


async def test_a_mark_that_cannot_be_taken_back_holds_up_no_base(caplog: pytest.LogCaptureFixture) -> None:
    c, parent, _, _, _ = await typo_while_silent("Pull")
    parent.fail[("patch", "Description")] = ApiException(500, "etcd timeout")
    await set_affinity(c, parent, "prod")
    assert parent.find("Base", *BASE) is not None  # written all the same: the agent reads it before any mark
    assert "taking the no-longer-wanted mark back failed" in caplog.text


async def test_a_mark_is_taken_back_only_from_what_the_feeds_want_again() -> None:
    """A marked Helm Description of the same Subscription, which feeds no chart, keeps its mark."""
    c, parent, _, _, _ = await typo_while_silent("Pull")
    helm = copy.deepcopy(parent.find("Description", *DESC))
    helm["metadata"].update(name=DESC[1].removesuffix("-generic") + "-helm", uid="helm-uid")
    parent.objects[("Description", NS, helm["metadata"]["name"])] = helm
    c.store.caches.descriptions[(NS, helm["metadata"]["name"])] = copy.deepcopy(helm)
    c.store.marked[NS].add(("Description", helm["metadata"]["name"]))
    parent.writes.clear()
    await set_affinity(c, parent, "prod")
    assert [w for w in parent.writes if w[:2] == ("patch", "Description")] == [("patch", "Description", "/".join(DESC))]
