"""Asking the parent for this cluster's `--cluster-labels`, and saying what it refused.

The agent may not write its ManagedCluster's labels, only its status: labels decide which Subscriptions bind
a cluster, so a child that could relabel itself could pull in workloads and Secrets meant for others. The
labels of the first registration come with the ClusterRegistrationRequest (as in Clusternet). On every start
the agent makes its own request's `spec.clusterLabels` equal to `--cluster-labels` (the only write it may
make to the request); the hub applies what the parent's admin allows (hub flag `--cluster-label-prefixes`,
default none) and records its verdict in the request's annotation `clusters.clusternet.io/cluster-labels-
verdict`, which the agent reads back to log one warning naming what was refused. Clusternet reads
`--cluster-labels` only when it first creates the request and ignores later changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from clusternet_api import known
from clusternet_api.kube import ApiException, Kube, Obj

log = logging.getLogger(__name__)
CRR_API = known.CLUSTERS_API_VERSION
KIND = "ClusterRegistrationRequest"
# The client errors that may pass, asked again like a 5xx: a timeout, and too many requests (a parent that
# still says 429 after the client's own retries, clusternet_api.ratelimit)
RETRIED = (408, 429)


def labels_patch(current: Mapping[str, str] | None, wanted: Mapping[str, str]) -> dict[str, str | None] | None:
    """A merge patch turning the request's clusterLabels into `wanted` (None for a key to drop), or None when
    they already match. The flag is the whole wish: a label left out of it is asked to go."""
    current = current or {}
    patch: dict[str, str | None] = {k: v for k, v in wanted.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in wanted})
    return patch or None


def verdict_of(crr: Obj) -> dict[str, Any] | None:
    """The hub's verdict on the request's current spec, or None while it has not given one."""
    text = (crr["metadata"].get("annotations") or {}).get(known.ANNOTATION_LABELS_VERDICT)
    try:
        verdict = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(verdict, dict):
        return None
    if int(verdict.get("observedGeneration") or 0) < int(crr["metadata"].get("generation") or 0):
        return None
    return verdict


async def request_labels(parent: Kube, cluster_id: str, wanted: Mapping[str, str], wait: float = 30.0,
                         poll: float = 0.5) -> None:
    """Ask for `wanted` through our own request, then log the hub's verdict once.

    A refusal that asking again cannot change ends it with a warning: 403 (a hub older than this agent, which
    lets it no patch), or another 4xx. A failure that may pass (the parent unreachable or timing out, 429, 5xx)
    is raised, for the agent's supervision to log and ask again with backoff (clusternet_agent.supervision). It
    used to be logged as a warning and dropped: a parent restarting when the agent started meant new
    `--cluster-labels` were not asked for until the agent restarted or registered again (review 6, finding 10).
    Heartbeats never wait on it: it runs as a task of its own."""
    name = f"clusternet-{cluster_id}"
    try:
        crr = await parent.get(CRR_API, KIND, name)
        if crr is None:
            return
        patch = labels_patch((crr.get("spec") or {}).get("clusterLabels"), wanted)
        if patch is not None:
            crr = await parent.patch(CRR_API, KIND, name, {"spec": {"clusterLabels": patch}})
            log.info("asked the parent for cluster labels %s (through ClusterRegistrationRequest %s)",
                     dict(wanted), name)
        # unchanged: the standing verdict (if any) is logged again, without waiting for one
        verdict = await _await_verdict(parent, name, crr, wait, poll) if patch is not None else verdict_of(crr)
    except ApiException as e:
        if e.status == 403:
            log.warning("the parent does not let this agent ask for other cluster labels (HTTP 403 on its "
                        "ClusterRegistrationRequest %s); the hub may be older than this agent", name)
        elif 400 <= e.status < 500 and e.status not in RETRIED:
            log.warning("asking the parent for cluster labels failed with HTTP %s", e.status)
        else:
            raise
        return
    _log_verdict(verdict, name, patch is not None)


async def _await_verdict(parent: Kube, name: str, crr: Obj, wait: float, poll: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait
    while (verdict := verdict_of(crr)) is None and time.monotonic() < deadline:
        await asyncio.sleep(poll)
        got = await parent.get(CRR_API, KIND, name)
        if got is None:
            return None
        crr = got
    return verdict


def _log_verdict(verdict: dict[str, Any] | None, name: str, asked: bool) -> None:
    if verdict is None:
        if asked:
            log.warning("the parent has not answered the cluster label request in ClusterRegistrationRequest %s "
                        "yet; the ManagedCluster keeps its labels until it does", name)
        return
    if verdict.get("refused"):
        log.warning("the parent did not apply all of --cluster-labels: %s", verdict.get("message"))
    elif asked:
        log.info("the parent applied the requested cluster labels")
