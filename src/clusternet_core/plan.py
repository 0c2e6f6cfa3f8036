"""What one reconcile of a Subscription should write, computed without I/O from what the hub has cached.

The hub's controller (clusternet_hub/controller/subscriptions.py) calls `plan_subscription` and then
applies the returned Plan in one step: server-side applies with fixed names, so writing a plan twice
is harmless. Nothing here reads the clock or the network, so every decision is unit-testable.

ApplyLater vs ApplyNow: a Description records a hash of its inputs (the Subscription's feeds and their
templates, and for Dividing the cluster's share of the replicas). A reconcile keeps the rendered objects
while that hash is unchanged, so an ApplyLater override waits for the next change of the Subscription or
a feed; an ApplyNow override's change (or deletion) forces a re-render of the Subscriptions that deploy
its feed.

Dividing: the plan includes the Subscription's FeedInventory (feedinventory.py), schedules with its
desiredReplicas, and renders each cluster's share into its objects (rendering.ReplicaSplit) instead of
creating Clusternet's per-cluster priority-1000 Localizations. A changed template, weight, label or
binding changes some cluster's share, hence its inputs hash, so that cluster is re-rendered.

Two refusals per cluster keep what it runs: a Base name held by another Subscription is never written over
(basenames.py picks the name), and a render with failed overrides is not written (heldback.py). A cluster that
still holds the Subscription's Base or Description stays bound through NoSchedule, and its Bases go only from
clusters it no longer binds (placement.py).
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeGuard

from clusternet_api import known
from clusternet_api.apiresource import key_of as key_of  # re-exported: the hub's controller keys by it
from clusternet_api.models import FeedInventory
from clusternet_core import (
    basenames,
    dynamic,
    failover,
    feedinventory,
    feedresolve,
    heldback,
    helmrender,
    rendering,
)
from clusternet_core.dynamic import PredictionRequest
from clusternet_core.overrides import OverrideError, apply_now_digest, same_feed
from clusternet_core.placement import applying_clusters, feed_ready, holding_clusters, unbound_bases
from clusternet_core.refusals import condition, refusal_condition
from clusternet_core.scheduling import (
    InvalidSelector,
    ScheduleResult,
    UnsupportedScheduling,
    feed_key,
    feed_ref,
    schedule,
)

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace, name); namespace "" for cluster-scoped objects."""

ANNOTATION_INPUTS_HASH = "apps.clusternet.io/inputs-hash"
ANNOTATION_RENDER_ERRORS = "apps.clusternet.io/render-errors"
ANNOTATION_APPLY_NOW = "apps.clusternet.io/apply-now-overrides"  # overrides.apply_now_digest
# Description annotations the hub writes; an absent one is as much part of what it wants as a present one
OWN_ANNOTATIONS = (ANNOTATION_INPUTS_HASH, ANNOTATION_RENDER_ERRORS, ANNOTATION_APPLY_NOW,
                   known.ANNOTATION_DRIFT_CORRECTION)


class FeedRef(TypedDict):
    """One feed of a Subscription: the object it deploys (namespace "" when the feed names none)."""

    apiVersion: str
    kind: str
    namespace: str
    name: str


@dataclass
class Caches:
    """What the hub knows, fed by watch events; plans read only from here."""

    clusters: dict[Key, Obj] = field(default_factory=dict)
    subscriptions: dict[Key, Obj] = field(default_factory=dict)
    manifests: dict[str, Obj] = field(default_factory=dict)
    globalizations: dict[str, Obj] = field(default_factory=dict)
    localizations: dict[Key, Obj] = field(default_factory=dict)
    descriptions: dict[Key, Obj] = field(default_factory=dict)
    bases: dict[Key, Obj] = field(default_factory=dict)
    inventories: dict[Key, Obj] = field(default_factory=dict)
    helmcharts: dict[Key, Obj] = field(default_factory=dict)
    helmreleases: dict[Key, Obj] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    """One cluster a Subscription is bound to, and its share of divided replicas (feed key -> split)."""

    cluster: Obj
    key: str
    """`<namespace>/<name>` of the ManagedCluster, as in status.bindingClusters."""
    splits: dict[str, rendering.ReplicaSplit]
    digest: str
    """inputs_hash of what this cluster's objects are rendered from."""


