"""Which chart repository credentials a HelmRelease gets: decided only from what the parent's users wrote.

A child's agent may patch its cluster's HelmReleases, Descriptions and Bases on the parent (finalizers,
statuses; RBAC cannot narrow `patch` to a few fields), so everything in them is untrusted input for the hub,
which reads chartPullSecrets with its own identity. The hub therefore never takes a Secret's name from a
HelmRelease (or from the Description it was written from). It finds the HelmChart the release stands for from
what only the parent's users and the hub write:

- a Subscription feeding HelmChart `<ns>/<name>`,
- whose `<base>-helm` Description exists in the release's namespace (agents cannot create Descriptions, so the
  hub made it: the Subscription was bound to this cluster),
- and the release's name is `<that description>-<ns>-<name>` (agents cannot create or rename HelmReleases).

The credentials are that HelmChart's own `spec.chartPullSecret` (namespace defaulting to the chart's), and only
while the release fetches from the HelmChart's own repository (`repo` and `plainHTTP`): credentials go nowhere
else, neither to a repository an agent wrote into its HelmRelease nor to one an `overrideChart` Localization set.

Where we differ from Clusternet: Clusternet's hub and agents read the Secret the HelmRelease names, so a child
that edits its HelmRelease reads any Secret the reader may; a Localization that overrides a chart's `repo`
deploys it without the chart's credentials here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clusternet_core import rendering
from clusternet_core.helmrender import release_name
from clusternet_core.plan import Caches, subscription_feeds

__all__ = ["pull_secret_ref", "release_chart"]

Obj = Mapping[str, Any]


def release_chart(namespace: str, name: str, caches: Caches) -> Obj | None:
    """The cached HelmChart that HelmRelease `namespace/name` was rendered from, as the parent's users
    decided it (module docstring); None when no Subscription accounts for it."""
    for sub in caches.subscriptions.values():
        meta = sub["metadata"]
        if not name.startswith(str(meta["name"])[:8]):  # base names start with the Subscription's: skip the hash
            continue
        for base in rendering.base_names(sub):  # both forms a Base name takes (basenames.py)
            if (chart := _chart_of(sub, rendering.description_name(base, "Helm"), namespace, name, caches)) is not None:
                return chart
    return None


def _chart_of(sub: dict[str, Any], description: str, namespace: str, name: str, caches: Caches) -> Obj | None:
    """The HelmChart of `sub` that release `namespace/name` stands for under its Description `description`."""
    if (namespace, description) not in caches.descriptions:
        return None
    for feed in subscription_feeds(sub):
        if rendering.is_helm_chart_feed(feed) and release_name(description, feed["namespace"], feed["name"]) == name:
            chart = caches.helmcharts.get((feed["namespace"], feed["name"]))
            if chart is not None:
                return chart
    return None


def pull_secret_ref(hr: Obj, caches: Caches) -> dict[str, str] | None:
    """`{name, namespace}` of the Secret whose credentials HelmRelease `hr` may fetch its chart with, or None.

    Never read from `hr`'s own chartPullSecret; `hr` only tells which repository the credentials would go to."""
    meta = hr["metadata"]
    chart = release_chart(str(meta["namespace"]), str(meta["name"]), caches)
    if chart is None:
        return None
    chart_spec, spec = chart.get("spec") or {}, hr.get("spec") or {}
    ref = chart_spec.get("chartPullSecret") or {}
    if not ref.get("name"):
        return None
    if (spec.get("repo"), bool(spec.get("plainHTTP"))) != (chart_spec.get("repo"),
                                                          bool(chart_spec.get("plainHTTP"))):
        return None
    return {"name": str(ref["name"]), "namespace": str(ref.get("namespace") or chart["metadata"]["namespace"])}
