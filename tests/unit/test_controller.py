"""The hub's controller against an in-memory API: what a reconcile and a push write, and when they write nothing."""

from __future__ import annotations

import asyncio
import base64
import copy
import time
from typing import Any

from clusternet_api import known
from clusternet_api.kube import ApiException, Credentials
from clusternet_api.rawobjects import decode_raw
from clusternet_api.tunnel import ByteStream, StreamOpenError
from clusternet_api.tunnel.relay import LoopbackRelay
from clusternet_core import plan as planning
from clusternet_core import refusals, rendering
from clusternet_core.dynamic import PredictionRequest
from clusternet_core.naming import manifest_labels, manifest_name
from clusternet_hub.controller import Controller
from clusternet_hub.controller.pusher import CLEANUP_PENDING
from clusternet_hub.controller.store import TUNNEL_DOWN
from clusternet_hub.controller.workqueue import Backoff
from tests.unit.fakekube import FakeKube, Obj

NS = "clusternet-abc"
SUB = ("default", "app")
BASE = (NS, rendering.base_name("app", subscription_namespace="default"))
DESC = (NS, rendering.description_name(BASE[1], "Generic"))


def cluster(ready: str = "True", env: str = "prod") -> Obj:
    return {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
            "metadata": {"name": "child1", "namespace": NS, "uid": "mc1",
                         "labels": {"env": env, known.LABEL_CLUSTER_NAME: "child1"}},
            "spec": {"clusterId": "abc", "syncMode": "Push"},
            "status": {"appPusher": True, "conditions": [{"type": "Ready", "status": ready}]}}


def config_map_manifest(data: str = "1") -> Obj:
    template = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
                "data": {"k": data}}
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": template,
            "metadata": {"name": manifest_name("configmaps", "default", "cfg"), "namespace": known.RESERVED_NAMESPACE,
                         "labels": manifest_labels(template)}}


def subscription(finalizers: tuple[str, ...] = (known.FINALIZER_APPS,), **spec: Any) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
            "metadata": {"name": "app", "namespace": "default", "finalizers": list(finalizers)},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"env": "prod"}}}],
                     "feeds": [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"}],
                     **spec}}


