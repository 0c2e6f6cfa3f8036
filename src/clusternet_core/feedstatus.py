"""What a Subscription's status says: per-feed replica counts over clusters and whether the rollout is done.

Clusternet fills `aggregatedStatuses` with `available` meaning only "some status was synced" and never
writes `completedReleases` (reference §5). Here `available` is a real readiness verdict (rolled out and
ready, Job completed, ...), `completedReleases` counts clusters where everything is applied and ready,
and a Ready condition tells people exactly what is still missing and where.

Pure functions over the child objects' `.status` as the deployer copies them into
Description.status.manifestStatuses[].observedStatus, judged against the objects as rendered
(Description.spec.raw): the desired replica count is the rendered spec's (1 when unset, as Kubernetes
defaults it), never the reported status's. A status the child has not filled in yet (`{}` right after the
object was created, or no `observedGeneration`), or one whose observedGeneration is behind the object's
generation, says nothing about the current spec: that cluster is pending, its `available` is left out
(unknown) and it is not a completed release. Each object's own verdict is workloadready.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clusternet_api import known
from clusternet_api.rawobjects import decode_raw
from clusternet_core.rendering import apply_rank, is_helm_chart_feed
from clusternet_core.scheduling import feed_key, feed_ref, format_feed
from clusternet_core.workloadready import (
    NOT_REPORTED,
    REPLICA_FIELDS,
    desired_count,
    is_ready,
    scaled,
    workload_summary,
)

__all__ = [
    "aggregate",
    "applied",
    "desired_replicas",
    "feed_verdict",
]

Obj = Mapping[str, Any]

MAX_MESSAGE = 2048
"""Condition messages stay readable in `kubectl describe` (the API allows 32768)."""


# ---------------------------------------------------------------------------------------------------------
# Subscription status
# ---------------------------------------------------------------------------------------------------------


def _belongs(desc: Obj, subscription: Obj) -> bool:
    """Descriptions carry the subs.* labels; trust them when present, so stray inputs are ignored."""
    labels = (desc.get("metadata") or {}).get("labels") or {}
    meta = subscription.get("metadata") or {}
    for label, value in (
        (known.LABEL_SUBS_UID, meta.get("uid")),
        (known.LABEL_SUBS_NAME, meta.get("name")),
        (known.LABEL_SUBS_NAMESPACE, meta.get("namespace")),
    ):
        if label in labels and value and labels[label] != value:
            return False
    return True


def _cluster_index(clusters: Mapping[str, Obj]) -> dict[str, Obj]:
    """ManagedClusters by `<namespace>/<name>` and by namespace, whatever the caller keyed them by."""
    index: dict[str, Obj] = {}
    for cluster in clusters.values():
        meta = cluster.get("metadata") or {}
        index[f"{meta.get('namespace')}/{meta.get('name')}"] = cluster
        index.setdefault(str(meta.get("namespace")), cluster)
    return index


def _sum_replicas(statuses: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for status in statuses:
        for name, value in status.items():
            if name == "observedGeneration":
                total[name] = max(total.get(name, value), value)
            else:
                total[name] = total.get(name, 0) + value
    return {f: total[f] for f in REPLICA_FIELDS if f in total}


def _phase_problem(desc: Obj | None, what: str) -> str | None:
    """Why a Description does not (yet) stand for its current spec in the cluster, or None.

    Success for an older generation (status.observedGeneration, ours) is pending: its statuses are about
    objects as they were before.
    """
    if desc is None:
        return f"no {what} Description yet"
    status = desc.get("status") or {}
    phase = status.get("phase")
    if phase == "Failure":
        return f"{what} deploy failed: {status.get('reason') or 'no reason given'}"
    if phase != "Success":
        return f"{what} deploy {str(phase).lower() if phase else 'pending'}"
    generation, observed = (desc.get("metadata") or {}).get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and str(generation) != str(observed):
        return f"{what} deploy pending: generation {generation} not applied yet (status is for {observed})"
    return None


def _find(feed: dict[str, str], entries: Iterable[Obj]) -> Obj | None:
    """The manifest status or rendered object of a feed: the one with its key or, for a feed without a
    namespace, the only one of its kind and name (its single template's namespace: see feedresolve)."""
    candidates = list(entries)
    same = [e for e in candidates if feed_key(e) == feed_key(feed)]
    if same or feed["namespace"]:
        return same[0] if same else None
    loose = [e for e in candidates if {**feed_ref(e), "namespace": ""} == feed]
    return loose[0] if len(loose) == 1 else None


def _rendered_by_feed(feeds: list[dict[str, str]], objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Feed key -> its object in the Description's spec.raw.

    By position first: render_generic writes one object per generic feed, stably sorted by apply_rank, and an
    override may rename an object or move it to another namespace (a JSONPatch on /metadata/name), after
    which its key is not its feed's: matched by key, such a feed waited for a report for ever (the third
    audit). By key when the positions do not line up (a feed left out, a kind changed)."""
    generic = [f for f in feeds if not is_helm_chart_feed(f)]
    ordered = sorted(generic, key=apply_rank)
    pairs = list(zip(ordered, objects, strict=False))
    if len(ordered) == len(objects) and all(
            (f["apiVersion"], f["kind"]) == (o.get("apiVersion"), o.get("kind")) for f, o in pairs):
        return {feed_key(f): o for f, o in pairs}
    return {feed_key(f): dict(o) for f in generic if (o := _find(f, objects)) is not None}


def _rendered(desc: Obj | None) -> list[dict[str, Any]]:
    try:
        return decode_raw(((desc or {}).get("spec") or {}).get("raw") or [])
    except ValueError:
        return []


def desired_replicas(feeds: Iterable[Obj], desc: Obj | None, feed: Obj) -> int | None:
    """The replica count `feed`'s object is rendered with in a cluster's generic Description (its spec.replicas,
    1 when unset), what the Ready condition's `n/m ready` divides by; None when the Description does not hold
    it or its kind is not scaled by spec.replicas."""
    refs = [feed_ref(f) for f in feeds]
    rendered = _rendered_by_feed(refs, _rendered(desc)).get(feed_key(feed))
    return desired_count(rendered, "replicas") if rendered is not None and scaled(rendered) else None


def applied(desc: Obj | None) -> bool:
    """Whether a generic Description is deployed for its current generation (Success for it)."""
    return _phase_problem(desc, "generic") is None


def available_in(desc: Obj | None, feeds: Iterable[Obj], feed: Obj) -> bool:
    """Whether the generic Description `desc` deploys `feed` for its current generation and reports it available."""
    if desc is None or not applied(desc):
        return False
    ref = feed_ref(feed)
    rendered = _rendered_by_feed([feed_ref(f) for f in feeds], _rendered(desc)).get(feed_key(ref))
    statuses = (desc.get("status") or {}).get("manifestStatuses") or []
    return feed_verdict(ref, _find(feed_ref(rendered) if rendered else ref, statuses), rendered)[0] is True


def feed_verdict(feed: dict[str, str], reported: Obj | None, rendered: Obj | None) -> tuple[bool | None, str,
                                                                                           dict[str, int]]:
    """One generic feed in one cluster: available (None while unknown), why, and its replica summary.

    `reported` is its Description.status.manifestStatuses entry, `rendered` its object from spec.raw,
    which gives the desired counts (Clusternet judges nothing: its `available` only says a status came).
    """
    if reported is None:
        return None, NOT_REPORTED, {}
    generation = reported.get("generation")
    obj = {"apiVersion": feed["apiVersion"], "kind": feed["kind"],
           "metadata": {"generation": generation} if isinstance(generation, int) else {},
           "spec": (rendered or {}).get("spec") or {}, "status": reported.get("observedStatus") or {}}
    ready, reason = is_ready(obj)
    if reason == NOT_REPORTED:
        return None, reason, {}
    return ready, reason, workload_summary(obj)


def _cluster_feeds(feeds: list[dict[str, str]], descs: Mapping[str, Obj]) -> tuple[dict[str, dict[str, Any]],
                                                                                    list[str], bool]:
    """One bound cluster: per feed key its feedStatusDetails fields, what is missing, and whether a
    Description failed. `descs` holds the cluster's Descriptions by deployer (Generic, Helm)."""
    generic, helm = descs.get("Generic"), descs.get("Helm")
    problems: list[str] = []
    failed = False
    for what, deployed, needed in (
        ("generic", generic, any(not is_helm_chart_feed(f) for f in feeds)),
        ("helm", helm, any(is_helm_chart_feed(f) for f in feeds)),
    ):
        problem = _phase_problem(deployed, what) if needed else None
        if problem:
            problems.append(problem)
            failed = failed or ((deployed or {}).get("status") or {}).get("phase") == "Failure"
    reported = list(((generic or {}).get("status") or {}).get("manifestStatuses") or [])
    rendered_by_feed = _rendered_by_feed(feeds, _rendered(generic))
    entries: dict[str, dict[str, Any]] = {}
    for feed in feeds:
        desc, what = (helm, "helm") if is_helm_chart_feed(feed) else (generic, "generic")
        entry: dict[str, Any] = {}
        if _phase_problem(desc, what) is not None:
            if ((desc or {}).get("status") or {}).get("phase") == "Failure":
                entry["available"] = False  # else unknown: nothing was deployed for the current spec yet
        elif what == "helm":
            entry["available"] = True
        else:
            rendered = rendered_by_feed.get(feed_key(feed))
            report = _find(feed_ref(rendered) if rendered is not None else feed, reported)
            available, reason, replicas = feed_verdict(feed, report, rendered)
            entry.update({"available": available} if available is not None else {})
            entry.update({"replicaStatus": replicas} if replicas else {})
            if not available:
                problems.append(f"{format_feed(feed)} {reason}")
        entries[feed_key(feed)] = entry
    return entries, problems, failed


def _cluster_id(cluster: Obj, descs: Iterable[Obj]) -> str:
    """The cluster's ID: its ManagedCluster's, else the one its Descriptions carry (a cluster being removed: its
    ManagedCluster may go first); "" when neither says. An empty clusterId must be left out, not written: the
    API server 1.20 turned it into null under server-side apply and refused the whole status (HTTP 422)."""
    found = str((cluster.get("spec") or {}).get("clusterId") or "")
    for desc in descs:
        found = found or str((desc["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID) or "")
    return found


def aggregate(subscription: Obj, descriptions: Iterable[Obj], clusters: Mapping[str, Obj]) -> dict[str, Any]:
    """Subscription status fields from the bound clusters' Descriptions.

    Returns `aggregatedStatuses` (one entry per feed, summed and per cluster), `desiredReleases`,
    `completedReleases` (bound clusters where every Description is deployed for its current spec and every
    feed was reported ready) and `conditions` holding one Ready condition (type, status, reason, message; the
    caller stamps lastTransitionTime when the status changes). `clusters` holds the ManagedClusters, keyed
    any way. A per-cluster `available` is left out while the cluster has not reported on the current spec.
    """
    spec = subscription.get("spec") or {}
    feeds = [feed_ref(f) for f in spec.get("feeds") or []]
    bound = list((subscription.get("status") or {}).get("bindingClusters") or [])
    index = _cluster_index(clusters)

    by_namespace: dict[str, dict[str, Obj]] = {}
    for desc in descriptions:
        if not _belongs(desc, subscription):
            continue
        ns = str((desc.get("metadata") or {}).get("namespace") or "")
        deployer = str((desc.get("spec") or {}).get("deployer") or "")
        by_namespace.setdefault(ns, {})[deployer] = desc

    details: dict[str, list[dict[str, Any]]] = {feed_key(f): [] for f in feeds}
    done = 0
    waiting: list[str] = []
    failed = False
    for key in bound:
        ns, _, name = key.partition("/")
        cluster = index.get(key) or index.get(ns) or {}
        cluster_meta = cluster.get("metadata") or {}
        display = ((cluster_meta.get("labels") or {}).get(known.LABEL_CLUSTER_NAME)
                   or cluster_meta.get("name") or name)
        cluster_descs = by_namespace.get(ns, {})
        cluster_id = _cluster_id(cluster, cluster_descs.values())
        entries, problems, cluster_failed = _cluster_feeds(feeds, cluster_descs)
        failed = failed or cluster_failed
        silence = _silence(cluster)
        if silence:  # what it reported may no longer hold: unknown now, and its workloads are kept
            problems = [silence, *problems]
            for entry in entries.values():
                entry.pop("available", None)
        for fkey, entry in entries.items():
            details[fkey].append({**({"clusterId": cluster_id} if cluster_id else {}), "clusterName": display,
                                  **entry})
        if problems:
            waiting.append(f"{display}: {', '.join(problems)}")
        else:
            done += 1

    aggregated = []
    for feed in feeds:
        per_cluster = details[feed_key(feed)]
        summary: dict[str, Any] = {"available": bool(per_cluster) and all(d.get("available") is True
                                                                          for d in per_cluster)}
        replica_sum = _sum_replicas(d["replicaStatus"] for d in per_cluster if "replicaStatus" in d)
        if replica_sum:
            summary["replicaStatus"] = replica_sum
        item: dict[str, Any] = {"apiVersion": feed["apiVersion"], "kind": feed["kind"]}
        if feed["namespace"]:
            item["namespace"] = feed["namespace"]
        item.update({"name": feed["name"], "feedStatusSummary": summary, "feedStatusDetails": per_cluster})
        aggregated.append(item)

    return {
        "aggregatedStatuses": aggregated,
        "desiredReleases": len(bound),
        "completedReleases": done,
        "conditions": [_ready_condition(len(bound), done, waiting, failed)],
    }


def _silence(cluster: Obj) -> str | None:
    """Why a bound cluster's last report cannot be taken as its state now (its Ready condition is not True),
    or None. The hub keeps a silent cluster bound (scheduling.py), so this is the only place it shows."""
    if not cluster:
        return None
    ready = next((c for c in (cluster.get("status") or {}).get("conditions") or []
                  if c.get("type") == known.CONDITION_READY), None)
    if ready is None or ready.get("status") == "True":
        return None
    since = f" since {ready['lastTransitionTime']}" if ready.get("lastTransitionTime") else ""
    return (f"cluster not reporting (Ready {ready.get('status')}{since}): its workloads are kept, "
            "their state is unknown until it reports again")


def _ready_condition(total: int, done: int, waiting: list[str], failed: bool) -> dict[str, str]:
    if total == 0:
        return {
            "type": "Ready",
            "status": "False",
            "reason": "NoBindingClusters",
            "message": "not bound to any cluster (yet): no ManagedCluster is scheduled for this Subscription",
        }
    if not waiting:
        return {
            "type": "Ready",
            "status": "True",
            "reason": "AllReleasesReady",
            "message": f"{done}/{total} clusters done",
        }
    message = f"{done}/{total} clusters done; waiting for " + "; ".join(waiting)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {
        "type": "Ready",
        "status": "False",
        "reason": "ReleasesFailed" if failed else "ReleasesNotReady",
        "message": message,
    }
