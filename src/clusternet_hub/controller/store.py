"""The controller's caches, fed by watch events; the handlers only update them and queue work.

Level-based: an event marks work as due (a Subscription to reconcile, a Description to push, a status to
rewrite); the workers compute what to do from these caches alone. A periodic resync catches anything an
event missed.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple, TypeVar

from clusternet_api import applier, known, pendingprunes
from clusternet_api.kube import Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_core import feedresolve, helmrender
from clusternet_core.overrides import selection_problem
from clusternet_core.plan import Caches, Key, key_of, override_targets, subscription_feeds
from clusternet_hub.controller.workqueue import Group, WorkQueue
from clusternet_hub.health import is_ready, parse_time, ready_condition

Work = Literal["sub", "status", "push", "helm", "chart", "release", "stray", "invalid"]
"""sub: reconcile a Subscription; status: rewrite its status; push: push a Generic Description; helm: a Helm
Description's HelmReleases and status; chart: check a HelmChart in its repository; release: install or remove
a HelmRelease in a cluster the hub deploys to; stray: tell a Localization outside every cluster's namespace
that it applies to nothing; invalid: tell a Globalization (key ("", name)) why it cannot be evaluated."""
WorkKey = tuple[Work, str, str]
K = TypeVar("K")
log = logging.getLogger(__name__)
# Workers at most on one cluster's pushes at once, and as many on its Helm releases (workqueue.py's groups). More
# pushes would only wait for its client's connections (pusher.py: 2 straight to its API server; through its tunnel
# one push opens its 8 streams already), holding workers the other clusters and the Subscriptions need. Releases
# are a group of their own: two Helm installs waiting for readiness held a cluster's pushes and cleanups for
# minutes when they shared one (review s37).
CLUSTER_WORKERS = 2


def group_of(item: WorkKey) -> Group | None:
    """The work that shares workers (workqueue.py): a cluster's (its namespace's) pushes, and its Helm releases,
    at most CLUSTER_WORKERS at once each; None for the parent's own work."""
    return ((item[0], item[1]), CLUSTER_WORKERS) if item[0] in ("push", "release") else None


# What a push to a cluster whose agent reports useSocket says while its tunnel is down (controller/pusher.py,
# helmpusher.py): the hub reaches such a cluster through its tunnel alone. Its SocketConnected turning True
# brings back what says so (Store.on_cluster).
TUNNEL_DOWN = "waiting for the cluster's tunnel: its agent reports useSocket, so the hub pushes through nothing else"
RELEASE_WAITS = {
    "offline": "waiting: the cluster is offline; Helm installs and upgrades (which delete what a chart drops) wait "
               "until it returns",
    "unheard": "waiting for the cluster's first heartbeat since the hub started (or regained the parent): Helm "
               "installs and upgrades (which delete what a chart drops) wait until then"}
"""Audit s36: a release was upgraded in a silent cluster, where a Generic Description's prunes wait and a Pull
agent (dead or not heard from) decides nothing; Helm cannot apply without deleting, so it waits whole."""


class Primed(NamedTuple):
    """One kind Store.prime lists: the Caches field it fills, and the Store handler (None: cached as listed) that
    sees each listed object as a first sighting. Prime hands it each object it lists: the watch's own first listing
    comes after prime now (seed) and finds them cached, so the work a first sighting queues (a Helm Description's
    HelmReleases, a HelmRelease's install, ...) would otherwise wait for a change. A hub restarted mid-rollout never
    created the HelmRelease of a cluster it had not reached (test_helm, 2 of 5 runs). ManagedClusters are the
    operator's (track_cluster); prime queues every Subscription anyway."""
    kind: str
    api_version: str
    plural: str  # as the hub's watches name it
    field: str
    namespace: str | None  # the namespace listed (None: all)
    first_sight: str | None


