"""One HelmRelease in one child: install, upgrade, leave alone or uninstall, and the status that says so.

Shared by the hub (Push: it reaches the child through the tunnel or directly) and the agent (Pull), so both
sides follow the same rules, always with the child's own deployer identity:

- Install when the release is missing; upgrade when the chart version **or the values** differ from what the
  release runs (Clusternet compares versions only, so a values-only change never reached the cluster).
- A failed operation is reported with Helm's own message and not retried until the HelmRelease changes: a
  retry would only add failed revisions (and with `atomic`, reinstall and roll back forever), unless the
  child's release changed since (removed or rolled back by hand: drift, as for a deployed release).
- The status's Helm fields (phase, version, description, notes, timestamps: Clusternet's) describe the child's
  release as Helm keeps it, and nothing else. A failure before Helm touched the child (a chart that cannot be
  fetched, broken values) leaves them as the child has them, e.g. `deployed` at the old revision, and is
  reported in our `Released` condition (False, with the reason) and a Warning event; Clusternet leaves the
  old status without saying anything there. A chart that cannot be fetched is retried: the repository may
  come back. Only with no release in the child does a failure set phase `failed`, as Clusternet's does.
  A failed install or upgrade is reported the same way: Helm's phase is `failed`, or `deployed` once
  `upgradeAtomic` rolled it back, the failure then being in Released only (Clusternet writes Helm's
  phase too).
- An event is posted when the status changes, not at every resync of an unchanged failure.
- A release in the middle of another operation (Helm's pending-*, or uninstalling: `helm uninstall` by hand) is
  only reported; the next resync looks again, and once the deployer has itself seen the same pending revision
  for longer than its timeout plus STALE_MARGIN, on its own clock (its operation died with its process:
  stuck.py), it is uninstalled (an install) or rolled back (an upgrade) and deployed again. A release
  uninstalled with `--keep-history` has its history purged and is installed afresh, as one uninstalled
  without it.
- Never touch a release we did not install: every release carries the label OWNER_LABEL with a digest of its
  HelmRelease's namespace and name; a release of that name without it is reported, never upgraded or removed.
- Helm's standard storage (`sh.helm.release.v1.<name>.v<revision>` Secrets), so `helm ls` in the child works.
- A move (spec.targetNamespace or spec.releaseName changed): the spec alone does not say where the old release
  is, so the status records where releases were installed (`status.targets`). The release is installed at the
  new target first; once it runs the spec, the recorded old one is uninstalled (if it carries our owner label;
  not while the cluster's namespace is being deleted: namespaceguard), then forgotten. Until then the
  condition MOVE_CONDITION says what is left and why, and a failed removal is tried again. Deleting the
  HelmRelease uninstalls every recorded target, so a move half done leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusternet_api import known, namespaceguard, prunedfields
from clusternet_api.helm.driver import (
    ChartError,
    ChartSource,
    ClusterAccess,
    ClusterUnreachableError,
    HelmDriver,
    ReleaseError,
    ReleaseOptions,
    ReleaseState,
    is_exact_version,
)
from clusternet_api.helm.messages import MAX_CONDITION_MESSAGE, REPLACE_CRDS_UNSUPPORTED, credentials_missing, shortened
from clusternet_api.helm.stuck import PendingReleases, unstick
from clusternet_api.kubeapi import KubeApi
from clusternet_api.timefmt import now_rfc3339

log = logging.getLogger(__name__)

OWNER_LABEL = "apps.clusternet.io/helmrelease"
"""Release label: digest of the owning HelmRelease's `<namespace>/<name>` (stable when it is re-created)."""
REPO_LABEL = "apps.clusternet.io/helmrelease-repo"
"""Release label: digest of the repository the release's chart was fetched from (runs_pinned_spec)."""
MAX_HISTORY = 5
"""Revisions Helm keeps per release (Clusternet's choice too)."""

Obj = Mapping[str, Any]


