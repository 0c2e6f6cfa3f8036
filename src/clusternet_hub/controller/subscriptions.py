"""Subscription -> Base -> Description: plan with the pure clusternet_core.plan, then write the plan.

Writes are idempotent (server-side apply, fixed names) and skipped when the cache already holds what the
plan wants (plan.needs_apply), so a resync that changes nothing writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from clusternet_api import applier, known
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.preconditions import Deleted, delete_as_read
from clusternet_core import placement, refusals, substatus
from clusternet_core import plan as planning
from clusternet_core.dynamic import PredictionRequest, Predictions
from clusternet_core.overrides import OverrideError
from clusternet_core.plan import ClusterPlan, Key, Plan, key_of
from clusternet_hub.controller.status import StatusWriter
from clusternet_hub.controller.store import Store, write_back
from clusternet_hub.controller.wanted import fed_names, take_back_mark
from clusternet_hub.controller.writerefusals import WriteRefused, WritesRefused, cluster_of, refusal_lines, refused_as

log = logging.getLogger(__name__)

# Bound clusters whose Base and Description one reconcile writes at once. 32 was tried at 1,000 clusters
# (with 32 workers): creating the Descriptions took 204 s against 102 s with 8, the parent being the bottleneck
# (bench/README.md); more requests in flight only lengthen each one.
CLUSTER_WRITES = 8


# Seconds added to a failing-back wake-up, so that the clock has passed the moment it waits for when it fires.
WAKE_MARGIN = 0.05


Predict = Callable[[PredictionRequest], Awaitable[Predictions]]
"""Asks the bound clusters' predictors (clusternet_hub.predictor.Predictor.ask)."""