def push_secret() -> Obj:
    data = {"token": b"t0k3n", "apiserver-advertise-url": b"https://child.example:6443"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": known.DEPLOYER_SECRET, "namespace": NS},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def namespace() -> Obj:
    """The cluster's dedicated namespace, live: a deployer checks it before cleaning up (namespaceguard)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}


def unsubscribe(parent: FakeKube, c: Controller) -> None:
    """Delete the parent's Subscriptions, as the hub's watch then tells it: what makes a Description's deletion an
    ordinary one, which cleans up (a deletion while its Subscription still wants it does not: controller/wanted.py;
    nor one the parent says is gone while the watch still holds it)."""
    for key in [k for k in parent.objects if k[0] == "Subscription"]:
        c.store.on_subscription("DELETED", parent.objects.pop(key))


async def no_tunnel(cluster_id: str) -> None:
    return None


async def primed(*objects: Obj) -> tuple[Controller, FakeKube, FakeKube]:
    """A controller whose caches hold `objects` as the parent stores them, and the fake child it pushes to."""
    parent, child = FakeKube(namespace(), *objects), FakeKube()
    connected: list[Credentials] = []

    def connect(creds: Credentials, connections: int, opener: object) -> FakeKube:
        connected.append(creds)
        return child

    c = Controller(parent, {}, no_tunnel, connect=connect)
    await c.store.prime(parent)
    c.store.queue.drain()
    return c, parent, child


def cached_sub(c: Controller) -> Obj:
    return c.store.caches.subscriptions[SUB]


# --- reconcile ------------------------------------------------------------------------------------------------


async def test_a_new_subscription_first_gets_the_hubs_finalizer_and_nothing_else() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription(finalizers=()))
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.writes == [("patch", "Subscription", "default/app")]
    assert parent.find("Subscription", "default", "app")["metadata"]["finalizers"] == [known.FINALIZER_APPS]


async def test_a_bound_cluster_gets_its_base_and_description_and_the_status_says_so() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.kinds_written() == ["apply Base", "apply Description", "patch/status Subscription"]
    base, desc = parent.find("Base", *BASE), parent.find("Description", *DESC)
    assert desc["metadata"]["ownerReferences"][0]["uid"] == base["metadata"]["uid"]
    [cm] = decode_raw(desc["spec"]["raw"])
    assert cm["data"] == {"k": "1"}
    status = parent.find("Subscription", *SUB)["status"]
    assert status["bindingClusters"] == [f"{NS}/child1"] and status["desiredReleases"] == 1
    # the new Description is queued for its push at once, not when the watch brings it back
    assert (("push", *DESC), False) in c.store.queue.drain()


async def test_reconciling_again_without_changes_writes_nothing() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.writes == []


async def test_a_changed_template_is_rendered_again() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    parent.writes.clear()
    c.store.queue.drain()
    c.store.on_manifest("MODIFIED", config_map_manifest("2"))
    assert [k for k, _ in c.store.queue.drain()] == [("sub", *SUB)]
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.kinds_written() == ["apply Description"]
    [cm] = decode_raw(parent.find("Description", *DESC)["spec"]["raw"])
    assert cm["data"] == {"k": "2"}


async def test_an_apply_later_override_waits_for_the_next_change_unless_forced() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    c.store.caches.localizations[(NS, "loc")] = {
        "apiVersion": known.APPS_API_VERSION, "kind": "Localization", "metadata": {"name": "loc", "namespace": NS},
        "spec": {"overridePolicy": "ApplyLater", "priority": 500,
                 "feed": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"},
                 "overrides": [{"name": "x", "type": "MergePatch", "value": '{"data":{"k":"local"}}'}]}}
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.writes == []  # the inputs hash is unchanged: the rendered objects stay
    await c.subscriptions.reconcile(SUB, force=True)
    [cm] = decode_raw(parent.find("Description", *DESC)["spec"]["raw"])
    assert cm["data"] == {"k": "local"}


def localization(policy: str, value: str = "local", uid: str = "loc-1") -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Localization",
            "metadata": {"name": "loc", "namespace": NS, "uid": uid, "generation": 1},
            "spec": {"overridePolicy": policy, "priority": 500,
                     "feed": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"},
                     "overrides": [{"name": "x", "type": "MergePatch", "value": f'{{"data":{{"k":"{value}"}}}}'}]}}


def deployed_data(parent: FakeKube) -> dict[str, str]:
    [cm] = decode_raw(parent.find("Description", *DESC)["spec"]["raw"])
    return dict(cm["data"])


async def test_an_apply_now_override_deleted_while_no_hub_watched_is_rolled_back() -> None:
    """Audit 7: only the event of an ApplyNow override's deletion forced the re-render; deleted while no hub was
    watching (a restart, a leader failover), it stayed applied for good. The Description records which ApplyNow
    overrides it was rendered with, and an unforced reconcile that finds another set renders again."""
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription(), localization("ApplyNow"))
    await c.subscriptions.reconcile(SUB, force=False)
    assert deployed_data(parent) == {"k": "local"}
    c.store.caches.descriptions[DESC] = parent.find("Description", *DESC)  # as the watch brings it
    del c.store.caches.localizations[(NS, "loc")]  # deleted while no hub watched: a new leader never sees it go
    await c.subscriptions.reconcile(SUB, force=False)
    assert deployed_data(parent) == {"k": "1"}
    c.store.caches.descriptions[DESC] = parent.find("Description", *DESC)
    c.store.caches.localizations[(NS, "loc")] = localization("ApplyNow", "again", uid="loc-2")  # and created
    await c.subscriptions.reconcile(SUB, force=False)
    assert deployed_data(parent) == {"k": "again"}


async def test_an_apply_now_change_in_one_cluster_leaves_another_clusters_apply_later_waiting() -> None:
    """The ApplyNow change forced a re-render of every cluster of the Subscription, rolling out an ApplyLater
    Localization waiting in another one (audit s35)."""
    other_ns = "clusternet-def"
    child2 = cluster() | {"metadata": {**cluster()["metadata"], "name": "child2", "namespace": other_ns, "uid": "mc2"}}
    c, parent, _ = await primed(cluster(), child2, config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    for ns in (NS, other_ns):
        c.store.caches.descriptions[(ns, DESC[1])] = parent.find("Description", ns, DESC[1])
    later = localization("ApplyLater", "later") | {"metadata": {"name": "loc", "namespace": other_ns, "uid": "l2"}}
    c.store.on_override("ADDED", later)
    c.store.queue.drain()
    c.store.on_override("ADDED", localization("ApplyNow", "now"))
    for (_, *key), force in c.store.queue.drain():
        await c.subscriptions.reconcile(tuple(key), force=force)  # type: ignore[arg-type]
    assert deployed_data(parent) == {"k": "now"}
    [cm] = decode_raw(parent.find("Description", other_ns, DESC[1])["spec"]["raw"])
    assert cm["data"] == {"k": "1"}  # waits for the next change of the Subscription or a feed


async def test_an_apply_later_override_deleted_while_no_hub_watched_still_waits() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription(), localization("ApplyLater"))
    await c.subscriptions.reconcile(SUB, force=False)
    c.store.caches.descriptions[DESC] = parent.find("Description", *DESC)
    del c.store.caches.localizations[(NS, "loc")]
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.writes == [] and deployed_data(parent) == {"k": "local"}  # until the next change of a feed


async def test_a_description_from_before_the_apply_now_record_keeps_its_objects() -> None:
    """One written by an older hub has no record: its objects are kept (an ApplyLater change pending at the
    upgrade still waits) and the record is added."""
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    desc = parent.find("Description", *DESC)
    del desc["metadata"]["annotations"][planning.ANNOTATION_APPLY_NOW]
    c.store.caches.descriptions[DESC] = desc
    c.store.caches.localizations[(NS, "loc")] = localization("ApplyLater")
    await c.subscriptions.reconcile(SUB, force=False)
    desc = parent.find("Description", *DESC)
    assert deployed_data(parent) == {"k": "1"} and desc["metadata"]["annotations"][planning.ANNOTATION_APPLY_NOW]


async def test_a_cluster_no_longer_matched_loses_its_base() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    c.store.caches.clusters[(NS, "child1")] = cluster(env="dev")
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert ("delete", "Base", "/".join(BASE)) in parent.writes
    assert parent.find("Subscription", *SUB)["status"]["bindingClusters"] == []


async def test_a_deleted_subscription_removes_its_bases_then_its_finalizer() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    c.store.caches.bases[BASE] = parent.find("Base", *BASE)  # as the watch reports it
    sub = parent.find("Subscription", *SUB)
    sub["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    c.store.on_subscription("MODIFIED", sub)
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.writes == [("delete", "Base", "/".join(BASE)), ("patch", "Subscription", "default/app")]
    assert parent.find("Subscription", *SUB)["metadata"]["finalizers"] == []


BINPACK = {"type": "Dynamic", "dynamicDividing": {"strategy": "Binpack"}}  # refused: Clusternet does not implement it


async def test_an_invalid_subscription_is_refused_in_its_status_alone() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(),
                                subscription(schedulingStrategy="Dividing", dividingScheduling=BINPACK))
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.kinds_written() == ["apply FeedInventory", "patch/status Subscription"]
    [ready] = parent.find("Subscription", *SUB)["status"]["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSubscription")


async def test_a_subscription_made_invalid_keeps_its_status_fields() -> None:
    """The refusal wrote {} as the status; with nulls for what it lacks (substatus.status_patch) that wiped the
    bindings and reports of what stays deployed (review s35)."""
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    bound = parent.find("Subscription", *SUB)["status"]["bindingClusters"]
    sub = parent.find("Subscription", *SUB)
    sub["spec"] |= {"schedulingStrategy": "Dividing", "dividingScheduling": BINPACK}
    c.store.on_subscription("MODIFIED", sub)
    await c.subscriptions.reconcile(SUB, force=False)
    status = parent.find("Subscription", *SUB)["status"]
    assert status["bindingClusters"] == bound == ["clusternet-abc/child1"]
    assert status["conditions"][0]["reason"] == "InvalidSubscription"


async def test_a_template_gone_from_the_cache_refuses_the_subscription_and_keeps_what_it_deployed() -> None:
    """A feed whose Manifest is missing (deleted by mistake, or not seen yet) used to be rendered out of the
    Description, and the deployer then removed its object from the child. Now the Subscription is refused as
    a whole, as for an ambiguous feed: Base and Description stay as they are."""
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    description = parent.find("Description", *DESC)
    assert description is not None
    manifest = config_map_manifest()
    c.store.caches.manifests.clear()  # not in the cache: checked against the API once, where it still is
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.kinds_written() == [] and manifest["metadata"]["name"] in c.store.caches.manifests
    del parent.objects[("Manifest", known.RESERVED_NAMESPACE, manifest["metadata"]["name"])]
    c.store.caches.manifests.clear()  # now gone from the API too
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.kinds_written() == ["create Event", "patch/status Subscription"]
    assert parent.find("Description", *DESC) == description and parent.find("Base", *BASE) is not None
    [ready] = parent.find("Subscription", *SUB)["status"]["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", refusals.REASON_FEED_NOT_FOUND)
    assert "v1/ConfigMap default/cfg not found" in ready["message"] and "nothing is deployed" in ready["message"]
    [event] = [o for (kind, _, _), o in parent.objects.items() if kind == "Event"]  # as for an ambiguous feed
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "FeedNotFound", ready["message"])


async def test_a_template_the_watch_saw_deleted_is_not_put_back_by_a_list_read_after_it() -> None:
    """The day-2 audit: a deleted Manifest stayed in the cache (no FeedNotFound, and a new Subscription was
    rendered from it), most likely from a catch-up LIST answered before the delete and read after it."""
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    manifest = config_map_manifest()
    name = manifest["metadata"]["name"]
    c.store.on_manifest("DELETED", parent.find("Manifest", known.RESERVED_NAMESPACE, name))  # the API still has it
    await c.subscriptions.reconcile(SUB, force=False)
    [ready] = parent.find("Subscription", *SUB)["status"]["conditions"]
    assert ready["reason"] == refusals.REASON_FEED_NOT_FOUND and name not in c.store.caches.manifests


async def test_a_missing_feed_lists_the_templates_once_per_subscription_generation() -> None:
    c, parent, _ = await primed(cluster(), subscription())
    lists: list[str] = []
    listing = parent.list

    async def counted(api_version: str, kind: str, namespace: str | None = None,
                      label_selector: str | None = None) -> list[Obj]:
        lists.append(kind)
        return await listing(api_version, kind, namespace, label_selector)

    parent.list = counted  # type: ignore[method-assign]
    for _ in range(3):  # resyncs
        await c.subscriptions.reconcile(SUB, force=True)
    assert lists.count("Manifest") == 1


async def test_a_dividing_subscription_writes_its_feed_inventory_and_removes_it_when_it_stops_dividing() -> None:
    static = {"type": "Static"}
    c, parent, _ = await primed(cluster(), config_map_manifest(),
                                subscription(schedulingStrategy="Dividing", dividingScheduling=static))
    sub = cached_sub(c)
    sub["metadata"]["uid"] = parent.find("Subscription", *SUB)["metadata"]["uid"]
    plan = planning.plan_subscription(sub, c.store.caches, force=False)
    assert plan.action == "deploy" and plan.inventory is not None and not plan.delete_inventory
    await c.subscriptions.apply(sub, plan)
    assert parent.find("FeedInventory", *SUB) is not None
    replicated = {**sub, "spec": {**sub["spec"], "schedulingStrategy": "Replication"}}
    plan = planning.plan_subscription(replicated, c.store.caches, force=False)
    assert plan.inventory is None and plan.delete_inventory
    await c.subscriptions.apply(replicated, plan)
    assert parent.find("FeedInventory", *SUB) is None and SUB not in c.store.caches.inventories


async def test_a_split_no_longer_divided_leaves_status_replicas_and_the_status_is_not_rewritten() -> None:
    """The status is a merge patch: `replicas: {}` kept the old split for good (after Dividing -> Replication, or a
    divided feed removed), and every reconcile then rewrote the status, the server's copy never matching."""
    was_divided = subscription() | {"status": {"replicas": {"apps/v1/Deployment/default/web": [2, 4]}}}
    c, parent, _ = await primed(cluster(), config_map_manifest(), was_divided)
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Subscription", *SUB)["status"]["replicas"] == {}
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=True)
    assert [w for w in parent.writes if w[0] == "patch/status"] == []


