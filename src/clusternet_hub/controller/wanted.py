"""Whether a Description or HelmRelease being deleted is still wanted by its Subscription.

A deletion is not always the hub's intent. Descriptions are owned by their Base, HelmReleases by their Description,
so the garbage collector deletes them after a `kubectl delete base ...` by hand (the hub re-creates the Base at
once: store.on_base), after a restore that re-created the Bases with new UIDs (a Subscription re-created too has a
new uid: a new Subscription, whose predecessor's objects are cleaned up), or when someone edits their
ownerReferences; or someone deletes one by hand. The deployers used to take every deletionTimestamp as intent:
they deleted the child's objects (uninstalled the releases), and the hub then re-created everything with new
UIDs, the workloads down in between.

So before it cleans up, the hub asks here. The object's labels name its Subscription (plan.labels: name, namespace,
uid); the Subscription is read by a direct GET, not the watch cache (a lagging copy must not keep what its deletion
meant to remove; the cache only raises a doubt, below). It is still wanted when that Subscription exists with the
same uid and no deletionTimestamp, still binds this cluster (scheduling.schedule over this one ManagedCluster:
binding is decided per cluster, and the status may not yet say what the hub just unbound or bound again; the cluster
holds the object, so a NoSchedule taint does not keep the Subscription off, as in the hub's plan:
clusternet_core.placement), and still feeds the object's deployer under the same name (a Generic Description while
it has a feed that is not a HelmChart; a Helm one, and a HelmRelease of one of its charts, while it feeds
HelmCharts). Then the finalizer goes without touching the child; the hub re-creates the object under the same name
and re-adopts the child's objects, which are marked with the Description's name (clusternet_api.ownership), or finds
the Helm release installed: the store brings the Subscription back when such a Description is gone
(store.on_description), a HelmRelease's Description when the HelmRelease is (store.on_helmrelease).

Every ordinary deletion still cleans up: a deleted Subscription (gone, deleting, or re-created under the same name
with another uid), an unbound cluster, a deployer no longer fed, a chart no longer fed, an object without the
labels. A failed read raises: nothing is deleted and the push is retried. So does WantUnknown, when the answer
cannot be told (review s31): a Subscription the scheduler refuses (an invalid selector, say: the hub changes
nothing for it, and its refusal promises nothing is removed), and a GET that says the Subscription is gone while
the hub's watch still holds it with the same uid and no deletionTimestamp (the hub's finalizer keeps a deleted
Subscription until its Bases are gone, so only a lagging or cold API server answers so: an HA parent's replica
that has just started answers 404 for custom resources until its CRD handler catches up).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping

from clusternet_api import known
from clusternet_api.fence import LeadershipLost
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.logs import Repeats
from clusternet_core import helmrender, rendering
from clusternet_core.plan import subscription_feeds
from clusternet_core.scheduling import InvalidSelector, UnsupportedScheduling, binding_key, schedule
from clusternet_hub.controller.workqueue import Backoff

log = logging.getLogger(__name__)
# warned about once while it lasts (and every 10 minutes): an object that waits, a cluster that refuses the promise
warned = Repeats()


class WantUnknown(Exception):
    """Whether the Subscription still wants the object cannot be told now: nothing is cleaned up, the push is
    retried (and says why)."""


def _description_names(sub: Obj, deployer: str) -> list[str]:
    """Under either form of its Base's name (clusternet_core.basenames: the long one after a collision)."""
    return [rendering.description_name(base, deployer) for base in rendering.base_names(sub)]


def wanted_names(sub: Obj, mc: Obj) -> set[str]:
    """Names of the Descriptions and HelmReleases `sub` wants in `mc`'s namespace, by its spec alone. Asked about an
    object of `sub` in that namespace: the cluster holds it, so a NoSchedule taint (a silent cluster) does not keep
    the Subscription off, whatever `status.bindingClusters` says yet (placement.py: a short-lived unbinding undone
    while the cluster was silent must not be carried out when it returns)."""
    key = binding_key(mc)
    try:
        if key not in schedule(sub, [mc], holding={key}).binding_clusters:
            return set()
    except (InvalidSelector, UnsupportedScheduling, ValueError) as e:  # refused: the hub changes nothing
        meta = sub["metadata"]
        raise WantUnknown(f"Subscription {meta.get('namespace')}/{meta.get('name')} is refused ({e}): whether it "
                          "still wants this cannot be told, so nothing is cleaned up until it is fixed") from e
    return fed_names(sub)


def fed_names(sub: Obj) -> set[str]:
    """Names of the Descriptions and HelmReleases `sub`'s feeds want in a cluster it binds."""
    feeds = subscription_feeds(sub)
    charts = [f for f in feeds if rendering.is_helm_chart_feed(dict(f))]
    names: set[str] = set()
    if len(charts) < len(feeds):
        names.update(_description_names(sub, "Generic"))
    if charts:
        for helm in _description_names(sub, "Helm"):
            names.add(helm)
            names.update(helmrender.release_name(helm, f["namespace"], f["name"]) for f in charts)
    return names