# What Store.prime lists, in order. The ManagedClusters first: Subscriptions are bound to them.
PRIMED: tuple[Primed, ...] = (
    Primed("ManagedCluster", known.CLUSTERS_API_VERSION, "managedclusters", "clusters", None, None),
    Primed("Manifest", known.APPS_API_VERSION, "manifests", "manifests", known.RESERVED_NAMESPACE, "on_manifest"),
    Primed("Globalization", known.APPS_API_VERSION, "globalizations", "globalizations", None, "on_override"),
    Primed("Subscription", known.APPS_API_VERSION, "subscriptions", "subscriptions", None, "on_subscription"),
    Primed("Localization", known.APPS_API_VERSION, "localizations", "localizations", None, "on_override"),
    Primed("Description", known.APPS_API_VERSION, "descriptions", "descriptions", None, "on_description"),
    Primed("Base", known.APPS_API_VERSION, "bases", "bases", None, "on_base"),
    Primed("FeedInventory", known.APPS_API_VERSION, "feedinventories", "inventories", None, "on_feed_inventory"),
    Primed("HelmChart", known.APPS_API_VERSION, "helmcharts", "helmcharts", None, "on_helmchart"),
    Primed("HelmRelease", known.APPS_API_VERSION, "helmreleases", "helmreleases", None, "on_helmrelease"))
# (group, plural) as a watch names its resource -> the Caches field Store.seed hands it
_SEEDED = {(p.api_version.split("/")[0], p.plural): p.field for p in PRIMED}
# A watch held this long by a failing first LIST says so (prime's own retries back off to 30 s, each a warning).
SEED_WAIT_WARNING = 30.0
_BY_NAME = {"manifests", "globalizations"}  # Caches fields keyed by name alone (one namespace, cluster-scoped)

# Deleted Manifests remembered for catch-up LISTs (a few seconds' worth is what matters; 64 bytes each).
DELETED_MANIFESTS_KEPT = 10_000


