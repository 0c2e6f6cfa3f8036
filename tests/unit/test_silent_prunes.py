"""What a Description no longer names is deleted only while its cluster is heard from, and an object whose apply
failed once stays tracked (audit s36, findings 2 and 5)."""

from __future__ import annotations

import copy
from typing import Any

from clusternet_api import applier, known
from clusternet_api.kube import ApiException
from clusternet_api.ownership import Claimants
from clusternet_api.rawobjects import encode_raw
from clusternet_hub.controller import Controller
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import DESC, NS, SUB, cluster, deployed_controller, push_secret
from tests.unit.test_ownership import KEEPME, SHARED, deploy, description, stored
from tests.unit.test_ownership import NS as OWN_NS
from tests.unit.test_silent_rebind import other_config_map


async def with_feeds(c: Controller, parent: FakeKube, feeds: int | None = None, add: bool = False) -> None:
    """The Subscription with cfg2 added (`add`) or its feeds cut to the first `feeds`, rendered."""
    sub = parent.objects[("Subscription", *SUB)]
    if add:
        sub["spec"]["feeds"].append({"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg2"})
    else:
        sub["spec"]["feeds"] = sub["spec"]["feeds"][:feeds]
    c.store.on_subscription("MODIFIED", copy.deepcopy(sub))
    await c.subscriptions.reconcile(SUB, force=False)


def status(parent: FakeKube) -> dict[str, Any]:
    desc = parent.find("Description", *DESC)
    assert desc is not None
    return dict(desc.get("status") or {})


async def test_a_feed_removed_while_the_cluster_is_silent_is_deleted_only_once_it_is_back() -> None:
    """Before: only a Description's deletion waited for a silent cluster; removing a feed pushed at once and
    deleted the object in a cluster whose agent was dead (Ready=Unknown)."""
    c, parent, child = await deployed_controller(push_secret(), other_config_map())
    await with_feeds(c, parent, add=True)
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is not None
    c.store.caches.clusters[(NS, "child1")] = cluster(ready="Unknown")
    await with_feeds(c, parent, feeds=1)
    child.writes.clear()
    await c.pusher.push(DESC, force=False)
    assert not [w for w in child.writes if w[0] == "delete"]
    assert child.find("ConfigMap", "default", "cfg2") is not None
    got = status(parent)
    assert got["reason"].startswith(applier.PRUNE_PENDING) and "offline" in got["reason"], got
    assert "cfg2" in [s["name"] for s in got["manifestStatuses"]]
    c.store.caches.descriptions[DESC] = copy.deepcopy(parent.find("Description", *DESC))
    assert applier.prunes_pending(c.store.caches.descriptions[DESC])
    c.store.caches.clusters[(NS, "child1")] = cluster()  # back
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is None
    got = status(parent)
    assert got["phase"] == "Success" and not got.get("reason")
    assert [s["name"] for s in got["manifestStatuses"]] == ["cfg"]


async def test_an_object_whose_apply_failed_once_is_still_pruned_when_its_feed_goes() -> None:
    """Before: a failed re-apply dropped the object from manifestStatuses, so removing its feed then pruned nothing;
    it stayed in the child marked ours, refusing every other Subscription that deploys it."""
    c, parent, child = await deployed_controller(push_secret(), other_config_map())
    await with_feeds(c, parent, add=True)
    await c.pusher.push(DESC, force=True)
    c.store.caches.descriptions[DESC] = copy.deepcopy(parent.find("Description", *DESC))
    real = child.apply

    async def refusing_cfg2(obj: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        if obj["metadata"]["name"] == "cfg2":
            raise ApiException(500, "internal error")
        return await real(obj, *args, **kwargs)

    child.apply = refusing_cfg2  # type: ignore[method-assign]
    await c.pusher.push(DESC, force=True)
    child.apply = real  # type: ignore[method-assign]
    got = status(parent)
    assert got["phase"] == "Failure" and sorted(s["name"] for s in got["manifestStatuses"]) == ["cfg", "cfg2"]
    c.store.caches.descriptions[DESC] = copy.deepcopy(parent.find("Description", *DESC))
    await with_feeds(c, parent, feeds=1)
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is None



async def test_drift_correction_off_gets_a_prune_only_pass_once_the_cluster_is_back() -> None:
    """Review s36: while a prune waited, every resync re-applied a Description whose user had turned drift
    correction off, undoing hand edits. Now nothing is pushed while the cluster is silent, and once it is back only
    what dropped out is let go of."""
    c, parent, child = await deployed_controller(push_secret(), other_config_map())
    await with_feeds(c, parent, add=True)
    await c.pusher.push(DESC, force=True)
    c.store.caches.clusters[(NS, "child1")] = cluster(ready="Unknown")
    await with_feeds(c, parent, feeds=1)
    await c.pusher.push(DESC, force=False)
    desc = copy.deepcopy(parent.find("Description", *DESC))
    desc["metadata"].setdefault("annotations", {})[known.ANNOTATION_DRIFT_CORRECTION] = "false"
    parent.objects[("Description", *DESC)]["metadata"]["annotations"] = desc["metadata"]["annotations"]
    c.store.caches.descriptions[DESC] = desc
    assert applier.deployed(desc) and applier.prunes_pending(desc)
    edited = child.find("ConfigMap", "default", "cfg")
    assert edited is not None
    edited["data"] = {"k": "edited by hand"}  # drift the user wants kept
    child.writes.clear()
    await c.pusher.push(DESC, force=True)  # the resync, the cluster still silent: nothing
    assert child.writes == []
    c.store.caches.clusters[(NS, "child1")] = cluster()
    await c.pusher.push(DESC, force=True)
    assert [w[0] for w in child.writes] == ["delete"] and child.find("ConfigMap", "default", "cfg2") is None
    assert child.find("ConfigMap", "default", "cfg")["data"] == {"k": "edited by hand"}
    got = status(parent)
    assert got["phase"] == "Success" and not got.get("reason") and [s["name"] for s in got["manifestStatuses"]] == [
        "cfg"]


async def test_what_dropped_out_is_still_handed_over_while_the_cluster_is_silent() -> None:
    """Review s36: a silent cluster's pending prunes held back hand-overs too, which delete nothing; the Description
    that took the feed over was refused meanwhile ("two subscriptions deploy the same object")."""
    parent = FakeKube(description("d1", SHARED, KEEPME), description("d2", SHARED))
    child = FakeKube()
    await deploy(parent, child, "d1")
    await deploy(parent, child, "d2")
    parent.objects[("Description", OWN_NS, "d1")]["spec"]["raw"] = encode_raw([KEEPME])
    d1, d2 = stored(parent, "d1"), stored(parent, "d2")
    outcome = await applier.apply_description(child, d1, Claimants(d1, lambda: [d2]),
                                              prune_waits="the cluster is offline")
    assert outcome.released.handed_over == {f"{OWN_NS}.d2": ["ConfigMap pre/shared"]}
    assert outcome.released.deferred == [] and child.find("ConfigMap", "pre", "shared") is not None
