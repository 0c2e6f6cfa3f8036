"""From feeds to the exact objects one cluster receives: names, labels, ordering and Description.spec.raw.

Pure: the deployer fetches Manifests, overrides and the ManagedCluster, then calls `render_generic`; the
`kubectl clusternet render` preview calls the same function, so what users preview is what gets applied.

Names are Clusternet's where they are visible on the wire (Manifest names and labels, `<base>-generic` /
`<base>-helm`), but Base names are derived from a hash instead of Clusternet's random suffix, so a hub that
crashes between creating a Base and recording it converges on the same name when it retries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clusternet_api import known
from clusternet_api.rawobjects import decode_raw, encode_raw
from clusternet_core.naming import (
    feed_labels,
    feed_selector,
    legacy_manifest_name,
    manifest_labels,
    manifest_name,
    split_api_version,
)
from clusternet_core.overrides import AppliedOverride, OverrideError, apply_overrides, select_overrides
from clusternet_core.scheduling import InvalidSelector, feed_key, feed_ref, format_feed

__all__ = [
    "BASE_DIGITS",
    "DIVIDING_PRIORITY",
    "LONG_BASE_DIGITS",
    "RenderResult",
    "RenderedObject",
    "ReplicaSplit",
    "base_name",
    "base_names",
    "decode_raw",
    "description_name",
    "encode_raw",
    "feed_key",
    "feed_labels",
    "feed_selector",
    "is_helm_chart_feed",
    "legacy_manifest_name",
    "manifest_labels",
    "manifest_name",
    "render_generic",
    "split_api_version",
]

Obj = Mapping[str, Any]

MAX_NAME_LENGTH = 63
"""Base names stay valid DNS labels, so they can also be used as label values."""

DIVIDING_PRIORITY = 1000
"""Priority of the replica override of Dividing scheduling (Clusternet's generated Localization's)."""


# ---------------------------------------------------------------------------------------------------------
# Names and labels
# ---------------------------------------------------------------------------------------------------------


BASE_DIGITS = 5
"""Digits of every Base name's digest (base_name's default)."""


def base_name(subscription_name: str, *, subscription_namespace: str, digits: int = BASE_DIGITS) -> str:
    """Deterministic Base name `<subscription>-<hex digest>`, at most 63 characters; retries reuse the name.

    The digest hashes the Subscription's namespace and name. Its 5-digit form is what every Base has always
    been named (the children's objects are marked with the Description names derived from it, so it cannot
    change under an installation), but 20 bits collide: `team-1978/app` and `team-3501/app` both get
    `app-e670c`. The planner (basenames.py) gives the second one the `LONG_BASE_DIGITS` form instead.
    """
    digest = hashlib.sha256(f"{subscription_namespace}/{subscription_name}".encode()).hexdigest()[:digits]
    prefix = subscription_name[: MAX_NAME_LENGTH - digits - 1].rstrip("-.")
    return f"{prefix}-{digest}"


LONG_BASE_DIGITS = 16
"""Digits of the fallback Base name of a Subscription whose 5-digit name is taken (64 bits; should that form be
taken too, the cluster is refused, never overwritten)."""


def base_names(subscription: Mapping[str, Any]) -> tuple[str, str]:
    """Both names a Subscription's Base may have: (the 5-digit one, the long one it takes after a collision)."""
    name, namespace = str(subscription["metadata"]["name"]), str(subscription["metadata"]["namespace"])
    return (base_name(name, subscription_namespace=namespace),
            base_name(name, subscription_namespace=namespace, digits=LONG_BASE_DIGITS))


def description_name(base: str, deployer: str) -> str:
    """`<base>-generic` or `<base>-helm`, Clusternet's Description names."""
    kind = deployer.lower()
    if kind not in ("generic", "helm"):
        raise ValueError(f"deployer must be Generic or Helm, got {deployer!r}")
    return f"{base}-{kind}"


def is_helm_chart_feed(feed: Obj) -> bool:
    """HelmChart feeds go to the Helm deployer, everything else to the generic one."""
    ref = feed_ref(feed)
    return ref["kind"] == "HelmChart" and split_api_version(ref["apiVersion"])[0] == known.APPS_GROUP


# ---------------------------------------------------------------------------------------------------------
# Description.spec.raw
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RenderedObject:
    """One final child object and what the overrides did to it."""

    feed: dict[str, str]
    object: dict[str, Any]
    applied: list[AppliedOverride] = field(default_factory=list)
    errors: list[OverrideError] = field(default_factory=list)


@dataclass(frozen=True)
class ReplicaSplit:
    """One cluster's share of a feed's replicas, decided by Dividing scheduling."""

    replicas: int
    subscription: str
    """`<namespace>/<name>` of the Subscription that divided them; names the override in reports."""
    json_path: str = "/spec/replicas"
    """JSON pointer to the replica count (FeedInventory's replicaJsonPath)."""


def dividing_override(feed: Obj, split: ReplicaSplit) -> dict[str, Any]:
    """The override that sets a cluster's share, shaped like the Localization Clusternet generates
    (priority 1000, ApplyNow, a JSON patch at replicaJsonPath), but attributed to the Subscription.

    `add` rather than Clusternet's `replace`: it also sets a count the template leaves out (which Clusternet
    silently skips, so every cluster runs the default 1 replica).
    """
    namespace, _, name = split.subscription.rpartition("/")
    return {
        "apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"priority": DIVIDING_PRIORITY, "overridePolicy": "ApplyNow", "feed": feed_ref(feed),
                 "overrides": [{"name": "dividing-scheduler", "type": "JSONPatch",
                                "value": [{"op": "add", "path": split.json_path, "value": split.replicas}]}]},
    }


