"""One HelmRelease in one child: install, upgrade, leave alone or uninstall, and the status that says so.

Shared by the hub (Push: it reaches the child through the tunnel or directly) and the agent (Pull), so both
sides follow the same rules, always with the child's own deployer identity:

- Install when the release is missing; upgrade when the chart version **or the values** differ from what the
  release runs (Clusternet compares versions only, so a values-only change never reached the cluster).
- A failed operation is reported with Helm's own message and not retried until the HelmRelease changes: a
  retry would only add failed revisions (and with `atomic`, reinstall and roll back forever).
- A release in the middle of another operation (Helm's pending-*, or uninstalling: `helm uninstall` by hand) is
  only reported; the next resync looks again, and once it has been pending longer than its timeout plus
  STALE_MARGIN (its operation died with its process) it is uninstalled (an install) or rolled back (an upgrade)
  and deployed again. A release uninstalled with `--keep-history` has its history
  purged and is installed afresh, as one uninstalled without it.
- Never touch a release we did not install: every release carries the label OWNER_LABEL with a digest of its
  HelmRelease's namespace and name; a release of that name without it is reported, never upgraded or removed.
- Helm's standard storage (`sh.helm.release.v1.<name>.v<revision>` Secrets), so `helm ls` in the child works.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusternet_api.helm.driver import (
    ChartError,
    ChartSource,
    ClusterAccess,
    ClusterUnreachableError,
    HelmDriver,
    ReleaseError,
    ReleaseOptions,
    ReleaseState,
)

log = logging.getLogger(__name__)

OWNER_LABEL = "apps.clusternet.io/helmrelease"
"""Release label: digest of the owning HelmRelease's `<namespace>/<name>` (stable when it is re-created)."""
MAX_HISTORY = 5
"""Revisions Helm keeps per release (Clusternet's choice too)."""

Obj = Mapping[str, Any]


BUSY = frozenset({"uninstalling"})
"""Release states (besides Helm's pending-*) in which someone else's operation is under way: an upgrade then
fails ("has no deployed releases"), and that failure, once reported, would stop every retry, so the
release removed by hand would never come back (CI saw this once). We wait for the next resync instead."""

STALE_MARGIN = 60
"""Seconds past its own timeout after which a pending-* release is taken as left by an operation that died (a hub
leader or agent killed mid-install, an interrupted `helm`): Helm's waits and hooks end by that timeout, so nobody
can still be working on it. Without this, such a release would stay pending for ever (every later install or
upgrade refused by Helm: "another operation (install/upgrade/rollback) is in progress") until someone repaired it
by hand. An `uninstalling` release is not judged so: Helm keeps no start time for it that we read."""

FETCH_FAILED = "cannot fetch chart"
"""How a status about a chart that could not be fetched starts: unlike a failed release, that is retried."""


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did: the HelmRelease status to write (None: leave it) and an event, if any."""

    status: dict[str, Any] | None
    event: tuple[str, str, str] | None = None
    """(type, reason, message)."""
    retry: bool = False
    """Try again later (the repository may come back); a failed release is not retried."""


def owner_digest(hr: Obj) -> str:
    meta = hr["metadata"]
    return hashlib.sha256(f"{meta['namespace']}/{meta['name']}".encode()).hexdigest()[:16]


def target(hr: Obj) -> tuple[str, str]:
    """(namespace, release name) in the child."""
    spec = hr.get("spec") or {}
    return str(spec["targetNamespace"]), str(spec.get("releaseName") or hr["metadata"]["name"])


def values_of(hr: Obj) -> dict[str, Any]:
    """The HelmRelease's values (`spec.overrides`, base64 JSON). Raises ValueError for a broken entry."""
    raw = (hr.get("spec") or {}).get("overrides")
    if not raw:
        return {}
    try:
        values = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, TypeError) as e:
        raise ValueError(f"spec.overrides is not base64-encoded JSON: {e}") from e
    if not isinstance(values, dict):
        raise ValueError("spec.overrides is not a JSON object")
    return values


