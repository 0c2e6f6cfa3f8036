"""Globalizations and Localizations: which apply to a feed in a cluster, in which order, and what they did.

Order is Clusternet's (reference §6): matching Globalizations, then the cluster's Localizations, each group
by `spec.priority` ascending (default 500) then creation time (then name, so equal timestamps still give
one order); within an object, `spec.overrides[]` in list order. Later overrides win.

Unlike Clusternet, which drops a failing patch silently (a typo in a JSON pointer just does nothing), every
override that cannot be applied is reported with a message a person understands, the other overrides
still apply, and nothing raises: a bad Localization must not stop a whole rollout, but it must be seen.
Each applied override also reports the JSON pointers it changed, for `kubectl clusternet render`.

Field overrides (`FieldJSONPatch`, `FieldMergePatch`) locate their string field with an RFC 6901 JSON
pointer in `fieldPath`, e.g. `/data/config.yaml` (escape `/` in a key as `~1`, `~` as `~0`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clusternet_api import known
from clusternet_core.patches import (
    TRAILING_REMOVALS,
    PatchFailure,
    apply_field_patch,
    apply_json_patch,
    apply_merge_patch,
    changed_paths,
    is_helm_chart,
    json_type,
    jsonify,
    merge_patch,
    parse_value,
    strip_trailing,
)
from clusternet_core.scheduling import InvalidSelector, check_label_selector, feed_ref, label_selector_matches

CHART_FIXED = ("chart", "targetNamespace", "chartPullSecret")
CHART_PATCH_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec"})
"""Top-level keys an `overrideChart` value may have: it merge-patches the HelmChart object, and anything else is a
mistake (Clusternet merges it silently, a no-op); we refuse the override, saying so (OverrideFailed)."""
"""HelmChart spec fields an `overrideChart` override never changes. chartPullSecret is ours: the hub uses the
HelmChart's own credentials only (chartcredentials), so a per-cluster one would be shown and never used."""

__all__ = [
    "TRAILING_REMOVALS",
    "AppliedOverride",
    "OverrideError",
    "OverrideResult",
    "apply_overrides",
    "changed_paths",
    "merge_patch",
    "parse_value",
    "same_feed",
    "select_overrides",
    "selection_problem",
    "unusable_overrides",
]

Obj = Mapping[str, Any]




# ---------------------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------------------


def same_feed(override_feed: Obj, feed: Obj) -> bool:
    """Does an override's feed name this feed? As Clusternet, which ties an override to the templates its feed
    resolves to: a namespace left out on either side matches any namespace (a Subscription feed `ConfigMap cfg`
    and a Localization naming `ConfigMap default/cfg`, or the reverse). Until 2026-12-06 the fields had to be
    equal, and such an override was dropped without a word, the Subscription Ready (audit s35). Rendering passes
    the template the Subscription's feed resolved to, with its namespace, so an override naming another
    namespace's object never applies to it."""
    a, b = feed_ref(override_feed), feed_ref(feed)
    if a == b:
        return True
    return (a["apiVersion"], a["kind"], a["name"]) == (b["apiVersion"], b["kind"], b["name"]) and not (
        a["namespace"] and b["namespace"])


