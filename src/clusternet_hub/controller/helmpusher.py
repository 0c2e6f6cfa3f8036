"""Installing and removing HelmReleases in the clusters the hub deploys to (appPusher, not Pull).

The same rules as the agent's (clusternet_api.helm.releases) and the same identity as Generic pushes: the
child's deployer token from Secret `child-cluster-deployer`. Helm's Go client needs an address, so through a
tunnel it dials a per-cluster loopback TLS relay (clusternet_api.tunnel.relay) whose connections become
tunnel streams: the agent at the other end holds the TLS connection to its API server, verified against the child's
CA, as for every request the hub sends through a tunnel; for an agent that uses no tunnel (useSocket false) Helm
goes straight to the advertised URL with the child's CA, after the push client's hold on a child no connection can
be made to has been asked (ReleasePusher.unreachable).
One operation per release at a time (the work queue never hands a key to two workers).
"""

from __future__ import annotations

import asyncio
import base64
import logging

from clusternet_api import applier, known
from clusternet_api.helm import releases
from clusternet_api.helm.driver import ChartError, ClusterAccess, HelmDriver
from clusternet_api.helm.stuck import PendingReleases
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.logs import Repeats, error_text
from clusternet_api.reachability import TIMED_OUT, Unreachable, held_words
from clusternet_api.tunnel.relay import LoopbackRelay
from clusternet_core import chartcredentials, helmrender
from clusternet_core.plan import Key
from clusternet_hub.controller.charts import pull_credentials
from clusternet_hub.controller.pusher import DEPLOYER_CREDENTIALS_MISSING, Pusher, cleanup_wait, release_with_cluster
from clusternet_hub.controller.pusher import RETRY_FIRST as PUSH_RETRY_FIRST
from clusternet_hub.controller.pusher import RETRY_MAX as PUSH_RETRY_MAX
from clusternet_hub.controller.store import RELEASE_WAITS, TUNNEL_DOWN, Store, write_back
from clusternet_hub.controller.wanted import WantUnknown, say_unwanted_or_warn, still_wanted
from clusternet_hub.controller.workqueue import Backoff
from clusternet_hub.registration import drop_token_secrets

log = logging.getLogger(__name__)

# Why an uninstall waits (pusher.cleanup_wait)
UNINSTALL_PENDING = {
    "offline": "uninstall pending: the cluster is offline; its release stays until it returns",
    "unheard": "uninstall pending: waiting for the cluster's first heartbeat since the hub started (or regained "
               "the parent); its release stays until then"}

RETRY_FIRST, RETRY_MAX = 5.0, 300.0
"""A chart that could not be fetched is tried again after 5 s, doubling up to 5 minutes."""


PREFLIGHT_SECONDS = 15.0
"""How long the request before a Helm operation may take (unreachable): a connection kept alive to a child cut off
since answers nothing, and no hold starts for it (review s38); a new one fails within the push client's 10-s connect
timeout, which aiohttp rounds up: above it, so that such a failure starts the push client's hold (re-review s39:
at 10 s our limit ran out first, and every retry of every release waited its 10 s)."""


class Held(str):
    """Why a release waits for a cluster it cannot reach now (the push client's hold): retried as a tunnel that is
    down is, at the pushes' pace, with no event to bring it back."""