class Store:
    """What the hub knows (`caches`) and the work queue its changes feed."""

    def __init__(self, clusters: dict[Key, Obj], queue: WorkQueue[WorkKey] | None = None,
                 heard: Callable[[Key], bool] | None = None) -> None:
        self.caches = Caches(clusters=clusters)  # the ManagedClusters are shared with the hub's health checks
        # Whether the hub has seen a report of the cluster arrive since it started (health.Observation.heard),
        # what cleanups wait for; None (unit tests of other things): every cluster counts as heard
        self.heard: Callable[[Key], bool] = heard or (lambda _key: True)
        self.awaiting_report: set[str] = set()  # namespaces of clusters whose cleanups wait for that report
        # (kind, name) by cluster namespace of the deleting objects the hub marked no longer wanted (wanted.py): what
        # to take the mark back from when their Subscription binds the cluster again (subscriptions.py)
        self.marked: dict[str, set[tuple[str, str]]] = {}
        self.queue: WorkQueue[WorkKey] = queue or WorkQueue(group_of)
        # UIDs of Manifests whose deletion the watch delivered, newest last (at most DELETED_MANIFESTS_KEPT): a
        # LIST answered just before a delete but read after it must not put the template back (subscriptions.py)
        self.deleted_manifests: dict[str, None] = {}
        self._primed = {p.plural: asyncio.Event() for p in PRIMED}  # listed by prime
        # binding key -> monotonic time the hub heard the cluster again after its silence (Ready Unknown), or as
        # back_for seeds it (failing back waits for its reports: placement.feed_ready)
        self.back_since: dict[str, float] = {}

    def enqueue(self, work: Work, key: Key, force: bool = False, background: bool = False) -> None:
        """Mark work as due; `background`: the periodic resync's, done when nothing else waits (workqueue.py)."""
        self.queue.add((work, *key), force, background)

    def enqueue_subscriptions(self, match: Callable[[Obj], bool] | None = None, force: bool = False,
                              background: bool = False) -> None:
        for key, sub in list(self.caches.subscriptions.items()):
            if match is None or match(sub):
                self.enqueue("sub", key, force, background)

    async def prime(self, kube: KubeApi) -> None:
        """Fill the caches from the API before any reconcile.

        Without this, a restarted hub would reconcile Subscriptions before the watch streams had
        reported the ManagedClusters, see no cluster bound, and remove every Base it had created.
        Each kind is listed on its own: one that fails (its CRD not served yet) does not hold back the others,
        whose watches wait for their listing (`seed`); PrimeFailed names every kind that failed. A kind listed
        once is not listed again when prime is retried: its watch may have started, and a listing older than its
        events must not put back what they removed.
        """
        failed: list[str] = []
        for primed in PRIMED:
            if self._primed[primed.plural].is_set():
                continue
            try:
                listed = await _listed(kube, primed.api_version, primed.kind, primed.namespace)
            except PrimeFailed as e:
                failed.append(str(e))
                continue
            cache: dict[Any, Obj] = getattr(self.caches, primed.field)
            for obj in listed:
                if _cache_key(primed.field, obj) in cache:
                    continue
                if primed.first_sight is None:
                    cache[_cache_key(primed.field, obj)] = obj
                else:  # cached, and its work queued, as the watch's first listing of it would
                    getattr(self, primed.first_sight)("MODIFIED", obj)
            self._primed[primed.plural].set()
        if failed:
            raise PrimeFailed("; ".join(failed))
        self.enqueue_subscriptions()
        for key in self.caches.helmcharts:
            self.enqueue("chart", key)

    async def seed(self, group: str, plural: str) -> list[Obj]:
        """What the caches hold of a kind, once `prime` has listed it: the hub's watch of that kind waits for it,
        then calls deleted what its first listing lacks (clusternet_hub.kopfhooks). Without that, an object
        deleted between prime's LIST and the watch's own stayed cached for the life of the leader, since neither
        the listing nor the watch after it has an event for it. [] for a kind the caches do not hold."""
        field = _SEEDED.get((group, plural))
        if field is None:
            return []
        primed = self._primed[plural]
        try:
            async with asyncio.timeout(SEED_WAIT_WARNING):
                await primed.wait()
        except TimeoutError:
            log.warning("the hub's watch of %s waits for the deployment controller's first LIST of them (failing: "
                        "see its warnings); nothing of them is handled until it succeeds", plural)
            await primed.wait()
        return list(getattr(self.caches, field).values())

    def on_subscription(self, event: str, sub: Obj) -> None:
        key = key_of(sub)
        if event == "DELETED":
            self.caches.subscriptions.pop(key, None)
            self.enqueue("status", key)  # which forgets its pacing
            return
        old = self.caches.subscriptions.get(key)
        self.caches.subscriptions[key] = sub
        changed = old is None or old.get("spec") != sub.get("spec") or bool(sub["metadata"].get("deletionTimestamp"))
        if changed or old is None or old["metadata"].get("finalizers") != sub["metadata"].get("finalizers"):
            self.enqueue("sub", key)

    def on_manifest(self, event: str, manifest: Obj) -> None:
        """Templates live in the reserved namespace alone (the cache is by name): a Manifest elsewhere is none."""
        if manifest["metadata"].get("namespace") != known.RESERVED_NAMESPACE:
            return
        name = manifest["metadata"]["name"]
        if event == "DELETED":
            self.caches.manifests.pop(name, None)
            self.deleted_manifests[str(manifest["metadata"].get("uid"))] = None
            while len(self.deleted_manifests) > DELETED_MANIFESTS_KEPT:
                del self.deleted_manifests[next(iter(self.deleted_manifests))]
        else:
            old = self.caches.manifests.get(name)
            self.caches.manifests[name] = manifest
            if old is not None and old.get("template") == manifest.get("template"):
                return
        # a namespace-less feed matches templates in any namespace: a new one may make it ambiguous
        self.enqueue_subscriptions(lambda sub: any(
            feedresolve.matches(f, manifest) for f in subscription_feeds(sub)))

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
        if kind == "Localization" and event != "DELETED" and not self.in_cluster_namespace(override):
            self.enqueue("stray", key)
        unusable = event != "DELETED" and selection_problem(override) is not None
        if unusable:
            self.enqueue("invalid", ("", key))
        policy = ((old or override).get("spec") or {}).get("overridePolicy") or "ApplyLater"
        now = policy == "ApplyNow" or (override.get("spec") or {}).get("overridePolicy") == "ApplyNow"
        # an unusable override refuses its Subscriptions, even ApplyLater (which waits only to apply), and
        # fixing or deleting it lifts the refusal
        # never forced: each Description records the ApplyNow overrides it was rendered with, so the plan renders
        # again exactly the clusters whose set changed. A forced plan rendered every cluster of the Subscription,
        # rolling out ApplyLater overrides waiting in other clusters (audit s35; kept until 2026-12-06)
        if now or unusable or (old is not None and selection_problem(old) is not None):
            self.enqueue_subscriptions(lambda sub: override_targets(override, sub))

    def in_cluster_namespace(self, obj: Obj) -> bool:
        """Is the object in a ManagedCluster's dedicated namespace (where Localizations take effect)?"""
        namespace = obj["metadata"].get("namespace")
        return any(ns == namespace for ns, _ in list(self.caches.clusters))

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
            self.enqueue("sub", key)

    def on_base(self, event: str, base: Obj) -> None:
        """Bases are cached so that reconciles skip unchanged ones; a Base deleted by someone else comes back
        (with its Description) at once, while its Subscription still binds that cluster."""
        key = key_of(base)
        if event != "DELETED":
            self.caches.bases[key] = base
            return
        self.caches.bases.pop(key, None)
        self._bring_back(base)

    def _bring_back(self, gone: Obj) -> None:
        """A Base or Description is gone: its Subscription, while it lives, plans again at once, so one deleted
        while still wanted (by hand, or released without cleanup: controller/wanted.py) comes back now, not at the
        next resync. (While a Description was being deleted the plan only waited for it: "still being cleaned
        up".)"""
        labels = gone["metadata"].get("labels") or {}
        sub = self.caches.subscriptions.get((labels.get(known.LABEL_SUBS_NAMESPACE, ""),
                                             labels.get(known.LABEL_SUBS_NAME, "")))
        if sub is not None and not sub["metadata"].get("deletionTimestamp"):
            self.enqueue("sub", key_of(sub))

    def keep_marked(self, cache: dict[Key, Obj], read: Obj, marked: Obj | None) -> None:
        """The object the hub just marked no longer wanted (wanted.say_unwanted) replaces the copy it judged, if the
        cache still holds that one: a push before the watch's echo does not mark it twice, and the mark is indexed
        for taking back at once."""
        if marked is not None and cache.get(key_of(marked)) is read:
            cache[key_of(marked)] = marked
            self._track_mark("MODIFIED", marked)

    def _track_mark(self, event: str, obj: Obj) -> None:
        meta = obj["metadata"]
        entry = (str(obj.get("kind")), meta["name"])
        if event != "DELETED" and (meta.get("annotations") or {}).get(known.ANNOTATION_NO_LONGER_WANTED):
            self.marked.setdefault(meta["namespace"], set()).add(entry)
        elif entry in self.marked.get(meta["namespace"], ()):
            self.marked[meta["namespace"]].discard(entry)
            if not self.marked[meta["namespace"]]:
                del self.marked[meta["namespace"]]

    def on_description(self, event: str, desc: Obj) -> None:
        key = key_of(desc)
        self._track_mark(event, desc)
        if event == "DELETED":
            self.caches.descriptions.pop(key, None)
            self.enqueue("push", key)  # which forgets its push bookkeeping
            self._bring_back(desc)
        else:
            old = self.caches.descriptions.get(key)
            self.caches.descriptions[key] = desc
            if (desc.get("spec") or {}).get("deployer") == "Helm":
                if old is None or old.get("spec") != desc.get("spec") or desc["metadata"].get("deletionTimestamp"):
                    self.enqueue("helm", key)
            elif desc["metadata"].get("deletionTimestamp") or not applier.deployed(desc):
                self.enqueue("push", key)
            if old is not None and old.get("status") == desc.get("status"):
                return
        labels = desc["metadata"].get("labels") or {}
        if labels.get(known.LABEL_SUBS_NAME):
            self.enqueue("status", (labels.get(known.LABEL_SUBS_NAMESPACE, ""), labels[known.LABEL_SUBS_NAME]))

    def on_helmchart(self, event: str, chart: Obj) -> None:
        """A new or changed chart is checked against its repository; its Subscriptions re-render when its
        spec or phase changed."""
        key = key_of(chart)
        old = self.caches.helmcharts.get(key)
        if event == "DELETED":
            self.caches.helmcharts.pop(key, None)
        else:
            self.caches.helmcharts[key] = chart
            if old is None or old.get("spec") != chart.get("spec"):
                self.enqueue("chart", key, force=True)
            elif helmrender.check_phase(old) == helmrender.check_phase(chart):
                return  # what the render reads of the check is unchanged (a check of a new spec changes it)
        self.enqueue_subscriptions(lambda sub: any(
            f["kind"] == "HelmChart" and (f["namespace"], f["name"]) == key for f in subscription_feeds(sub)))

    def on_helmrelease(self, event: str, hr: Obj) -> None:
        """Install or remove it (when the hub deploys to its cluster), and recompute its Description's status."""
        key = key_of(hr)
        old = self.caches.helmreleases.get(key)
        self._track_mark(event, hr)
        if event == "DELETED":
            self.caches.helmreleases.pop(key, None)
        else:
            self.caches.helmreleases[key] = hr
            meta = hr["metadata"]
            respecified = old is not None and old["metadata"].get("generation") != meta.get("generation")
            if old is None or respecified or meta.get("deletionTimestamp"):
                self.enqueue("release", key)
            if respecified:  # perhaps its agent's edit: its Description's sync writes the hub's spec again
                for name in self._writers_of(hr):
                    self.enqueue("helm", (key[0], name), background=True)
            if old is not None and old.get("status") == hr.get("status") and old["metadata"].get(
                    "annotations") == meta.get("annotations"):
                return
        for owner in hr["metadata"].get("ownerReferences") or []:
            if owner.get("kind") == "Description":
                self.enqueue("helm", (key[0], owner["name"]))

    def _writers_of(self, hr: Obj) -> set[str]:
        """The Descriptions that may have written this HelmRelease: its owners, and by its name
        (`<description>-<chart namespace>-<chart name>`), since its agent may edit its ownerReferences too."""
        meta = hr["metadata"]
        owners = {o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "Description"}
        name, marker = str(meta["name"]), "-helm-"  # Helm Descriptions are `<base>-helm`
        prefixes = {name[:i + len(marker) - 1] for i in range(len(name)) if name.startswith(marker, i)}
        return owners | {p for p in prefixes if (meta["namespace"], p) in self.caches.descriptions}

    def on_cluster(self, event: str, mc: Obj, old: Obj | None) -> None:
        """Labels or taints changed: rescheduling may bind or unbind it; push side may have flipped.
        (The hub's cluster tracking has updated the shared ManagedCluster cache already.)"""
        meta = mc["metadata"]
        binding = f"{meta['namespace']}/{meta['name']}"
        if event == "DELETED":
            self.back_since.pop(binding, None)
        elif old is not None and is_ready(mc) and (ready_condition(old) or {}).get("status") == "Unknown":
            self.back_since[binding] = time.monotonic()  # back from silence; a Ready=False blip is no return
        if event == "DELETED" or old is None or _scheduling_view(old) != _scheduling_view(mc):
            self.enqueue_subscriptions()
            for key in list(self.caches.descriptions):
                if key[0] == meta["namespace"]:
                    self.enqueue("push", key, force=True)
            for key in list(self.caches.helmreleases):
                if key[0] == meta["namespace"]:
                    self.enqueue("release", key, force=True)
        elif _tunnel_up(mc) and not _tunnel_up(old):
            self._after_tunnel(meta["namespace"])
        if meta["namespace"] in self.awaiting_report and self.heard((meta["namespace"], meta["name"])):
            self._after_report(meta["namespace"])

    def back_for(self, binding: str) -> float:
        """Seconds since the hub heard the cluster again (on_cluster, by the hub's clock). For one it has not seen
        return since it started (a restart, a new leader): since its Ready turned True as the agent stamped it, when
        that is in the past, else since it was first asked; re-review s46 found the wait restarted at each new hub."""
        now = time.monotonic()
        if binding not in self.back_since:
            namespace, _, name = binding.partition("/")
            since = parse_time((ready_condition(self.caches.clusters.get((namespace, name)) or {}) or {}).get(
                "lastTransitionTime"))
            ago = (datetime.datetime.now(datetime.UTC) - since).total_seconds() if since else 0.0
            self.back_since[binding] = now - max(0.0, ago)
        return now - self.back_since[binding]

    def _after_report(self, namespace: str) -> None:
        """Clean up (and prune) at once what waited for the cluster's first report since the hub started
        (pusher.py)."""
        self.awaiting_report.discard(namespace)
        self._push_again(namespace, lambda desc: _deleting(desc) or pendingprunes.prunes_pending(desc),
                         lambda hr: _deleting(hr) or _waits_for_report(hr))

    def _after_tunnel(self, namespace: str) -> None:
        """Push at once what waited for the cluster's tunnel (TUNNEL_DOWN): a tunnel coming back changes nothing
        binding reads, and the retries' backoff reaches a minute (five for releases)."""
        self._push_again(namespace, lambda desc: (desc.get("status") or {}).get("reason") == TUNNEL_DOWN,
                         lambda hr: (hr.get("status") or {}).get("description") == TUNNEL_DOWN)

    def _push_again(self, namespace: str, description: Callable[[Obj], bool], release: Callable[[Obj], bool]) -> None:
        """Push now (forced) the cluster's Descriptions and HelmReleases that the predicates pick."""
        for key, desc in list(self.caches.descriptions.items()):
            if key[0] == namespace and description(desc):
                self.enqueue("push", key, force=True)
        for key, hr in list(self.caches.helmreleases.items()):
            if key[0] == namespace and release(hr):
                self.enqueue("release", key, force=True)