def _creation_time(obj: Obj) -> datetime:
    text = (obj.get("metadata") or {}).get("creationTimestamp")
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    if not text:
        return datetime.min.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _order_key(obj: Obj) -> tuple[int, datetime, str, str]:
    spec = obj.get("spec") or {}
    priority = spec.get("priority")
    meta = obj.get("metadata") or {}
    return (
        known.DEFAULT_PRIORITY if priority is None else int(priority),
        _creation_time(obj),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _live(obj: Obj) -> bool:
    # An override being deleted is already rolled back (that is how users undo one).
    return not (obj.get("metadata") or {}).get("deletionTimestamp")


def select_overrides(
    feed: Obj,
    cluster: Obj,
    globalizations: Iterable[Obj],
    localizations: Iterable[Obj],
) -> list[dict[str, Any]]:
    """The Globalizations then Localizations that apply to `feed` in `cluster`, in application order.

    `feed` is a Feed dict or the object itself. A Globalization without clusterAffinity applies to every
    cluster; a Localization applies only when it lives in the cluster's dedicated namespace. Objects being
    deleted are left out. Raises InvalidSelector (naming the Globalization) for a broken clusterAffinity.
    """
    cluster_meta = cluster.get("metadata") or {}
    cluster_labels = cluster_meta.get("labels") or {}
    cluster_ns = cluster_meta.get("namespace")

    globs: list[dict[str, Any]] = []
    for glob in globalizations:
        spec = glob.get("spec") or {}
        if not _live(glob) or not same_feed(spec.get("feed") or {}, feed):
            continue
        problem = selection_problem(glob)
        if problem is not None:
            raise InvalidSelector(problem)
        affinity = spec.get("clusterAffinity")
        if affinity is not None and not label_selector_matches(affinity, cluster_labels):
            continue
        globs.append(dict(glob))

    locs = [
        dict(loc)
        for loc in localizations
        if _live(loc)
        and (loc.get("metadata") or {}).get("namespace") == cluster_ns
        and same_feed((loc.get("spec") or {}).get("feed") or {}, feed)
    ]
    globs.sort(key=_order_key)
    locs.sort(key=_order_key)
    return globs + locs


def apply_now_digest(feeds: Iterable[Obj], cluster: Obj, globalizations: Iterable[Obj],
                     localizations: Iterable[Obj]) -> str:
    """Which ApplyNow overrides apply to `feeds` in `cluster` as they are now (kind, namespace, name, uid,
    generation), as a short hash a Description records (plan.ANNOTATION_APPLY_NOW).

    An ApplyNow override re-renders at once, also when deleted (which rolls it back); that used to rest on the
    hub seeing the change's event, which forced a reconcile. A change made while no hub was watching (a restart,
    an upgrade, a leader failover's seconds) was never applied, or never rolled back: the Description's inputs
    hash leaves overrides out, so that ApplyLater ones wait for the next change of a feed (audit 7). A plan that
    finds another set than its Description recorded renders again. A broken clusterAffinity counts as nothing
    here: the render reports it and holds the Description back."""
    found: set[tuple[str, str, str, str, str]] = set()
    feeds = list(feeds)
    globalizations, localizations = list(globalizations), list(localizations)
    for feed in feeds:
        try:
            chosen = select_overrides(feed, cluster, globalizations, localizations)
        except InvalidSelector:
            continue
        for override in chosen:
            if (override.get("spec") or {}).get("overridePolicy") == "ApplyNow":
                meta = override.get("metadata") or {}
                found.add((str(override.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name")),
                           str(meta.get("uid") or ""), str(meta.get("generation") or "")))
    return hashlib.sha256(json.dumps(sorted(found)).encode()).hexdigest()[:16]


def selection_problem(override: Obj) -> str | None:
    """Why the hub cannot tell which clusters a Globalization applies to (its clusterAffinity is broken in a
    way the CRD schema lets through: `In` without values, `Exists` with values, an empty key), or None.

    One line naming the override, for the Subscription's condition and the OverrideFailed event. Clusternet
    fails the render and retries; here the Subscriptions of its feeds are refused (refusals.refusal_condition),
    because rendering without the override, or without the feed, would change or remove what clusters run.
    A Localization has no selector: it applies to its cluster's namespace."""
    affinity = (override.get("spec") or {}).get("clusterAffinity")
    if affinity is None or override.get("kind", "Globalization") != "Globalization":
        return None
    try:
        check_label_selector(affinity)
    except InvalidSelector as exc:
        return f"Globalization {(override.get('metadata') or {}).get('name')}: spec.clusterAffinity: {exc}"
    return None


def unusable_overrides(feeds: Iterable[Obj], globalizations: Iterable[Obj]) -> list[str]:
    """selection_problem of each live Globalization of one of these feeds (one line each, sorted by name)."""
    refs = [feed_ref(f) for f in feeds]
    found = [(problem, glob) for glob in globalizations if _live(glob) and any(
        same_feed((glob.get("spec") or {}).get("feed") or {}, ref) for ref in refs)
        and (problem := selection_problem(glob)) is not None]
    return [problem for problem, _ in sorted(found, key=lambda f: str((f[1].get("metadata") or {}).get("name")))]


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedOverride:
    """One override that took effect, and the JSON pointers whose values it changed."""

    kind: str
    """Globalization or Localization."""
    namespace: str | None
    name: str
    override_name: str
    """`spec.overrides[].name`, or `#<index>` when unnamed."""
    changed_paths: tuple[str, ...]
    type: str = ""
    """The override type (JSONPatch, MergePatch, ...)."""
    target: str = "object"
    """`object` for the rendered object, `values` for the Helm values."""


@dataclass(frozen=True)
class OverrideError:
    """One override that could not be applied; the object was rendered without it."""

    kind: str
    namespace: str | None
    name: str
    override_name: str
    message: str
    """The whole sentence, naming the override object, the override and the problem."""
    reason: str = ""
    """Just the problem, e.g. `path /spec/replicaz does not exist`."""

    def __str__(self) -> str:
        return self.message


@dataclass
class OverrideResult:
    """The overridden object plus a record of what each override did or why it failed."""

    object: dict[str, Any]
    applied: list[AppliedOverride] = field(default_factory=list)
    errors: list[OverrideError] = field(default_factory=list)
    helm_values: dict[str, Any] = field(default_factory=dict)
    """Helm-type overrides (not `overrideChart`) merged in order, for the Helm deployer."""

    @property
    def ok(self) -> bool:
        return not self.errors


# ---------------------------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------------------------


def apply_overrides(obj: Obj, overrides: Iterable[Obj], initial_values: Mapping[str, Any] | None = None,
                    ) -> OverrideResult:
    """Apply the overrides (Globalization/Localization dicts, already ordered) to a copy of `obj`.

    `initial_values` start the Helm values (a HelmChart's own `spec.values`), so an override's `null`
    removes a value the chart object set, as Helm's coalescing does.

    A failing override is skipped and reported; the others still apply. Helm-type overrides never touch
    a generic object: their values are merged into `helm_values`; with `overrideChart` they merge-patch a
    HelmChart object (never its CHART_FIXED fields). Patch types do not apply to a
    HelmChart and are reported. Finally the server-owned TRAILING_REMOVALS are dropped.
    """
    current: Any = copy.deepcopy(jsonify(obj))
    result = OverrideResult(object={}, helm_values=copy.deepcopy(dict(initial_values or {})))
    helm_chart = is_helm_chart(obj)
    for override in overrides:
        meta = override.get("metadata") or {}
        kind = str(override.get("kind") or ("Localization" if meta.get("namespace") else "Globalization"))
        namespace = meta.get("namespace") or None
        name = str(meta.get("name") or "")
        who = f"{kind} {namespace + '/' if namespace else ''}{name}"
        for index, conf in enumerate((override.get("spec") or {}).get("overrides") or []):
            conf = conf if isinstance(conf, Mapping) else {}
            oname = str(conf.get("name") or f"#{index}")
            otype = str(conf.get("type") or "")
            try:
                outcome = _apply_one(current, result.helm_values, conf, otype, helm_chart)
            except PatchFailure as exc:
                label = f"override '{oname}'" if conf.get("name") else f"override {oname}"
                message = f"{who} {label} ({otype or 'no type'}): {exc}"
                result.errors.append(OverrideError(kind, namespace, name, oname, message, str(exc)))
                continue
            if outcome is None:
                continue
            target, before, after = outcome
            if target == "values":
                result.helm_values = after
            else:
                current = after
            result.applied.append(
                AppliedOverride(kind, namespace, name, oname, tuple(changed_paths(before, after)), otype, target)
            )
    if isinstance(current, dict):
        strip_trailing(current)
        result.object = current
    return result


def _apply_one(
    current: Any, helm_values: dict[str, Any], conf: Mapping[str, Any], otype: str, helm_chart: bool
) -> tuple[str, Any, Any] | None:
    """Apply one `spec.overrides[]` entry; None when it has nothing to do here (empty, not for this object)."""
    raw = conf.get("value")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None  # Clusternet skips empty values too
    if otype not in ("Helm", "JSONPatch", "MergePatch", "FieldJSONPatch", "FieldMergePatch"):
        raise PatchFailure(
            f"unknown override type {otype!r}; use JSONPatch, MergePatch, FieldJSONPatch, FieldMergePatch or Helm"
        )
    try:
        patch = parse_value(raw)
    except ValueError as exc:
        raise PatchFailure(str(exc)) from exc

    if otype == "Helm":
        if not isinstance(patch, Mapping):
            raise PatchFailure(f"Helm values must be an object, got {json_type(patch)}")
        if conf.get("overrideChart"):
            if not helm_chart:
                return None
            stray = sorted(set(patch) - CHART_PATCH_KEYS)
            if stray:  # {"version": ...} for {"spec": {"version": ...}} merged into nothing, and render said applied
                raise PatchFailure(f"overrideChart patches the HelmChart object: {', '.join(stray)} at its top "
                                   f"level changes nothing; chart fields go under spec (spec: {{{stray[0]}: ...}})")
            spec_patch = patch.get("spec")
            if isinstance(spec_patch, Mapping):
                patch = dict(patch, spec={k: v for k, v in spec_patch.items() if k not in CHART_FIXED})
            return "object", current, merge_patch(current, patch)
        return "values", helm_values, merge_patch(helm_values, patch)

    if helm_chart:
        raise PatchFailure(
            f"{otype} overrides do not apply to a HelmChart; use type Helm (with overrideChart to patch the chart)"
        )
    if otype == "JSONPatch":
        patched = apply_json_patch(current, patch)
        if not isinstance(patched, Mapping):
            raise PatchFailure(f"the patch would replace the whole object with {json_type(patched)}")
        return "object", current, patched
    if otype == "MergePatch":
        return "object", current, apply_merge_patch(current, patch)
    return "object", current, apply_field_patch(current, conf, patch, as_json_patch=otype == "FieldJSONPatch")