class ReleasePusher:
    def __init__(self, kube: KubeApi, store: Store, pusher: Pusher, driver: HelmDriver) -> None:
        self.kube, self.store, self.pusher, self.driver = kube, store, pusher, driver
        self.relays: dict[str, LoopbackRelay] = {}  # cluster id -> its relay
        self.retries: Backoff[Key] = Backoff(RETRY_FIRST, RETRY_MAX)
        # waiting for a tunnel, as Generic pushes do (2 s doubling to 60 s), not a chart's 5 minutes: a tunnel
        # that moved to another hub replica never turns SocketConnected False, so no event brings these back
        self.tunnel_waits: Backoff[Key] = Backoff(PUSH_RETRY_FIRST, PUSH_RETRY_MAX)
        self.pull_secrets: dict[str, Obj] = {}  # cluster namespace -> its CHART_PULL_SECRET as last written
        self.pending = PendingReleases()  # releases seen pending, on this leader's clock (helm/stuck.py)
        self.status_failures = Repeats()  # a status write refused the same way again is warned about once
        self.pull_secret_turns: dict[str, asyncio.Lock] = {}  # per cluster namespace (_share_pull_credentials)

    async def close(self) -> None:
        relays, self.relays = self.relays, {}  # taken at once: no table changing while closing
        for relay in relays.values():
            await relay.close()

    async def forget_gone(self, cluster_ids: set[str], namespaces: set[str]) -> None:
        """Close the relays of clusters not in `cluster_ids` and forget the pull Secrets of namespaces not in
        `namespaces`: a removed cluster's relay kept listening on its loopback port for the life of the hub."""
        gone = [self.relays.pop(c) for c in [c for c in self.relays if c not in cluster_ids]]
        for relay in gone:
            await relay.close()
        for namespace in [n for n in self.pull_secrets if n not in namespaces]:
            del self.pull_secrets[namespace]

    def resync(self) -> None:
        """Drift: look at every release the hub deploys again (a release removed by hand is reinstalled)."""
        for key in list(self.store.caches.helmreleases):
            if not self.store.queue.waiting(("release", *key)):
                self.store.enqueue("release", key, background=True)

    async def access(self, mc: Obj) -> ClusterAccess | str:
        """Helm's way to the cluster, as the pusher's (Pusher.route); else why there is none."""
        opener, waiting = await self.pusher.route(mc)
        if waiting is not None:
            return waiting
        data = await self.pusher._secret(mc["metadata"]["namespace"])
        if data is None:
            return DEPLOYER_CREDENTIALS_MISSING
        server = data["apiserver-advertise-url"].decode()
        access = ClusterAccess(server=server, ca_pem=data.get("ca.crt"), token=data["token"].decode())
        cluster_id = str(mc["spec"]["clusterId"])
        if opener is None:
            return await self.unreachable(mc, server) or access
        relay = self.relays.get(cluster_id)
        if relay is None:  # kept before it starts: a second worker of this cluster shares it, starting no other
            relay = self.relays[cluster_id] = LoopbackRelay(opener)
        relay.opener = opener
        await relay.start()
        return ClusterAccess(server=relay.url, ca_pem=relay.ca_pem, token=access.token)

    async def unreachable(self, mc: Obj, server: str) -> Held | None:
        """The hold's words when the child, reached straight at its URL, cannot be reached now; else None.

        Helm's own client knows nothing of the push client's hold (clusternet_api.reachability): each install,
        upgrade or uninstall to a black-holed child waited for Helm's timeouts, holding one of the cluster's two
        workers. So one small request (the core group's discovery) goes first through the push client: while held
        it fails at once; after the hold it is the probe. No answer within PREFLIGHT_SECONDS holds the release too
        (a connection kept alive to a child frozen since, or a probe whose connect timeout outlasts our limit: Helm
        was called then, and waited its own timeouts; seen in the suite's frozen-child test). Any other failure is
        left to Helm, which says its own."""
        child = await self.pusher.child_client(mc, (None, None))  # straight to its URL: access() found no tunnel
        if isinstance(child, str):
            return None  # no credentials: access() says so
        try:
            async with asyncio.timeout(PREFLIGHT_SECONDS):  # a dead kept-alive connection: Helm dials anew
                await child.discover("v1")
        except Unreachable as e:
            return Held(e)
        except TimeoutError:  # in the hold's words, which the next attempt gets: the status is written once
            return Held(held_words(server, TIMED_OUT))
        except Exception as e:
            log.debug("cluster %s: discovery before a Helm operation failed: %s", mc["spec"]["clusterId"], e)
        return None

    async def push(self, key: Key, force: bool = False) -> None:
        hr = self.store.caches.helmreleases.get(key)
        if hr is None:
            self.retries.forget(key)
            self.tunnel_waits.forget(key)
            return
        deleting = bool(hr["metadata"].get("deletionTimestamp"))
        mc = self.pusher.cluster_in(key[0])
        if deleting and await release_with_cluster(self.kube, hr, mc):
            return  # nothing uninstalled, nor Pull-mode credentials taken out: the namespace is going
        if mc is None:
            return
        if not applier.deployable_by_hub(mc):
            if deleting:  # its agent uninstalls: tell it if it is an unbinding (wanted.say_unwanted)
                self.store.keep_marked(self.store.caches.helmreleases, hr, await say_unwanted_or_warn(
                    self.kube, hr, mc, self.store.caches.subscriptions))
            await self._share_pull_credentials(hr, deleting)
            return
        if deleting:
            await self._uninstall(key, hr, mc)
            return
        if (wait := cleanup_wait(self.store, mc)) is not None:  # Store.on_cluster / _after_report push it then
            if helmrender.release_phase(hr)[0] != "Success":  # a drift check waits unsaid
                await self._write(hr, {"description": RELEASE_WAITS[wait]})
            return
        access = await self._access_or_wait(key, hr, mc)
        if access is not None:
            await self._reconcile(key, hr, access)

    async def _access_or_wait(self, key: Key, hr: Obj, mc: Obj) -> ClusterAccess | None:
        access = await self.access(mc)
        if not isinstance(access, str):
            self.tunnel_waits.forget(key)
            return access
        out_of_reach = access == TUNNEL_DOWN or isinstance(access, Held)
        if not (out_of_reach and helmrender.release_phase(hr)[0] == "Success"):
            await self._write(hr, {"description": str(access)})  # a drift check waits unsaid, as Generic pushes do
        if out_of_reach:  # besides Store.on_cluster's push when a tunnel is back
            self.store.queue.add_after(("release", *key), self.tunnel_waits.next(key), force=True)
        return None

    async def _share_pull_credentials(self, hr: Obj, deleting: bool) -> None:
        """A Pull-mode cluster fetches its charts itself: copy the credentials of the HelmChart the release
        stands for (chartcredentials: never the Secret the HelmRelease names, which its agent may edit) into
        the one Secret of its namespace its agent may read (known.CHART_PULL_SECRET), and take them out when
        the HelmRelease goes. The child then holds repository credentials: inherent in pulling.

        One namespace's copies take turns: the Secret is applied whole, so two HelmReleases' workers that read it
        before either wrote each applied a map without the other's keys, which server-side apply then removed (two
        private charts to one Pull cluster: one fetched without credentials until its next resync)."""
        async with self.pull_secret_turns.setdefault(hr["metadata"]["namespace"], asyncio.Lock()):
            await self._share_pull_credentials_now(hr, deleting)

    async def _share_pull_credentials_now(self, hr: Obj, deleting: bool) -> None:
        meta = hr["metadata"]
        ref = chartcredentials.pull_secret_ref(hr, self.store.caches)
        keys = (f"{meta['name']}.username", f"{meta['name']}.password")
        current = self.pull_secrets.get(meta["namespace"])
        if current is None:
            current = await self.kube.get("v1", "Secret", known.CHART_PULL_SECRET, meta["namespace"]) or {}
            if current.get("type") == known.SERVICE_ACCOUNT_TOKEN_TYPE:  # its agent's (drop_token_secrets)
                await drop_token_secrets(self.kube, meta["namespace"])
                current = {}
        data = current.get("data") or {}
        if deleting or not ref:
            if any(k in data for k in keys):
                self.pull_secrets[meta["namespace"]] = await self.kube.patch(
                    "v1", "Secret", known.CHART_PULL_SECRET, {"data": dict.fromkeys(keys)}, meta["namespace"])
            return
        try:
            username, password = await pull_credentials(self.kube, ref, meta["namespace"])
        except ChartError as e:
            log.warning("HelmRelease %s/%s: %s", meta["namespace"], meta["name"], e)
            return
        wanted = {k: base64.b64encode(v.encode()).decode() for k, v in zip(keys, (username, password), strict=True)
                  if v is not None}
        if all(data.get(k) == v for k, v in wanted.items()):
            return
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": known.CHART_PULL_SECRET, "namespace": meta["namespace"]},
                "data": {**data, **wanted}}
        self.pull_secrets[meta["namespace"]] = await self.kube.apply(body, known.CREATED_BY_HUB)

    async def _uninstall(self, key: Key, hr: Obj, mc: Obj) -> None:
        """Uninstall the release, unless its Subscription still wants it (deleted by the garbage collector, by hand,
        or with a Description deleted so: wanted.py; the hub writes it again and finds the release installed)."""
        wait = cleanup_wait(self.store, mc)  # first: no Subscription GET per resync while it waits (review s32)
        if wait is not None:
            await self._write(hr, {"description": UNINSTALL_PENDING[wait]})
            return
        try:
            wanted = await still_wanted(self.kube, hr, mc, self.store.caches.subscriptions)
        except WantUnknown as e:  # retried as any failure; the status says why meanwhile
            await self._write(hr, {"description": f"uninstall pending: {e}"})
            raise
        if wanted:
            await applier.remove_finalizer(self.kube, hr)
            return
        access = await self._access_or_wait(key, hr, mc)
        if access is None:
            return
        done = await releases.uninstall(self.driver, access, hr)
        log.info("HelmRelease %s/%s in cluster %s: %s", hr["metadata"]["namespace"], hr["metadata"]["name"],
                 mc["spec"]["clusterId"], done)
        await applier.remove_finalizer(self.kube, hr)

    async def _reconcile(self, key: Key, hr: Obj, access: ClusterAccess) -> None:
        spec = hr.get("spec") or {}
        try:  # the HelmChart's credentials, for its repository only (chartcredentials), never hr's chartPullSecret
            username, password = await pull_credentials(self.kube, chartcredentials.pull_secret_ref(
                hr, self.store.caches), key[0])
        except ChartError as e:
            username = password = None
            log.warning("HelmRelease %s/%s: %s", *key, e)
        outcome = await releases.reconcile(self.driver, access, hr, releases.source_of(spec, username, password),
                                           self.kube, pending=self.pending)
        if outcome.status is not None:
            await self._write(hr, outcome.status)
        for event in outcome.events():
            await applier.post_event(self.kube, hr, *event, known.CREATED_BY_HUB)
        if outcome.retry:
            self.store.queue.add_after(("release", *key), self.retries.next(key), force=True)
        else:
            self.retries.forget(key)

    async def _write(self, hr: Obj, status: Obj) -> None:
        current = hr.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        meta = hr["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            updated = await write_back(self.store.caches.helmreleases, key,
                                       self.kube.patch(known.APPS_API_VERSION, "HelmRelease", meta["name"],
                                                       {"status": status}, meta["namespace"], subresource="status"),
                                       self.store.on_helmrelease)
        except ApiException as e:
            if e.status != 404:  # gone meanwhile: nobody to tell. Else the next resync tries again, so say it once
                text = f"HTTP {e.status}: {error_text(e)}"  # (these were suppressed without a word until 2026-12-06)
                log.log(self.status_failures.level(key, text), "HelmRelease %s/%s: its status could not be "
                        "written, so what Helm did in the child is not reported yet: %s", *key, text)
            return
        self.status_failures.forget(key)
        releases.warn_if_targets_pruned(status, updated)