async def still_wanted(kube: KubeApi, obj: Obj, mc: Obj, cached: Mapping[tuple[str, str], Obj]) -> bool:
    """Whether the Subscription of `obj` (a Description or HelmRelease being deleted, in `mc`'s namespace) still
    wants it; False when the deployer should clean up as usual. Raises when the Subscription cannot be read, and
    WantUnknown when the answer cannot be told; `cached`: the hub's watched Subscriptions, trusted only to keep."""
    if not await _wanted(kube, obj, mc, cached):
        return False
    meta, labels = obj["metadata"], obj["metadata"].get("labels") or {}
    log.info("%s %s/%s was deleted while Subscription %s/%s still wants it: released without touching the child; "
             "it comes back under the same name and keeps what it deployed", obj.get("kind"), meta["namespace"],
             meta["name"], labels.get(known.LABEL_SUBS_NAMESPACE), labels.get(known.LABEL_SUBS_NAME))
    return True


async def say_unwanted(kube: KubeApi, obj: Obj, mc: Obj, cached: Mapping[tuple[str, str], Obj]) -> Obj | None:
    """For a cluster whose agent deploys (Pull): mark a deleting Description or HelmRelease its Subscription no
    longer wants (ANNOTATION_NO_LONGER_WANTED, the Subscription's uid), once.

    Why: the agent may not read Subscriptions, only the Base, and a missing Base is either the hub's unbinding or a
    Base deleted by hand that the hub writes back, late when it is busy (a rollout to a thousand clusters takes a
    minute; the parent may answer 429). It used to give the Base 10 s and then clean up (the first-rule review s31,
    F5). With the hub's verdict written on the object, the agent cleans up an unbinding as soon as it reads it and
    waits much longer for a Base that is only missing (clusternet_agent.stillwanted). One write per object unbound
    (and a GET of the Subscription: 2,000 requests, 40 s of the hub's 50-QPS budget, for 1,000 Pull clusters
    unsubscribed at once); nothing when the answer cannot be told (WantUnknown, raised to the caller). Returns the
    marked object, for the caller's cache (None: nothing written)."""
    meta = obj["metadata"]
    uid = (meta.get("labels") or {}).get(known.LABEL_SUBS_UID)
    if not uid or not meta.get("deletionTimestamp") or (
            meta.get("annotations") or {}).get(known.ANNOTATION_NO_LONGER_WANTED) == uid:
        return None
    if await _wanted(kube, obj, mc, cached):
        return None
    marked = await _set_mark(kube, obj, uid)
    if marked is not None:
        log.info("%s %s/%s: its Subscription no longer wants it; marked for the cluster's agent to clean up",
                 obj.get("kind"), meta["namespace"], meta["name"])
    return marked


async def take_back_mark(kube: KubeApi, obj: Obj) -> None:
    """Remove the hub's no-longer-wanted mark from this object (its uid), once its Subscription wants the cluster
    again; gone or replaced meanwhile: nothing to take back."""
    if await _set_mark(kube, obj, None) is not None:
        meta = obj["metadata"]
        log.info("%s %s/%s: its Subscription wants its cluster again; the mark for the agent is taken back",
                 obj.get("kind"), meta["namespace"], meta["name"])


async def _set_mark(kube: KubeApi, obj: Obj, value: str | None) -> Obj | None:
    """Write (or, with None, remove) the no-longer-wanted mark on this object only: its uid goes along, so one of
    the same name written since is refused (422, a uid is immutable). Returns the object as written; None when it
    is gone or replaced meanwhile."""
    meta = obj["metadata"]
    try:
        written: Obj = await kube.patch(known.APPS_API_VERSION, str(obj["kind"]), meta["name"], {"metadata": {
            "uid": meta.get("uid"), "annotations": {known.ANNOTATION_NO_LONGER_WANTED: value}}}, meta["namespace"])
    except ApiException as e:
        if e.status not in (404, 409, 422):
            raise
        return None
    return written


# ManagedClusters promise_marks writes at most per pass: 2 s of the hub's 50-QPS budget, so that after an upgrade
# a thousand clusters take ten health passes (50 s at the default 5-s interval), not one pass of 20 s.
PROMISES_PER_PASS = 100
# A cluster that refused the promise (a policy webhook's 422, say) is tried again after 5 s doubling to 5 min: a
# hundred refusing clusters took a PATCH each from every 5-s pass, 40 % of the hub's 50-QPS budget, for ever
PROMISE_RETRY_FIRST, PROMISE_RETRY_MAX = 5.0, 300.0
refused: dict[tuple[str, str], float] = {}  # (namespace, name) -> when to try it again (monotonic)
promise_retries: Backoff[tuple[str, str]] = Backoff(PROMISE_RETRY_FIRST, PROMISE_RETRY_MAX)