def source_of(spec: Obj, username: str | None = None, password: str | None = None) -> ChartSource:
    """Where a HelmChart's or HelmRelease's spec says the chart is (their HelmOptions)."""
    return ChartSource(repo=str(spec["repo"]), chart=str(spec["chart"]), version=spec.get("version") or None,
                       username=username, password=password, plain_http=bool(spec.get("plainHTTP")))


def options_of(hr: Obj, upgrade: bool = False) -> ReleaseOptions:
    spec = hr.get("spec") or {}
    return ReleaseOptions(
        namespace=target(hr)[0], create_namespace=spec.get("createNamespace", True) is not False,
        timeout_seconds=_timeout(hr), wait=bool(spec.get("wait")),
        atomic=bool(spec.get("atomic")), upgrade_atomic=bool(spec.get("upgradeAtomic") or (
            upgrade and spec.get("atomic"))), disable_hooks=bool(spec.get("disableHooks")),
        max_history=MAX_HISTORY, labels={OWNER_LABEL: owner_digest(hr)},
        description=f"clusternet HelmRelease {hr['metadata']['namespace']}/{hr['metadata']['name']}")


def status_of(hr: Obj, state: ReleaseState | None, phase: str | None = None, description: str | None = None,
              ) -> dict[str, Any]:
    """HelmRelease status from Helm's release (or a failure before Helm recorded one)."""
    status: dict[str, Any] = {"observedGeneration": hr["metadata"].get("generation")}
    if state is not None:
        status.update(phase=state.status, version=state.revision, description=state.description,
                      notes=state.notes or None, firstDeployed=state.first_deployed, lastDeployed=state.last_deployed)
    if phase is not None:
        status["phase"] = phase
    if description is not None:
        status["description"] = description
    return {k: v for k, v in status.items() if v is not None}


def reported_failure(hr: Obj) -> bool:
    """The HelmRelease's status already reports a failed release of its current generation."""
    status = hr.get("status") or {}
    return status.get("phase") == "failed" and status.get("observedGeneration") == hr["metadata"].get(
        "generation") and not str(status.get("description") or "").startswith(FETCH_FAILED)


def busy(state: ReleaseState) -> bool:
    return state.status in BUSY or state.status.startswith("pending-")


def stale(state: ReleaseState, hr: Obj, now: datetime.datetime) -> bool:
    """A pending-* revision whose operation started longer ago than its timeout plus STALE_MARGIN."""
    started = helm_time(state.last_deployed)
    return state.status.startswith("pending-") and started is not None and (
        now - started).total_seconds() > _timeout(hr) + STALE_MARGIN