async def test_a_dividing_subscription_without_weights_says_what_it_does() -> None:
    """Each cluster runs the full count (as in Clusternet); the Subscription read `1/1 clusters done` (audit s35)."""
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription(
        schedulingStrategy="Dividing", dividingScheduling={"type": "Static"}))
    await c.subscriptions.reconcile(SUB, force=False)
    [ready] = parent.find("Subscription", *SUB)["status"]["conditions"]
    assert "Dividing without weights" in ready["message"]
    weighted = subscription(schedulingStrategy="Dividing", dividingScheduling={"type": "Static"},
                            subscribers=[{"clusterAffinity": {"matchLabels": {"env": "prod"}}, "weight": 1}])
    c, parent, _ = await primed(cluster(), config_map_manifest(), weighted)
    await c.subscriptions.reconcile(SUB, force=False)
    [ready] = parent.find("Subscription", *SUB)["status"]["conditions"]
    assert "weights" not in ready["message"]


# --- push -----------------------------------------------------------------------------------------------------


async def deployed_controller(*extra: Obj) -> tuple[Controller, FakeKube, FakeKube]:
    c, parent, child = await primed(cluster(), config_map_manifest(), subscription(), *extra)
    await c.subscriptions.reconcile(SUB, force=False)
    c.store.queue.drain()
    parent.writes.clear()
    return c, parent, child


