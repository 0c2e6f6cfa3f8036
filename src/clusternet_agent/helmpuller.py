"""Pull mode for Helm: the agent installs and removes the HelmReleases of its own dedicated namespace.

Exactly when the hub would not (`deployable_by_hub` false for this cluster), with the same rules
(clusternet_api.helm.releases) and the child's deployer identity. It lists the HelmReleases once and follows
them with a watch (clusternet_api.listwatch); every resync period it looks at every release again, from that
cache, so a release removed by hand in the child is installed again (drift). With no HelmRelease at all a
resync asks the parent nothing. A HelmRelease being deleted is uninstalled, then its finalizer removed, which
lets its Description go; not when its namespace or its ManagedCluster is being deleted or gone (the cluster is
being removed, its releases stay: clusternet_api.namespaceguard, read afresh, never from the heartbeats' copy).

Private repositories: the agent cannot read a chartPullSecret in the HelmChart's namespace on the parent
(its Role covers its own namespace only); the hub copies the credentials into the one Secret of this namespace
the agent may read (known.CHART_PULL_SECRET, keys `<HelmRelease>.username` / `.password`).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from clusternet_agent import probes, stillwanted
from clusternet_agent.clusterview import ClusterView
from clusternet_api import applier, known, namespaceguard
from clusternet_api.helm import releases
from clusternet_api.helm.driver import ClusterAccess, HelmDriver
from clusternet_api.helm.stuck import PendingReleases
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.listwatch import ListWatch

log = logging.getLogger(__name__)


def access_of(creds: Credentials) -> ClusterAccess:
    token = creds.token or (Path(creds.token_file).read_text().strip() if creds.token_file else None)
    return ClusterAccess(server=creds.server, ca_pem=creds.ca_pem, token=token, cert_pem=creds.cert_pem,
                         key_pem=creds.key_pem)


class ReleasePuller:
    def __init__(self, parent: Kube, deployer: Kube, namespace: str, cluster_name: str, resync_seconds: float,
                 driver: HelmDriver, view: ClusterView | None = None) -> None:
        self.parent, self.deployer, self.namespace = parent, deployer, namespace
        self.resync_seconds, self.driver = resync_seconds, driver
        self.view = view or ClusterView(parent, namespace, cluster_name, max_age=0.0)
        self.pending = PendingReleases()  # releases seen pending, on this agent's clock (helm/stuck.py)
        self.grace = stillwanted.BaseGrace()  # deleting HelmReleases whose Base is gone, given time to come back
        # ... or, under a hub that marks its unbindings, waiting for its verdict
        self.undecided = stillwanted.Undecided(stillwanted.UNDECIDED_RESYNCS * resync_seconds)
        self.watch: ListWatch | None = None

    async def process(self, hr: Obj, mc: Obj | None, resync: bool = False) -> None:
        if mc is None or applier.deployable_by_hub(mc):
            return
        meta = hr["metadata"]
        if meta.get("deletionTimestamp"):
            if known.FINALIZER_APPS in (meta.get("finalizers") or []) and not (
                    resync and self.undecided.resting(hr)):
                await self._uninstall(hr, mc)
            return
        access = access_of(await self.deployer.credentials())
        username, password = await self.pull_credentials(hr)
        outcome = await releases.reconcile(self.driver, access, hr,
                                           releases.source_of(hr.get("spec") or {}, username, password), self.parent,
                                           pending=self.pending)
        if outcome.status is not None:
            await self._write(hr, outcome.status)
        for event in outcome.events():
            await applier.post_event(self.parent, hr, *event, known.CREATED_BY_AGENT)

    async def _uninstall(self, hr: Obj, mc: Obj) -> None:
        """Uninstall the release, unless its cluster is being removed (its namespace or ManagedCluster being deleted
        or gone: the release stays, namespaceguard) or we cannot tell (an older hub's RBAC: nothing is
        uninstalled, the status says why, the next resync asks again), or its Base still wants it, or is missing
        and the hub, which marks its unbindings, has not marked it (stillwanted: the status says so)."""
        name = hr["metadata"]["name"]
        try:
            if await namespaceguard.release_if_removed(self.parent, hr, self.view.name):
                return
        except namespaceguard.NamespaceUnknown as e:
            if await self._write(hr, {"description": f"uninstall pending: {e}"}):
                log.warning("HelmRelease %s: uninstall pending: %s", name, e)
            return
        verdict = await stillwanted.judge(self.parent, hr, mc)
        if verdict != "no base":
            self.grace.forget(hr)
        if verdict != "hub decides":
            self.undecided.forget(hr)
        if verdict == "wanted":  # deleted by the garbage collector or by hand
            await applier.remove_finalizer(self.parent, hr)
            return
        if verdict == "hub decides":  # the mark's watch event looks again, and resyncs now and then (Undecided)
            await self.undecided.wait(hr, lambda said: self._write(hr, {"description": said}), "uninstall")
            return
        if verdict == "no base" and self.grace.waiting(hr, lambda: self._recheck(name)):
            return
        access = access_of(await self.deployer.credentials())
        log.info("HelmRelease %s: %s", name, await releases.uninstall(self.driver, access, hr))
        await applier.remove_finalizer(self.parent, hr)

    async def _write(self, hr: Obj, status: Obj) -> bool:
        """Write what of `status` differs from the HelmRelease's; False when nothing did."""
        if all((hr.get("status") or {}).get(k) == v for k, v in status.items()):
            return False
        stored = await self.parent.patch(known.APPS_API_VERSION, "HelmRelease", hr["metadata"]["name"],
                                         {"status": status}, self.namespace, subresource="status")
        releases.warn_if_targets_pruned(status, stored)
        return True

    async def pull_credentials(self, hr: Obj) -> tuple[str | None, str | None]:
        """The repository credentials the hub copied for this HelmRelease (known.CHART_PULL_SECRET), if any."""
        if not (hr.get("spec") or {}).get("chartPullSecret"):
            return None, None
        try:
            secret = await self.parent.get("v1", "Secret", known.CHART_PULL_SECRET, self.namespace)
        except ApiException as e:
            log.warning("cannot read the %s Secret (HTTP %s): fetching %s without credentials",
                        known.CHART_PULL_SECRET, e.status, hr["metadata"]["name"])
            return None, None
        data = (secret or {}).get("data") or {}

        def field(key: str) -> str | None:
            value = data.get(f"{hr['metadata']['name']}.{key}")
            return base64.b64decode(value).decode() if value else None

        return field("username"), field("password")

    async def _safely(self, hr: Obj, mc: Obj | None, resync: bool = False) -> None:
        try:
            await self.process(hr, mc, resync)
        except Exception as e:
            probes.pull_apply_errors.inc()
            log.warning("deploying HelmRelease %s failed: %s", hr["metadata"]["name"], e)

    async def run(self) -> None:
        """Reconcile every HelmRelease each resync period (from the cache: no request) and each spec change in
        between (clusternet_api.listwatch). Cancel to stop."""
        async def on_list(items: list[Obj]) -> None:
            if not items:
                return  # nothing to do: no need to ask the parent about the cluster
            mc = await self.view.get()  # the heartbeats' copy while fresh (clusterview.py)
            for hr in items:
                await self._safely(hr, mc, resync=True)

        async def on_event(event: Obj) -> None:
            if event["type"] in ("ADDED", "MODIFIED") and _spec_event(event["object"]):
                await self._safely(event["object"], await self.view.get())

        self.watch = ListWatch(self.parent, known.APPS_API_VERSION, "HelmRelease", self.namespace,
                               max(1.0, self.resync_seconds), on_list, on_event)
        try:
            await self.watch.run()
        finally:
            self.grace.cancel()

    async def _recheck(self, name: str) -> None:
        """Look again at a deleting HelmRelease, as the watch holds it now (gone: nothing to do), in turn with the
        watch's handlers (ListWatch.revisit)."""
        async def handle(hr: Obj) -> None:
            await self._safely(hr, await self.view.get())

        if self.watch is not None:
            await self.watch.revisit(name, handle)


def _spec_event(hr: Obj) -> bool:
    """A change worth acting on at once: a new generation not reported yet, or a deletion (status writes,
    ours included, wait for the resync)."""
    meta, status = hr["metadata"], hr.get("status") or {}
    return bool(meta.get("deletionTimestamp")) or status.get("observedGeneration") != meta.get("generation")
