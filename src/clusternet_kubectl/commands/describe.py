"""`describe`: a template with where it is deployed and how it is doing there, or a Clusternet object with its
spec, status and events.

Clusternet's plugin has no describe of its own (kubectl's, through the shadow API, shows the Manifest's
object); ours answers "where does this template run and is it healthy" from the Subscriptions that use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import click
import yaml

from clusternet_api import known
from clusternet_api.kube import ApiException, Obj
from clusternet_core.feedstatus import desired_replicas
from clusternet_core.scheduling import feed_key
from clusternet_core.workloadready import scaled
from clusternet_kubectl.errors import api_error
from clusternet_kubectl.resources import DESCRIPTION, SUBSCRIPTION, Resource, namespaced_name
from clusternet_kubectl.session import Session
from clusternet_kubectl.tables import age, indented_table
from clusternet_kubectl.templates import (
    Kind,
    kind_and_names,
    list_templates,
    named_templates,
    not_found_error,
    not_found_hint,
    resolve_kind,
)

HIDDEN_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _fields(pairs: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in pairs) + 3  # the colon, then at least two spaces
    return [f"{(k + ':').ljust(width)}{v}" for k, v in pairs]


def _key_values(values: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((values or {}).items())) or "<none>"


def _indented_yaml(value: Any) -> list[str]:
    return ["  " + line for line in yaml.safe_dump(value, sort_keys=False).rstrip("\n").splitlines()]


def _replica_text(replicas: Mapping[str, Any] | None, desired: int | None = None) -> str:
    """`ready/desired ready`, the desired count being the one the object was rendered with when known: the
    reported `replicas` counts every pod, surge and old ones too (the sixth audit read `0/7 ready` during a
    rollout of 5, where `kubectl get deploy` and the Subscription's condition said 0/5)."""
    if not replicas:
        return "-"
    if "replicas" in replicas:
        return f"{replicas.get('readyReplicas') or 0}/{replicas['replicas'] if desired is None else desired} ready"
    return ", ".join(f"{k} {replicas[k]}" for k in ("active", "succeeded", "failed") if k in replicas) or "-"


Desired = Mapping[tuple[str, str, str], int]
"""Replicas an object is rendered with, by (template's feed key, Subscription, cluster namespace). Without the
template in the key, describing several templates of one Subscription showed the last one's count for all."""
"""(Subscription `namespace/name`, cluster namespace) -> the replicas the template's object is rendered with
there (its Description: describe_templates)."""


def _cluster_rows(sub: Mapping[str, Any], key: str, template: Mapping[str, Any],
                  desired: Desired) -> list[list[Any]]:
    """One row per cluster a Subscription binds, with the feed's status there (unknown until reported). The
    desired count: the rendered object's, else (its Description not readable) the Dividing share in the
    status, else the template's own spec.replicas (1 when unset) for a kind scaled by it."""
    status = sub.get("status") or {}
    entry: Mapping[str, Any] = next((a for a in status.get("aggregatedStatuses") or [] if feed_key(a) == key), {})
    bindings = list(status.get("bindingClusters") or [])
    details = list(entry.get("feedStatusDetails") or [])
    if len(details) != len(bindings):  # written together, one per bound cluster, in order: not yet, then
        details = [{}] * len(bindings)
    shares = list((status.get("replicas") or {}).get(key) or [])
    if len(shares) != len(bindings):
        shares = [None] * len(bindings)
    own = (template.get("spec") or {}).get("replicas", 1) if scaled(template) else None
    rows = []
    for binding, detail, share in zip(bindings, details, shares, strict=True):
        cluster_ns, _, cluster = binding.partition("/")
        count = desired.get((key, namespaced_name(sub), cluster_ns), share if share is not None else own)
        rows.append([namespaced_name(sub), detail.get("clusterName") or cluster, cluster_ns,
                     detail.get("available", "unknown"), _replica_text(detail.get("replicaStatus"), count)])
    return rows


def users_of(template: Mapping[str, Any], subscriptions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Subscriptions feeding the template."""
    key = feed_key(template)
    return [sub for sub in subscriptions if any(feed_key(f) == key for f in (sub.get("spec") or {}).get("feeds") or [])]


def describe_template(manifest: Mapping[str, Any], subscriptions: Sequence[Mapping[str, Any]],
                      now: datetime | None = None, desired: Desired | None = None) -> str:
    """A template as `kubectl describe` would show an object, plus where it is deployed and how it is doing
    there (from the Subscriptions that use it: their bound clusters and aggregated statuses)."""
    template = manifest.get("template") or {}
    meta = template.get("metadata") or {}
    key = feed_key(template)
    users = users_of(template, subscriptions)
    mmeta = manifest.get("metadata") or {}
    lines = _fields([
        ("Name", str(meta.get("name") or "")),
        ("Namespace", str(meta.get("namespace") or "<none>")),
        ("Kind", str(template.get("kind") or "")),
        ("API Version", str(template.get("apiVersion") or "")),
        ("Labels", _key_values(meta.get("labels"))),
        ("Stored as", f"Manifest {mmeta.get('namespace')}/{mmeta.get('name')} "
                      f"({age(mmeta.get('creationTimestamp'), now)} ago)"),
        ("Subscriptions", ", ".join(namespaced_name(s) for s in users)
         or "<none>: stored, but no Subscription deploys it"),
    ])
    rows = [row for sub in users for row in _cluster_rows(sub, key, template, desired or {})]
    if rows:
        lines.append("Clusters:")
        lines += indented_table(["Subscription", "Cluster", "Namespace", "Available", "Replicas"], rows)
    elif users:
        lines.append("Clusters:       <none>: no cluster is bound yet")
    return "\n".join(lines)


def describe_object(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """A Clusternet object with its spec, status and events, like `kubectl describe`."""
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in HIDDEN_ANNOTATIONS}
    lines = _fields([
        ("Name", str(meta.get("name") or "")),
        ("Namespace", str(meta.get("namespace") or "<none>")),
        ("Kind", str(obj.get("kind") or "")),
        ("Labels", _key_values(meta.get("labels"))),
        ("Annotations", _key_values(annotations)),
        ("Created", f"{age(meta.get('creationTimestamp'), now)} ago"),
    ])
    for section in ("spec", "template", "status"):
        if obj.get(section):
            lines += [f"{section.capitalize()}:", *_indented_yaml(obj[section])]
    return "\n".join(lines + _event_lines(events, now))


def _event_lines(events: Sequence[Mapping[str, Any]], now: datetime | None) -> list[str]:
    ordered = sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    if not ordered:
        return ["Events:  <none>"]
    rows = [[e.get("type"), e.get("reason"), age(e.get("lastTimestamp") or e.get("eventTime"), now),
             (e.get("source") or {}).get("component") or e.get("reportingComponent") or "",
             e.get("message")] for e in ordered]
    return ["Events:", *indented_table(["Type", "Reason", "Age", "From", "Message"], rows)]


async def events_of(session: Session, obj: Mapping[str, Any]) -> list[Obj]:
    """The core/v1 Events about an object (none when they cannot be read)."""
    meta = obj.get("metadata") or {}
    selector = f"involvedObject.kind={obj.get('kind')},involvedObject.name={meta.get('name')}"
    if meta.get("namespace"):
        selector += f",involvedObject.namespace={meta['namespace']}"
    status, body = await session.kube.raw("GET", "/api/v1/events", query={"fieldSelector": selector})
    return list(body.get("items") or []) if status == 200 and isinstance(body, dict) else []


async def describe_real(session: Session, kind: Kind, resource: Resource, names: tuple[str, ...]) -> tuple[
        list[str], bool]:
    """The texts of Clusternet objects (all of the namespace when no names), and whether all were found."""
    ns = session.namespace if resource.namespaced else None
    objects: list[Obj] = []
    ok = True
    for name in names:
        try:
            objects.append(await session.kube.request("GET", resource.path(ns, name)))
        except ApiException as exc:
            click.echo(not_found_error(kind, name) if exc.status == 404 else api_error(exc), err=True)
            ok = False
    if not names:
        objects = (await session.kube.request("GET", resource.path(ns))).get("items") or []
    found = await asyncio.gather(*(events_of(session, obj) for obj in objects))
    return [describe_object(obj, evs) for obj, evs in zip(objects, found, strict=True)], ok


async def describe_templates(session: Session, kind: Kind, names: tuple[str, ...]) -> tuple[list[str], bool]:
    """The texts of templates (all of the namespace when no names), and whether all were found."""
    manifests, ok = named_templates(await list_templates(session, kind, session.namespace), names, kind)
    subscriptions = await session.list(SUBSCRIPTION) if manifests else []
    desired = await rendered_replicas(session, [m.get("template") or {} for m in manifests], subscriptions)
    return [describe_template(m, subscriptions, desired=desired) for m in manifests], ok


async def rendered_replicas(session: Session, templates: Sequence[Mapping[str, Any]],
                            subscriptions: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], int]:
    """Desired, per Subscription and cluster namespace, for the scaled templates: read from the objects the
    Subscriptions' generic Descriptions render (overrides and the Dividing split applied), as the hub's Ready
    condition does. One LIST per Subscription feeding such a template; none readable (RBAC): empty."""
    found: dict[tuple[str, str, str], int] = {}
    for template in templates:
        if not scaled(template):
            continue
        for sub in users_of(template, subscriptions):
            meta = sub.get("metadata") or {}
            selector = (f"{known.LABEL_SUBS_NAME}={meta.get('name')},"
                        f"{known.LABEL_SUBS_NAMESPACE}={meta.get('namespace')}")
            try:
                descriptions = await session.list(DESCRIPTION, selector=selector)
            except ApiException:
                continue
            feeds = (sub.get("spec") or {}).get("feeds") or []
            for desc in descriptions:
                if (desc.get("spec") or {}).get("deployer") != "Generic":
                    continue
                count = desired_replicas(feeds, desc, template)
                if count is not None:
                    found[(feed_key(template), namespaced_name(sub), str(desc["metadata"].get("namespace")))] = count
    return found


async def describe_command(session: Session, kind_name: str, names: tuple[str, ...]) -> int:
    kind_name, names = kind_and_names(kind_name, names)
    kind = await resolve_kind(session, kind_name)
    if kind.resource is not None and kind.is_clusternet:
        texts, ok = await describe_real(session, kind, kind.resource, names)
    else:
        texts, ok = await describe_templates(session, kind, names)
    if not texts and not names:
        click.echo(not_found_hint(session.namespace), err=True)
    if texts:
        click.echo("\n\n".join(texts))
    return 0 if ok else 1