async def test_a_push_applies_the_description_in_the_child_and_reports_it_once() -> None:
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    assert child.kinds_written() == ["apply ConfigMap"]
    cm = child.find("ConfigMap", "default", "cfg")
    assert cm["metadata"]["annotations"][known.ANNOTATION_OWNED_BY_DESCRIPTION] == ".".join(DESC)
    assert ("patch/status", "Description", "/".join(DESC)) in parent.writes
    assert parent.find("Description", *DESC)["status"]["phase"] == "Success"
    child.writes.clear()
    await c.pusher.push(DESC)  # pushed already (same uid and generation): drift is the resync's job
    assert child.writes == []
    await c.pusher.push(DESC, force=True)
    assert child.kinds_written() == ["apply ConfigMap"]


async def test_without_the_agents_credentials_the_description_says_what_it_waits_for() -> None:
    c, parent, child = await deployed_controller()
    await c.pusher.push(DESC)
    assert child.writes == [] and parent.kinds_written() == ["patch/status Description"]
    assert known.DEPLOYER_SECRET in parent.find("Description", *DESC)["status"]["reason"]


async def test_a_failed_push_comes_back_later_with_growing_delay_and_success_resets_it() -> None:
    c, _, child = await deployed_controller(push_secret())
    child.fail[("apply", "ConfigMap")] = ApiException(403, "Forbidden")
    await c.pusher.push(DESC)
    assert c.pusher.retries.current(DESC) == 2.0
    await c.pusher.push(DESC, force=True)
    assert c.pusher.retries.current(DESC) == 4.0
    child.fail.clear()
    await c.pusher.push(DESC, force=True)
    assert c.pusher.retries.current(DESC) is None


async def pushed_then_deleted_offline(sync_mode: str = "Push") -> tuple[Controller, FakeKube, FakeKube]:
    """A pushed Description deleted while its cluster (now in `sync_mode`) is offline, pushed again."""
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    desc = parent.find("Description", *DESC)
    desc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    unsubscribe(parent, c)
    c.store.on_description("MODIFIED", desc)
    offline = cluster(ready="Unknown")
    offline["spec"]["syncMode"] = sync_mode
    c.store.caches.clusters[(NS, "child1")] = offline
    child.writes.clear()
    await c.pusher.push(DESC)
    return c, parent, child


async def test_cleanup_waits_for_an_offline_cluster_then_removes_the_objects_and_the_finalizer() -> None:
    c, parent, child = await pushed_then_deleted_offline()
    assert child.writes == [] and "offline" in parent.find("Description", *DESC)["status"]["reason"]
    c.store.caches.clusters[(NS, "child1")] = cluster()
    await c.pusher.push(DESC)
    assert child.writes == [("delete", "ConfigMap", "default/cfg")]
    assert known.FINALIZER_APPS not in parent.find("Description", *DESC)["metadata"]["finalizers"]


