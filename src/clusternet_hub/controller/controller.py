"""The hub's deployment controller: Subscription -> Base -> Description, and pushing Descriptions to the
clusters that allow it. One instance per hub.

Level-based: watch events only mark work as due (store.py); a few workers then take keys from the work
queue (workqueue.py) and compute the desired state from the caches with pure functions
(clusternet_core.plan), writing it idempotently (subscriptions.py, pusher.py, status.py). A periodic
resync catches anything an event missed and re-applies pushed Descriptions (drift).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from clusternet_api import applier, known
from clusternet_api.fence import LeadershipLost
from clusternet_api.helm import HelmDriver, default_driver
from clusternet_api.kube import Obj, is_status
from clusternet_api.kubeapi import KubeApi
from clusternet_api.logs import Repeats
from clusternet_core.overrides import selection_problem
from clusternet_core.plan import Key
from clusternet_hub.controller.charts import ChartChecker
from clusternet_hub.controller.helmdescriptions import HelmDescriptions
from clusternet_hub.controller.helmpusher import ReleasePusher
from clusternet_hub.controller.pusher import Connect, Pusher, TunnelOpener, connect_child
from clusternet_hub.controller.status import StatusWriter
from clusternet_hub.controller.store import PrimeFailed, Store, WorkKey
from clusternet_hub.controller.subscriptions import Predict, SubscriptionReconciler
from clusternet_hub.controller.workqueue import Backoff
from clusternet_hub.controller.writerefusals import WritesRefused

log = logging.getLogger(__name__)

# A work item that failed (the parent or a child out of reach, a conflict) comes back after 2 s, doubling up to
# 30 s until it succeeds: a fixed 2 s had every key of every cluster retry (and log a line) every 2 s for as long
# as the parent was down (the third audit), and at once when it came back; 30 s is the default resync interval
ERROR_RETRY_DELAY, ERROR_RETRY_MAX = 2.0, 30.0
# The first listing of the caches is tried again after 1 s, doubling up to 30 s, until it succeeds
PRIME_RETRY_FIRST, PRIME_RETRY_MAX = 1.0, 30.0
# A Subscription some of whose objects the parent refused (writerefusals.py) comes back after 2 s, doubling up to
# 5 minutes until a reconcile writes everything: a 413 or 422 does not heal by waiting, and resending a body
# the parent refuses every 2 s only loads it (the periodic resync still reconciles it every resync_interval).
REFUSED_RETRY_FIRST, REFUSED_RETRY_MAX = 2.0, 300.0


class Controller:
    def __init__(self, kube: KubeApi, clusters: dict[Key, Obj], tunnel_opener: TunnelOpener,
                 resync_interval: float = 30.0, workers: int = 8, connect: Connect = connect_child,
                 helm: HelmDriver | None = None, heard: Callable[[Key], bool] | None = None,
                 fail_over: bool = False, predict: Predict | None = None) -> None:
        self.kube = kube
        self.resync_interval = resync_interval
        self.workers = workers
        self.store = Store(clusters, heard=heard)
        self.status = StatusWriter(kube, self.store)
        self.pusher = Pusher(kube, self.store, tunnel_opener, connect)
        self.subscriptions = SubscriptionReconciler(kube, self.store, self.status, fail_over, predict)
        self.helm = helm or default_driver()
        self.charts = ChartChecker(kube, self.store, self.helm)
        self.helm_descriptions = HelmDescriptions(kube, self.store)
        self.releases = ReleasePusher(kube, self.store, self.pusher, self.helm)
        self.retries: Backoff[WorkKey] = Backoff(REFUSED_RETRY_FIRST, REFUSED_RETRY_MAX)
        self.error_retries: Backoff[WorkKey] = Backoff(ERROR_RETRY_DELAY, ERROR_RETRY_MAX)
        self.failures = Repeats()  # the same failure of an item warned about once while it lasts

    async def run(self) -> None:
        await self.prime()
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await self.pusher.close()
            await self.releases.close()  # its relays: a Helm call through one fails now instead of waiting
            self.helm.close()

    async def prime(self) -> None:
        """Fill the caches before any reconcile, retrying (PRIME_RETRY_FIRST doubling to PRIME_RETRY_MAX) until
        every LIST succeeds: the parent may be starting (connection refused, 503), the hub's RBAC or a CRD
        not in place yet (403, no such kind during an upgrade). One failure used to end the controller, with
        nothing said; each is now a warning naming what failed."""
        delays: Backoff[str] = Backoff(PRIME_RETRY_FIRST, PRIME_RETRY_MAX)
        while True:
            try:
                await self.store.prime(self.kube)
            except PrimeFailed as e:
                delay = delays.next("prime")
                log.warning("deployment controller not started: %s; nothing is reconciled until it succeeds, "
                            "retrying in %.0fs", e, delay)
                await asyncio.sleep(delay)
            else:
                return

    async def process(self, item: WorkKey, force: bool) -> None:
        work, key = item[0], (item[1], item[2])
        if work == "sub":
            await self.subscriptions.reconcile(key, force)
        elif work == "status":
            await self.status.paced_update(key)
        elif work == "helm":
            await self.helm_descriptions.sync(key)
        elif work == "chart":
            await self.charts.check(key)
        elif work == "release":
            await self.releases.push(key, force)
        elif work == "stray":
            await self.warn_stray_localization(key)
        elif work == "invalid":
            await self.warn_invalid_globalization(key[1])
        else:
            await self.pusher.push(key, force)

    async def warn_stray_localization(self, key: Key) -> None:
        """A Localization takes effect only in a cluster's dedicated namespace; one elsewhere (`default`, a
        mistyped `clusternet-xxxxx`) would be ignored without a word, as in Clusternet. A Warning event on it
        says so, once per spec the hub sees (checked again here: the cluster may have registered meanwhile)."""
        loc = self.store.caches.localizations.get(key)
        if loc is None or self.store.in_cluster_namespace(loc):
            return
        await applier.post_event(
            self.kube, loc, "Warning", "NotInClusterNamespace",
            f"Localization {key[0]}/{key[1]} applies to no cluster: Localizations take effect only in a "
            "cluster's dedicated namespace (the NAMESPACE of `kubectl get mcls -A`); use a Globalization to "
            "override for every cluster", known.CREATED_BY_HUB)

    async def warn_invalid_globalization(self, name: str) -> None:
        """A Globalization whose clusterAffinity cannot be evaluated refuses the Subscriptions of its feed
        (refusals.refusal_condition); an OverrideFailed Warning event on it says why, once per spec the hub sees."""
        glob = self.store.caches.globalizations.get(name)
        if glob is None or (problem := selection_problem(glob)) is None:
            return
        await applier.post_event(
            self.kube, glob, "Warning", "OverrideFailed", f"{problem}; the Subscriptions of its feed are "
            "refused until it is fixed: what they deployed stays as it is", known.CREATED_BY_HUB)

    async def _worker(self) -> None:
        queue = self.store.queue
        while True:
            item, force = await queue.get()
            try:
                await self.process(item, force)
            except LeadershipLost as e:  # fenced: the Lease may be another replica's, which does this work now
                log.debug("%s %s/%s not done: %s", *item, e)
            except Exception as e:
                delay = (self.retries if isinstance(e, WritesRefused) else self.error_retries).next(item)
                # a 409 is the parent's optimistic concurrency at work (someone wrote first): routine, not a warning
                level = logging.INFO if is_status(e, 409) else logging.WARNING
                # "at the latest": an event for the same key (a status change, say) brings it back sooner, each
                # failure logged; "retrying in 30s" four times in 15 s read as a broken backoff (audit 7). The
                # same failure again (a cleanup that waits for days, retried every minute) at DEBUG: its status
                # says why all along (logs.Repeats)
                log.log(self.failures.level(item, str(e), level), "%s %s/%s failed, retrying at the latest in %.0fs: "
                        "%s", *item, delay, e)
                queue.add_after(item, delay, force)
            else:
                self.retries.forget(item)
                self.error_retries.forget(item)
                self.failures.forget(item)
            finally:
                queue.done(item)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            self.store.enqueue_subscriptions(background=True)
            self.pusher.resync(self.resync_interval)
            self.releases.resync()
            await self.forget_gone_clusters()

    async def forget_gone_clusters(self) -> None:
        """Release what the pushers keep per cluster (child clients, Helm relays, cached credentials) for the
        clusters no longer registered. A push in flight to one fails and is retried, and finds no cluster."""
        clusters = self.store.caches.clusters
        cluster_ids = {str((mc.get("spec") or {}).get("clusterId")) for mc in list(clusters.values())}
        namespaces = {namespace for namespace, _ in list(clusters)}
        await self.pusher.forget_gone(cluster_ids, namespaces)
        await self.releases.forget_gone(cluster_ids, namespaces)

