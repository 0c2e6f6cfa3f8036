"""Subscription -> Base -> Description, and pushing Descriptions to clusters that allow it.

Level-based: watch events only mark work as due (a Subscription to reconcile, a Description to push);
a few workers then compute the desired state from in-memory caches with the pure functions in
scheduling.py, rendering.py and feedstatus.py, and write it idempotently (server-side apply, fixed
names). A periodic resync catches anything an event missed and re-applies pushed Descriptions (drift).

ApplyLater vs ApplyNow: a Description records a hash of its inputs (the Subscription's feeds and their
templates, and for Dividing the cluster's share of the replicas). A reconcile keeps the rendered objects
while that hash is unchanged, so an ApplyLater override waits for the next change of the Subscription or
a feed; an ApplyNow override's change (or deletion) forces a re-render of the Subscriptions that deploy
its feed.

Dividing: the reconcile first writes the Subscription's FeedInventory (feedinventory.py), schedules with
its desiredReplicas, and renders each cluster's share into its objects (rendering.ReplicaSplit) instead of
creating Clusternet's per-cluster priority-1000 Localizations. A changed template, weight, label or
binding changes some cluster's share, hence its inputs hash, so that cluster is re-rendered.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from clusternet_api import applier, known
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_core import feedinventory, feedresolve, feedstatus, rendering
from clusternet_core.scheduling import InvalidSelector, UnsupportedScheduling, feed_key, feed_ref, schedule

log = logging.getLogger(__name__)

APPS = f"{known.APPS_GROUP}/{known.APPS_VERSION}"
FIELD_MANAGER = "clusternet-hub"
ANNOTATION_INPUTS_HASH = "apps.clusternet.io/inputs-hash"
ANNOTATION_RENDER_ERRORS = "apps.clusternet.io/render-errors"
DEPLOYER_SECRET = "child-cluster-deployer"
# How long the hub trusts its copy of an agent's push credentials. The push/pull decision never rests on it
# (that is the ManagedCluster's appPusher), and a failed push drops the copy at once.
PUSH_SECRET_TTL = 60.0
# Connections the hub keeps to one child. Straight to its API server each new one is a TLS handshake for hub
# and child alike (a third of the hub's CPU when it opened up to 8 per push to 100 clusters), so two, which
# keep a push's requests overlapping; through the tunnel a connection is only a stream: as many as a push uses.
CHILD_CONNECTIONS = 2
TUNNEL_CONNECTIONS = 8
# How often the hub rewrites one Subscription's status while its Descriptions report in: after a write that
# took t, not again for STATUS_PACE_FACTOR x t (10 s at most). Every write stores the whole status, one entry
# per feed and cluster: at 100 clusters and 10 feeds one write cost the parent's apiserver ~160 ms of CPU, at
# 200 ~470 ms, so a big Subscription written at every report would keep the parent busy with little else.
STATUS_PACE_FACTOR = 10.0
STATUS_PACE_MAX = 10.0


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_of(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


@dataclass
class Caches:
    """What the hub knows, fed by watch events; reconciles read only from here."""

    subscriptions: dict[tuple[str, str], Obj] = field(default_factory=dict)
    manifests: dict[str, Obj] = field(default_factory=dict)
    globalizations: dict[str, Obj] = field(default_factory=dict)
    localizations: dict[tuple[str, str], Obj] = field(default_factory=dict)
    descriptions: dict[tuple[str, str], Obj] = field(default_factory=dict)
    bases: dict[tuple[str, str], Obj] = field(default_factory=dict)
    inventories: dict[tuple[str, str], Obj] = field(default_factory=dict)


def subscription_feeds(sub: Obj) -> list[dict[str, str]]:
    return [feed_ref(f) for f in (sub.get("spec") or {}).get("feeds") or []]


def inputs_hash(sub_spec: Obj, templates: dict[str, Obj], replicas: dict[str, int] | None = None) -> str:
    """Changes when the Subscription or one of its feeds changes (what ApplyLater overrides wait for), or
    when the cluster's share of divided replicas (feed key -> count) changes."""
    inputs: dict[str, Any] = {"spec": sub_spec,
                              "templates": {k: v.get("template") for k, v in sorted(templates.items())}}
    if replicas:  # left out otherwise, so Replication hashes stay what they were
        inputs["replicas"] = replicas
    data = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