async def test_a_pulled_description_deleted_while_its_cluster_is_offline_says_cleanup_pending() -> None:
    """The agent cleans up Pull clusters; while it is silent the Description said Success (the day-2 audit)."""
    _, parent, child = await pushed_then_deleted_offline("Pull")
    status = parent.find("Description", *DESC)["status"]
    assert child.writes == [] and status["reason"].startswith("cleanup pending: the cluster is offline")
    assert status["phase"] == "Success"  # what it last reported: the workloads still run
    assert known.FINALIZER_APPS in parent.find("Description", *DESC)["metadata"]["finalizers"]  # the agent's


async def test_an_object_the_deleted_description_held_passes_to_the_one_refused_it_which_is_pushed_at_once(
) -> None:
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    other = copy.deepcopy(parent.find("Description", *DESC))
    other["metadata"].update(name="other-generic", uid="uid-other")
    other.pop("status")
    await parent.create(other)
    c.store.on_description("ADDED", parent.find("Description", NS, "other-generic"))
    c.store.queue.drain()
    await c.pusher.push((NS, "other-generic"))
    assert "two subscriptions" in parent.find("Description", NS, "other-generic")["status"]["reason"]
    uid = child.find("ConfigMap", "default", "cfg")["metadata"]["uid"]
    desc = parent.find("Description", *DESC)
    desc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    unsubscribe(parent, c)
    c.store.on_description("MODIFIED", desc)
    c.store.queue.drain()
    await c.pusher.push(DESC)
    cm = child.find("ConfigMap", "default", "cfg")
    assert cm["metadata"]["uid"] == uid  # handed over, never deleted
    assert cm["metadata"]["annotations"][known.ANNOTATION_OWNED_BY_DESCRIPTION] == f"{NS}.other-generic"
    assert c.store.queue.drain() == [(("push", NS, "other-generic"), True)]  # not at its next resync
    assert [e["involvedObject"]["name"] for (kind, _, _), e in parent.objects.items()
            if kind == "Event" and e["reason"] == "TookOver"] == ["other-generic"]


async def test_a_deleted_description_of_a_cluster_that_is_gone_is_released_at_once() -> None:
    c, parent, child = await deployed_controller(push_secret())
    desc = parent.find("Description", *DESC)
    desc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    c.store.on_description("MODIFIED", desc)
    del c.store.caches.clusters[(NS, "child1")]
    await c.pusher.push(DESC)
    assert parent.writes == [("patch", "Description", "/".join(DESC))] and child.writes == []


def tunnel_cluster(ready: str = "True") -> Obj:
    """A cluster whose agent reports useSocket: reached through its tunnel alone (Clusternet's rule)."""
    mc = cluster(ready)
    mc["status"]["useSocket"] = True
    return mc


async def test_a_cluster_with_a_tunnel_is_never_dialled_at_its_advertised_url_while_the_tunnel_is_down() -> None:
    c, parent, child = await deployed_controller(push_secret())
    connected: list[object] = []
    c.pusher.connect = lambda creds, connections, opener: connected.append(opener) or child  # type: ignore
    c.store.caches.clusters[(NS, "child1")] = tunnel_cluster()
    await c.pusher.push(DESC)
    assert connected == [] and child.writes == []
    assert parent.find("Description", *DESC)["status"]["reason"] == TUNNEL_DOWN
    assert list(c.store.queue._later) == [("push", *DESC)]  # tried again with backoff, and when it is back:
    c.store.on_description("MODIFIED", parent.find("Description", *DESC))
    c.store.queue.drain()
    back = tunnel_cluster()
    back["status"]["conditions"].append({"type": known.CONDITION_SOCKET, "status": "True"})
    c.store.on_cluster("MODIFIED", back, tunnel_cluster())
    assert c.store.queue.drain() == [(("push", *DESC), True)]

    async def tunnel(cluster_id: str) -> object:
        return "opener"

    c.pusher.tunnel_opener = tunnel  # type: ignore[assignment]
    await c.pusher.push(DESC)
    assert connected == ["opener"] and child.kinds_written() == ["apply ConfigMap"]
    assert parent.find("Description", *DESC)["status"]["phase"] == "Success"
    c.pusher.tunnel_opener = no_tunnel  # type: ignore[assignment]
    c.store.on_description("MODIFIED", parent.find("Description", *DESC))
    parent.writes.clear()
    await c.pusher.push(DESC, force=True)  # a drift check of what is deployed: retried, not written
    assert parent.writes == [] and list(c.store.queue._later) == [("push", *DESC)]
    changed = parent.find("Description", *DESC)  # a new generation waits: Pending, not the last one's Success
    changed["metadata"]["generation"] = 2
    c.store.on_description("MODIFIED", changed)
    await c.pusher.push(DESC)
    status = parent.find("Description", *DESC)["status"]
    assert (status["phase"], status["reason"], status["observedGeneration"]) == ("Pending", TUNNEL_DOWN, 1)


async def test_an_offline_tunnel_cluster_says_cleanup_pending_not_tunnel_down() -> None:
    c, parent, child = await deployed_controller(push_secret(), tunnel_cluster(ready="Unknown"))
    unsubscribe(parent, c)
    desc = parent.find("Description", *DESC)
    desc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    c.store.on_description("MODIFIED", desc)
    await c.pusher.push(DESC)
    assert child.writes == [] and parent.find("Description", *DESC)["status"]["reason"] == CLEANUP_PENDING