class SubscriptionReconciler:
    def __init__(self, kube: KubeApi, store: Store, status: StatusWriter, fail_over: bool = False,
                 predict: Predict | None = None) -> None:
        self.kube, self.store, self.status = kube, store, status
        self.fail_over = fail_over  # the FailOver gate (clusternet_core/failover.py)
        self.predict = predict
        self.caught_up: dict[Key, tuple[Any, Any]] = {}  # Subscription -> (uid, generation) of its catch-up LIST

    async def reconcile(self, key: Key, force: bool) -> None:
        sub = self.store.caches.subscriptions.get(key)
        if sub is None:
            self.caught_up.pop(key, None)
            return
        back_for = self.store.back_for
        plan = planning.plan_subscription(sub, self.store.caches, force, self.fail_over, back_for=back_for)
        if plan.refusal is not None and plan.refusal.get("reason") == refusals.REASON_FEED_NOT_FOUND \
                and await self._catch_up_manifests(sub):
            plan = planning.plan_subscription(sub, self.store.caches, force, self.fail_over, back_for=back_for)
        if plan.action == "predict" and plan.predict is not None:  # Dynamic Dividing scales up: ask, plan again
            answers = await self.predict(plan.predict) if self.predict is not None else {
                key: "this hub asks no predictors" for key, _ in plan.predict.clusters}
            plan = planning.plan_subscription(sub, self.store.caches, force, self.fail_over, answers, back_for)
        self._wake_for_failback(key, plan)
        await self.apply(sub, plan)

    def _wake_for_failback(self, key: Key, plan: Plan) -> None:
        """Bring the Subscription back when a failing-back cluster's wait changes by the clock alone
        (placement.failback_wake); reports bring it back meanwhile (status.py)."""
        awaited = plan.status.failing_back if plan.status is not None else []
        if awaited and (delay := placement.failback_wake(awaited, self.store.caches.clusters,
                                                         self.store.back_for)) is not None:
            self.store.queue.add_after(("sub", *key), delay + WAKE_MARGIN)

    async def _catch_up_manifests(self, sub: Obj) -> bool:
        """Templates stored just before their Subscription may not have reached the cache through the watch yet:
        a missing feed is checked against the API once per Subscription generation before it is reported
        FeedNotFound (templates stored later come through the watch, which brings the Subscription back; a LIST
        of every Manifest at every resync of every such Subscription was load on the parent for nothing). A
        Manifest the watch has seen deleted is not taken from the LIST: its answer may predate the deletion, and
        a deleted template was deployed that way (the day-2 audit)."""
        generation = (sub["metadata"].get("uid"), sub["metadata"].get("generation"))
        if self.caught_up.get(key_of(sub)) == generation:
            return False
        found = await self.kube.list(known.APPS_API_VERSION, "Manifest", namespace=known.RESERVED_NAMESPACE)
        self.caught_up[key_of(sub)] = generation
        cache = self.store.caches.manifests
        new = [m for m in found if m["metadata"]["name"] not in cache
               and str(m["metadata"].get("uid")) not in self.store.deleted_manifests]
        for manifest in new:
            cache[manifest["metadata"]["name"]] = manifest
        return bool(new)

    async def apply(self, sub: Obj, plan: Plan) -> None:
        """Write `plan` for `sub`, in the order the Plan lists. Objects of some clusters refused by the parent:
        everything else is written, the status says which, then WritesRefused (the worker retries with backoff)."""
        if plan.action == "add-finalizer":
            await self._set_finalizers(sub, [*(sub["metadata"].get("finalizers") or []), known.FINALIZER_APPS])
            return
        await self._sync_inventory(sub, plan)
        refused = await self._apply_clusters(plan.clusters, fed_names(sub))
        left = await self._delete_bases(sub, plan.delete_bases)
        key = key_of(sub)
        self.status.refused_writes.pop(key, None)
        if plan.action == "delete" and not left:  # a Base left keeps it until the next plan deletes that Base
            await self._set_finalizers(sub, [f for f in sub["metadata"].get("finalizers") or []
                                             if f != known.FINALIZER_APPS], missing_ok=True)
        elif plan.refusal is not None:
            generation = sub["metadata"].get("generation")
            await self.status.write(sub, substatus.with_planned_generation(sub, plan.refusal, generation))
        elif plan.status is not None:
            if refused:
                self.status.refused_writes[key] = list(dict.fromkeys([*refused, *plan.status.problems]))
            await self.status.update(key, plan.status)
        if refused:
            raise WritesRefused("; ".join(refused))

    async def _apply_clusters(self, clusters: list[ClusterPlan], fed: set[str]) -> list[str]:
        """Write each cluster's Base and Descriptions, CLUSTER_WRITES at a time. A write the parent refuses
        fails only its cluster: the others are written (and the Subscription's stale Bases removed, its status
        written) all the same. Returns one line per distinct refusal (writerefusals.py)."""
        limit = asyncio.Semaphore(CLUSTER_WRITES)
        failed: list[tuple[str, WriteRefused]] = []

        async def one_cluster(cluster: ClusterPlan) -> None:
            async with limit:
                try:
                    await self._apply_cluster(cluster, fed)
                except WriteRefused as e:
                    log.warning("%s: %s", cluster_of(cluster.base), e)
                    failed.append((cluster_of(cluster.base), e))
                # whatever became of its writes: a Globalization's failure is announced on one cluster's plan
                # only (plan.once_per_failure), and that cluster's refusal lost the event for good (review 7)
                await self._report_override_errors(cluster.override_errors)

        await asyncio.gather(*(one_cluster(c) for c in clusters))
        return refusal_lines(failed)

    async def _set_finalizers(self, sub: Obj, finalizers: list[str], missing_ok: bool = False) -> None:
        """Add or remove the hub's finalizer; resourceVersion makes it fail rather than undo another change."""
        meta = sub["metadata"]
        if finalizers == (meta.get("finalizers") or []):
            return
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        with contextlib.suppress(*((ApiException,) if missing_ok else ())):
            await self.kube.patch(known.APPS_API_VERSION, "Subscription", meta["name"], body, meta["namespace"])

    async def _sync_inventory(self, sub: Obj, plan: Plan) -> None:
        key = key_of(sub)
        if plan.delete_inventory is not None:
            await self._delete_inventory(sub, plan.delete_inventory)
        if plan.inventory is not None:
            await write_back(self.store.caches.inventories, key, self.kube.apply(plan.inventory, known.CREATED_BY_HUB),
                             creates=True)

    async def _delete_inventory(self, sub: Obj, inventory: Obj) -> None:
        """Remove the FeedInventory of a Subscription that no longer divides, as the cache held it when the plan
        judged it this Subscription's by its ownerReference: its uid and resourceVersion (review F8). One written
        or created again since (by a new hub leader for a Subscription dividing again, say) stays, and so does
        its cache entry, which the watch keeps: the next plan (at once when its watch brings a new spec or its
        deletion, else at the periodic resync) decides on that copy. Nothing waits for this delete."""
        if await delete_as_read(self.kube, known.APPS_API_VERSION, "FeedInventory", inventory, unchanged=True,
                                then="left for the next plan") is Deleted.CHANGED:
            return
        self.store.caches.inventories.pop(key_of(sub), None)

    async def _apply_cluster(self, cluster: ClusterPlan, fed: set[str]) -> None:
        base = cluster.base
        if cluster.apply_base:
            await self._take_back_marks(base, fed)
            with refused_as(base):
                base = await write_back(self.store.caches.bases, key_of(base),
                                        self.kube.apply(base, known.CREATED_BY_HUB), creates=True)
        if base["metadata"].get("deletionTimestamp"):
            # deleted by someone else (the hub deletes Bases in the background: they go at once), in the foreground
            # or held by a finalizer: the garbage collector would delete a Description owned by it at once, and
            # the hub wrote them again and again for as long (the sixth audit: 15 s). Its deletion brings the plan
            # back (store.on_base), which writes the Base anew and then its Descriptions.
            log.info("Base %s/%s is being deleted: its Descriptions wait until it is written again", *key_of(base))
            return
        written = [await self._apply_description(body, existing, base) for body, existing in (
            (cluster.description, cluster.existing), (cluster.helm_description, cluster.existing_helm))
            if body is not None]
        for desc in cluster.delete_descriptions:
            await self._delete_description(desc)
        for desc in written:  # each Description's own errors: a chart's on the Helm one
            if (message := cluster.announce.get(desc["metadata"]["name"])) is not None:
                await applier.post_event(self.kube, desc, "Warning", "RenderFailed", message, known.CREATED_BY_HUB)

    async def _take_back_marks(self, base: Obj, fed: set[str]) -> None:
        """Before a Base is written: the deleting objects of its Subscription in its cluster that the hub marked no
        longer wanted (wanted.say_unwanted) and its feeds want again (`fed`) lose the mark. The cluster is bound
        again (an unbinding undone), and the Pull agent, reading the mark while the Base is not written yet, would
        clean up what is wanted (review s32, finding 7); without it, it waits for the Base. A failure is a warning:
        the Base, written next, settles it anyway (the agent reads a Base before any mark)."""
        ns, uid = base["metadata"]["namespace"], (base["metadata"].get("labels") or {}).get(known.LABEL_SUBS_UID)
        caches = {"Description": self.store.caches.descriptions, "HelmRelease": self.store.caches.helmreleases}
        for kind, name in sorted(self.store.marked.get(ns, ())):
            obj = caches[kind].get((ns, name)) if kind in caches and name in fed else None
            if obj is not None and (obj["metadata"].get("annotations") or {}).get(
                    known.ANNOTATION_NO_LONGER_WANTED) == uid:
                try:
                    await take_back_mark(self.kube, obj)
                except ApiException as e:
                    log.warning("%s %s/%s: taking the no-longer-wanted mark back failed: %s", kind, ns, name, e)

    async def _delete_description(self, desc: Obj) -> None:
        """Delete a Description of a deployer its Subscription no longer feeds, as the cache held it when the plan
        was made: its uid and resourceVersion (review F8). Its labels (which Subscription it is) and spec can be
        written again meanwhile, by a new hub leader planning a newer Subscription that feeds that deployer again
        while this one was paused past its Lease, say, and the old copy must not decide for the new one. Such a
        Description is left for the next plan (at the latest the periodic resync), made on the copy the watch
        brought; nothing waits for this delete (no finalizer depends on it)."""
        ns, name = key_of(desc)
        log.info("%s/%s: its Subscription no longer feeds that deployer; removing it", ns, name)
        with refused_as({"kind": "Description", "metadata": {"name": name, "namespace": ns}}):
            await delete_as_read(self.kube, known.APPS_API_VERSION, "Description", desc, unchanged=True,
                                 then="left for the next plan")

    async def _apply_description(self, body: Obj, existing: Obj | None, base: Obj) -> Obj:
        body = planning.owned_by(body, base)
        if existing is None or planning.needs_apply(existing, body):
            with refused_as(body):  # pushed now, not when the watch brings the change back
                existing = await write_back(self.store.caches.descriptions, key_of(body),
                                            self.kube.apply(body, known.CREATED_BY_HUB), self.store.on_description,
                                            creates=True)
        return existing

    async def _report_override_errors(self, errors: list[OverrideError]) -> None:
        """Put each failed override's message on the override object itself, as an event, naming it by its uid
        as the cache holds it: `kubectl describe loc|glob` selects events by involvedObject kind, name,
        namespace and uid, and showed none for events without one (the sixth audit). A Globalization is
        cluster-scoped: its event names no namespace and lives in `default` (applier.post_event), where kubectl,
        listing the events of every namespace for a cluster-scoped object, finds it."""
        caches = self.store.caches
        for error in errors:
            cached = (caches.globalizations.get(error.name) if error.kind == "Globalization"
                      else caches.localizations.get((error.namespace or "", error.name)))
            meta = {"name": error.name, **({"namespace": error.namespace} if error.namespace else {}),
                    **({"uid": cached["metadata"].get("uid")} if cached is not None else {})}
            override = {"apiVersion": known.APPS_API_VERSION, "kind": error.kind, "metadata": meta}
            await applier.post_event(self.kube, override, "Warning", "OverrideFailed", error.message,
                                     known.CREATED_BY_HUB)

    async def _delete_bases(self, sub: Obj, bases: list[Obj]) -> int:
        """Delete the Bases of clusters no longer bound, each as the cache held it when the plan was made (taken
        before any write of this reconcile): its uid and resourceVersion (review F8). One created again or
        changed since (a new hub leader writing it while this one was paused past its Lease, say) is not to be
        judged on an old copy: it is left for the next plan (the resync), which sees it as the watch brought it.
        Returns how many were left so."""
        left = 0
        for base in bases:
            log.info("cluster namespace %s no longer bound to %s/%s: removing its Base", key_of(base)[0],
                     *key_of(sub))
            if await delete_as_read(self.kube, known.APPS_API_VERSION, "Base", base, unchanged=True,
                                    then="left for the next plan of {}/{}".format(*key_of(sub))) is Deleted.CHANGED:
                left += 1
        return left
