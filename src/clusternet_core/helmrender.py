"""Helm feeds, pure: one cluster's `<base>-helm` Description, its HelmReleases, and its status from theirs.

Values are layered as Helm users expect: the chart's own defaults (Helm applies those at install), then the
HelmChart's `spec.values` (ours), then `Helm`-type Globalizations and Localizations in override order (§6),
each merged over the previous ones (`null` removes a value). `overrideChart` overrides patch the HelmChart
object itself (e.g. its version), never its `chart`, `targetNamespace` or `chartPullSecret`.

Where we differ from Clusternet:
- A chart whose repository check is still pending or failed (phase empty or NotFound), or one of whose
  Globalizations cannot be evaluated (a broken clusterAffinity), never takes a deployed release away: the
  cluster keeps the entry its Description already has, and only clusters that have none wait (Clusternet
  drops the chart, which uninstalls it everywhere when a repository blips). The hub refuses such a
  Subscription before rendering anyway (refusals.refusal_condition); this holds for any other caller.
- A release's status counts only for the HelmRelease generation it reports on (`status.observedGeneration`),
  so a values change is not shown as deployed before the child installed it; and a `deployed` release whose
  update failed before Helm touched it (our `Released` condition False) is a Failure, whose reason says which
  revision the child keeps (Clusternet, which leaves the old status, shows Success).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clusternet_api import known
from clusternet_api.helm.releases import released_of
from clusternet_api.models.helm import HelmOptions
from clusternet_api.rawobjects import encode_raw
from clusternet_core.overrides import AppliedOverride, OverrideError, apply_overrides, select_overrides
from clusternet_core.scheduling import InvalidSelector, feed_key, feed_ref, format_feed

__all__ = [
    "HelmRenderResult",
    "RenderedChart",
    "description_status",
    "release_bodies",
    "release_name",
    "render_helm",
]

Obj = Mapping[str, Any]

# The HelmOptions fields a HelmRelease copies from its (overridden) HelmChart, by their wire names
OPTION_FIELDS = tuple(f.alias or name for name, f in HelmOptions.model_fields.items())

ANNOTATION_DESCRIPTION_GENERATION = "apps.clusternet.io/description-generation"
"""On a HelmRelease: the generation of the Description it was written from (a status of a release from an
older Description says nothing about the current one)."""

# Helm's release status -> Description phase (Clusternet's mapping, pkg/utils/helm.go)
PHASES = {"deployed": "Success", "pending-install": "Installing", "pending-upgrade": "Upgrading",
          "pending-rollback": "Upgrading", "uninstalling": "Uninstalling", "superseded": "Superseded",
          "failed": "Failure"}
IN_PROGRESS = frozenset({"Installing", "Upgrading", "Uninstalling"})
WAITING = ("Pending", "waiting for the release to be installed")


@dataclass
class RenderedChart:
    """One chart as one cluster gets it: the HelmChart after `overrideChart` patches and the merged values."""

    feed: dict[str, str]
    chart: dict[str, Any]
    values: dict[str, Any]
    applied: list[AppliedOverride] = field(default_factory=list)
    errors: list[OverrideError] = field(default_factory=list)
    kept: bool = False
    """Taken unchanged from the cluster's existing Description (chart not checked or not found right now)."""


@dataclass
class HelmRenderResult:
    items: list[RenderedChart] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Feed-level problems: a HelmChart missing, not found in its repository, or not yet checked."""

    @property
    def override_errors(self) -> list[OverrideError]:
        """The failed Helm-type overrides, as rendering.RenderResult's for generic feeds."""
        return [e for item in self.items for e in item.errors]

    def all_errors(self) -> list[str]:
        return self.errors + [e.message for e in self.override_errors]

    def spec(self) -> dict[str, Any]:
        """Description.spec for the Helm deployer: charts, their values (`raw`) and the charts (`chartRaw`)."""
        return {"deployer": "Helm",
                "charts": [{"namespace": i.feed["namespace"], "name": i.feed["name"]} for i in self.items],
                "raw": encode_raw(i.values for i in self.items),
                "chartRaw": encode_raw(i.chart for i in self.items)}