async def promise_marks(kube: KubeApi, clusters: Iterable[Obj], clock: Callable[[], float] = time.monotonic) -> None:
    """Say on each ManagedCluster that lacks it that this hub marks its unbindings (say_unwanted), so the cluster's
    Pull agent never takes a missing Base without the mark for one (clusternet_agent.stillwanted): a Subscription
    the hub refuses, or a Base deleted by hand while no hub leads, used to be cleaned up after the agent's 120-s
    grace (the first-rule review's F3(b)). New clusters get it at approval (registration.managed_cluster_manifest);
    this is for those approved before, and puts it back on one where it was removed (a merge patch of the
    annotation alone; a cluster being deleted is left alone), PROMISES_PER_PASS at most. A failure is a warning
    (once while it lasts): the agent keeps its grace meanwhile, and a later pass tries again (PROMISE_RETRY_*). A
    hub rolled back to one that does not mark leaves the annotation: its Pull unbindings then stay deleting, the
    child's objects in place, until it is removed by hand (README)."""
    now, clusters = clock(), list(clusters)
    for gone in set(refused) - {(mc["metadata"]["namespace"], mc["metadata"]["name"]) for mc in clusters}:
        del refused[gone]  # deleted while it refused
        promise_retries.forget(gone)
    lacking = [mc for mc in clusters if not mc["metadata"].get("deletionTimestamp") and (
        mc["metadata"].get("annotations") or {}).get(known.ANNOTATION_HUB_MARKS_UNBINDINGS) != "true" and refused.get(
        (mc["metadata"]["namespace"], mc["metadata"]["name"]), 0.0) <= now]
    # a random few: clusters whose patch keeps failing (a webhook's 422, say) do not hold the rest up every pass
    for mc in random.sample(lacking, min(len(lacking), PROMISES_PER_PASS)):
        meta = mc["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            await kube.patch(known.CLUSTERS_API_VERSION, "ManagedCluster", meta["name"], {"metadata": {
                "annotations": {known.ANNOTATION_HUB_MARKS_UNBINDINGS: "true"}}}, meta["namespace"])
        except LeadershipLost:
            raise
        except ApiException as e:
            if e.status != 404:
                delay = promise_retries.next(key)
                refused[key] = now + delay
                log.log(warned.level(("promise", *key), str(e.status)), "ManagedCluster %s/%s: cannot say that the "
                        "hub marks its unbindings (HTTP %s): its agent keeps giving a missing Base a grace "
                        "meanwhile; trying again in %.0fs", *key, e.status, delay)
                continue
        refused.pop(key, None)
        promise_retries.forget(key)
        warned.forget(("promise", *key))


async def say_unwanted_or_warn(kube: KubeApi, obj: Obj, mc: Obj,
                               subscriptions: Mapping[tuple[str, str], Obj]) -> Obj | None:
    """say_unwanted, its failure (any but a lost leadership) a warning: what the caller does next (a pending
    status, taking chart credentials out of the child's reach) must not wait on it; the resync says it again. The
    agent waits meanwhile; the warning is given once while the same failure lasts (logs.Repeats). Returns the
    marked object (Store.keep_marked)."""
    meta = obj["metadata"]
    key = ("unwanted", obj.get("kind"), meta["namespace"], meta["name"], meta.get("uid"))
    try:
        marked = await say_unwanted(kube, obj, mc, subscriptions)
    except LeadershipLost:
        raise
    except Exception as e:  # a refused Subscription is judged again at every resync, for as long as it waits
        log.log(warned.level(key, str(e)), "%s %s/%s: cannot tell its cluster's agent whether to clean up: %s",
                obj.get("kind"), meta["namespace"], meta["name"], e)
        return None
    warned.forget(key)
    return marked


async def _wanted(kube: KubeApi, obj: Obj, mc: Obj, cached: Mapping[tuple[str, str], Obj]) -> bool:
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    name, namespace, uid = (labels.get(k) for k in (known.LABEL_SUBS_NAME, known.LABEL_SUBS_NAMESPACE,
                                                     known.LABEL_SUBS_UID))
    if not (name and namespace and uid):
        return False
    sub = await kube.get(known.APPS_API_VERSION, "Subscription", name, namespace)
    held = cached.get((namespace, name))
    if sub is None and held is not None and (held["metadata"].get("uid") == uid
                                             and not held["metadata"].get("deletionTimestamp")):
        raise WantUnknown(f"the parent says Subscription {namespace}/{name} is gone while the hub's watch holds it, "
                          "not being deleted: nothing is cleaned up until the two agree")
    if sub is None or sub["metadata"].get("uid") != uid or sub["metadata"].get("deletionTimestamp"):
        return False
    return meta["name"] in wanted_names(sub, mc)