BUSY = frozenset({"uninstalling"})
"""Release states (besides Helm's pending-*) in which someone else's operation is under way: an upgrade then
fails ("has no deployed releases"), and that failure, once reported, would stop every retry, so the
release removed by hand would never come back (CI saw this once). We wait for the next resync instead."""

FETCH_FAILED = "cannot fetch chart"
"""How the message about a chart that could not be fetched starts."""
REASON_FAILED = "ReleaseFailed"
"""The Released condition's reason after Helm failed an install or upgrade: not retried until a change."""
REASON_NOT_OWNED = "ReleaseNotOwned"
MOVE_CONDITION = "PreviousReleaseRemoved"
"""Condition present (False) only while a release at a target the HelmRelease had before stays in the child: it
does not touch Released, which says whether the new target runs the spec."""

Target = tuple[str, str]
"""(namespace, release name) in the child."""


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did: the HelmRelease status to write (None: leave it) and an event, if any."""

    status: dict[str, Any] | None
    event: tuple[str, str, str] | None = None
    """(type, reason, message)."""
    retry: bool = False
    """Try again later (the repository may come back); a failed release is not retried."""
    moved: tuple[str, str, str] | None = None
    """An event about a release at a previous target (uninstalled, or left and why), besides `event`."""

    def events(self) -> list[tuple[str, str, str]]:
        """The events to post, in order."""
        return [e for e in (self.event, self.moved) if e is not None]


def owner_digest(hr: Obj) -> str:
    meta = hr["metadata"]
    return hashlib.sha256(f"{meta['namespace']}/{meta['name']}".encode()).hexdigest()[:16]


def target(hr: Obj) -> Target:
    """(namespace, release name) in the child, as the spec says now: not where an earlier spec installed it
    (targets_of)."""
    spec = hr.get("spec") or {}
    return str(spec["targetNamespace"]), str(spec.get("releaseName") or hr["metadata"]["name"])


def targets_of(hr: Obj) -> list[Target]:
    """Where the status says this HelmRelease's releases were installed (`status.targets`); [] for one written
    before it was recorded."""
    recorded = (hr.get("status") or {}).get("targets") or []
    return [(str(t["namespace"]), str(t["name"])) for t in recorded
            if isinstance(t, Mapping) and t.get("namespace") and t.get("name")]


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
    """Helm's options, as Clusternet maps HelmOptions: `atomic` for installs and `upgradeAtomic` alone for upgrades
    (until 2026-12-06 `atomic` made upgrades atomic too, and `waitForJob`, `skipCRDs`, `replace` and `force` were
    accepted and never reached Helm)."""
    spec = hr.get("spec") or {}
    return ReleaseOptions(
        namespace=target(hr)[0], create_namespace=spec.get("createNamespace", True) is not False,
        timeout_seconds=_timeout(hr), wait=bool(spec.get("wait")),
        atomic=bool(spec.get("atomic")), upgrade_atomic=bool(spec.get("upgradeAtomic")),
        disable_hooks=bool(spec.get("disableHooks")), skip_crds=bool(spec.get("skipCRDs")),
        wait_for_jobs=bool(spec.get("waitForJob")), replace=not upgrade and bool(spec.get("replace")),
        force=upgrade and bool(spec.get("force")),
        max_history=MAX_HISTORY, labels={OWNER_LABEL: owner_digest(hr), REPO_LABEL: repo_digest(str(spec.get("repo")))},
        description=f"clusternet HelmRelease {hr['metadata']['namespace']}/{hr['metadata']['name']}")


HELM_FIELDS = ("phase", "version", "description", "notes", "firstDeployed", "lastDeployed")
"""Clusternet's HelmRelease status fields: what Helm says of the release in the child."""


@dataclass(frozen=True)
class Released:
    """The Released condition to report: "True", "False" or "Unknown", a CamelCase reason, a message."""

    status: str
    reason: str
    message: str


