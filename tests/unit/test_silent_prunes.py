"""What a Description no longer names is deleted only while its cluster is heard from, and an object whose apply
failed once stays tracked (audit s36, findings 2 and 5)."""

from __future__ import annotations

import copy
from typing import Any

from clusternet_api import applier, known, pendingprunes
from clusternet_api.apierrors import ResourceNotFound
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
    assert got["reason"].startswith(pendingprunes.PRUNE_PENDING) and "offline" in got["reason"], got
    assert "cfg2" in [s["name"] for s in got["manifestStatuses"]]
    c.store.caches.descriptions[DESC] = copy.deepcopy(parent.find("Description", *DESC))
    assert pendingprunes.prunes_pending(c.store.caches.descriptions[DESC])
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



async def drift_off_pending(back: bool = True) -> tuple[Controller, FakeKube, FakeKube]:
    """A Description with drift correction off, a feed dropped while its cluster was silent (the prune owed), a
    hand edit the user wants kept, and the cluster back (`back`)."""
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
    assert applier.deployed(desc) and pendingprunes.prunes_pending(desc)
    edited = child.find("ConfigMap", "default", "cfg")
    assert edited is not None
    edited["data"] = {"k": "edited by hand"}
    if back:
        c.store.caches.clusters[(NS, "child1")] = cluster()
    return c, parent, child


def refusing(child: FakeKube, error: Exception, name: str | None = "cfg") -> None:
    """Reads of ConfigMap `name` (every read when None) fail with `error`."""
    real = child.get

    async def get(api_version: str, kind: str, wanted: str, namespace: str | None = None) -> Any:
        if name is None or (kind, wanted) == ("ConfigMap", name):
            raise error
        return await real(api_version, kind, wanted, namespace)

    child.get = get  # type: ignore[method-assign]


async def test_drift_correction_off_gets_a_prune_only_pass_once_the_cluster_is_back() -> None:
    """Review s36: while a prune waited, every resync re-applied a Description whose user had turned drift
    correction off, undoing hand edits. Now nothing is pushed while the cluster is silent, and once it is back only
    what dropped out is let go of."""
    c, parent, child = await drift_off_pending(back=False)
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


# --- re-review s36: prune-only passes and silent releases -----------------------------------------------------


async def test_a_read_error_in_a_prune_only_pass_puts_the_prune_off_and_applies_nothing() -> None:
    """A read failing made the pass a Failure, and the retry a full re-apply undoing the hand edit."""
    c, parent, child = await drift_off_pending()
    real = child.get
    refusing(child, ApiException(503, "the server is currently unable to handle the request"))
    await c.pusher.push(DESC, force=True)
    got = status(parent)
    assert got["phase"] == "Success" and got["reason"].startswith(pendingprunes.PRUNE_PENDING), got
    assert child.find("ConfigMap", "default", "cfg2") is not None
    child.get = real  # type: ignore[method-assign]
    c.store.caches.descriptions[DESC] = copy.deepcopy(parent.find("Description", *DESC))
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is None
    assert child.find("ConfigMap", "default", "cfg")["data"] == {"k": "edited by hand"}


async def test_a_kind_no_longer_served_does_not_hold_a_prune_only_pass_up() -> None:
    c, _, child = await drift_off_pending()
    refusing(child, ResourceNotFound('no matches for kind "ConfigMap" in version "v1"'))
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is None


async def test_a_refused_read_while_silent_keeps_what_dropped_out_listed() -> None:
    """While nothing may be deleted, release still reads; a 401 (the dead agent's expired token) was taken as
    nothing of ours there, the entry left the status, and the prune never came."""
    c, parent, child = await deployed_controller(push_secret(), other_config_map())
    await with_feeds(c, parent, add=True)
    await c.pusher.push(DESC, force=True)
    c.store.caches.clusters[(NS, "child1")] = cluster(ready="Unknown")
    await with_feeds(c, parent, feeds=1)
    real = child.get
    refusing(child, ApiException(401, "Unauthorized"), name=None)
    await c.pusher.push(DESC, force=False)
    child.get = real  # type: ignore[method-assign]
    assert "cfg2" in [s["name"] for s in status(parent)["manifestStatuses"]]
    c.store.caches.descriptions[DESC] = copy.deepcopy(parent.find("Description", *DESC))
    c.store.caches.clusters[(NS, "child1")] = cluster()
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is None


async def test_a_prune_only_pass_does_not_recreate_what_the_user_deleted() -> None:
    c, parent, child = await drift_off_pending()
    del child.objects[("ConfigMap", "default", "cfg")]
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg") is None and child.find("ConfigMap", "default", "cfg2") is None
    assert status(parent)["phase"] == "Success"


async def test_a_prune_owed_outlives_a_pending_reason_written_over_it() -> None:
    """The prune owed was read from the status's reason, which a later status (waiting for the deployer's
    credentials) replaced; it is read from the status's list now."""
    c, parent, child = await drift_off_pending()
    secret = parent.objects.pop(("Secret", NS, known.DEPLOYER_SECRET))
    c.pusher.secrets.clear()
    await c.pusher.push(DESC, force=True)
    parent.objects[("Secret", NS, known.DEPLOYER_SECRET)] = secret
    c.store.caches.descriptions[DESC] = copy.deepcopy(parent.find("Description", *DESC))
    assert pendingprunes.prunes_pending(c.store.caches.descriptions[DESC])
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is None


async def test_a_text_404_of_a_kind_deleted_since_discovery_does_not_hold_a_prune_only_pass_up() -> None:
    """Re-review s36: a client that discovered the kind before its CRD went gets the server's text 404, not
    ResourceNotFound; the pass was put off until the client was replaced (the agent's next token)."""
    c, _, child = await drift_off_pending()
    refusing(child, ApiException(404, "404 page not found"))
    await c.pusher.push(DESC, force=True)
    assert child.find("ConfigMap", "default", "cfg2") is None


def test_a_status_that_cannot_be_read_owes_a_push_rather_than_raising() -> None:
    """Re-review s36: prunes_pending decodes the spec; a bad entry raised out of the store's report handling."""
    desc = {"metadata": {}, "spec": {"raw": ["{not json"]}, "status": {"manifestStatuses": [{"kind": "ConfigMap"}]}}
    assert pendingprunes.prunes_pending(desc)