# Description annotations the hub writes; an absent one is as much part of what it wants as a present one
OWN_ANNOTATIONS = (ANNOTATION_INPUTS_HASH, ANNOTATION_RENDER_ERRORS, applier.ANNOTATION_DRIFT_CORRECTION)


def needs_apply(existing: Obj | None, body: Obj) -> bool:
    """Would applying `body` (the hub's whole intent for a Base or Description) change `existing`?

    A reconcile re-applies every bound cluster's Base and Description, and resyncs and cluster changes
    reconcile often; a no-op server-side apply still costs the parent a write's worth of work, so the hub
    compares with its cache instead. The hub owns spec outright; of the metadata it compares what it sets.
    """
    if existing is None:
        return True
    meta, want = existing.get("metadata") or {}, body["metadata"]
    if existing.get("spec") != body.get("spec"):
        return True
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if any(labels.get(k) != v for k, v in (want.get("labels") or {}).items()):
        return True
    if "annotations" in want and any(annotations.get(k) != want["annotations"].get(k) for k in OWN_ANNOTATIONS):
        return True
    owners = meta.get("ownerReferences") or []
    return any(f not in (meta.get("finalizers") or []) for f in want.get("finalizers") or []) or any(
        ref not in owners for ref in want.get("ownerReferences") or [])


def override_targets(override: Obj, sub: Obj) -> bool:
    """Does this Localization/Globalization select one of the Subscription's feeds?"""
    target = (override.get("spec") or {}).get("feed") or {}
    try:
        ref = feed_ref(target)
    except (KeyError, TypeError, ValueError):
        return False
    return any(feed_key(ref) == feed_key(f) for f in subscription_feeds(sub))


