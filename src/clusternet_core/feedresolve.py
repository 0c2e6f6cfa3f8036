"""Which stored template (Manifest) each feed of a Subscription names, and when that is more than one.

A feed finds its Manifest by the `apps.clusternet.io/config.*` labels. A feed without a namespace leaves
the namespace label out, so for a namespaced kind it matches a template of that kind and name in every
namespace. When exactly one namespace has one, it is used, as in Clusternet. When several do, the hub used
to deploy whichever Manifest it happened to see first and report Ready; here such a feed is *ambiguous*:
the hub refuses the Subscription as a whole (it changes nothing it deployed and deploys nothing new until
the feed names its namespace) and `kubectl clusternet render` says the same instead of picking one.

Pure: the hub passes its cached Manifests, the kubectl plugin the ones it listed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clusternet_api import known
from clusternet_core.naming import feed_labels
from clusternet_core.scheduling import feed_key, feed_ref, format_feed

__all__ = ["REASON_AMBIGUOUS", "Ambiguity", "FeedResolution", "any_version_selector", "matches", "resolve_feeds",
           "template_ref"]

Obj = Mapping[str, Any]
Manifest = dict[str, Any]

REASON_AMBIGUOUS = "AmbiguousFeed"
"""Ready condition and Warning event reason of a Subscription refused for an ambiguous feed."""


def matches(feed: Obj, manifest: Obj) -> bool:
    """Does the feed select this Manifest (every label of the feed's selector is on the Manifest)?"""
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k, "") == v for k, v in feed_labels(feed).items())


VERSION_LABELS = (known.LABEL_CONFIG_GROUP, known.LABEL_CONFIG_VERSION)


def any_version_selector(feed: Obj) -> str:
    """Label selector (`k=v,...`, sorted) of the Manifests of the feed's kind, namespace and name under any
    apiVersion: the templates a missing feed may have meant (FeedResolution.other_versions)."""
    return ",".join(f"{k}={v}" for k, v in sorted(feed_labels(feed).items()) if k not in VERSION_LABELS)


def _matches_any_version(feed: Obj, manifest: Obj) -> bool:
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k, "") == v for k, v in feed_labels(feed).items() if k not in VERSION_LABELS)


def template_ref(manifest: Obj) -> dict[str, str]:
    """The feed fields of the object a Manifest stores, from its labels (what feeds are matched against)."""
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    group = labels.get(known.LABEL_CONFIG_GROUP, "")
    version = labels.get(known.LABEL_CONFIG_VERSION, "")
    return {"apiVersion": f"{group}/{version}" if group else version, "kind": labels.get(known.LABEL_CONFIG_KIND, ""),
            "namespace": labels.get(known.LABEL_CONFIG_NAMESPACE, ""), "name": labels.get(known.LABEL_CONFIG_NAME, "")}


@dataclass(frozen=True)
class Ambiguity:
    """A feed that matches templates of more than one object."""

    feed: dict[str, str]
    candidates: tuple[str, ...]
    """The matching templates as `Kind namespace/name`, sorted."""

    def message(self) -> str:
        return (f"feed {format_feed(self.feed)} ({self.feed['apiVersion']}) has no namespace and matches "
                f"{len(self.candidates)} templates: {', '.join(self.candidates)}; set the feed's namespace to "
                "the one to deploy")


@dataclass
class FeedResolution:
    """Feed key -> the Manifest to render, for every feed with one; the ambiguous feeds apart."""

    templates: dict[str, Manifest] = field(default_factory=dict)
    ambiguous: list[Ambiguity] = field(default_factory=list)
    other_versions: dict[str, list[str]] = field(default_factory=dict)
    """Feed key of a feed without a template -> the apiVersions under which a template of its kind, namespace
    and name exists, sorted: Clusternet's overview feeds `apiVersion: apps/v1, kind: Service`, which matches
    nothing (a Service is `v1`), and `FeedNotFound` alone did not say so (the sixth audit)."""

    def message(self) -> str:
        return "; ".join(a.message() for a in self.ambiguous)


def resolve_feeds(feeds: Iterable[Obj], manifests: Collection[Manifest]) -> FeedResolution:
    """Candidates per feed, then one template per feed or an Ambiguity.

    Candidates storing the same object (e.g. under its legacy and its current Manifest name) are one
    candidate; the first one seen is used, as before. A feed with no candidate is left out (rendering
    reports it as not found).
    """
    refs = [feed_ref(f) for f in feeds]
    found: dict[str, dict[str, Manifest]] = {feed_key(r): {} for r in refs}  # feed key -> object key -> Manifest
    for manifest in manifests:
        for ref in refs:
            if matches(ref, manifest):
                found[feed_key(ref)].setdefault(feed_key(template_ref(manifest)), manifest)
    result = FeedResolution()
    for ref in refs:
        candidates = found[feed_key(ref)]
        if len(candidates) == 1:
            result.templates[feed_key(ref)] = next(iter(candidates.values()))
        elif len(candidates) > 1 and not any(a.feed == ref for a in result.ambiguous):
            names = sorted(format_feed(template_ref(m)) for m in candidates.values())
            result.ambiguous.append(Ambiguity(ref, tuple(names)))
    # a second pass only when a template feed has none at all (a HelmChart feed never has one)
    unmatched = [ref for ref in refs if not found[feed_key(ref)]
                 and (ref["kind"], ref["apiVersion"].partition("/")[0]) != ("HelmChart", known.APPS_GROUP)]
    for manifest in manifests if unmatched else ():
        for ref in unmatched:
            if _matches_any_version(ref, manifest):
                versions = result.other_versions.setdefault(feed_key(ref), [])
                if (version := template_ref(manifest)["apiVersion"]) not in versions:
                    versions.append(version)
                    versions.sort()
    return result
