"""A Subscription's status: its Ready condition and what its Descriptions report, from a reconcile's findings
(plan.StatusInputs) and the hub's caches. Split from plan.py, which plans what to write; this says how it went.
"""

from __future__ import annotations

from clusternet_api import known
from clusternet_core import basenames, dynamic, failover, feedresolve, feedstatus
from clusternet_core.plan import (
    REASON_PREVIOUS_DELETING,
    Caches,
    Obj,
    StatusInputs,
    key_of,
    ready_of,
    subscription_feeds,
)
from clusternet_core.refusals import condition, refusal_condition
from clusternet_core.scheduling import feed_key

REASON_NO_MATCH = "NoMatchingCluster"
"""Ready's reason when the scheduler bound no cluster, with its message saying why. A rewrite after a report kept
it now; it used to turn it into feedstatus's vaguer NoBindingClusters, and back at each reconcile."""


def subscription_status(sub: Obj, inputs: StatusInputs | None, caches: Caches,
                        last_problems: list[str] | None = None) -> tuple[Obj, Obj]:
    """(status without conditions, Ready condition) from what the Descriptions report; `inputs` from a
    reconcile (or remembered from the last one), or None when only reports came in (the binding stays as last
    written, and so do the render problems of the last reconcile, `last_problems`: a report from a cluster must not
    turn RenderFailed into ReleasesNotReady while the override is still broken)."""
    status = dict(sub.get("status") or {})
    if inputs is not None:
        status["bindingClusters"] = inputs.bindings
        status["replicas"] = inputs.replicas or {}
        status["desiredReleases"] = len(inputs.bindings)
        for name, keys in ((failover.STATUS_FAILED_OVER, inputs.failed_over),
                           (failover.STATUS_FAILING_BACK, inputs.failing_back)):
            status.pop(name, None)
            status.update({name: keys} if keys else {})
    view = {**sub, "status": status}
    descs = [d for d in caches.descriptions.values()
             if (d["metadata"].get("labels") or {}).get(known.LABEL_SUBS_UID) == sub["metadata"]["uid"]]
    clusters = {f"{ns}/{name}": mc for (ns, name), mc in caches.clusters.items()}
    aggregated = feedstatus.aggregate(view, descs, clusters)
    ready = aggregated.pop("conditions", [{}])[0]
    if inputs is not None and inputs.message and not status.get("bindingClusters"):
        ready = condition("False", REASON_NO_MATCH, inputs.message)
    elif inputs is None and not status.get("bindingClusters") and (last := ready_of(sub)).get("reason") == \
            REASON_NO_MATCH:  # the scheduler's why, from the last reconcile: what reports do not change
        ready = condition("False", REASON_NO_MATCH, str(last.get("message") or ""))
    elif ready.get("type") and status.get("bindingClusters") and (note := unweighted_note(sub)):
        ready = {**ready, "message": f"{ready.get('message') or ''}; {note}".lstrip("; ")}
    note = failover.failover_notes(status)
    if ready.get("type") and status.get("bindingClusters") and note:
        ready = {**ready, "message": f"{ready.get('message') or ''}; {note}".lstrip("; ")}
    unplaced, note = shortfall(view, inputs, caches.inventories.get(key_of(sub)))
    if ready.get("type") and status.get("bindingClusters") and note:
        message = f"{ready.get('message') or ''}; {note}".lstrip("; ")
        ready = condition("False", dynamic.REASON_NO_ROOM, message) if unplaced else {**ready, "message": message}
    problems = inputs.problems if inputs is not None else last_problems
    if problems:
        ready = condition("False", problems_reason(problems), "; ".join(problems))
    feeds = subscription_feeds(sub)
    refused = refusal_condition(feeds, feedresolve.resolve_feeds(feeds, caches.manifests.values()),
                                caches.globalizations.values())
    if refused is not None:  # reports from what was deployed before must not turn a refusal into Ready
        ready = refused
    ready = with_planned_generation(sub, ready, inputs.generation if inputs is not None else None)
    new_status = {k: v for k, v in status.items() if k != "conditions"}
    new_status.update(aggregated)
    return new_status, ready