def _decode(entry: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(base64.b64decode(entry, validate=True))
    except (binascii.Error, ValueError, TypeError):
        return None
    return obj if isinstance(obj, dict) else None


def existing_entries(existing: Obj | None) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(chart, values) per chart `namespace/name` in a cluster's current Helm Description."""
    spec = (existing or {}).get("spec") or {}
    charts, raw, chart_raw = spec.get("charts") or [], spec.get("raw") or [], spec.get("chartRaw") or []
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for ref, values, chart in zip(charts, raw, chart_raw, strict=False):
        decoded_values, decoded_chart = _decode(values), _decode(chart)
        if decoded_values is not None and decoded_chart is not None:
            found[f"{ref.get('namespace')}/{ref.get('name')}"] = (decoded_chart, decoded_values)
    return found


def check_is_current(chart: Obj) -> bool:
    """Was the chart's status (Found/NotFound) written for its current spec? A status without
    observedGeneration (an older hub's) counts as current."""
    checked = (chart.get("status") or {}).get("observedGeneration")
    return checked is None or checked == (chart.get("metadata") or {}).get("generation")


def check_phase(chart: Obj) -> str | None:
    """The chart's phase for rendering: None while its current spec has not been checked."""
    return (chart.get("status") or {}).get("phase") if check_is_current(chart) else None


def _chart_problem(ref: Mapping[str, str], chart: Obj | None) -> str | None:
    """Why this chart cannot be rendered for a new cluster now, or None."""
    name = format_feed(ref)  # "HelmChart ns/name": format_feed names the kind
    if chart is None:
        return f"{name} not found"
    status = chart.get("status") or {}
    phase = check_phase(chart)  # None after a spec change: its Found was for the old spec (a typo must wait)
    if phase == "Found":
        return None
    if phase == "NotFound":
        return f"{name} is NotFound: {status.get('reason') or 'no reason given'}"
    return f"{name} is waiting for its repository check"


def render_helm(feeds: Iterable[Obj], charts: Mapping[str, Obj], cluster: Obj, globalizations: Iterable[Obj],
                localizations: Iterable[Obj], existing: Obj | None = None) -> HelmRenderResult:
    """The HelmChart feeds of a Subscription for one cluster, in feed order.

    `charts` maps feed keys to cached HelmCharts; `existing` is the cluster's current Helm Description,
    whose entries stand in for charts that are not Found right now (see the module docstring)."""
    globs, locs = list(globalizations), list(localizations)
    previous = existing_entries(existing)
    result = HelmRenderResult()
    for feed in feeds:
        ref = feed_ref(feed)
        if ref["kind"] != "HelmChart":
            continue
        chart = charts.get(feed_key(ref))
        problem = _chart_problem(ref, chart)
        chosen: list[dict[str, Any]] = []
        if problem is None:
            try:
                chosen = select_overrides(ref, cluster, globs, locs)
            except InvalidSelector as exc:
                problem = f"feed {ref['apiVersion']}/{format_feed(ref)}: {exc}"
        if problem is not None:
            kept = previous.get(f"{ref['namespace']}/{ref['name']}")
            if kept is not None:
                result.items.append(RenderedChart(ref, kept[0], kept[1], kept=True))
            result.errors.append(problem + ("; the deployed release is kept" if kept else ""))
            continue
        assert chart is not None
        body = {k: v for k, v in chart.items() if k != "status"}
        outcome = apply_overrides(body, chosen, ((chart.get("spec") or {}).get("values") or {}))
        result.items.append(RenderedChart(ref, outcome.object, outcome.helm_values, outcome.applied, outcome.errors))
    return result


# ---------------------------------------------------------------------------------------------------------
# HelmReleases of a Helm Description
# ---------------------------------------------------------------------------------------------------------


def release_name(description: str, chart_namespace: str, chart_name: str) -> str:
    """Clusternet's HelmRelease name: `<description>-<chart namespace>-<chart name>`."""
    return f"{description}-{chart_namespace}-{chart_name}"


def shared_release_names(desc: Obj) -> dict[str, list[str]]:
    """Release names that two or more charts of the Description would share (`<namespace>/<name>` of each, in the
    spec's order): `foo-bar/baz` and `foo/bar-baz` both give `<description>-foo-bar-baz`. Clusternet's naming is
    kept; the first chart gets the name and the Description says why the others are not deployed. Before
    2026-12-06 both were written to one HelmRelease, each write undoing the other, and every switch of its target
    uninstalled the other chart's release."""
    charts: dict[str, list[str]] = {}
    for ref in (desc.get("spec") or {}).get("charts") or []:
        name = release_name(desc["metadata"]["name"], str(ref.get("namespace")), str(ref.get("name")))
        charts.setdefault(name, []).append(f"{ref.get('namespace')}/{ref.get('name')}")
    return {name: refs for name, refs in charts.items() if len(refs) > 1}


def release_bodies(desc: Obj) -> list[dict[str, Any]]:
    """The HelmReleases a Helm Description wants, one per chart, owned by it (its uid must be known).

    The release is named after the HelmChart, as in Clusternet; its spec is the overridden chart's Helm
    options plus the values, base64 JSON in `overrides`. A name taken by an earlier chart is not written again
    (shared_release_names)."""
    meta = desc["metadata"]
    owner = {"apiVersion": known.APPS_API_VERSION, "kind": "Description", "name": meta["name"],
             "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
    labels = {k: v for k, v in (meta.get("labels") or {}).items()}
    bodies = []
    entries = existing_entries(desc)
    taken: set[str] = set()
    for ref in (desc.get("spec") or {}).get("charts") or []:
        name = release_name(meta["name"], str(ref["namespace"]), str(ref["name"]))
        chart, values = entries.get(f"{ref.get('namespace')}/{ref.get('name')}", (None, None))
        if chart is None or values is None or name in taken:
            continue
        taken.add(name)
        chart_spec = chart.get("spec") or {}
        spec = {k: chart_spec[k] for k in OPTION_FIELDS if chart_spec.get(k) is not None}
        if spec.get("chartPullSecret"):  # the HelmRelease lives elsewhere: name the chart's namespace
            spec["chartPullSecret"] = {"namespace": str(ref["namespace"]), **spec["chartPullSecret"]}
        spec.update(releaseName=str(ref["name"]), targetNamespace=chart_spec.get("targetNamespace"),
                    overrides=encode_raw([values])[0])
        bodies.append({
            "apiVersion": known.APPS_API_VERSION, "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels, "ownerReferences": [owner],
                         "annotations": {ANNOTATION_DESCRIPTION_GENERATION: str(meta.get("generation") or "")},
                         "finalizers": [known.FINALIZER_APPS]},
            "spec": spec})
    return bodies


def release_phase(hr: Obj) -> tuple[str, str]:
    """A HelmRelease's Description phase and why, counting only a status about its current generation.

    Helm's phase says what the child runs; our Released condition, when False, says that this is not the
    HelmRelease's spec: a `deployed` old revision after a chart that could not be fetched is a Failure (as a
    Generic Description whose update failed), unless an operation is under way. A status without the
    condition (written by Clusternet's agent) is read by its phase alone."""
    status = hr.get("status") or {}
    if not status.get("phase") or status.get("observedGeneration") != hr["metadata"].get("generation"):
        return WAITING
    phase = PHASES.get(str(status["phase"]), "Unknown")
    released = released_of(hr)
    if released.get("status") == "False" and phase not in IN_PROGRESS:
        phase = "Failure"
    detail = released.get("message") if released.get("status") == "False" else None
    return phase, detail or status.get("description") or phase.lower()


def description_status(desc: Obj, releases: Iterable[Obj]) -> dict[str, Any]:
    """A Helm Description's status from its HelmReleases: Success only when every chart's current spec is
    deployed; otherwise the first failure (with Helm's message), or the first release still in progress."""
    wanted = {release_name(desc["metadata"]["name"], str(r.get("namespace")), str(r.get("name")))
              for r in (desc.get("spec") or {}).get("charts") or []}
    generation = str(desc["metadata"].get("generation") or "")
    found = {r["metadata"]["name"]: r for r in releases if r["metadata"]["name"] in wanted and (
        r["metadata"].get("annotations") or {}).get(ANNOTATION_DESCRIPTION_GENERATION) == generation}
    phases = {name: release_phase(found[name]) if name in found else WAITING for name in sorted(wanted)}
    observed = {"observedGeneration": desc["metadata"]["generation"]} if generation else {}
    if shared := sorted(shared_release_names(desc).items()):
        name, refs = shared[0]
        return {"phase": "Failure", "reason": f"HelmCharts {', '.join(refs)} would share HelmRelease {name} (named "
                f"<description>-<chart namespace>-<chart name>, as in Clusternet): only {refs[0]} is deployed; "
                "rename the others", **observed}
    for phase in ("Failure", "Unknown", "Uninstalling", "Installing", "Upgrading", "Superseded", "Pending"):
        names = [n for n, p in phases.items() if p[0] == phase]
        if names:
            return {"phase": phase, "reason": f"HelmRelease {names[0]}: {phases[names[0]][1]}", **observed}
    # a reason, not "": kube-apiserver 1.20 stores an empty string of a custom resource as null, which the
    # schema then refuses
    return {"phase": "Success", "reason": f"{len(phases)} release(s) deployed", **observed}