async def test_child_connections_are_reused_and_closed_with_the_controller() -> None:
    c, _, child = await deployed_controller(push_secret())
    mc = c.store.caches.clusters[(NS, "child1")]
    first = await c.pusher.child_client(mc)
    assert first is child and await c.pusher.child_client(mc) is first
    await c.pusher.close()
    assert child.closed


async def test_a_rotated_child_ca_makes_a_new_client() -> None:
    """Audit s36: the client was kept while the token stayed, so a child whose CA was rotated (ca.crt rewritten by
    its agent, same token) failed TLS at every push until the agent's next token."""
    c, parent, _ = await deployed_controller(push_secret())
    mc = c.store.caches.clusters[(NS, "child1")]
    made: list[Any] = []
    real = c.pusher.connect
    c.pusher.connect = lambda creds, *args: made.append(creds.ca_pem) or real(creds, *args)  # type: ignore[assignment]
    await c.pusher.child_client(mc)
    made.clear()
    secret = parent.objects[("Secret", NS, known.DEPLOYER_SECRET)]
    secret["data"]["ca.crt"] = base64.b64encode(b"new CA").decode()
    c.pusher.secrets.clear()  # read again, as after its cache time
    await c.pusher.child_client(mc)
    await c.pusher.child_client(mc)
    assert made == [b"new CA"]


# --- status pacing and resync -----------------------------------------------------------------------------------


async def test_status_of_a_big_subscription_is_rewritten_at_its_pace_and_nothing_is_lost() -> None:
    c, _, _ = await primed(subscription())
    writes: list[float] = []

    async def fake_update(key: tuple[str, str], inputs: Any = None) -> None:
        writes.append(asyncio.get_running_loop().time())
        c.status.written[key] = (time.monotonic(), 0.02)  # a write that took 20 ms

    c.status.update = fake_update  # type: ignore[method-assign]
    await c.status.paced_update(SUB)  # nothing written yet: at once
    assert len(writes) == 1
    for _ in range(5):  # reports arriving within 10 x 20 ms: one later write for all of them
        await c.status.paced_update(SUB)
    assert len(writes) == 1 and len(c.store.queue) == 0 and SUB in c.status.later
    await asyncio.sleep(0.25)
    assert c.store.queue.drain() == [(("status", *SUB), False)] and SUB not in c.status.later
    await c.status.paced_update(SUB)
    assert len(writes) == 2 and writes[1] - writes[0] >= 0.2 - 0.01


async def test_a_deleted_subscription_forgets_its_status_pacing() -> None:
    c, _, _ = await primed(subscription())
    c.status.written[SUB] = (time.monotonic(), 0.02)
    c.store.on_subscription("DELETED", cached_sub(c))
    [(item, _)] = c.store.queue.drain()
    await c.process(item, False)
    assert SUB not in c.status.written


async def test_resync_pushes_again_only_what_is_neither_fresh_nor_already_on_its_way() -> None:
    c, _, _ = await primed()
    for name in ("old", "fresh", "in-flight", "queued"):
        c.store.caches.descriptions[("ns", name)] = {"metadata": {"name": name, "namespace": "ns"}}
    now = time.monotonic()
    c.pusher.pushed[("ns", "old")] = ("u", 1, now - c.resync_interval)
    c.pusher.pushed[("ns", "fresh")] = ("u", 1, now)
    c.store.enqueue("push", ("ns", "in-flight"))
    await c.store.queue.get()  # a worker has it
    c.store.enqueue("push", ("ns", "queued"))  # by an event, not taken by a worker yet
    c.pusher.resync(c.resync_interval)
    assert c.store.queue.drain() == [(("push", "ns", "queued"), False), (("push", "ns", "old"), True)]


async def test_the_resync_releases_what_was_kept_for_a_removed_cluster() -> None:
    """A child client, a Helm relay listening on a loopback port and cached credentials are kept per cluster for
    its next push: once the cluster is removed, the periodic resync closes and drops them."""
    c, _, _ = await primed(cluster())
    kept, gone = FakeKube(), FakeKube()
    c.pusher.children = {"abc": ("fp", kept), "removed": ("fp", gone)}
    c.pusher.secrets = {NS: (time.monotonic() + 60, {}), "clusternet-removed": (time.monotonic() + 60, {})}
    relays = {cluster_id: await LoopbackRelay(no_stream).start() for cluster_id in ("abc", "removed")}
    c.releases.relays = dict(relays)
    c.releases.pull_secrets = {NS: {}, "clusternet-removed": {}}
    c.resync_interval = 0.01
    resync = asyncio.create_task(c._resync())
    await asyncio.sleep(0.3)  # a few resync periods
    resync.cancel()
    await asyncio.wait({resync})
    try:
        assert gone.closed and not kept.closed and list(c.pusher.children) == ["abc"]
        assert list(c.pusher.secrets) == [NS] and list(c.releases.pull_secrets) == [NS]
        assert relays["removed"].server is None and relays["abc"].server is not None
        assert list(c.releases.relays) == ["abc"]
    finally:
        for relay in relays.values():
            await relay.close()


async def no_stream() -> ByteStream:
    raise StreamOpenError("no tunnel here")


