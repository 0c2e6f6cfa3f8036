"""Pull mode for Helm: the agent installs and removes the HelmReleases of its own dedicated namespace.

Exactly when the hub would not (`deployable_by_hub` false for this cluster), with the same rules
(clusternet_api.helm.releases) and the child's deployer identity. Every resync period it looks at every
release again, so a release removed by hand in the child is installed again (drift). A HelmRelease being
deleted is uninstalled, then its finalizer removed, which lets its Description go.

Private repositories: the agent cannot read a chartPullSecret in the HelmChart's namespace on the parent
(its Role covers its own namespace only), so a Pull-mode cluster fetches without credentials and reports the
repository's answer; use Push or Dual mode for charts behind credentials (README).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from clusternet_agent import probes
from clusternet_api import applier, known
from clusternet_api.helm import releases
from clusternet_api.helm.driver import ClusterAccess, HelmDriver
from clusternet_api.kube import Credentials, Kube, Obj

log = logging.getLogger(__name__)
MC_API = known.CLUSTERS_API_VERSION


def access_of(creds: Credentials) -> ClusterAccess:
    token = creds.token or (Path(creds.token_file).read_text().strip() if creds.token_file else None)
    return ClusterAccess(server=creds.server, ca_pem=creds.ca_pem, token=token, cert_pem=creds.cert_pem,
                         key_pem=creds.key_pem)


class ReleasePuller:
    def __init__(self, parent: Kube, deployer: Kube, namespace: str, cluster_name: str, resync_seconds: float,
                 driver: HelmDriver) -> None:
        self.parent, self.deployer, self.namespace = parent, deployer, namespace
        self.cluster_name, self.resync_seconds, self.driver = cluster_name, resync_seconds, driver

    async def process(self, hr: Obj, mc: Obj | None) -> None:
        if mc is None or applier.deployable_by_hub(mc):
            return
        meta = hr["metadata"]
        access = access_of(await self.deployer.credentials())
        if meta.get("deletionTimestamp"):
            if known.FINALIZER_APPS in (meta.get("finalizers") or []):
                log.info("HelmRelease %s: %s", meta["name"], await releases.uninstall(self.driver, access, hr))
                await applier.remove_finalizer(self.parent, hr)
            return
        outcome = await releases.reconcile(self.driver, access, hr, releases.source_of(hr.get("spec") or {}))
        if outcome.status is not None and any((hr.get("status") or {}).get(k) != v
                                              for k, v in outcome.status.items()):
            await self.parent.patch(known.APPS_API_VERSION, "HelmRelease", meta["name"],
                                    {"status": outcome.status}, self.namespace, subresource="status")
        if outcome.event is not None:
            await applier.post_event(self.parent, hr, *outcome.event, known.CREATED_BY_AGENT)

    async def _safely(self, hr: Obj, mc: Obj | None) -> None:
        try:
            await self.process(hr, mc)
        except Exception as e:
            probes.pull_apply_errors.inc()
            log.warning("deploying HelmRelease %s failed: %s", hr["metadata"]["name"], e)

    async def run(self) -> None:
        """List, reconcile, watch until the resync period ends, repeat. Cancel to stop."""
        while True:
            try:
                mc = await self.parent.get(MC_API, "ManagedCluster", self.cluster_name, self.namespace)
                listing = await self.parent.request(
                    "GET", await self.parent.path(known.APPS_API_VERSION, "HelmRelease", namespace=self.namespace))
                for hr in listing.get("items", []):
                    await self._safely(hr, mc)
                rv = listing["metadata"]["resourceVersion"]
                async for event in self.parent.watch(known.APPS_API_VERSION, "HelmRelease", self.namespace,
                                                     server_timeout=max(1, int(self.resync_seconds)),
                                                     resource_version=rv):
                    if event["type"] in ("ADDED", "MODIFIED") and _spec_event(event["object"]):
                        mc = await self.parent.get(MC_API, "ManagedCluster", self.cluster_name, self.namespace)
                        await self._safely(event["object"], mc)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("watching HelmReleases failed: %s; retrying", e)
                await asyncio.sleep(2)


def _spec_event(hr: Obj) -> bool:
    """A change worth acting on at once: a new generation not reported yet, or a deletion (status writes,
    ours included, wait for the resync)."""
    meta, status = hr["metadata"], hr.get("status") or {}
    return bool(meta.get("deletionTimestamp")) or status.get("observedGeneration") != meta.get("generation")