def status_of(hr: Obj, state: ReleaseState | None, released: Released, phase: str | None = None,
              description: str | None = None) -> dict[str, Any]:
    """HelmRelease status from Helm's release (or a failure before Helm recorded one) and the Released
    condition (its lastTransitionTime kept while its status stays). A Helm field the release does not have
    is None, so that the merge patch removes what an earlier release left there."""
    status: dict[str, Any] = {"observedGeneration": hr["metadata"].get("generation"), **dict.fromkeys(HELM_FIELDS)}
    if state is not None:
        status.update(phase=state.status, version=state.revision, description=state.description,
                      notes=state.notes or None, firstDeployed=state.first_deployed, lastDeployed=state.last_deployed)
    if phase is not None:
        status["phase"] = phase
    if description is not None:
        status["description"] = description
    previous = released_of(hr)
    since = previous.get("lastTransitionTime") if previous.get("status") == released.status else None
    status["conditions"] = [{"type": known.CONDITION_RELEASED, "status": released.status,
                             "observedGeneration": status["observedGeneration"],
                             "lastTransitionTime": since or now_rfc3339(), "reason": released.reason,
                             "message": shortened(released.message, MAX_CONDITION_MESSAGE)}]
    return status


def released_of(hr: Obj) -> dict[str, Any]:
    """The HelmRelease's Released condition ({} when none)."""
    conditions = (hr.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == known.CONDITION_RELEASED), {})


def reported_failure(hr: Obj) -> bool:
    """The HelmRelease's status already reports that Helm failed its current generation."""
    status = hr.get("status") or {}
    return released_of(hr).get("reason") == REASON_FAILED and status.get("observedGeneration") == hr[
        "metadata"].get("generation")


def busy(state: ReleaseState) -> bool:
    return state.status in BUSY or state.status.startswith("pending-")


def needs_upgrade(state: ReleaseState, chart_name: str, chart_version: str, values: Mapping[str, Any]) -> bool:
    """Another chart, another version or other values than the release runs, as Clusternet's ReleaseNeedsUpgrade
    (the repository URL is not compared: Helm would install the same chart). The chart's name was left out until
    2026-12-06: a HelmChart's `chart` changed at the same version (0.1.0, `helm create`'s) was never deployed, and
    Released=True went on naming the old chart."""
    return (state.chart_name, state.chart_version) != (chart_name, chart_version) or dict(state.values) != dict(values)


def repo_digest(repo: str) -> str:
    return hashlib.sha256(repo.encode()).hexdigest()[:16]


def runs_pinned_spec(current: ReleaseState | None, source: ChartSource, values: Mapping[str, Any]) -> bool:
    """The child's release is deployed with the exact version (a pinned one: no newer answer can come) of the
    spec's chart and its values, fetched from the spec's repository (REPO_LABEL: a changed repository is checked
    by a fetch, as before, so a mistyped mirror is reported now, not at the next version), so there is nothing to
    fetch. Before 2026-12-06 every reconcile fetched first: the chart cache dies with the process, so after a
    restart or a leader change a repository down (or a registry rate-limiting pulls) turned releases the child
    runs as asked into Released=False and their Descriptions into Failure. A constraint or "latest" still asks the
    repository, which may name a newer version."""
    version = (source.version or "").strip()
    return (current is not None and current.status == "deployed" and is_exact_version(version)
            and current.labels.get(REPO_LABEL) == repo_digest(source.repo)
            and not needs_upgrade(current, source.chart, version, values))


async def reconcile(driver: HelmDriver, access: ClusterAccess, hr: Obj, source: ChartSource,
                    parent: KubeApi, *, pending: PendingReleases) -> Outcome:
    """Bring the child's release to what the HelmRelease says, then finish a move (see the module docstring).
    `parent` is read only to ask namespaceguard before a previous release is uninstalled. `pending` is what this
    deployer has seen pending before (kept by the deployer from one reconcile to the next: stuck.py)."""
    here = await _reconcile_here(driver, access, hr, source, pending)
    return await _follow_move(driver, access, hr, here, parent)


