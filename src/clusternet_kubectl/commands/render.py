"""`render SUBSCRIPTION --cluster ID`: the objects one cluster gets from a Subscription, after overrides.

Not in Clusternet's plugin. It runs the hub's own pipeline (clusternet_core: feed resolution, the Dividing
replica split, Globalizations and Localizations, rendering) on what the parent stores, so the preview is what
the hub deploys; for HelmCharts it shows each chart's merged values and which override set what (Helm itself
renders the chart in the child). Importing the pipeline costs
~0.2 s (pydantic models), which is why `cli` imports this module only when `render` runs.

What the hub would not deploy is not previewed as if it were (the sixth audit found both printed in full, exit
code 0): a Subscription the hub refuses as a whole (a feed naming no template or several, a Globalization that
cannot be evaluated, a broken clusterAffinity: refusals.refusal_condition and the scheduler's errors) prints the
hub's reason and exits 1, and so does a cluster the Subscription does not bind (scheduling.schedule, as the hub
binds) unless `--allow-unbound` asks what it would get.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
import yaml

from clusternet_api import known
from clusternet_api.apiresource import key_of
from clusternet_api.kube import Obj
from clusternet_api.models import FeedInventory
from clusternet_core.feedinventory import build_feed_inventory, is_dividing, replica_splits
from clusternet_core.feedresolve import FeedResolution, any_version_selector, resolve_feeds
from clusternet_core.helmrender import RenderedChart, render_helm
from clusternet_core.naming import feed_selector
from clusternet_core.placement import holding_clusters
from clusternet_core.plan import subscription_feeds
from clusternet_core.refusals import REFUSED, refusal_condition
from clusternet_core.rendering import RenderedObject, is_helm_chart_feed, render_generic
from clusternet_core.scheduling import (
    InvalidSelector,
    UnsupportedScheduling,
    binding_key,
    feed_key,
    feed_ref,
    format_feed,
    schedule,
)
from clusternet_kubectl.clusters import find_cluster
from clusternet_kubectl.errors import PluginError
from clusternet_kubectl.resources import (
    BASE,
    DESCRIPTION,
    FEED_INVENTORY,
    GLOBALIZATION,
    HELM_CHART,
    LOCALIZATION,
    MANIFEST,
    SUBSCRIPTION,
    namespaced_name,
)
from clusternet_kubectl.session import Session


def render_header(item: RenderedObject | RenderedChart) -> list[str]:
    """Comment lines naming the object, its feed and which override changed which fields."""
    if isinstance(item, RenderedChart):
        spec = item.chart.get("spec") or {}
        lines = [f"# {format_feed(item.feed)}: chart {spec.get('chart')} {spec.get('version') or '(latest)'} "
                 f"from {spec.get('repo')}, release {item.feed['name']} in namespace {spec.get('targetNamespace')}"]
        if item.kept:
            lines.append("# kept from the cluster's current Description: the chart is not Found right now")
    else:
        lines = [f"# {item.object.get('apiVersion')} {format_feed(item.object)}"]
    if not item.applied:
        lines.append("# overrides: none")
    for applied in item.applied:
        where = f"{applied.namespace}/{applied.name}" if applied.namespace else applied.name
        kind = f" {applied.type}" if applied.type else ""
        paths = ", ".join(applied.changed_paths) or "no change"
        lines.append(f"# override {applied.kind} {where} [{applied.override_name}]{kind}: {paths}")
    for error in item.errors:
        where = f"{error.namespace}/{error.name}" if error.namespace else error.name
        lines.append(f"# FAILED override {error.kind} {where} [{error.override_name}]: {error.reason or error}")
    return lines


async def dividing_splits(session: Session, sub: Obj, cluster: Obj, templates: Mapping[str, Obj]) -> dict[str, Any]:
    """This cluster's share of a Dividing Subscription's replicas, as the hub renders it: the counts from
    status.replicas, the JSON pointers from the FeedInventory (computed from the templates when absent)."""
    if not is_dividing(sub):
        return {}
    status = sub.get("status") or {}
    code, body = await session.kube.raw("GET", FEED_INVENTORY.path(sub["metadata"]["namespace"],
                                                                   sub["metadata"]["name"]))
    try:
        inventory = FeedInventory.from_dict(body) if code == 200 and isinstance(body, dict) else None
    except ValueError:  # pydantic's ValidationError: not one the hub wrote
        inventory = None
    if inventory is None:
        inventory = build_feed_inventory(sub, templates).inventory
    return dict(replica_splits(status.get("replicas") or {}, status.get("bindingClusters") or [],
                               namespaced_name(cluster), inventory, namespaced_name(sub)))


async def resolved_feeds(session: Session, feeds: list[Obj]) -> FeedResolution:
    """The template of each feed, as the hub resolves them (HelmCharts too: they have no Manifest in practice),
    with, for a feed that has none, the templates of its object under other apiVersions (the hub's hint)."""
    candidates: list[Obj] = []
    for feed in feeds:
        candidates += await session.list(MANIFEST, known.RESERVED_NAMESPACE, feed_selector(feed))
    resolved = resolve_feeds(feeds, candidates)
    found = set(resolved.templates) | {feed_key(a.feed) for a in resolved.ambiguous}
    missing = [f for f in feeds if not is_helm_chart_feed(feed_ref(f)) and feed_key(feed_ref(f)) not in found]
    for feed in missing:  # the hub looks for a hint among every template it caches; ask for those that can be one
        candidates += await session.list(MANIFEST, known.RESERVED_NAMESPACE, any_version_selector(feed))
    return resolve_feeds(feeds, candidates) if missing else resolved


def refusal_lines(sub: Obj, resolved: FeedResolution, globalizations: list[Obj]) -> list[str]:
    """Why the hub refuses the Subscription as a whole, as error lines (none when it does not): the same check,
    refusals.refusal_condition, and the reason it writes in the Ready condition."""
    refused = refusal_condition(subscription_feeds(sub), resolved, globalizations)
    if refused is None:
        return []
    messages = [a.message() for a in resolved.ambiguous] or [str(refused["message"]).removesuffix(REFUSED)]
    return [f"{refused['reason']}: {m}; the hub refuses this Subscription until then" for m in messages]


async def unbound_reason(session: Session, sub: Obj, cluster: Obj) -> str | None:
    """Why the Subscription does not bind the cluster, None when it does: the hub's scheduling on this one
    cluster (its subscribers' clusterAffinity, its clusterTolerations, the clusters it is already bound to or
    still holds objects in, which stay bound through NoSchedule taints). Raises InvalidSelector or
    UnsupportedScheduling, for which the hub refuses the Subscription."""
    if cluster["metadata"].get("deletionTimestamp"):
        return "the ManagedCluster is being deleted"
    result = schedule(sub, [cluster])
    key = binding_key(cluster)
    if result.binding_clusters:
        return None
    if key in result.filtered:  # a NoSchedule taint keeps off a cluster the Subscription has no objects in yet
        namespace = cluster["metadata"]["namespace"]
        bases = {key_of(b): b for b in await session.list(BASE, namespace)}
        descriptions = {key_of(d): d for d in await session.list(DESCRIPTION, namespace)}
        if schedule(sub, [cluster], holding=holding_clusters(sub, [cluster], bases, descriptions)).binding_clusters:
            return None
        return result.filtered[key]
    return "no subscriber's clusterAffinity matches its labels"


async def render_command(session: Session, subscription: str, cluster_ref: str, allow_unbound: bool = False) -> int:
    status, sub = await session.kube.raw("GET", SUBSCRIPTION.path(session.namespace, subscription))
    if status == 404 or not isinstance(sub, dict):
        raise PluginError(f'subscriptions.{known.APPS_GROUP} "{subscription}" not found in namespace '
                          f"{session.namespace}")
    cluster = await find_cluster(session, cluster_ref)
    feeds: list[Obj] = (sub.get("spec") or {}).get("feeds") or []
    resolved = await resolved_feeds(session, feeds)
    globs = await session.list(GLOBALIZATION)
    refused = refusal_lines(sub, resolved, globs)
    unbound: str | None = None
    if not refused:
        try:
            unbound = await unbound_reason(session, sub, cluster)
        except (InvalidSelector, UnsupportedScheduling, ValueError) as e:  # as the hub's plan_subscription
            refused = [f"InvalidSubscription: {e}; the hub refuses this Subscription until then"]
    for line in refused:
        click.echo(f"error: {line}", err=True)
    if refused:
        return 1
    where = f"Subscription {session.namespace}/{subscription} does not bind ManagedCluster {namespaced_name(cluster)}"
    if unbound is not None and not allow_unbound:
        click.echo(f"error: {where} ({unbound}): it gets nothing from it; --allow-unbound renders what it would get",
                   err=True)
        return 1
    if unbound is not None:
        click.echo(f"note: {where} ({unbound}); rendered as if it did", err=True)
    templates = resolved.templates
    locs = await session.list(LOCALIZATION, cluster["metadata"]["namespace"])
    result = render_generic(feeds, templates, cluster, globs, locs,
                            await dividing_splits(session, sub, cluster, templates))
    click.echo(f"# Subscription {session.namespace}/{subscription} rendered for ManagedCluster "
               f"{namespaced_name(cluster)} (cluster id {(cluster.get('spec') or {}).get('clusterId', '?')})")
    for item in result.items:
        click.echo("---")
        click.echo("\n".join(render_header(item)))
        click.echo(yaml.safe_dump(item.object, sort_keys=False).rstrip("\n"))
    charts = {}
    for ref in result.skipped_feeds:
        code, chart = await session.kube.raw("GET", HELM_CHART.path(ref["namespace"], ref["name"]))
        if code == 200 and isinstance(chart, dict):
            charts[feed_key(feed_ref(ref))] = chart
    helm = render_helm(result.skipped_feeds, charts, cluster, globs, locs)
    for chart_item in helm.items:
        click.echo("---")
        click.echo("\n".join(render_header(chart_item)))
        click.echo(yaml.safe_dump({"values": chart_item.values}, sort_keys=False).rstrip("\n"))
    for message in result.all_errors() + helm.all_errors():
        click.echo(f"error: {message}", err=True)
    return 0 if result.items or helm.items else 1
