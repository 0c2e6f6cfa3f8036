"""Where a Subscription's feeds go: label selectors, taint tolerations and replica division.

Pure functions over plain dicts as the apiserver returns them (kopf bodies, JSON), so the scheduler
controller stays a thin loop around them and every decision can be unit-tested without a cluster.

Semantics follow Clusternet's default scheduler (reference §7): the candidate clusters are the union of
the clusters matched by any subscriber's `clusterAffinity`, NoSchedule/NoExecute taints filter them
against `clusterTolerations`, every survivor is bound (Replication), and for Static Dividing each feed's
replicas are split by cluster weight; for Dynamic Dividing by what each cluster's predictor says it can take
(dynamic.py).

Taint effects are Kubernetes' own: `NoSchedule` keeps a Subscription off a cluster it is not bound to yet
and never evicts what is already bound there (`status.bindingClusters`); only an untolerated `NoExecute`
taint, or a user's change of labels, affinity or tolerations, unbinds. The hub taints a silent cluster
NoSchedule, so an agent or parent outage never removes what a cluster runs (Clusternet's scheduler
filters bound and unbound clusters alike, so an outage longer than its grace period redeploys). With the
FailOver gate, the other clusters take a silent one's divided replicas on meanwhile (failover.py).

"Already bound" is wider than the status: a cluster that still holds a Base or Description of the
Subscription (one being deleted too) is bound there as well (`holding`). A silent cluster unbound by a
short-lived change (an affinity typo fixed a minute later, a relabel undone) keeps its Description, deleting
with its cleanup pending until the cluster returns; if NoSchedule kept it off once the change was undone, that
cleanup would run on its return and delete workloads the Subscription wants again (review finding F7).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from clusternet_core import dynamic, failover

Obj = Mapping[str, Any]

__all__ = [
    "ClusterPlacement",
    "InvalidSelector",
    "ScheduleResult",
    "UnsupportedScheduling",
    "binding_key",
    "check_label_selector",
    "cluster_tolerated",
    "divide_replicas",
    "feed_key",
    "feed_ref",
    "format_feed",
    "label_selector_matches",
    "schedule",
    "tolerates",
    "untolerated_taints",
]

FILTERING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
"""Taint effects that keep a Subscription off a cluster; PreferNoSchedule only lowers its score."""
EVICTING_EFFECTS = frozenset({"NoExecute"})
"""Taint effects that also unbind a cluster the Subscription is already bound to."""


class InvalidSelector(ValueError):
    """A LabelSelector the apiserver would reject (bad operator, values where none belong, ...)."""


class UnsupportedScheduling(ValueError):
    """A scheduling mode this implementation deliberately does not run."""


# ---------------------------------------------------------------------------------------------------------
# Feeds
# ---------------------------------------------------------------------------------------------------------


def feed_ref(obj: Obj) -> dict[str, str]:
    """The Feed fields (apiVersion, kind, namespace, name) of a Feed dict or of a full object.

    Lets callers pass either `spec.feeds[i]`, a Manifest template or a rendered child object.
    """
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        namespace, name = meta.get("namespace"), meta.get("name")
    else:
        namespace, name = obj.get("namespace"), obj.get("name")
    return {
        "apiVersion": str(obj.get("apiVersion") or ""),
        "kind": str(obj.get("kind") or ""),
        "namespace": str(namespace or ""),
        "name": str(name or ""),
    }


def feed_key(feed: Obj) -> str:
    """`apiVersion/Kind[/namespace]/name`: Clusternet's key in Subscription.status.replicas."""
    ref = feed_ref(feed)
    parts = [ref["apiVersion"], ref["kind"]]
    if ref["namespace"]:
        parts.append(ref["namespace"])
    parts.append(ref["name"])
    return "/".join(parts)


def format_feed(feed: Obj) -> str:
    """`Kind ns/name` (or `Kind name`), the way messages for people name a feed."""
    ref = feed_ref(feed)
    where = f"{ref['namespace']}/{ref['name']}" if ref["namespace"] else ref["name"]
    return f"{ref['kind']} {where}"


# ---------------------------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------------------------