@dataclass
class ClusterPlan:
    """The Base and Description of one bound cluster."""

    base: Obj
    """The Base to apply, or the cached one when it already holds all the hub wants (apply_base False)."""
    apply_base: bool
    description: Obj | None
    """The Description to apply (its owner reference completed by `owned_by` once the Base's uid is known);
    None when there is nothing for the generic deployer or the previous one is still being deleted."""
    existing: Obj | None
    """The cached Description."""
    helm_description: Obj | None = None
    """The `<base>-helm` Description to apply (owner completed like `description`), None when none is due."""
    existing_helm: Obj | None = None
    delete_descriptions: list[Obj] = field(default_factory=list)
    """Descriptions of a deployer the Subscription no longer feeds (e.g. its last HelmChart was removed), as
    cached when the plan was made: deleted only as such (review F8)."""
    errors: list[str] = field(default_factory=list)
    """Problems for the Subscription's status."""
    announce: dict[str, str] = field(default_factory=dict)
    """Description name -> its render errors, for each Description whose errors changed since it last recorded
    them: a RenderFailed event on that Description (a Helm chart's problem on the Helm one)."""
    override_errors: list[OverrideError] = field(default_factory=list)
    """Failed overrides, an OverrideFailed event on each: the generic render's when the generic Description
    announces its errors or is held back because of them, the Helm render's likewise; only those the
    Subscription's Ready condition does not already report, and each once per Subscription (once_per_failure)."""
    held_back: list[str] = field(default_factory=list)
    """Descriptions not written because overrides failed in their render (heldback.py): the cached one stays."""
    keep_bases: list[Key] = field(default_factory=list)
    """Bases of the Subscription this cluster keeps although `base` names another (a NameConflict refusal)."""


@dataclass(frozen=True)
class StatusInputs:
    """What a reconcile learnt for the Subscription's status (the rest comes from the Descriptions)."""

    bindings: list[str]
    replicas: dict[str, list[int]]
    message: str | None
    problems: list[str]
    generation: int | None = None
    """The Subscription's generation the reconcile planned from (an edit may be cached by the time it is written:
    substatus.with_planned_generation)."""
    unplaced: dict[str, int] = field(default_factory=dict)
    """Dynamic Dividing: replicas per feed that found no room (Ready False, dynamic.REASON_NO_ROOM)."""
    shortfall_note: str | None = None
    """Dynamic Dividing: what Ready says of them and of predictors that did not answer (dynamic.shortfall_note)."""
    failed_over: list[str] = field(default_factory=list)  # failover.STATUS_FAILED_OVER
    failing_back: list[str] = field(default_factory=list)  # failover.STATUS_FAILING_BACK: reports bring a reconcile


@dataclass
class Plan:
    """Everything one reconcile writes, in this order: finalizer, FeedInventory, per-cluster Bases and
    Descriptions, deletions, status."""

    action: Literal["add-finalizer", "delete", "refuse", "deploy", "predict"]
    inventory: Obj | None = None
    """FeedInventory to apply (Dividing, changed)."""
    delete_inventory: Obj | None = None
    """The Subscription no longer divides: the FeedInventory this hub wrote, as cached when the plan judged it
    this Subscription's (its ownerReference), to remove as such (review F8)."""
    clusters: list[ClusterPlan] = field(default_factory=list)
    delete_bases: list[Obj] = field(default_factory=list)
    """Bases of clusters no longer bound (Descriptions follow by owner reference), as cached when the plan was
    made: deleted only as such (review F8)."""
    refusal: Obj | None = None
    """The Ready condition of a Subscription refused as a whole; the rest of its status is brought up to date from
    the reports as usual (the hub's status.StatusWriter.write): its objects stay deployed."""
    status: StatusInputs | None = None
    predict: PredictionRequest | None = None
    """Action "predict": plan again with the answers (dynamic.Predictions)."""


def subscription_feeds(sub: Obj) -> list[FeedRef]:
    refs = (feed_ref(f) for f in (sub.get("spec") or {}).get("feeds") or [])
    return [FeedRef(apiVersion=r["apiVersion"], kind=r["kind"], namespace=r["namespace"], name=r["name"])
            for r in refs]