def _with_dividing_override(chosen: list[dict[str, Any]], override: dict[str, Any]) -> list[dict[str, Any]]:
    """Insert the replica override where a priority-1000 Localization created last would sort: after every
    Globalization and every Localization of priority <= 1000, before a Localization of higher priority."""
    for i, other in enumerate(chosen):
        priority = (other.get("spec") or {}).get("priority")
        priority = known.DEFAULT_PRIORITY if priority is None else int(priority)
        if (other.get("metadata") or {}).get("namespace") and priority > DIVIDING_PRIORITY:
            return [*chosen[:i], override, *chosen[i:]]
    return [*chosen, override]


@dataclass
class RenderResult:
    """Everything one cluster gets from a Base (generic deployer), in apply order."""

    items: list[RenderedObject] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Feed-level problems (missing Manifest, broken Globalization selector); those feeds are left out."""
    skipped_feeds: list[dict[str, str]] = field(default_factory=list)
    """HelmChart feeds, which the Helm deployer renders."""

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [item.object for item in self.items]

    @property
    def override_errors(self) -> list[OverrideError]:
        return [e for item in self.items for e in item.errors]

    def all_errors(self) -> list[str]:
        """Every problem as a sentence, feed-level first, for Description.status.reason or events."""
        return self.errors + [e.message for e in self.override_errors]

    def encoded_raw(self) -> list[str]:
        """Description.spec.raw for these objects."""
        return encode_raw(self.objects)


def apply_rank(obj: Obj) -> int:
    """Namespaces first, then CRDs: what other objects may need to exist when they are created. Also tells
    which feed each object of a Description's spec.raw came from (feedstatus: by position)."""
    group, _ = split_api_version(str(obj.get("apiVersion") or ""))
    kind = obj.get("kind")
    if kind == "Namespace" and group == "":
        return 0
    if kind == "CustomResourceDefinition" and group == "apiextensions.k8s.io":
        return 1
    return 2


def as_resolved(ref: Obj, template: Obj) -> dict[str, str]:
    """A feed as the template it resolved to names it: a namespace it left out filled in, so that overrides match
    it as Clusternet ties them (overrides.same_feed), never an override naming another namespace's object."""
    feed = feed_ref(ref)
    return {**feed, "namespace": (template.get("metadata") or {}).get("namespace") or feed["namespace"]}


def resolved_feeds(feeds: Iterable[Obj], templates: Mapping[str, Obj]) -> list[dict[str, str]]:
    """as_resolved of each feed that has its template (templates keyed by feed key, as render_generic takes them);
    a feed without one as it is."""
    out = []
    for feed in feeds:
        ref = feed_ref(feed)
        found = templates.get(feed_key(ref))
        out.append(as_resolved(ref, _template_of(found)) if found is not None else ref)
    return out


def _template_of(found: Obj) -> dict[str, Any]:
    """Accept a Manifest (use its template) or the template itself."""
    if found.get("kind") == "Manifest" and isinstance(found.get("template"), Mapping):
        return dict(found["template"])
    return dict(found)


def render_generic(
    feeds: Iterable[Obj],
    templates: Mapping[str, Obj],
    cluster: Obj,
    globalizations: Iterable[Obj],
    localizations: Iterable[Obj],
    replica_splits: Mapping[str, ReplicaSplit] | None = None,
) -> RenderResult:
    """The final objects for one cluster: each feed's template with its overrides applied, in apply order.

    `templates` maps feed keys (`apiVersion/Kind[/ns]/name`) to Manifest templates (or Manifests). Order is
    Namespaces, then CRDs, then the rest, each group in feed order. A feed without a template, or whose
    Globalizations cannot be selected, is reported and left out: the hub refuses such a Subscription before
    rendering (refusals.refusal_condition), so no Description loses an object this way; what is left out here is
    what `kubectl clusternet render` reports. The owned-by-description annotation is the deployer's job.

    `replica_splits` (feed key -> this cluster's share, from Dividing scheduling) adds, per divided feed,
    a synthetic priority-1000 override setting the count at its JSON pointer: a user Localization of lower
    priority on the replicas is overridden by the split, as in Clusternet, and the override shows up in
    each object's `applied` list (so `kubectl clusternet render` shows what the scheduler set).
    """
    globs = list(globalizations)
    locs = list(localizations)
    result = RenderResult()
    for feed in feeds:
        ref = feed_ref(feed)
        if is_helm_chart_feed(ref):
            result.skipped_feeds.append(ref)
            continue
        found = templates.get(feed_key(ref))
        if found is None:
            result.errors.append(
                f"feed {ref['apiVersion']}/{format_feed(ref)} not found: no Manifest in {known.RESERVED_NAMESPACE}"
            )
            continue
        template = _template_of(found)
        try:
            chosen = select_overrides(as_resolved(ref, template), cluster, globs, locs)
        except InvalidSelector as exc:
            result.errors.append(f"feed {ref['apiVersion']}/{format_feed(ref)}: {exc}")
            continue
        split = (replica_splits or {}).get(feed_key(ref))
        if split is not None:
            chosen = _with_dividing_override(chosen, dividing_override(ref, split))
        outcome = apply_overrides(template, chosen)
        result.items.append(RenderedObject(ref, outcome.object, outcome.applied, outcome.errors))
    result.items.sort(key=lambda item: apply_rank(item.object))  # stable: feed order within a rank
    return result