def label_selector_matches(selector: Obj | None, labels: Mapping[str, str] | None) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression must hold.

    `{}` matches everything; `None` matches nothing (a subscriber without affinity selects no cluster,
    as in Kubernetes' LabelSelectorAsSelector). Invalid selectors raise InvalidSelector rather than
    silently matching nothing, so the caller can tell the user what is wrong.
    """
    if selector is None:
        return False
    check_label_selector(selector)
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression_matches(expr, labels) for expr in selector.get("matchExpressions") or [])


def check_label_selector(selector: Any) -> None:
    """Raise InvalidSelector for any broken part of the selector, whatever the labels it would be matched with.

    Matching stops at the first requirement that fails, so without this check a broken expression after a
    non-matching label went unnoticed for some clusters and failed for others: whether a selector is usable
    must not depend on the cluster (a Globalization's refuses its Subscriptions, refusals.refusal_condition)."""
    if not isinstance(selector, Mapping):
        raise InvalidSelector(f"label selector must be an object, got {type(selector).__name__}")
    if not isinstance(selector.get("matchLabels") or {}, Mapping):
        raise InvalidSelector("matchLabels must be an object of key: value")
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise InvalidSelector("matchExpressions must be a list")
    for expr in expressions:
        _expression_matches(expr, {})


def _expression_matches(expr: Any, labels: Mapping[str, str]) -> bool:
    if not isinstance(expr, Mapping):
        raise InvalidSelector(f"matchExpressions entry must be an object, got {expr!r}")
    key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if not key or not isinstance(key, str):
        raise InvalidSelector(f"matchExpressions entry {dict(expr)!r} has no key")
    if not isinstance(values, list):
        raise InvalidSelector(f"matchExpressions key {key!r}: values must be a list")
    if operator in ("In", "NotIn"):
        if not values:
            raise InvalidSelector(f"matchExpressions key {key!r}: operator {operator} needs at least one value")
        present = key in labels
        if operator == "In":
            return present and labels[key] in values
        return not present or labels[key] not in values
    if operator in ("Exists", "DoesNotExist"):
        if values:
            raise InvalidSelector(f"matchExpressions key {key!r}: operator {operator} takes no values")
        return bool((key in labels) == (operator == "Exists"))
    raise InvalidSelector(
        f"matchExpressions key {key!r}: unknown operator {operator!r} (use In, NotIn, Exists or DoesNotExist)"
    )


# ---------------------------------------------------------------------------------------------------------
# Taints and tolerations
# ---------------------------------------------------------------------------------------------------------


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Whether any toleration tolerates the taint (corev1 Toleration.ToleratesTaint semantics).

    An empty effect tolerates every effect; operator Exists with an empty key tolerates every taint;
    operator Equal (or empty) needs the same key and value.
    """
    return any(_toleration_matches(t, taint) for t in tolerations)


def _toleration_matches(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taints(cluster: Obj, tolerations: Iterable[Obj] | None) -> list[dict[str, Any]]:
    """The NoSchedule/NoExecute taints of a ManagedCluster that no toleration covers."""
    tols = list(tolerations or [])
    taints = (cluster.get("spec") or {}).get("taints") or []
    return [dict(t) for t in taints if t.get("effect") in FILTERING_EFFECTS and not tolerates(tols, t)]


def cluster_tolerated(cluster: Obj, tolerations: Iterable[Obj] | None) -> bool:
    """Whether a Subscription with these tolerations may be scheduled to the ManagedCluster."""
    return not untolerated_taints(cluster, tolerations)


def _taint_text(taint: Obj) -> str:
    value = taint.get("value")
    return f"{taint.get('key')}{'=' + str(value) if value else ''}:{taint.get('effect')}"


# ---------------------------------------------------------------------------------------------------------
# Scheduling
# ---------------------------------------------------------------------------------------------------------


def binding_key(cluster: Obj) -> str:
    """`<namespace>/<name>` of a ManagedCluster, the form of Subscription.status.bindingClusters."""
    meta = cluster.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclass(frozen=True)
class ClusterPlacement:
    """One bound cluster and why it was chosen."""

    key: str
    """`<namespace>/<name>` as in bindingClusters."""
    namespace: str
    name: str
    cluster_id: str
    weight: int
    """Sum of the weights of the subscribers that match this cluster."""
    subscribers: tuple[int, ...]
    """Indexes in spec.subscribers whose clusterAffinity matched."""
    preferred_against: int = 0
    """PreferNoSchedule taints no toleration covers: what Clusternet's TaintToleration score counts."""


@dataclass
class ScheduleResult:
    """What the binder writes to Subscription.status, plus explanations for people."""

    binding_clusters: list[str] = field(default_factory=list)
    """Sorted `<namespace>/<name>` strings."""
    replicas: dict[str, list[int]] = field(default_factory=dict)
    """Per feed key, replicas aligned with binding_clusters (Dividing only; empty for Replication)."""
    clusters: list[ClusterPlacement] = field(default_factory=list)
    """Aligned with binding_clusters."""
    filtered: dict[str, str] = field(default_factory=dict)
    """Clusters matched by a subscriber but filtered out, with the reason."""
    kept: dict[str, str] = field(default_factory=dict)
    """Bound clusters that stay bound although a NoSchedule taint would keep a new binding off, with it."""
    message: str | None = None
    """Set when the outcome deserves an explanation (nothing matched, weights all zero, ...)."""
    failed_over: list[str] = field(default_factory=list)
    """Silent bound clusters whose replicas the others took on (Dividing with the FailOver gate: failover.py)."""
    failing_back: list[str] = field(default_factory=list)
    """Clusters that report again, whose share the others keep until it is available there (failover.failback_split)."""
    predict: list[str] = field(default_factory=list)
    """Dynamic Dividing: feeds whose scale-up needs the bound clusters' predictions, which were not given."""
    not_asked: list[str] = field(default_factory=list)
    """Dynamic Dividing: silent clusters a failover moves replicas from, whose predictors are not asked."""
    unplaced: dict[str, int] = field(default_factory=dict)
    """Dynamic Dividing: per feed key, the replicas no bound cluster had room for."""
    unanswered: dict[str, str] = field(default_factory=dict)
    """Dynamic Dividing: bound clusters whose predictor did not answer, with why."""


def schedule(
    subscription: Obj,
    clusters: Iterable[Obj],
    feed_replicas: Mapping[str, int] | None = None,
    holding: Collection[str] = (),
    fail_over: bool = False,
    predictions: dynamic.Predictions | None = None,
    ready: Callable[[str, str], bool] | None = None,
) -> ScheduleResult:
    """Bind a Subscription to ManagedClusters and, for Dividing, split each feed's replicas.

    `feed_replicas` maps feed keys to desired replica counts (FeedInventory's desiredReplicas); feeds
    without an entry get `[]`, like Clusternet. ManagedClusters being deleted are never candidates.
    Clusters in the Subscription's `status.bindingClusters`, and those in `holding` (binding keys of the
    clusters that still hold one of its Bases or Descriptions, module docstring), stay bound through
    NoSchedule taints. `fail_over` (the FailOver gate): while such a cluster is silent, the others divide each
    feed's whole count (failover.py), and when it reports again they keep it until `ready(binding key, feed key)`
    says its own share is available there (none given: at once). `predictions`: for Dynamic Dividing, what each
    bound cluster can still take (dynamic.py); without them a scale-up is not divided, and the feeds that need them
    are listed in `predict`.
    Raises UnsupportedScheduling for a strategy we do not implement and InvalidSelector for a broken
    clusterAffinity.
    """
    spec = subscription.get("spec") or {}
    strategy = spec.get("schedulingStrategy") or "Replication"
    dividing_type = (spec.get("dividingScheduling") or {}).get("type") or "Static"
    if strategy not in ("Replication", "Dividing"):
        raise UnsupportedScheduling(f"unknown schedulingStrategy {strategy!r} (use Replication or Dividing)")
    if strategy == "Dividing" and dividing_type not in ("Static", "Dynamic"):
        raise UnsupportedScheduling(f"dividingScheduling.type {dividing_type!r} is not supported (use Static or "
                                    "Dynamic)")
    dynamic_strategy = ((spec.get("dividingScheduling") or {}).get("dynamicDividing") or {}).get("strategy")
    if strategy == "Dividing" and dividing_type == "Dynamic" and dynamic_strategy not in (None, "", "Spread"):
        raise UnsupportedScheduling(f"dynamicDividing.strategy {dynamic_strategy!r} is not supported: only Spread "
                                    "is (Clusternet declares Binpack and does not implement it either)")

    subscribers = list(spec.get("subscribers") or [])
    tolerations = list(spec.get("clusterTolerations") or [])
    already_bound = set((subscription.get("status") or {}).get("bindingClusters") or []) | set(holding)
    result = ScheduleResult()
    placements: list[ClusterPlacement] = []
    silent: set[str] = set()
    for cluster in clusters:
        meta = cluster.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        labels = meta.get("labels") or {}
        matched: list[int] = []
        for i, sub in enumerate(subscribers):
            try:
                if label_selector_matches(sub.get("clusterAffinity"), labels):
                    matched.append(i)
            except InvalidSelector as exc:
                raise InvalidSelector(f"spec.subscribers[{i}].clusterAffinity: {exc}") from exc
        if not matched:
            continue
        key = binding_key(cluster)
        blocking = untolerated_taints(cluster, tolerations)
        reason = "untolerated taint " + ", ".join(_taint_text(t) for t in blocking)
        if blocking and (key not in already_bound or any(t.get("effect") in EVICTING_EFFECTS for t in blocking)):
            result.filtered[key] = reason
            continue
        if blocking:
            result.kept[key] = reason
            if failover.silent(cluster, blocking):
                silent.add(key)
        placements.append(
            ClusterPlacement(
                key=key,
                namespace=str(meta.get("namespace") or ""),
                name=str(meta.get("name") or ""),
                cluster_id=str((cluster.get("spec") or {}).get("clusterId") or ""),
                weight=sum(int(subscribers[i].get("weight") or 0) for i in matched),
                subscribers=tuple(matched),
                preferred_against=sum(1 for t in (cluster.get("spec") or {}).get("taints") or []
                                      if t.get("effect") == "PreferNoSchedule" and not tolerates(tolerations, t)),
            )
        )

    if spec.get("schedulingBySubGroup"):
        placements = by_subgroup(placements, subscribers, already_bound)
    placements.sort(key=lambda p: p.key)
    result.clusters = placements
    result.binding_clusters = [p.key for p in placements]
    if not placements:
        result.message = _no_cluster_message(len(subscribers), result.filtered)
        if strategy == "Dividing":
            result.replicas = {feed_key(f): [] for f in spec.get("feeds") or []}
        return result

    silent = silent if fail_over else set()
    status = subscription.get("status") or {}
    returning = {*(status.get(failover.STATUS_FAILED_OVER) or []), *(status.get(failover.STATUS_FAILING_BACK)
                                                                      or [])} - silent
    if strategy == "Dividing" and dividing_type == "Dynamic":
        divide_dynamically(subscription, result, feed_replicas or {}, predictions, silent, returning,
                           ready if fail_over else None)
    elif strategy == "Dividing":
        weights, keys = [p.weight for p in placements], [p.key for p in placements]
        replicas_by_feed = feed_replicas or {}
        if sum(weights) == 0:
            result.message = "every matching subscriber has weight 0, so no replicas were divided"
        for feed in spec.get("feeds") or []:
            key = feed_key(feed)
            desired = replicas_by_feed.get(key)
            if desired is None or sum(weights) == 0:
                result.replicas[key] = []
                continue
            previous = failover.previous_shares(subscription, key)
            moved = failover.failover_split(desired, keys, weights, silent, previous, divide_replicas)
            result.replicas[key] = moved if moved is not None else divide_replicas(desired, weights)
            if moved is not None:  # a silent cluster without a share has nothing taken on
                result.failed_over = sorted({*result.failed_over, *(k for k, n in zip(keys, moved, strict=True)
                                                                     if k in silent and n > 0)})
            hold_back(result, key, desired, previous, silent, returning, ready if fail_over else None)
    return result


def hold_back(result: ScheduleResult, feed: str, desired: int, previous: Mapping[str, int],
              silent: Collection[str], returning: Collection[str], ready: Callable[[str, str], bool] | None) -> None:
    """Keep the shares a failover gave until the clusters that report again run theirs (failover.failback_split)."""
    if ready is None or not result.replicas.get(feed):
        return
    result.replicas[feed], awaited = failover.failback_split(desired, result.binding_clusters, result.replicas[feed],
                                                             previous, silent, returning, ready, feed)
    result.failing_back = sorted(set(result.failing_back) | set(awaited))


def divide_dynamically(subscription: Obj, result: ScheduleResult, feed_replicas: Mapping[str, int],
                       predictions: dynamic.Predictions | None, silent: Collection[str] = (),
                       returning: Collection[str] = (), ready: Callable[[str, str], bool] | None = None) -> None:
    """Fill `result.replicas` of a Dynamic Dividing Subscription (dynamic.py), or list in `result.predict` the
    feeds whose scale-up waits for `predictions`. `silent`, `returning` and `ready`: the FailOver gate's
    (dynamic.spread, failover.failback_split)."""
    keys = result.binding_clusters
    failing = [key for key in keys if key in silent] if any(key not in silent for key in keys) else []
    result.not_asked = failing
    for feed in (subscription.get("spec") or {}).get("feeds") or []:
        key = feed_key(feed)
        desired = feed_replicas.get(key)
        if desired is None:
            result.replicas[key] = []
            continue
        previous = failover.previous_shares(subscription, key)
        room = None if predictions is None else {k: answer[key] for k, answer in predictions.items()
                                                 if not isinstance(answer, str) and key in answer}
        split = dynamic.spread(desired, keys, previous, room, divide_replicas, failing, returning)
        if split is None:
            result.predict.append(key)
            continue
        result.replicas[key] = split.replicas
        if split.unplaced:
            result.unplaced[key] = split.unplaced
        result.failed_over = sorted({*result.failed_over, *(k for k in failing if previous.get(k, 0) > 0)})
        hold_back(result, key, desired, previous, silent, returning, ready)
    result.unanswered = {k: why for k, why in (predictions or {}).items()
                         if isinstance(why, str) and k in keys and k not in failing}


def by_subgroup(placements: list[ClusterPlacement], subscribers: list[Obj],
                already_bound: Collection[str]) -> list[ClusterPlacement]:
    """`schedulingBySubGroup`: of the clusters each subscriber selects, bind its `subGroupStrategy.minClusters`
    best, as Clusternet's scheduler does after scoring: the fewest untolerated PreferNoSchedule taints
    (Clusternet's default score), then by name. Clusters already bound stay bound, beyond `minClusters` too, as
    NoSchedule keeps them (module docstring): this setting chooses where new bindings go and never takes a
    running workload off a cluster, so a hub upgraded from before 2026-12-06 (when the setting was accepted and
    ignored, every matching cluster bound) or a lowered `minClusters` removes nothing. A subscriber without
    `minClusters` is refused, as Clusternet's scheduler fails such a Subscription."""
    keep: set[str] = set()
    for i, sub in enumerate(subscribers):
        minimum = (sub.get("subGroupStrategy") or {}).get("minClusters")
        if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
            raise UnsupportedScheduling(f"schedulingBySubGroup needs spec.subscribers[{i}].subGroupStrategy."
                                        "minClusters (a count of clusters)")
        mine = [p for p in placements if i in p.subscribers]
        bound = [p for p in mine if p.key in already_bound]
        new = sorted((p for p in mine if p.key not in already_bound), key=lambda p: (p.preferred_against, p.key))
        keep.update(p.key for p in bound + new[:max(0, minimum - len(bound))])
    return [p for p in placements if p.key in keep]


def _no_cluster_message(n_subscribers: int, filtered: Mapping[str, str]) -> str:
    if n_subscribers == 0:
        return "no subscribers: spec.subscribers is empty"
    if filtered:
        details = "; ".join(f"{k}: {why}" for k, why in sorted(filtered.items()))
        return f"no cluster available: {len(filtered)} matching cluster(s) filtered out ({details})"
    return "no ManagedCluster matches the clusterAffinity of any subscriber"


def divide_replicas(replicas: int, weights: list[int]) -> list[int]:
    """Split replicas proportionally to weights: floor(w*R/W), leftovers by largest remainder.

    Leftover replicas go to the clusters with the largest fractional share (Clusternet's static assigner),
    ties to the higher weight and then to the earlier cluster, so results are deterministic.
    Weights 1:2 with 6 replicas give [2, 4]; 1:1:2 with 5 give [1, 1, 3].
    """
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0, got {weights}")
    total = sum(weights)
    if total == 0:
        return [0] * len(weights)
    shares = [Fraction(w * replicas, total) for w in weights]
    result = [int(s) for s in shares]  # floor, shares are non-negative
    leftover = replicas - sum(result)
    order = sorted(range(len(weights)), key=lambda i: (-(shares[i] - result[i]), -weights[i], i))
    for i in order[:leftover]:
        result[i] += 1
    return result