def inputs_hash(sub_spec: Obj, templates: Mapping[str, Obj], replicas: dict[str, int] | None = None) -> str:
    """Changes when the Subscription or one of its feeds changes (what ApplyLater overrides wait for), or
    when the cluster's share of divided replicas (feed key -> count) changes."""
    inputs: dict[str, Any] = {"spec": sub_spec,
                              "templates": {k: v.get("template") for k, v in sorted(templates.items())}}
    if replicas:  # left out otherwise, so Replication hashes stay what they were
        inputs["replicas"] = replicas
    data = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def needs_apply(existing: Obj | None, body: Obj) -> bool:
    """Would applying `body` (the hub's whole intent for a Base or Description) change `existing`?

    A reconcile re-applies every bound cluster's Base and Description, and resyncs and cluster changes
    reconcile often; a no-op server-side apply still costs the parent a write's worth of work, so the hub
    compares with its cache instead. The hub owns spec outright; of the metadata it compares what it sets.
    """
    if existing is None:
        return True
    meta, want = existing.get("metadata") or {}, body["metadata"]
    if existing.get("spec") != body.get("spec"):
        return True
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if any(labels.get(k) != v for k, v in (want.get("labels") or {}).items()):
        return True
    if "annotations" in want and any(annotations.get(k) != want["annotations"].get(k) for k in OWN_ANNOTATIONS):
        return True
    owners = meta.get("ownerReferences") or []
    return any(f not in (meta.get("finalizers") or []) for f in want.get("finalizers") or []) or any(
        ref not in owners for ref in want.get("ownerReferences") or [])


def override_targets(override: Obj, sub: Obj) -> bool:
    """Does this Localization/Globalization select one of the Subscription's feeds?"""
    target = (override.get("spec") or {}).get("feed") or {}
    try:
        ref = feed_ref(target)
    except (KeyError, TypeError, ValueError):
        return False
    return any(same_feed(ref, f) for f in subscription_feeds(sub))


def labels(sub: Obj, mc: Obj) -> dict[str, str]:
    meta = sub["metadata"]
    mc_labels = mc["metadata"].get("labels") or {}
    return {known.LABEL_SUBS_UID: meta["uid"], known.LABEL_SUBS_NAME: meta["name"],
            known.LABEL_SUBS_NAMESPACE: meta["namespace"],
            known.LABEL_CLUSTER_ID: str((mc.get("spec") or {}).get("clusterId") or ""),
            known.LABEL_CLUSTER_NAME: mc_labels.get(known.LABEL_CLUSTER_NAME, mc["metadata"]["name"])}


def base_body(sub: Obj, mc: Obj, feeds: list[FeedRef], name: str | None = None) -> Obj:
    """The Base named `name` (basenames.choose_base_name), by default the Subscription's 5-digit name."""
    meta = sub["metadata"]
    return {
        "apiVersion": known.APPS_API_VERSION, "kind": "Base",
        "metadata": {"name": name or rendering.base_name(meta["name"], subscription_namespace=meta["namespace"]),
                     "namespace": mc["metadata"]["namespace"], "labels": labels(sub, mc)},
        # empty strings left out: kube-apiserver 1.20 turns "" into null when applying a custom resource
        "spec": {"feeds": [{k: v for k, v in f.items() if v} for f in feeds]},
    }


