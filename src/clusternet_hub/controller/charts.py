"""HelmCharts: checked against their repository, so `status.phase` says Found or NotFound and why.

The check is the fetch the deployer will do (helm's own resolution: index.yaml for http(s) repositories,
the registry's tags for OCI, version constraints as Helm reads them), so Found means the chart can be had.
A chart is checked when it is created or its spec changes, again every RECHECK_FOUND while Found (a chart
can be deleted or a repository moved), and with growing delay while NotFound (the repository may come back).
A Found/NotFound change, or a check of a new spec, re-renders the Subscriptions that feed the chart
(store.on_helmchart). The status records the generation it was checked for: until the new spec is checked,
clusters keep what they run (helmrender), so a mistyped repository never reaches a HelmRelease.
"""

from __future__ import annotations

import base64
import logging

from clusternet_api import known
from clusternet_api.helm import releases
from clusternet_api.helm.driver import ChartError, HelmDriver
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_core.plan import Key
from clusternet_hub.controller.store import Store, write_back
from clusternet_hub.controller.workqueue import Backoff

log = logging.getLogger(__name__)

RECHECK_FOUND = 600.0
"""Seconds between checks of a Found chart: one index download per chart every 10 minutes."""
RECHECK_FIRST, RECHECK_MAX = 5.0, 300.0
"""A NotFound chart is checked again after 5 s, doubling up to 5 minutes."""


async def pull_credentials(kube: KubeApi, secret_ref: Obj | None, default_namespace: str,
                           ) -> tuple[str | None, str | None]:
    """(username, password) from a chartPullSecret (keys `username` and `password`, as Clusternet's)."""
    if not secret_ref or not secret_ref.get("name"):
        return None, None
    namespace = str(secret_ref.get("namespace") or default_namespace)
    try:
        secret = await kube.get("v1", "Secret", str(secret_ref["name"]), namespace)
    except ApiException as e:
        if e.status != 403:
            raise
        raise ChartError(f"the hub may not read chartPullSecret {namespace}/{secret_ref['name']}: grant its "
                         f"ServiceAccount `get` on that Secret (README, Deploy a Helm chart)") from e
    if secret is None:
        raise ChartError(f"chartPullSecret {namespace}/{secret_ref['name']} not found")
    data = secret.get("data") or {}

    def field(key: str) -> str | None:
        return base64.b64decode(data[key]).decode() if data.get(key) else None

    return field("username"), field("password")


class ChartChecker:
    def __init__(self, kube: KubeApi, store: Store, driver: HelmDriver) -> None:
        self.kube, self.store, self.driver = kube, store, driver
        self.retries: Backoff[Key] = Backoff(RECHECK_FIRST, RECHECK_MAX)

    async def check(self, key: Key) -> None:
        chart = self.store.caches.helmcharts.get(key)
        if chart is None:
            self.retries.forget(key)
            return
        spec = chart.get("spec") or {}
        try:
            username, password = await pull_credentials(self.kube, spec.get("chartPullSecret"), key[0])
            fetched = await self.driver.fetch(releases.source_of(spec, username, password), refresh=True)
        except ChartError as e:
            phase, reason = "NotFound", str(e)
            self.store.queue.add_after(("chart", *key), self.retries.next(key), force=True)
        else:
            phase, reason = "Found", f"version {fetched.version} of chart {fetched.name} found in {spec['repo']}"
            self.retries.forget(key)
            self.store.queue.add_after(("chart", *key), RECHECK_FOUND, force=True)
        status = chart.get("status") or {}
        generation = chart["metadata"].get("generation")
        if (status.get("phase"), status.get("reason"), status.get("observedGeneration")) == (phase, reason, generation):
            return
        log.info("HelmChart %s/%s: %s (%s)", *key, phase, reason)
        try:
            await write_back(self.store.caches.helmcharts, key, self.kube.patch(
                known.APPS_API_VERSION, "HelmChart", key[1], {"status": {
                    "phase": phase, "reason": reason, "observedGeneration": generation}}, key[0],
                subresource="status"), self.store.on_helmchart)
        except ApiException as e:
            if e.status != 404:
                raise