def shortfall(sub: Obj, inputs: StatusInputs | None, inventory: Obj | None) -> tuple[dict[str, int], str | None]:
    """Dynamic Dividing: the replicas per feed that found no room, and Ready's note on them: a reconcile's findings,
    else told from the written split and the FeedInventory (so a rewrite after a report keeps them)."""
    if inputs is not None:
        return inputs.unplaced, inputs.shortfall_note
    unplaced = dynamic.unplaced_as_written(sub, desired_counts(inventory))
    return unplaced, dynamic.shortfall_note(unplaced, {})


def desired_counts(inventory: Obj | None) -> dict[str, int]:
    """Feed key -> the FeedInventory's desiredReplicas (a FeedOrder holds its feed inline)."""
    return {feed_key(order): count for order in ((inventory or {}).get("spec") or {}).get("feeds") or []
            if isinstance(count := order.get("desiredReplicas"), int)}


REASON_SPEC_NOT_PLANNED = "SpecChangePending"


def with_planned_generation(sub: Obj, ready: Obj, planned: int | None) -> Obj:
    """Ready stamped with the generation of the spec its bindings were planned from: the one a reconcile planned
    (`planned`; not the cached Subscription's, which may hold an edit the reconcile did not see: review s36), else
    the one the last written Ready names. A report arriving after a spec edit and before its
    reconcile recomputed Ready from the old bindings: `Ready=True, 1/1 clusters done` under a spec that adds a
    cluster, so `kubectl wait --for=condition=Ready` returned before the new cluster was even bound (audit s36).
    kubectl wait skips a condition whose observedGeneration is not the object's generation; that Ready is also
    turned False, saying what it waits for. A Ready without the field (written before) is left as it was until
    the next reconcile stamps it."""
    generation = sub["metadata"].get("generation")
    if planned is None:
        planned = ready_of(sub).get("observedGeneration")
    if planned is None:
        return ready
    if planned != generation and ready.get("status") == "True":
        ready = condition("False", REASON_SPEC_NOT_PLANNED, f"generation {generation} of the spec is not planned "
                          f"yet; what is done was planned from generation {planned}")
    return {**ready, "observedGeneration": planned}


def unweighted_note(sub: Obj) -> str | None:
    """What a Dividing Subscription none of whose subscribers has a weight does, said in its Ready message: each
    cluster runs the template's full count, as in Clusternet (nothing to divide by), and `weight` is optional, so
    easily forgotten. Until 2026-12-06 the scheduler's note on it was dropped once clusters were bound, and the
    Subscription read `N/N clusters done` (audit s35). From the spec alone, so every status write says it."""
    spec = sub.get("spec") or {}
    if spec.get("schedulingStrategy") != "Dividing" or (spec.get("dividingScheduling") or {}).get(
            "type") == "Dynamic" or any(
            isinstance(s.get("weight"), int) and s["weight"] > 0 for s in spec.get("subscribers") or []):
        return None
    return "Dividing without weights: no subscriber has a weight, so no replicas are divided and each cluster " \
           "runs the template's full count"


def problems_reason(problems: list[str]) -> str:
    """NameConflict if any cluster is refused so; PreviousDescriptionDeleting if that is all; else RenderFailed."""
    if any(p.startswith(basenames.REASON_NAME_CONFLICT) for p in problems):
        return basenames.REASON_NAME_CONFLICT
    if all(p.startswith(REASON_PREVIOUS_DELETING) for p in problems):
        return REASON_PREVIOUS_DELETING
    return "RenderFailed"


def status_patch(old: Obj, new: Obj) -> dict[str, object]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: a key `new` no longer has is sent as null, in
    nested objects too (lists are replaced whole anyway). Writing `new` as it is removed nothing: a merge patch
    merges objects, so `replicas: {}` after Dividing → Replication, or without a divided feed removed, kept the old
    split for good, and status_update, comparing with the server's copy, rewrote the status at every reconcile."""
    body: dict[str, object] = {k: None for k in old if k not in new}
    for k, v in new.items():
        before = old.get(k)
        body[k] = status_patch(before, v) if isinstance(v, dict) and isinstance(before, dict) else v
    return body


def status_update(sub: Obj, status: Obj, ready: Obj, now: str) -> Obj | None:
    """The status to write (with Ready's lastTransitionTime kept unless its status flips), None when the
    Subscription already says it."""
    old = ready_of(sub)
    same = old.get("status") == ready.get("status")
    ready = {**ready, "lastTransitionTime": old.get("lastTransitionTime") if same and old else now}
    new = {**status, "conditions": [ready]}
    return None if dict(sub.get("status") or {}) == new else new