def owned_by(description: Obj, base: Obj) -> Obj:
    """The Description with its owner reference to the (applied) Base."""
    owner = {"apiVersion": known.APPS_API_VERSION, "kind": "Base", "name": base["metadata"]["name"],
             "uid": base["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    return {**description, "metadata": {**description["metadata"], "ownerReferences": [owner]}}


def plan_subscription(sub: Obj, caches: Caches, force: bool, fail_over: bool = False,
                      predictions: dynamic.Predictions | None = None,
                      back_for: Callable[[str], float] | None = None) -> Plan:
    """What to write for the Subscription `sub` (as cached): see Plan. `fail_over`: the FailOver gate
    (failover.py), and `back_for` the seconds since the hub heard a cluster (binding key) again (placement.feed_ready;
    None: its reports count at once and are waited for without end). `predictions`: the answers to the
    PredictionRequest of an earlier plan (Dynamic Dividing)."""
    meta = sub["metadata"]
    if meta.get("deletionTimestamp"):  # delete the Bases; do not wait for offline clusters
        return Plan("delete", delete_bases=unbound_bases(sub, caches.bases.values(), set(), caches.descriptions))
    if known.FINALIZER_APPS not in (meta.get("finalizers") or []):
        return Plan("add-finalizer")  # the update event brings the Subscription back
    feeds = subscription_feeds(sub)
    resolved = feedresolve.resolve_feeds(feeds, caches.manifests.values())
    refused = refusal_condition(feeds, resolved, caches.globalizations.values())
    if refused is not None:  # refused as a whole, like an invalid one: nothing deployed changes
        return Plan("refuse", refusal=refused)
    templates = resolved.templates
    cached_inventory = caches.inventories.get(key_of(sub))
    inventory, inventory_body, owned_gone = feedinventory.plan_inventory(sub, templates, cached_inventory)
    plan = Plan("deploy", inventory=inventory_body, delete_inventory=cached_inventory if owned_gone else None)
    clusters = list(caches.clusters.values())  # those holding its objects stay bound through NoSchedule: placement
    if predictions is not None:  # dynamic.APPLYING
        holding = {key for feed in (inventory.desired_replicas() if inventory else {})
                   for key, share in failover.previous_shares(sub, feed).items() if share > 0}
        predictions = {**predictions, **dict.fromkeys(applying_clusters(sub, caches.clusters, caches.descriptions,
                                                                        holding), dynamic.APPLYING)}
    try:
        result = schedule(sub, clusters, inventory.desired_replicas() if inventory else None,
                          holding_clusters(sub, clusters, caches.bases, caches.descriptions), fail_over, predictions,
                          feed_ready(sub, caches.descriptions, caches.clusters, back_for))
    except (InvalidSelector, UnsupportedScheduling, ValueError) as e:
        plan.action, plan.refusal = "refuse", condition("False", "InvalidSubscription", str(e))
        return plan
    if result.predict and inventory is not None:
        plan.action = "predict"
        plan.predict = prediction_request(result, caches, inventory.inventory)
        return plan
    bindings = []
    for p in result.clusters:
        mc = caches.clusters.get((p.namespace, p.name))
        if mc is None:
            continue
        splits = feedinventory.replica_splits(result.replicas, result.binding_clusters, p.key, inventory.inventory,
                                              "/".join(key_of(sub))) if inventory else {}
        digest = inputs_hash(sub.get("spec") or {}, templates, {k: s.replicas for k, s in splits.items()})
        bindings.append(Binding(mc, p.key, splits, digest))
    localizations: dict[str, list[Obj]] = collections.defaultdict(list)  # by cluster namespace
    for (loc_ns, _), loc in caches.localizations.items():
        localizations[loc_ns].append(loc)
    globalizations = list(caches.globalizations.values())
    plan.clusters = [plan_cluster(sub, b, feeds, templates, force, caches, globalizations,
                                  localizations[b.cluster["metadata"]["namespace"]]) for b in bindings]
    once_per_failure(plan.clusters)
    bound = {key_of(c.base) for c in plan.clusters} | {k for c in plan.clusters for k in c.keep_bases}
    plan.delete_bases = unbound_bases(sub, caches.bases.values(), bound, caches.descriptions)
    problems = list(inventory.problems) if inventory else []
    problems += [e for c in plan.clusters for e in c.errors]
    problems = list(dict.fromkeys(problems))  # a chart that cannot be found is the same error for every cluster
    plan.status = StatusInputs(result.binding_clusters, result.replicas, result.message, problems,
                               sub["metadata"].get("generation"), result.unplaced,
                               dynamic.shortfall_note(result.unplaced, result.unanswered), result.failed_over,
                               result.failing_back)
    return plan


def prediction_request(result: ScheduleResult, caches: Caches, inventory: FeedInventory) -> PredictionRequest:
    """The bound clusters to ask (not the silent ones a failover moves replicas from), and the requirements of one
    replica of each feed `result.predict` lists."""
    clusters = [(p.key, mc) for p in result.clusters if p.key not in result.not_asked
                and (mc := caches.clusters.get((p.namespace, p.name)))]
    requirements = {order.key(): order.replica_requirements.to_dict() if order.replica_requirements else {}
                    for order in inventory.spec.feeds if order.key() in result.predict}
    return PredictionRequest(clusters, requirements)


def plan_cluster(sub: Obj, binding: Binding, feeds: list[FeedRef], templates: Mapping[str, Obj], force: bool,
                 caches: Caches, globalizations: list[Obj], localizations: list[Obj]) -> ClusterPlan:
    mc = binding.cluster
    ns = mc["metadata"]["namespace"]
    chosen = basenames.choose_base_name(sub, ns, caches.bases, caches.descriptions)
    body = base_body(sub, mc, feeds, chosen.name)
    if chosen.name is None:  # held by other Subscriptions: write nothing, keep whatever of ours is there
        return ClusterPlan(body, False, None, None, errors=[str(chosen.conflict)],
                           keep_bases=[(ns, n) for n in chosen.candidates])
    cached_base = caches.bases.get(key_of(body))
    unchanged = cached_base is not None and not cached_base["metadata"].get("deletionTimestamp") and not needs_apply(
        cached_base, body)
    name = rendering.description_name(body["metadata"]["name"], "Generic")
    existing = caches.descriptions.get((ns, name))
    plan = ClusterPlan(cached_base if unchanged and cached_base else body, not unchanged, None, existing)
    if existing is not None and existing["metadata"].get("deletionTimestamp"):
        plan.errors = [being_deleted(ns, name)]
        return plan
    rendered = rendering.render_generic(feeds, templates, mc, globalizations, localizations,
                                        binding.splits)
    now = apply_now_digest(rendering.resolved_feeds([f for f in feeds if not rendering.is_helm_chart_feed(f)],
                                                    templates), mc, globalizations, localizations)
    keep = not force and unchanged_inputs(existing, binding.digest, now)
    held = bool(rendered.override_errors) and not keep
    plan.errors = generic_errors = rendered.all_errors() + ([heldback.note(ns, name, existing)] if held else [])
    helm = plan_helm(plan, sub, binding, feeds, force, caches, globalizations, localizations)
    helm_errors = helm.all_errors() if helm else []
    raw = (existing.get("spec") or {}).get("raw") if keep and existing else rendered.encoded_raw()
    if held:  # heldback.py: the cluster keeps its Description (or gets none yet) until the overrides apply
        plan.held_back.append(name)
    elif not raw and not rendered.items:  # only Helm feeds: a Generic Description left from before goes
        if deletable(existing) and not any(not rendering.is_helm_chart_feed(f) for f in feeds):
            plan.delete_descriptions.append(existing)
    else:
        plan.description = description_body(sub, mc, name, binding.digest, generic_errors,
                                            {"deployer": "Generic", "raw": raw}, now)
    plan.announce = announcements(((plan.description, existing, generic_errors),
                                   (plan.helm_description, plan.existing_helm, helm_errors)))

    def to_report(body: Obj | None, desc_name: str, errors: list[OverrideError]) -> list[OverrideError]:
        # Both ways check the Ready condition: an ApplyNow override's forced reconcile holds the Description back
        # and reports; the next, unforced, one keeps the old inputs (overrides are not in the inputs hash) and
        # writes the kept Description with the errors in its annotation: the same failure, a second event (the
        # sixth audit saw two OverrideFailed events per failing override).
        if (body is not None and body["metadata"]["name"] in plan.announce) or desc_name in plan.held_back:
            return heldback.unreported(ready_of(sub), errors)
        return []

    helm_name = rendering.description_name(plan.base["metadata"]["name"], "Helm")
    plan.override_errors = [*to_report(plan.description, name, rendered.override_errors),
                            *(to_report(plan.helm_description, helm_name, helm.override_errors) if helm else [])]
    return plan


def once_per_failure(clusters: list[ClusterPlan]) -> None:
    """A Globalization that fails the same way in every cluster it selects is one failure: one OverrideFailed
    event, on the first cluster's plan (its message names no cluster)."""
    seen: set[tuple[str, str | None, str, str]] = set()
    for cluster in clusters:
        errors = []
        for error in cluster.override_errors:
            if (key := (error.kind, error.namespace, error.name, error.message)) not in seen:
                seen.add(key)
                errors.append(error)
        cluster.override_errors = errors


def announcements(pairs: Iterable[tuple[Obj | None, Obj | None, list[str]]]) -> dict[str, str]:
    """Description name -> its errors, for each (Description to write, cached one, its own render errors)
    whose errors differ from those the cached one records (ANNOTATION_RENDER_ERRORS)."""
    found = {}
    for body, cached, errors in pairs:
        before = (((cached or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RENDER_ERRORS)
        if body is not None and errors and body["metadata"]["annotations"][ANNOTATION_RENDER_ERRORS] != before:
            found[body["metadata"]["name"]] = "; ".join(errors)
    return found


def unchanged_inputs(existing: Obj | None, digest: str, apply_now: str) -> bool:
    """Whether `existing` was rendered from these inputs and ApplyNow overrides (overrides.apply_now_digest):
    then it is kept as it is, and an ApplyLater override waits for the next change. A Description written before
    the ApplyNow record existed counts as up to date: its objects are kept (an ApplyLater change pending at the
    upgrade still waits), and the record is added to it (one write of each at the upgrade)."""
    annotations = (existing["metadata"].get("annotations") or {}) if existing is not None else {}
    return existing is not None and annotations.get(ANNOTATION_INPUTS_HASH) == digest and (
        annotations.get(ANNOTATION_APPLY_NOW) in (None, apply_now))


def description_body(sub: Obj, mc: Obj, name: str, digest: str, errors: list[str], spec: Obj,
                     apply_now: str) -> Obj:
    annotations = {ANNOTATION_INPUTS_HASH: digest, ANNOTATION_RENDER_ERRORS: "; ".join(errors)[:4000],
                   ANNOTATION_APPLY_NOW: apply_now}
    if (sub["metadata"].get("annotations") or {}).get(known.ANNOTATION_DRIFT_CORRECTION) == "false":
        annotations[known.ANNOTATION_DRIFT_CORRECTION] = "false"
    return {
        "apiVersion": known.APPS_API_VERSION, "kind": "Description",
        "metadata": {"name": name, "namespace": mc["metadata"]["namespace"], "labels": labels(sub, mc),
                     "annotations": annotations, "finalizers": [known.FINALIZER_APPS]},
        "spec": spec,
    }


def chart_inputs(feeds: list[FeedRef], caches: Caches) -> dict[str, Obj]:
    """Feed key -> cached HelmChart, for the Subscription's HelmChart feeds."""
    found = {}
    for f in feeds:
        if rendering.is_helm_chart_feed(f):
            chart = caches.helmcharts.get((f["namespace"], f["name"]))
            if chart is not None:
                found[feed_key(f)] = chart
    return found


REASON_PREVIOUS_DELETING = "PreviousDescriptionDeleting"


def being_deleted(namespace: str, name: str) -> str:
    """The Subscription's problem while a Description of its name is being deleted: nothing failed (the fifth
    audit read "RenderFailed ... still being cleaned up" during an agent outage as workloads being removed), the
    cluster's deployer lets it go, keeping what it deployed while the Subscription still wants it, or cleans up."""
    return (f"{REASON_PREVIOUS_DELETING}: {namespace}/{name} is being deleted; it is written again once the "
            "cluster's deployer has let it go (what it deployed stays while this Subscription still wants it)")


def deletable(desc: Obj | None) -> TypeGuard[Obj]:
    """A Description to delete: one that exists and is not being deleted already (a DELETE at every reconcile
    while its cleanup runs would change nothing)."""
    return desc is not None and not desc["metadata"].get("deletionTimestamp")


def plan_helm(plan: ClusterPlan, sub: Obj, binding: Binding, feeds: list[FeedRef], force: bool, caches: Caches,
              globalizations: list[Obj], localizations: list[Obj]) -> helmrender.HelmRenderResult | None:
    """The cluster's `<base>-helm` Description, kept while its inputs are unchanged (ApplyLater), removed
    when the Subscription no longer feeds a HelmChart. Returns the Helm render (None when there was none)."""
    mc = binding.cluster
    name = rendering.description_name(plan.base["metadata"]["name"], "Helm")
    existing = plan.existing_helm = caches.descriptions.get((mc["metadata"]["namespace"], name))
    if not any(rendering.is_helm_chart_feed(f) for f in feeds):
        if deletable(existing):
            plan.delete_descriptions.append(existing)
        return None
    if existing is not None and existing["metadata"].get("deletionTimestamp"):
        plan.errors = [*plan.errors, being_deleted(key_of(existing)[0], name)]  # a new list: the generic
        # Description's own errors (its annotation and events) must not take this in
        return None
    charts = chart_inputs(feeds, caches)
    digest = inputs_hash(sub.get("spec") or {}, {k: {"template": {"spec": c.get("spec"), "phase": (
        helmrender.check_phase(c))}} for k, c in charts.items()})  # the check of a new spec is an input too
    rendered = helmrender.render_helm(feeds, charts, mc, globalizations, localizations, existing)
    now = apply_now_digest([f for f in feeds if rendering.is_helm_chart_feed(f)], mc, globalizations, localizations)
    keep = not force and unchanged_inputs(existing, digest, now)
    held = bool(rendered.override_errors) and not keep  # a reverted value or version: heldback.py
    errors = rendered.all_errors() + ([heldback.note(mc["metadata"]["namespace"], name, existing)] if held else [])
    plan.errors = plan.errors + errors
    spec = existing.get("spec") if keep and existing else rendered.spec()
    if held:
        plan.held_back.append(name)
    elif spec and spec.get("charts"):
        plan.helm_description = description_body(sub, mc, name, digest, errors, dict(spec), now)
    return rendered


def ready_of(sub: Obj) -> Obj:
    found: Obj = next((c for c in (sub.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    return found