async def _reconcile_here(driver: HelmDriver, access: ClusterAccess, hr: Obj, source: ChartSource,
                          pending: PendingReleases) -> Outcome:
    """The release at the spec's target (a previous target is _follow_move's)."""
    namespace, name = target(hr)
    where = f"release {namespace}/{name}"
    current = await driver.get(access, namespace, name)
    if current is not None and current.labels.get(OWNER_LABEL) != owner_digest(hr):
        message = f"{where} exists and was not installed by this HelmRelease; Clusternet never takes one over"
        # someone else's release: no field of it is this HelmRelease's
        return _outcome(hr, status_of(hr, None, Released("False", REASON_NOT_OWNED, message), "failed", message),
                        ("Warning", REASON_NOT_OWNED, message))
    try:
        values = values_of(hr)
    except ValueError as e:
        return untouched(hr, current, "InvalidValues", str(e))
    if pending.stuck(hr, current, _timeout(hr)) and current is not None:
        stuck = current
        try:
            current = await unstick(driver, access, stuck, (namespace, name), _timeout(hr), pending.waited(hr))
        except ReleaseError as e:
            message = f"{where} was left {stuck.status} by an interrupted operation; recovering it failed: {e}"
            return untouched(hr, stuck, "ReleaseStuck", message, retry=True)
    if current is not None and busy(current):  # another operation is under way; the next resync looks again
        note = pending.recovery_note(hr, _timeout(hr)) if current.status.startswith("pending-") else ""
        waiting = Released("Unknown", "OperationInProgress", f"{where} is {current.status}: waiting for it{note}")
        return _outcome(hr, status_of(hr, current, waiting))
    if reported_failure(hr) and (current.revision if current else None) == (hr.get("status") or {}).get("version"):
        return Outcome(None)  # reported, and the child's release is as then: a retry waits for a change
    if current is not None and current.status == "uninstalled":  # `helm uninstall --keep-history` by hand
        await driver.uninstall(access, namespace, name, _timeout(hr))  # purges the kept history: a fresh install
        log.info("purged the uninstalled history of %s to install it again", where)
        current = None
    if current is not None and runs_pinned_spec(current, source, values):
        return _outcome(hr, status_of(hr, current, deployed(hr, current)))
    try:
        chart = await driver.fetch(source)
    except ChartError as e:
        return untouched(hr, current, "ChartLocateFailure", f"{FETCH_FAILED} {source.chart} from {source.repo}: {e}"
                         f"{credentials_missing(hr, source)}", retry=True)
    if current is not None and current.status == "deployed" and not needs_upgrade(current, chart.name, chart.version,
                                                                                  values):
        return _outcome(hr, status_of(hr, current, deployed(hr, current)))
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
        after = await _quietly_get(driver, access, namespace, name)  # failed, or rolled back by `*atomic`
        failure = Released("False", REASON_FAILED, message)
        status = status_of(hr, after, failure) if after is not None else status_of(hr, None, failure, "failed",
                                                                                   message)
        return Outcome(status, ("Warning", REASON_FAILED, message))
    log.info("%sed %s: chart %s-%s, revision %s", verb.rstrip("e"), where, chart.name, chart.version, state.revision)
    return Outcome(status_of(hr, state, deployed(hr, state)), (
        "Normal", "Installed" if verb == "install" else "Upgraded",
        f"{where}: chart {chart.name}-{chart.version}, revision {state.revision}"))


def deployed(hr: Obj, state: ReleaseState) -> Released:
    namespace, name = target(hr)
    spec = hr.get("spec") or {}
    unsupported = REPLACE_CRDS_UNSUPPORTED if spec.get("replaceCRDs") and not spec.get("skipCRDs") else ""
    return Released("True", "Deployed", f"revision {state.revision} of release {namespace}/{name} runs this "
                                        f"spec (chart {state.chart_name}-{state.chart_version}){unsupported}")