def helm_time(value: str | None) -> datetime.datetime | None:
    """Helm's RFC 3339 timestamps carry nanoseconds (Go's time.Time), which Python's parser refuses."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value))
    except ValueError:
        return None


def needs_upgrade(state: ReleaseState, chart_version: str, values: Mapping[str, Any]) -> bool:
    return state.chart_version != chart_version or dict(state.values) != dict(values)


async def reconcile(driver: HelmDriver, access: ClusterAccess, hr: Obj, source: ChartSource) -> Outcome:
    """Bring the child's release to what the HelmRelease says; see the module docstring for the rules."""
    namespace, name = target(hr)
    where = f"release {namespace}/{name}"
    try:
        values = values_of(hr)
    except ValueError as e:
        return Outcome(status_of(hr, None, "failed", str(e)), ("Warning", "InvalidValues", str(e)))
    current = await driver.get(access, namespace, name)
    if current is not None and current.labels.get(OWNER_LABEL) != owner_digest(hr):
        message = f"{where} exists and was not installed by this HelmRelease; Clusternet never takes one over"
        return Outcome(status_of(hr, None, "failed", message), ("Warning", "ReleaseNotOwned", message))
    if current is not None and stale(current, hr, datetime.datetime.now(datetime.UTC)):
        stuck = current
        try:
            current = await _unstick(driver, access, hr, stuck)
        except ReleaseError as e:
            message = f"{where} was left {stuck.status} by an interrupted operation; recovering it failed: {e}"
            # Helm's phase, not "failed": a reported failure would stop the retries this needs
            return Outcome(status_of(hr, stuck, description=message), ("Warning", "ReleaseStuck", message), True)
    if current is not None and busy(current):
        return Outcome(status_of(hr, current))  # another operation is under way; the next resync looks again
    if reported_failure(hr) and (current is None or current.status == "failed"):
        return Outcome(None)  # reported already; a retry waits for a change of the HelmRelease
    if current is not None and current.status == "uninstalled":  # `helm uninstall --keep-history` by hand
        await driver.uninstall(access, namespace, name, _timeout(hr))  # purges the kept history: a fresh install
        log.info("purged the uninstalled history of %s to install it again", where)
        current = None
    try:
        chart = await driver.fetch(source)
    except ChartError as e:
        message = f"{FETCH_FAILED} {source.chart} from {source.repo}: {e}"
        return Outcome(status_of(hr, current, "failed", message), ("Warning", "ChartNotFetched", message), True)
    if current is not None and current.status == "deployed" and not needs_upgrade(current, chart.version, values):
        status = status_of(hr, current)
        return Outcome(None if status == _comparable(hr) else status)
    verb = "install" if current is None else "upgrade"
    try:
        if current is None:
            state = await driver.install(access, chart, name, values, options_of(hr))
        else:
            state = await driver.upgrade(access, chart, name, values, options_of(hr, upgrade=True))
    except ClusterUnreachableError:
        raise  # nothing was attempted: the caller retries
    except ReleaseError as e:
        message = f"{verb} of {where} (chart {chart.name}-{chart.version}) failed: {e}"
        log.warning("%s", message)
        after = await _quietly_get(driver, access, namespace, name)
        return Outcome(status_of(hr, after, "failed", message), ("Warning", "ReleaseFailed", message))
    log.info("%sed %s: chart %s-%s, revision %s", verb.rstrip("e"), where, chart.name, chart.version, state.revision)
    return Outcome(status_of(hr, state), ("Normal", "Installed" if verb == "install" else "Upgraded",
                                          f"{where}: chart {chart.name}-{chart.version}, revision {state.revision}"))


async def _unstick(driver: HelmDriver, access: ClusterAccess, hr: Obj, state: ReleaseState,
                   ) -> ReleaseState | None:
    """A release left pending by a dead operation, made usable the way Helm's users do by hand: an interrupted
    install is uninstalled (it never ran as a whole), an interrupted upgrade or rollback rolled back to the
    revision before it. Returns the release as it is now."""
    namespace, name = target(hr)
    log.warning("release %s/%s has been %s since %s (timeout %s s): the operation was interrupted, recovering it",
                namespace, name, state.status, state.last_deployed, _timeout(hr))
    if state.status == "pending-install" or state.revision <= 1:
        await driver.uninstall(access, namespace, name, _timeout(hr))
    else:
        await driver.rollback(access, namespace, name, state.revision - 1, _timeout(hr))
    return await driver.get(access, namespace, name)


def _comparable(hr: Obj) -> dict[str, Any]:
    return {k: v for k, v in (hr.get("status") or {}).items() if v is not None}


async def _quietly_get(driver: HelmDriver, access: ClusterAccess, namespace: str, name: str) -> ReleaseState | None:
    try:
        return await driver.get(access, namespace, name)
    except ReleaseError:
        return None


async def uninstall(driver: HelmDriver, access: ClusterAccess, hr: Obj) -> str:
    """Remove the release this HelmRelease installed (and only that one); returns what happened."""
    namespace, name = target(hr)
    current = await driver.get(access, namespace, name)
    if current is None:
        return f"release {namespace}/{name} was already gone"
    if current.labels.get(OWNER_LABEL) != owner_digest(hr):
        return f"release {namespace}/{name} was not installed by this HelmRelease: left in place"
    await driver.uninstall(access, namespace, name, _timeout(hr))
    return f"uninstalled release {namespace}/{name}"


def _timeout(hr: Obj) -> int:
    return int((hr.get("spec") or {}).get("timeoutSeconds") or 300)
