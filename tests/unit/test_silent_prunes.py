"""What a Description no longer names is deleted only while its cluster is heard from, and an object whose apply
failed once stays tracked (audit s36, findings 2 and 5)."""

from __future__ import annotations

import copy
from typing import Any

from clusternet_api import applier
from clusternet_api.kube import ApiException
from clusternet_hub.controller import Controller
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import DESC, NS, SUB, cluster, deployed_controller, push_secret
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