def untouched(hr: Obj, current: ReleaseState | None, reason: str, message: str, retry: bool = False) -> Outcome:
    """A failure before Helm touched the child: the status describes the child's release as it is (phase
    `failed` only when there is none), the failure goes into Released=False and a Warning event."""
    namespace, name = target(hr)
    if current is not None:
        message += (f"; release {namespace}/{name} stays at revision {current.revision} (chart "
                    f"{current.chart_name}-{current.chart_version}, {current.status})")
    released = Released("False", reason, message)
    status = status_of(hr, current, released) if current is not None else status_of(hr, None, released, "failed",
                                                                                      message)
    return _outcome(hr, status, ("Warning", reason, message), retry)


def _outcome(hr: Obj, status: dict[str, Any], event: tuple[str, str, str] | None = None,
             retry: bool = False) -> Outcome:
    """Write and announce only what the status does not say yet: an unchanged failure is tried again at every
    resync, and an event each time was one every resync period per cluster (seen every 2 s in tests)."""
    current = dict(hr.get("status") or {})
    current["conditions"] = [c for c in current.get("conditions") or [] if c.get("type") != MOVE_CONDITION] or None
    if all(current.get(k) == v for k, v in status.items()):  # MOVE_CONDITION is _follow_move's
        return Outcome(None, None, retry)
    return Outcome(status, event, retry)


async def _quietly_get(driver: HelmDriver, access: ClusterAccess, namespace: str, name: str) -> ReleaseState | None:
    try:
        return await driver.get(access, namespace, name)
    except ReleaseError:
        return None


async def uninstall(driver: HelmDriver, access: ClusterAccess, hr: Obj) -> str:
    """Remove the releases this HelmRelease installed (and only those): at the spec's target and at every target
    the status recorded (two after a move half done). Returns what happened; after trying every one, raises
    the first failure (the caller keeps the finalizer and tries again)."""
    done: list[str] = []
    failure: ReleaseError | None = None
    for where in dict.fromkeys([target(hr), *targets_of(hr)]):
        try:
            done.append(await _uninstall_owned(driver, access, hr, where))
        except ReleaseError as e:
            failure = failure or e
            done.append(f"uninstalling release {where[0]}/{where[1]} failed: {e}")
    if failure is not None:
        log.warning("HelmRelease %s/%s: %s", hr["metadata"]["namespace"], hr["metadata"]["name"], "; ".join(done))
        raise failure
    return "; ".join(done)


async def _uninstall_owned(driver: HelmDriver, access: ClusterAccess, hr: Obj, where: Target) -> str:
    """Uninstall the release at `where` only if it carries this HelmRelease's owner label."""
    namespace, name = where
    current = await driver.get(access, namespace, name)
    if current is None:
        return f"release {namespace}/{name} was already gone"
    if current.labels.get(OWNER_LABEL) != owner_digest(hr):
        return f"release {namespace}/{name} was not installed by this HelmRelease: left in place"
    await driver.uninstall(access, namespace, name, _timeout(hr))
    return f"uninstalled release {namespace}/{name}"


# --- moves: a previous target, recorded in status.targets -----------------------------------------------------


async def _follow_move(driver: HelmDriver, access: ClusterAccess, hr: Obj, outcome: Outcome,
                       parent: KubeApi) -> Outcome:
    """Record the spec's target (unless someone else's release is there) and, once the release there runs this
    spec, uninstall the previous targets: never before, so that a failed move leaves the old release running."""
    here, recorded = target(hr), targets_of(hr)
    status = {**(hr.get("status") or {}), **(outcome.status or {})}
    previous = [t for t in recorded if t != here]
    left, note, moved = previous, None, None
    removing = bool(previous) and runs_spec(hr, status)
    if removing:
        left, note, moved = await _remove_previous(driver, access, hr, previous, parent)
        if moved is not None and moved[0] == "Warning" and note == _move_condition(hr).get("message"):
            moved = None  # said already: a removal failing the same way at every retry is one event
    elif previous:
        note = (f"{_named(previous)} stays until release {here[0]}/{here[1]} runs this spec; it is uninstalled "
                "then")
    owned_here = released_of({"status": status}).get("reason") != REASON_NOT_OWNED
    record = [here] * owned_here + left
    changes = {"targets": [{"namespace": n, "name": r} for n, r in record] or None,
               "conditions": _with_move_condition(hr, status, note)}
    retry = outcome.retry or (removing and bool(left))  # kept trying: the child or the guard may answer later
    current = hr.get("status") or {}
    if outcome.status is None and all(current.get(k) == v for k, v in changes.items()):
        return Outcome(None, outcome.event, retry, moved)
    return Outcome({**(outcome.status or {}), **changes}, outcome.event, retry, moved)