async def test_a_failing_work_item_comes_back_without_holding_its_worker() -> None:
    c, _, _ = await primed()
    calls: list[tuple[Any, bool]] = []

    async def failing(item: Any, force: bool) -> None:
        calls.append((item, force))
        if len(calls) == 1:
            raise RuntimeError("parent out of reach")

    c.process = failing  # type: ignore[method-assign]
    c.error_retries = Backoff(0.05, 0.05)
    c.store.enqueue("sub", SUB, force=True)
    worker = asyncio.create_task(c._worker())
    await asyncio.sleep(0.02)
    assert len(calls) == 1 and not c.store.queue.waiting(("sub", *SUB))  # the worker is free meanwhile
    await asyncio.sleep(0.1)
    worker.cancel()
    assert calls == [(("sub", *SUB), True), (("sub", *SUB), True)]


async def test_a_conflict_is_retried_without_a_warning(caplog: Any) -> None:
    """Audit 6: routine 409s (someone wrote first) were logged as warnings; other failures still are."""
    c, _, _ = await primed()

    async def failing(item: Any, force: bool) -> None:
        raise ApiException(409 if item[0] == "sub" else 500, "Conflict")

    c.process = failing  # type: ignore[method-assign]
    c.store.queue.add_after = lambda item, delay, force=False: None  # type: ignore[method-assign]
    worker = asyncio.create_task(c._worker())
    with caplog.at_level("INFO"):
        c.store.enqueue("sub", SUB)
        c.store.enqueue("status", SUB)
        await asyncio.sleep(0.02)
    worker.cancel()
    assert [(r.levelname, r.getMessage()[:10]) for r in caplog.records if "retrying" in r.getMessage()] == [
        ("INFO", "sub defaul"), ("WARNING", "status def")]


async def test_a_work_item_failing_again_and_again_backs_off() -> None:
    """A fixed 2 s had every key retry (and log) every 2 s for as long as the parent was down."""
    c, _, _ = await primed()
    delays: list[float] = []

    async def failing(item: Any, force: bool) -> None:
        raise RuntimeError("parent out of reach")

    c.process = failing  # type: ignore[method-assign]
    c.store.queue.add_after = lambda item, delay, force=False: delays.append(delay)  # type: ignore[method-assign]
    worker = asyncio.create_task(c._worker())
    for _ in range(6):
        c.store.enqueue("sub", SUB)
        await asyncio.sleep(0.01)
    worker.cancel()
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


async def test_the_same_failure_again_is_warned_about_once_and_a_new_one_at_once(caplog: Any) -> None:
    """A cleanup the hub cannot judge (a refused Subscription) fails its push every minute for as long as it waits:
    a warning per retry, for every waiting object, for days. The status says why all along."""
    c, _, _ = await primed()
    errors = ["Subscription refused"] * 4 + ["parent out of reach", None, "parent out of reach"]

    async def failing(item: Any, force: bool) -> None:
        if (error := errors.pop(0)) is not None:
            raise RuntimeError(error)

    c.process = failing  # type: ignore[method-assign]
    c.store.queue.add_after = lambda item, delay, force=False: None  # type: ignore[method-assign]
    worker = asyncio.create_task(c._worker())
    with caplog.at_level("DEBUG"):
        for _ in range(7):
            c.store.enqueue("sub", SUB)
            await asyncio.sleep(0.01)
    worker.cancel()
    assert [(r.levelname, str(r.args[-1])) for r in caplog.records if "retrying" in r.getMessage()] == [
        ("WARNING", "Subscription refused"), *[("DEBUG", "Subscription refused")] * 3,
        ("WARNING", "parent out of reach"), ("WARNING", "parent out of reach")]  # changed; after a success


async def test_no_description_is_written_under_a_base_someone_deletes_in_the_foreground() -> None:
    """The sixth audit: `kubectl delete base --cascade=foreground` keeps the Base, deleting, until its Descriptions
    are gone; the hub wrote them again under it for 15 s, each deleted again by the garbage collector. It now waits
    for the Base to go, whose deletion brings the plan back to write both anew."""
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    base = parent.find("Base", *BASE)
    base["metadata"].update(deletionTimestamp="2026-12-06T00:00:00Z", finalizers=["foregroundDeletion"])
    del parent.objects[("Description", *DESC)]
    c.store.on_base("MODIFIED", copy.deepcopy(base))
    c.store.on_description("DELETED", {"metadata": {"name": DESC[1], "namespace": NS}})
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert "apply Description" not in parent.kinds_written()
    del parent.objects[("Base", *BASE)]  # the garbage collector is done: the Base goes, and comes back
    c.store.on_base("DELETED", base)
    assert ("sub", *SUB) in [k for k, _ in c.store.queue.drain()]
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Description", *DESC) is not None


# --- dynamic dividing -----------------------------------------------------------------------------------------------