class Deployer:
    """The hub's deployment pipeline; one instance per hub."""

    def __init__(self, kube: Kube, clusters: dict[tuple[str, str], Obj], tunnel_port: Any,
                 resync_interval: float = 30.0, workers: int = 8) -> None:
        self.kube = kube
        self.clusters = clusters
        self.tunnel_port = tunnel_port  # async (cluster_id) -> stream opener through the tunnel, or None
        self.caches = Caches()
        self.resync_interval = resync_interval
        self.workers = workers
        self.queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.pending: dict[tuple[str, str, str], bool] = {}
        self.children: dict[str, tuple[str, Kube]] = {}
        self.push_secrets: dict[str, tuple[float, dict[str, bytes]]] = {}  # namespace -> (expiry, data)
        # Description -> (uid, generation, monotonic time) of its last push; events for what was pushed
        # already need no push (drift is the periodic resync's job), which also ends push -> status -> event
        # -> push rounds, and the resync skips what was pushed moments ago
        self.pushed: dict[tuple[str, str], tuple[str, int, float]] = {}
        self.pushing: dict[tuple[str, str], bool | None] = {}  # in flight -> asked again (force), or None
        self.retry_delay: dict[tuple[str, str], float] = {}  # failed pushes come back after this long
        # Subscription -> (monotonic time of its last status write, how long that write took)
        self.status_written: dict[tuple[str, str], tuple[float, float]] = {}
        self.status_later: set[tuple[str, str]] = set()  # Subscriptions whose next status write is scheduled

    # --- queueing -----------------------------------------------------------------------------------------

    def enqueue(self, kind: str, namespace: str, name: str, force: bool = False) -> None:
        item = (kind, namespace, name)
        if item in self.pending:
            self.pending[item] = self.pending[item] or force
            return
        self.pending[item] = force
        self.queue.put_nowait(item)

    def enqueue_subscriptions(self, match: Any = None, force: bool = False) -> None:
        for (ns, name), sub in list(self.caches.subscriptions.items()):
            if match is None or match(sub):
                self.enqueue("sub", ns, name, force)

    async def prime(self) -> None:
        """Fill the caches from the API before any reconcile.

        Without this, a restarted hub would reconcile Subscriptions before the watch streams had
        reported the ManagedClusters, see no cluster bound, and remove every Base it had created.
        """
        cluster_api = f"{known.CLUSTERS_GROUP}/{known.CLUSTERS_VERSION}"
        for mc in await self.kube.list(cluster_api, "ManagedCluster"):
            self.clusters.setdefault(key_of(mc), mc)
        for sub in await self.kube.list(APPS, "Subscription"):
            self.caches.subscriptions.setdefault(key_of(sub), sub)
        for m in await self.kube.list(APPS, "Manifest", namespace=known.RESERVED_NAMESPACE):
            self.caches.manifests.setdefault(m["metadata"]["name"], m)
        for g in await self.kube.list(APPS, "Globalization"):
            self.caches.globalizations.setdefault(g["metadata"]["name"], g)
        for loc in await self.kube.list(APPS, "Localization"):
            self.caches.localizations.setdefault(key_of(loc), loc)
        for d in await self.kube.list(APPS, "Description"):
            self.caches.descriptions.setdefault(key_of(d), d)
        for b in await self.kube.list(APPS, "Base"):
            self.caches.bases.setdefault(key_of(b), b)
        for finv in await self.kube.list(APPS, "FeedInventory"):
            self.caches.inventories.setdefault(key_of(finv), finv)
        self.enqueue_subscriptions()

    async def run(self) -> None:
        await self.prime()

        async def worker() -> None:
            while True:
                item = await self.queue.get()
                force = self.pending.pop(item, False)
                try:
                    if item[0] == "sub":
                        await self.reconcile_subscription(item[1], item[2], force)
                    elif item[0] == "status":
                        await self.paced_status_update(item[1], item[2])
                    else:
                        await self.push_once(item[1], item[2], force)
                except Exception as e:
                    log.warning("%s %s/%s failed, retrying: %s", item[0], item[1], item[2], e)
                    await asyncio.sleep(2)
                    self.enqueue(*item, force=force)

        async def resync() -> None:
            while True:
                await asyncio.sleep(self.resync_interval)
                self.enqueue_subscriptions()
                self.resync_pushes()

        tasks = [asyncio.create_task(worker()) for _ in range(self.workers)] + [asyncio.create_task(resync())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for _, child in self.children.values():
                await child.close()

    def resync_pushes(self) -> None:
        """Push every Description again (drift), except those pushed moments ago, being pushed or queued:
        the push they get anyway applies what this one would (a resync during a big rollout used to push
        the Descriptions in flight twice)."""
        fresh = time.monotonic() - self.resync_interval / 2
        for key in list(self.caches.descriptions):
            if key in self.pushing or ("push", *key) in self.pending:
                continue
            if self.pushed.get(key, ("", 0, 0.0))[2] < fresh:
                self.enqueue("push", *key, force=True)

    # --- events -------------------------------------------------------------------------------------------

    def on_subscription(self, event: str, sub: Obj) -> None:
        key = key_of(sub)
        if event == "DELETED":
            self.caches.subscriptions.pop(key, None)
            self.status_written.pop(key, None)
            return
        old = self.caches.subscriptions.get(key)
        self.caches.subscriptions[key] = sub
        changed = old is None or old.get("spec") != sub.get("spec") or bool(sub["metadata"].get("deletionTimestamp"))
        if changed or old is None or old["metadata"].get("finalizers") != sub["metadata"].get("finalizers"):
            self.enqueue("sub", *key)

    def on_manifest(self, event: str, manifest: Obj) -> None:
        name = manifest["metadata"]["name"]
        if event == "DELETED":
            self.caches.manifests.pop(name, None)
        else:
            old = self.caches.manifests.get(name)
            self.caches.manifests[name] = manifest
            if old is not None and old.get("template") == manifest.get("template"):
                return
        # a namespace-less feed matches templates in any namespace: a new one may make it ambiguous
        self.enqueue_subscriptions(lambda sub: any(feedresolve.matches(f, manifest) for f in subscription_feeds(sub)))

    def on_override(self, event: str, override: Obj) -> None:
        kind = override["kind"]
        store: dict[Any, Obj] = self.caches.globalizations if kind == "Globalization" else self.caches.localizations
        key: Any = override["metadata"]["name"] if kind == "Globalization" else key_of(override)
        old = store.get(key)
        if event == "DELETED":
            store.pop(key, None)
        else:
            store[key] = override
            if old is not None and old.get("spec") == override.get("spec"):
                return
        policy = ((old or override).get("spec") or {}).get("overridePolicy") or "ApplyLater"
        if policy == "ApplyNow" or (override.get("spec") or {}).get("overridePolicy") == "ApplyNow":
            self.enqueue_subscriptions(lambda sub: override_targets(override, sub), force=True)

    def on_feed_inventory(self, event: str, finv: Obj) -> None:
        """Someone deleted or changed a FeedInventory: its Subscription writes it again."""
        key = key_of(finv)
        old = self.caches.inventories.get(key)
        if event == "DELETED":
            self.caches.inventories.pop(key, None)
        else:
            self.caches.inventories[key] = finv
            if old is not None and old.get("spec") == finv.get("spec"):
                return
        if key in self.caches.subscriptions:
            self.enqueue("sub", *key)

    def on_base(self, event: str, base: Obj) -> None:
        """Bases are cached so that reconciles skip unchanged ones; a Base deleted by someone else comes back
        (with its Description) at once, while its Subscription still binds that cluster."""
        key = key_of(base)
        if event != "DELETED":
            self.caches.bases[key] = base
            return
        self.caches.bases.pop(key, None)
        labels = base["metadata"].get("labels") or {}
        sub = self.caches.subscriptions.get((labels.get(known.LABEL_SUBS_NAMESPACE, ""),
                                             labels.get(known.LABEL_SUBS_NAME, "")))
        if sub is not None and not sub["metadata"].get("deletionTimestamp"):
            self.enqueue("sub", *key_of(sub))

    def on_description(self, event: str, desc: Obj) -> None:
        key = key_of(desc)
        if event == "DELETED":
            self.caches.descriptions.pop(key, None)
            self.pushed.pop(key, None)
            self.retry_delay.pop(key, None)
        else:
            old = self.caches.descriptions.get(key)
            self.caches.descriptions[key] = desc
            if desc["metadata"].get("deletionTimestamp") or not applier.deployed(desc):
                self.enqueue("push", *key)
            if old is not None and old.get("status") == desc.get("status"):
                return
        labels = desc["metadata"].get("labels") or {}
        if labels.get(known.LABEL_SUBS_NAME):
            self.enqueue("status", labels.get(known.LABEL_SUBS_NAMESPACE, ""), labels[known.LABEL_SUBS_NAME])

    def on_cluster(self, event: str, mc: Obj, old: Obj | None) -> None:
        """Labels or taints changed: rescheduling may bind or unbind it; push side may have flipped."""
        meta = mc["metadata"]
        relevant_old = old and (old["metadata"].get("labels"), (old.get("spec") or {}).get("taints"),
                                (old.get("spec") or {}).get("syncMode"), (old.get("status") or {}).get("appPusher"),
                                applier_ready(old))
        relevant_new = (meta.get("labels"), (mc.get("spec") or {}).get("taints"), (mc.get("spec") or {}).get(
            "syncMode"), (mc.get("status") or {}).get("appPusher"), applier_ready(mc))
        if event == "DELETED" or relevant_old != relevant_new:
            self.enqueue_subscriptions()
            for ns, name in list(self.caches.descriptions):
                if ns == meta["namespace"]:
                    self.enqueue("push", ns, name, force=True)

    # --- Subscription -> Base -> Description --------------------------------------------------------------

    async def reconcile_subscription(self, namespace: str, name: str, force: bool) -> None:
        sub = self.caches.subscriptions.get((namespace, name))
        if sub is None:
            return
        meta = sub["metadata"]
        if meta.get("deletionTimestamp"):
            await self._delete_subscription(sub)
            return
        if known.FINALIZER_APPS not in (meta.get("finalizers") or []):
            await self.kube.patch(APPS, "Subscription", name, {"metadata": {
                "finalizers": [*(meta.get("finalizers") or []), known.FINALIZER_APPS],
                "resourceVersion": meta["resourceVersion"]}}, namespace)
            return  # the update event brings us back
        feeds = subscription_feeds(sub)
        resolved = feedresolve.resolve_feeds(feeds, self.caches.manifests.values())
        if resolved.ambiguous:  # refused as a whole, like an invalid one: nothing deployed changes
            await self._write_status(sub, _without_conditions(sub), ambiguous_condition(resolved))
            return
        templates = resolved.templates
        inventory = await self._sync_feed_inventory(sub, templates)
        try:
            result = schedule(sub, list(self.clusters.values()), inventory.desired_replicas() if inventory else None)
        except (InvalidSelector, UnsupportedScheduling, ValueError) as e:
            await self._write_status(sub, {}, condition("False", "InvalidSubscription", str(e)))
            return
        bound_bases: set[tuple[str, str]] = set()
        problems: list[str] = list(inventory.problems) if inventory else []
        limit = asyncio.Semaphore(8)
        localizations: dict[str, list[Obj]] = collections.defaultdict(list)  # by cluster namespace
        for (loc_ns, _), loc in self.caches.localizations.items():
            localizations[loc_ns].append(loc)

        async def one_cluster(mc: Obj, cluster_key: str) -> None:
            splits = feedinventory.replica_splits(result.replicas, result.binding_clusters, cluster_key,
                                                  inventory.inventory, f"{namespace}/{name}") if inventory else {}
            digest = inputs_hash(sub.get("spec") or {}, templates, {k: s.replicas for k, s in splits.items()})
            async with limit:
                base = await self._apply_base(sub, mc, feeds)
                bound_bases.add(key_of(base))
                problems.extend(await self._apply_description(
                    sub, mc, base, feeds, templates, digest, force, localizations[mc["metadata"]["namespace"]],
                    splits))

        await asyncio.gather(*(one_cluster(mc, p.key) for p in result.clusters
                               if (mc := self.clusters.get((p.namespace, p.name))) is not None))
        await self._remove_unbound(sub, bound_bases)
        await self.update_subscription_status(namespace, name, result.binding_clusters, result.replicas,
                                              result.message, problems)

    async def _sync_feed_inventory(self, sub: Obj, templates: dict[str, Obj]) -> feedinventory.InventoryResult | None:
        """Write the FeedInventory of a Dividing Subscription (server-side apply, only when it changed);
        remove the one this hub wrote when the Subscription no longer divides. None unless Dividing.

        Only Dividing Subscriptions get one, like Clusternet's FeedInventory controller (it skips the
        others): Replication never reads it, and one object per Subscription would double the objects
        the hub writes and a user could mistake for a setting.
        """
        key = key_of(sub)
        existing = self.caches.inventories.get(key)
        uid = sub["metadata"].get("uid")
        owned = existing is not None and any(ref.get("uid") == uid for ref in existing["metadata"].get(
            "ownerReferences") or [])
        if not feedinventory.is_dividing(sub):
            if owned:
                await self.kube.delete(APPS, "FeedInventory", key[1], key[0])
                self.caches.inventories.pop(key, None)
            return None
        inventory = feedinventory.build_feed_inventory(sub, templates)
        body = inventory.body()
        if not owned or (existing or {}).get("spec") != body["spec"]:
            self.caches.inventories[key] = await self.kube.apply(body, FIELD_MANAGER)
        return inventory

    async def _apply_base(self, sub: Obj, mc: Obj, feeds: list[dict[str, str]]) -> Obj:
        body = self._base_body(sub, mc, feeds)
        key = key_of(body)
        existing = self.caches.bases.get(key)
        if existing is not None and not existing["metadata"].get("deletionTimestamp") and not needs_apply(
                existing, body):
            return existing
        self.caches.bases[key] = base = await self.kube.apply(body, FIELD_MANAGER)
        return base

    def _base_body(self, sub: Obj, mc: Obj, feeds: list[dict[str, str]]) -> Obj:
        meta = sub["metadata"]
        return {
            "apiVersion": APPS, "kind": "Base",
            "metadata": {"name": rendering.base_name(meta["name"], subscription_namespace=meta["namespace"]),
                         "namespace": mc["metadata"]["namespace"], "labels": self._labels(sub, mc)},
            # empty strings left out: kube-apiserver 1.20 turns "" into null when applying a custom resource
            "spec": {"feeds": [{k: v for k, v in f.items() if v} for f in feeds]},
        }

    @staticmethod
    def _labels(sub: Obj, mc: Obj) -> dict[str, str]:
        meta = sub["metadata"]
        mc_labels = mc["metadata"].get("labels") or {}
        return {known.LABEL_SUBS_UID: meta["uid"], known.LABEL_SUBS_NAME: meta["name"],
                known.LABEL_SUBS_NAMESPACE: meta["namespace"],
                known.LABEL_CLUSTER_ID: str((mc.get("spec") or {}).get("clusterId") or ""),
                known.LABEL_CLUSTER_NAME: mc_labels.get(known.LABEL_CLUSTER_NAME, mc["metadata"]["name"])}

    async def _apply_description(self, sub: Obj, mc: Obj, base: Obj, feeds: list[dict[str, str]],
                                 templates: dict[str, Obj], digest: str, force: bool, locs: list[Obj],
                                 splits: dict[str, rendering.ReplicaSplit] | None = None) -> list[str]:
        ns = mc["metadata"]["namespace"]
        name = rendering.description_name(base["metadata"]["name"], "Generic")
        existing = self.caches.descriptions.get((ns, name))
        if existing is not None and existing["metadata"].get("deletionTimestamp"):
            return [f"{ns}/{name} is still being cleaned up"]
        globs = list(self.caches.globalizations.values())
        rendered = rendering.render_generic(feeds, templates, mc, globs, locs, splits)
        errors = rendered.all_errors()
        keep = (existing is not None and not force and
                (existing["metadata"].get("annotations") or {}).get(ANNOTATION_INPUTS_HASH) == digest)
        raw = (existing.get("spec") or {}).get("raw") if keep and existing else rendered.encoded_raw()
        if not raw and not rendered.items:
            return errors  # only Helm feeds: the Helm deployer's business
        sub_meta = sub["metadata"]
        annotations = {ANNOTATION_INPUTS_HASH: digest, ANNOTATION_RENDER_ERRORS: "; ".join(errors)[:4000]}
        if (sub_meta.get("annotations") or {}).get(applier.ANNOTATION_DRIFT_CORRECTION) == "false":
            annotations[applier.ANNOTATION_DRIFT_CORRECTION] = "false"
        body = {
            "apiVersion": APPS, "kind": "Description",
            "metadata": {"name": name, "namespace": ns, "labels": self._labels(sub, mc),
                         "annotations": annotations, "finalizers": [known.FINALIZER_APPS],
                         "ownerReferences": [{"apiVersion": APPS, "kind": "Base", "name": base["metadata"]["name"],
                                              "uid": base["metadata"]["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"deployer": "Generic", "raw": raw},
        }
        if existing is not None and not needs_apply(existing, body):
            desc = existing
        else:
            desc = await self.kube.apply(body, FIELD_MANAGER)
            self.on_description("MODIFIED", desc)  # push now, not when the watch brings the change back
        previous_errors = ((existing or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_RENDER_ERRORS)
        if errors and previous_errors != annotations[ANNOTATION_RENDER_ERRORS]:
            await applier.post_event(self.kube, desc, "Warning", "RenderFailed", "; ".join(errors), FIELD_MANAGER)
            await self._report_override_errors(rendered)
        return errors

    async def _report_override_errors(self, rendered: rendering.RenderResult) -> None:
        """Put each failed override's message on the override object itself, as an event."""
        for error in rendered.override_errors:
            kind, ns, name = error.kind, error.namespace, error.name
            event = {"apiVersion": "v1", "kind": "Event",
                     "metadata": {"generateName": f"{name}.", "namespace": ns or "default"},
                     "involvedObject": {"apiVersion": APPS, "kind": kind, "name": name, "namespace": ns},
                     "type": "Warning", "reason": "OverrideFailed", "message": error.message[:1000],
                     "source": {"component": FIELD_MANAGER}, "firstTimestamp": now(), "lastTimestamp": now(),
                     "count": 1}
            with contextlib.suppress(Exception):
                await self.kube.create(event)

    async def _remove_unbound(self, sub: Obj, bound: set[tuple[str, str]]) -> None:
        uid = sub["metadata"]["uid"]
        bases = [b for b in list(self.caches.bases.values())
                 if (b["metadata"].get("labels") or {}).get(known.LABEL_SUBS_UID) == uid]
        for base in bases:
            if key_of(base) not in bound and not base["metadata"].get("deletionTimestamp"):
                log.info("cluster namespace %s no longer bound to %s/%s: removing its Base",
                         base["metadata"]["namespace"], *key_of(sub))
                await self.kube.delete(APPS, "Base", base["metadata"]["name"], base["metadata"]["namespace"])

    async def _delete_subscription(self, sub: Obj) -> None:
        """Delete the Bases (Descriptions follow by owner reference); do not wait for offline clusters."""
        await self._remove_unbound(sub, set())
        meta = sub["metadata"]
        if known.FINALIZER_APPS in (meta.get("finalizers") or []):
            remaining = [f for f in meta["finalizers"] if f != known.FINALIZER_APPS]
            with contextlib.suppress(ApiException):
                await self.kube.patch(APPS, "Subscription", meta["name"], {"metadata": {
                    "finalizers": remaining, "resourceVersion": meta["resourceVersion"]}}, meta["namespace"])

    async def paced_status_update(self, namespace: str, name: str) -> None:
        """Rewrite the status for Descriptions that reported in, no more often than the cost of the last write
        allows (STATUS_PACE_FACTOR); what arrives meanwhile goes into the next, scheduled, write."""
        key = (namespace, name)
        if key in self.status_later:
            return
        written, took = self.status_written.get(key, (float("-inf"), 0.0))
        wait = written + min(STATUS_PACE_MAX, STATUS_PACE_FACTOR * took) - time.monotonic()
        if wait <= 0:
            await self.update_subscription_status(namespace, name)
            return
        self.status_later.add(key)

        def due() -> None:
            self.status_later.discard(key)
            self.enqueue("status", namespace, name)

        asyncio.get_running_loop().call_later(wait, due)

    async def update_subscription_status(self, namespace: str, name: str, bindings: list[str] | None = None,
                                         replicas: dict[str, list[int]] | None = None,
                                         message: str | None = None, problems: list[str] | None = None) -> None:
        sub = self.caches.subscriptions.get((namespace, name))
        if sub is None or sub["metadata"].get("deletionTimestamp"):
            return
        status = dict(sub.get("status") or {})
        if bindings is not None:
            status["bindingClusters"] = bindings
            status["replicas"] = replicas or {}
            status["desiredReleases"] = len(bindings)
        view = {**sub, "status": status}
        descs = [d for d in self.caches.descriptions.values()
                 if (d["metadata"].get("labels") or {}).get(known.LABEL_SUBS_UID) == sub["metadata"]["uid"]]
        clusters = {f"{ns}/{name}": mc for (ns, name), mc in self.clusters.items()}
        aggregated = feedstatus.aggregate(view, descs, clusters)
        ready = aggregated.pop("conditions", [{}])[0]
        if message and not status.get("bindingClusters"):
            ready = {"type": "Ready", "status": "False", "reason": "NoMatchingCluster", "message": message}
        if problems:
            ready = {"type": "Ready", "status": "False", "reason": "RenderFailed", "message": "; ".join(problems)}
        resolved = feedresolve.resolve_feeds(subscription_feeds(sub), self.caches.manifests.values())
        if resolved.ambiguous:  # reports from what was deployed before must not turn a refusal into Ready
            ready = ambiguous_condition(resolved)
        new_status = {k: v for k, v in status.items() if k != "conditions"}
        new_status.update(aggregated)
        await self._write_status(sub, new_status, ready)

    async def _write_status(self, sub: Obj, status: Obj, ready: Obj) -> None:
        old: Obj = next((c for c in (sub.get("status") or {}).get("conditions") or []
                         if c.get("type") == "Ready"), {})
        same = old.get("status") == ready.get("status")
        ready = {**ready, "lastTransitionTime": old.get("lastTransitionTime") if same and old else now()}
        status = {**status, "conditions": [ready]}
        if {k: v for k, v in (sub.get("status") or {}).items()} == status:
            return
        if ready.get("reason") == feedresolve.REASON_AMBIGUOUS and (old.get("reason"), old.get("message")) != (
                ready.get("reason"), ready.get("message")):
            await applier.post_event(self.kube, sub, "Warning", ready["reason"], ready["message"], FIELD_MANAGER)
        key = key_of(sub)
        started = time.monotonic()
        written = await self.kube.patch(APPS, "Subscription", key[1], {"status": status}, key[0],
                                        subresource="status")
        self.status_written[key] = (time.monotonic(), time.monotonic() - started)
        if key in self.caches.subscriptions:  # compare the next status with this one, not with an older one
            self.caches.subscriptions[key] = written

    # --- pushing ------------------------------------------------------------------------------------------

    def cluster_in(self, namespace: str) -> Obj | None:
        return next((mc for (ns, _), mc in self.clusters.items() if ns == namespace), None)

    async def child_client(self, mc: Obj) -> Kube | None:
        """Child access for pushing: the agent's deployer credentials, through the tunnel when it is up."""
        ns = mc["metadata"]["namespace"]
        known_secret = self.push_secrets.get(ns)
        if known_secret is not None and known_secret[0] > time.monotonic():
            data = known_secret[1]
        else:
            secret = await self.kube.get("v1", "Secret", DEPLOYER_SECRET, ns)
            if secret is None:
                self.push_secrets.pop(ns, None)
                return None
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            self.push_secrets[ns] = (time.monotonic() + PUSH_SECRET_TTL, data)
        cluster_id = str(mc["spec"]["clusterId"])
        opener = await self.tunnel_port(cluster_id)
        creds = Credentials(server=data["apiserver-advertise-url"].decode(), ca_pem=data.get("ca.crt"),
                            token=data["token"].decode())
        via = "tunnel" if opener is not None else creds.server
        fingerprint = f"{via}|{hashlib.sha256((creds.token or '').encode()).hexdigest()}"
        cached = self.children.get(cluster_id)
        if cached and cached[0] == fingerprint:
            return cached[1]
        if cached:
            await cached[1].close()
        child = Kube(creds, user_agent="clusternet-hub-deployer", opener=opener,
                     connections=CHILD_CONNECTIONS if opener is None else TUNNEL_CONNECTIONS)
        self.children[cluster_id] = (fingerprint, child)
        return child

    async def push_once(self, namespace: str, name: str, force: bool) -> None:
        """Never two pushes of one Description at once (they would race each other's creates); a request
        that comes in meanwhile runs once the current push is done."""
        key = (namespace, name)
        if key in self.pushing:
            self.pushing[key] = bool(self.pushing[key]) or force
            return
        self.pushing[key] = None
        try:
            await self.push(namespace, name, force)
        finally:
            again = self.pushing.pop(key)
            if again is not None:
                self.enqueue("push", namespace, name, force=again)

    def _retry_later(self, key: tuple[str, str], failed: bool) -> None:
        """A failed push comes back with growing delay (2 s doubling to 60 s), not on its own status events."""
        if not failed:
            self.retry_delay.pop(key, None)
            return
        delay = self.retry_delay.get(key, 1.0) * 2
        self.retry_delay[key] = min(delay, 60.0)
        asyncio.get_running_loop().call_later(delay, lambda: self.enqueue("push", *key, force=True))

    async def push(self, namespace: str, name: str, force: bool = False) -> None:
        desc = self.caches.descriptions.get((namespace, name))
        if desc is None:
            return
        deleting = bool(desc["metadata"].get("deletionTimestamp"))
        meta = desc["metadata"]
        if not deleting and not force and self.pushed.get((namespace, name), ())[:2] == (
                meta["uid"], meta.get("generation")):
            return
        mc = self.cluster_in(namespace)
        if mc is None:
            if deleting:  # the cluster is gone: nobody can clean up, never block the deletion
                await applier.remove_finalizer(self.kube, desc)
            return
        if not applier.deployable_by_hub(mc):
            return
        if not deleting and (meta.get("annotations") or {}).get(
                applier.ANNOTATION_DRIFT_CORRECTION) == "false" and applier.deployed(desc):
            return
        child = await self.child_client(mc)
        if child is None:
            await self._pending(desc, "waiting for the agent's child-cluster-deployer credentials")
            return
        if deleting:
            if not applier_ready(mc):
                await self._pending(desc, "cleanup pending: the cluster is offline; its workloads stay until "
                                          "it returns")
                return
            removed = await applier.cleanup(child, desc)
            log.info("cleaned up %s/%s in cluster %s: %s", namespace, name, mc["spec"]["clusterId"], removed)
            await applier.remove_finalizer(self.kube, desc)
            return
        try:
            outcome = await applier.apply_description(child, desc)
        except ApiException:
            self.push_secrets.pop(namespace, None)  # e.g. the agent rotated its token: read it again next time
            raise
        if outcome.phase != "Success":
            self.push_secrets.pop(namespace, None)
        await applier.report(self.kube, desc, outcome, FIELD_MANAGER)
        self.pushed[(namespace, name)] = (meta["uid"], meta.get("generation"), time.monotonic())
        self._retry_later((namespace, name), outcome.phase != "Success")

    async def _pending(self, desc: Obj, reason: str) -> None:
        status = desc.get("status") or {}
        if status.get("reason") == reason:
            return
        meta = desc["metadata"]
        with contextlib.suppress(ApiException):
            await self.kube.patch(APPS, "Description", meta["name"], {"status": {
                "phase": status.get("phase") or "Pending", "reason": reason}}, meta["namespace"],
                subresource="status")


def applier_ready(mc: Obj) -> bool:
    return any(c.get("type") == known.CONDITION_READY and c.get("status") == "True"
               for c in (mc.get("status") or {}).get("conditions") or [])


def condition(status: str, reason: str, message: str) -> Obj:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


def ambiguous_condition(resolved: feedresolve.FeedResolution) -> Obj:
    """Ready=False for a feed naming several templates (the hub used to deploy the first it saw)."""
    return condition("False", feedresolve.REASON_AMBIGUOUS, resolved.message() + (
        "; the Subscription is refused as a whole until then: nothing is deployed, changed or removed"))


def _without_conditions(sub: Obj) -> Obj:
    """The status as it is, minus the conditions: a refused Subscription's objects stay deployed, so what its
    status says about them stays true."""
    return {k: v for k, v in (sub.get("status") or {}).items() if k != "conditions"}