TARGETS_LOST = {"targets": "a release moved to another namespace or name cannot be tracked and its old copy "
                           "would stay"}


def warn_if_targets_pruned(sent: Obj, stored: Obj | None) -> None:
    """Say once per process when the parent dropped the status.targets just written (the third audit upgraded the
    hub before the CRDs): a release moved would leave its old copy behind, silently."""
    prunedfields.warn_if_pruned("HelmRelease", sent, stored, TARGETS_LOST)


def runs_spec(hr: Obj, status: Obj) -> bool:
    """The status says the release at the spec's target runs this generation's spec (Released=True)."""
    return released_of({"status": status}).get("status") == "True" and status.get(
        "observedGeneration") == hr["metadata"].get("generation")


async def _remove_previous(driver: HelmDriver, access: ClusterAccess, hr: Obj, previous: Sequence[Target],
                           parent: KubeApi) -> tuple[list[Target], str | None, tuple[str, str, str] | None]:
    """Uninstall the releases at `previous` that are ours (someone else's is left and forgotten); nothing while
    the cluster's namespace is being deleted or cannot be read (namespaceguard: uncertainty never deletes).
    Returns the targets left, why (None: none left) and the event to post."""
    try:
        removing = await namespaceguard.namespace_removed(parent, hr["metadata"]["namespace"])
        why = namespaceguard.removed_message(hr["metadata"]["namespace"]) if removing else None
    except Exception as e:  # NamespaceUnknown (403), another HTTP error, no answer: uncertainty never deletes
        why = str(e) or type(e).__name__
    if why is not None:
        return list(previous), f"{_named(previous)} stays: {why}", None
    left: list[Target] = []
    said: list[str] = []
    for where in previous:
        try:
            said.append(await _uninstall_owned(driver, access, hr, where))
        except ReleaseError as e:
            left.append(where)
            said.append(f"uninstalling {_named([where])} failed (tried again): {e}")
    message = "; ".join(said) + f" (the release moved to {target(hr)[0]}/{target(hr)[1]})"
    log.info("HelmRelease %s/%s: %s", hr["metadata"]["namespace"], hr["metadata"]["name"], message)
    if left:
        return left, message, ("Warning", "PreviousReleaseLeft", message)
    return [], None, ("Normal", "PreviousReleaseRemoved", message)


def _move_condition(hr: Obj) -> dict[str, Any]:
    """The HelmRelease's MOVE_CONDITION ({} when none)."""
    conditions = (hr.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == MOVE_CONDITION), {})


def _named(targets: Sequence[Target]) -> str:
    return "previous release " + ", ".join(f"{n}/{r}" for n, r in targets)


def _with_move_condition(hr: Obj, status: Obj, note: str | None) -> list[dict[str, Any]] | None:
    """The status's conditions with MOVE_CONDITION present (False, `note`) only while a previous release is left;
    its lastTransitionTime is kept while it stays."""
    conditions = [dict(c) for c in status.get("conditions") or [] if c.get("type") != MOVE_CONDITION]
    if note is not None:
        before = _move_condition(hr)
        conditions.append({"type": MOVE_CONDITION, "status": "False",
                           "observedGeneration": hr["metadata"].get("generation"),
                           "lastTransitionTime": before.get("lastTransitionTime") or now_rfc3339(),
                           "reason": "PreviousReleaseLeft", "message": note})
    return conditions or None


def _timeout(hr: Obj) -> int:
    return int((hr.get("spec") or {}).get("timeoutSeconds") or 300)