def deployment_manifest(replicas: int) -> Obj:
    template = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "1"}}}]}}}}
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": template,
            "metadata": {"name": manifest_name("deployments", "default", "web"),
                         "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(template)}}


async def test_a_dynamic_scale_up_asks_the_predictors_and_says_what_found_no_room() -> None:
    feeds = [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": "web"}]
    c, parent, _ = await primed(cluster(), deployment_manifest(5), subscription(
        schedulingStrategy="Dividing", dividingScheduling={"type": "Dynamic"}, feeds=feeds))
    asked: list[PredictionRequest] = []
    room = [3]

    async def predict(request: PredictionRequest) -> dict[str, Any]:
        asked.append(request)
        return {key: {feed: room[0] for feed in request.requirements} for key, _ in request.clusters}

    c.subscriptions.predict = predict
    await c.subscriptions.reconcile(SUB, force=False)
    [request] = asked
    assert [key for key, _ in request.clusters] == [f"{NS}/child1"]
    assert request.requirements == {"apps/v1/Deployment/default/web": {"resources": {"requests": {"cpu": "1"}}}}
    status = parent.find("Subscription", *SUB)["status"]
    assert status["replicas"] == {"apps/v1/Deployment/default/web": [3]}
    [ready] = status["conditions"]
    assert ready["status"] == "False" and ready["reason"] == "InsufficientCapacity"
    assert "2 replica(s) of apps/v1/Deployment/default/web found no room" in ready["message"]

    def warned() -> list[str]:
        return [o["message"] for (kind, _, _), o in parent.objects.items()
                if kind == "Event" and o["reason"] == "InsufficientCapacity"]

    assert len(warned()) == 1 and "found no room" in warned()[0]
    c.store.caches.subscriptions[SUB]["status"] = status
    room[0] = 10
    await c.subscriptions.reconcile(SUB, force=False)  # its Description is not applied yet: it gets none of it
    status = parent.find("Subscription", *SUB)["status"]
    assert status["replicas"] == {"apps/v1/Deployment/default/web": [3]}
    assert f"no prediction from {NS}/child1: still applying its last share" in status["conditions"][0]["message"]
    assert len(warned()) == 1  # said when it began, not at each new message
    c.store.caches.subscriptions[SUB]["status"] = status
    [desc] = [d for d in c.store.caches.descriptions.values() if d["spec"].get("deployer") == "Generic"]
    desc["status"] = {"phase": "Success", "observedGeneration": desc["metadata"].get("generation")}
    await c.subscriptions.reconcile(SUB, force=False)  # applied, room at last: the 2 go there
    status = parent.find("Subscription", *SUB)["status"]
    assert status["replicas"] == {"apps/v1/Deployment/default/web": [5]}
    assert status["conditions"][0]["reason"] != "InsufficientCapacity"
    c.store.caches.subscriptions[SUB]["status"] = status
    await c.subscriptions.reconcile(SUB, force=False)  # no deviation: no question
    assert len(asked) == 3


async def test_a_report_while_failing_back_brings_a_reconcile() -> None:
    """The others keep a returning cluster's share until it reports it available (failover.failback_split): only a
    reconcile reads that report, so a report's status rewrite asks for one instead of waiting for the resync."""
    c, _, _ = await primed(subscription())
    uid = str(cached_sub(c)["metadata"]["uid"])
    c.status.decided[SUB] = (uid, planning.StatusInputs(["ns/c"], {}, None, []))
    await c.status.update(SUB)
    assert not c.store.queue.waiting(("sub", *SUB))
    c.status.decided[SUB] = (uid, planning.StatusInputs(["ns/c"], {}, None, [], failing_back=["ns/c"]))
    await c.status.update(SUB)
    assert c.store.queue.waiting(("sub", *SUB))


async def test_a_reconcile_while_failing_back_comes_back_when_the_reports_start_to_count() -> None:
    """Reports of a returning cluster count one heartbeat period after its return (placement.feed_ready): the
    reconcile that plans the wait brings the Subscription back at that moment, not at the next report or resync."""
    c, _, _ = await primed(subscription())
    key = f"{NS}/child1"
    settle = 180.0  # Clusternet's default heartbeat period: the cached cluster states none
    c.store.back_since[key] = time.monotonic() - settle + 0.2
    plan = planning.Plan("deploy", status=planning.StatusInputs([key], {}, None, [], failing_back=[key]))
    c.subscriptions._wake_for_failback(SUB, plan)
    assert not c.store.queue.waiting(("sub", *SUB))
    await asyncio.sleep(0.4)
    assert c.store.queue.waiting(("sub", *SUB))


async def test_the_store_times_a_clusters_return_by_the_hubs_clock() -> None:
    """Failing back counts a returning cluster's reports one heartbeat period after the hub heard it again
    (placement.feed_ready): the time comes from the hub's own clock when Ready turns True, not from the agent's
    stamp; a cluster not seen returning is timed from the first ask."""
    c, _, _ = await primed()
    key = f"{NS}/child1"
    c.store.on_cluster("MODIFIED", cluster(ready="Unknown"), cluster())
    assert key not in c.store.back_since
    c.store.on_cluster("MODIFIED", cluster(), cluster(ready="Unknown"))
    first = c.store.back_since[key]
    c.store.on_cluster("MODIFIED", cluster(), cluster())  # a heartbeat: still the same return
    assert c.store.back_since[key] == first and 0 <= c.store.back_for(key) < 5
    c.store.on_cluster("MODIFIED", cluster(), cluster(ready="False"))  # a failed probe, heard all along: no return
    assert c.store.back_since[key] == first
    assert c.store.back_for(f"{NS}/other") == 0.0
    c.store.on_cluster("DELETED", cluster(), None)
    assert key not in c.store.back_since
    # a hub that did not see the return (restarted, a new leader) counts from the agent's stamp, when it is past
    stamped = cluster()
    stamped["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    c.store.caches.clusters[(NS, "child1")] = stamped
    assert c.store.back_for(key) > 600