async def write_back(cache: dict[K, Obj], key: K, write: Awaitable[Obj],
                     on_event: Callable[[str, Obj], None] | None = None, creates: bool = False) -> Obj:
    """Run `write` (a write of the object cached under `key`, not started yet: a coroutine) and return its
    response, which replaces the cached copy only if the cache did not change while the write was in flight.

    Why store it at all: the hub acts on its own writes at once, not when the watch brings them back (a
    Description written is pushed now, the next status is compared with the one just written, a Base or
    HelmRelease just applied is not applied again by the next reconcile). Why only then: every watch event that
    arrived before the request was sent is older than its response, but one arriving while it is in flight may
    be newer (a spec edit committed just after our write): storing the response over it put the old spec back,
    and the edit was planned from the old spec or not at all until some other event (review 6, finding 6). Such
    a copy stays, and the watch brings our write too. The cache "did not change" when it holds the same object,
    or one of the same resourceVersion (a re-list delivers a copy). A write to an object the cache no longer
    held when it was sent (deleted) stores nothing, unless it `creates` the object (an apply).

    `on_event`: the store's handler for the kind, given the response as a MODIFIED event, so what it shows as
    changed (an edit committed between the watch's last copy and our write) is acted on as the watch's copy
    would be; without it the response is stored as it is. client-go informers never put write responses in
    their store (Clusternet's controllers wait for the watch)."""
    sent = cache.get(key)
    written = await write
    if _same_version(cache.get(key), sent) and (sent is not None or creates):
        if on_event is not None:
            on_event("MODIFIED", written)
        else:
            cache[key] = written
    return written


def _same_version(a: Obj | None, b: Obj | None) -> bool:
    if a is b:
        return True
    version = (a or {}).get("metadata", {}).get("resourceVersion")
    return version is not None and version == (b or {}).get("metadata", {}).get("resourceVersion")


class PrimeFailed(Exception):
    """A LIST of `Store.prime` failed; the message names the kind and the error."""


async def _listed(kube: KubeApi, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
    try:
        return await kube.list(api_version, kind, namespace=namespace)
    except Exception as e:
        raise PrimeFailed(f"listing {kind} ({api_version}) failed: {str(e) or type(e).__name__}") from e


def _cache_key(field: str, obj: Obj) -> Any:
    return obj["metadata"]["name"] if field in _BY_NAME else key_of(obj)


def _waits_for_report(hr: Obj) -> bool:
    """A HelmRelease the hub held back until the cluster's first report (helmpusher.RELEASE_WAITS)."""
    return (hr.get("status") or {}).get("description") == RELEASE_WAITS["unheard"]


def _deleting(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _tunnel_up(mc: Obj) -> bool:
    return any(c.get("type") == known.CONDITION_SOCKET and c.get("status") == "True"
               for c in (mc.get("status") or {}).get("conditions") or [])


def _scheduling_view(mc: Obj) -> tuple[Any, ...]:
    """What of a ManagedCluster binding and pushing depend on."""
    spec, status = mc.get("spec") or {}, mc.get("status") or {}
    return (mc["metadata"].get("labels"), spec.get("taints"), spec.get("syncMode"), status.get("appPusher"),
            is_ready(mc))
