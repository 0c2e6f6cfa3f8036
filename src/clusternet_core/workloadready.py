"""Whether one child object is rolled out and ready, and its replica counters in Clusternet's ReplicaStatus
fields: judged from the status the child's controllers wrote, which the deployer copies into
Description.status.manifestStatuses[].observedStatus. feedstatus.py adds these verdicts up per feed and per
Subscription; the kubectl plugin's describe reads the same ones.

Clusternet reports a workload "available" once any status was synced; here a Deployment is ready only once it
observed its generation, updated every replica and left no old one running (as `kubectl rollout status` judges).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clusternet_core.rendering import split_api_version

__all__ = ["NOT_REPORTED", "REPLICA_FIELDS", "desired_count", "group_kind", "is_ready", "is_workload", "scaled",
           "workload_summary"]

Obj = Mapping[str, Any]

REPLICA_FIELDS: tuple[str, ...] = (
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "currentReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "active",
    "succeeded",
    "failed",
)
"""Clusternet's ReplicaStatus fields, in its order."""

_APPS_WORKLOADS = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"})
_DAEMONSET_FIELDS = {
    "observedGeneration": "observedGeneration",
    "replicas": "desiredNumberScheduled",
    "updatedReplicas": "updatedNumberScheduled",
    "currentReplicas": "currentNumberScheduled",
    "readyReplicas": "numberReady",
    "availableReplicas": "numberAvailable",
    "unavailableReplicas": "numberUnavailable",
}
NOT_REPORTED = "pending: the cluster has not reported status yet"
"""Reason of a workload whose status was not filled in by the child's controllers yet."""


def group_kind(obj: Obj) -> tuple[str, str]:
    group, _ = split_api_version(str(obj.get("apiVersion") or ""))
    return group, str(obj.get("kind") or "")


def is_workload(obj: Obj) -> bool:
    """Objects whose readiness can only be judged from a reported status."""
    group, kind = group_kind(obj)
    return (group == "apps" and kind in _APPS_WORKLOADS) or (group == "batch" and kind == "Job")


def _int(status: Obj, name: str) -> int:
    value = status.get(name)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def workload_summary(obj: Obj) -> dict[str, int]:
    """Clusternet ReplicaStatus fields of a Deployment, StatefulSet, ReplicaSet, DaemonSet or Job.

    Only fields the object reports are set (Go's omitempty); other kinds give `{}`. DaemonSet counters
    map onto the replica fields (desiredNumberScheduled -> replicas, numberReady -> readyReplicas, ...).
    """
    if not is_workload(obj):
        return {}
    status = obj.get("status") or {}
    _, kind = group_kind(obj)
    if kind == "DaemonSet":
        pairs = _DAEMONSET_FIELDS.items()
    elif kind == "Job":
        pairs = {f: f for f in ("active", "succeeded", "failed")}.items()
    else:
        pairs = {f: f for f in REPLICA_FIELDS[:7]}.items()
    return {ours: _int(status, theirs) for ours, theirs in pairs if theirs in status}


def _condition(status: Obj, ctype: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == ctype:
            return cond
    return None


def _generation_lag(obj: Obj) -> str | None:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return f"update not observed yet (generation {generation}, observed {observed})"
    return None


def _not_reported(kind: str, status: Obj) -> bool:
    """An empty status, or an apps workload's without observedGeneration (its controller sets that on its
    first sync), is what the object looked like when created, before anything ran."""
    return not status or (kind != "Job" and "observedGeneration" not in status)


def desired_count(obj: Obj, default_field: str) -> int:
    """spec.replicas when the spec is known (default 1), else what the status says is wanted.

    Callers judging a deployed object pass its rendered spec: the status's `replicas` counts existing pods.
    """
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        value = spec.get("replicas")
        return 1 if value is None else int(value)
    return _int(obj.get("status") or {}, default_field)


def is_ready(obj: Obj) -> tuple[bool, str]:
    """Whether a child object is rolled out and ready, with a short reason either way.

    Not ready, NOT_REPORTED, while the workload's status is not filled in yet.
    Deployment: observed the latest generation, all replicas updated and available, no old replicas left.
    StatefulSet/ReplicaSet: ready replicas reach the desired count. DaemonSet: numberReady equals
    desiredNumberScheduled. Job: completed (a failed Job is not ready). Namespace: not Terminating.
    Anything else: it exists, so it is ready.
    """
    group, kind = group_kind(obj)
    status = obj.get("status") or {}
    if group == "" and kind == "Namespace":
        phase = status.get("phase") or "Active"
        return (phase != "Terminating", f"phase {phase}")
    if not is_workload(obj):
        return True, "exists"
    if _not_reported(kind, status):
        return False, NOT_REPORTED
    if kind == "Job":
        return _job_ready(obj, status)
    lag = _generation_lag(obj)
    if lag:
        return False, lag
    if kind == "DaemonSet":
        desired = _int(status, "desiredNumberScheduled")
        if "updatedNumberScheduled" in status and _int(status, "updatedNumberScheduled") < desired:
            return False, f"{_int(status, 'updatedNumberScheduled')}/{desired} updated"
        ready = _int(status, "numberReady")
        return ready >= desired, f"{ready}/{desired} ready"
    desired = desired_count(obj, "replicas")
    if kind == "Deployment":
        progressing = _condition(status, "Progressing")
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            return False, "progress deadline exceeded: " + str(progressing.get("message") or "rollout stuck")
        updated, replicas = _int(status, "updatedReplicas"), _int(status, "replicas")
        if updated < desired:
            return False, f"{updated}/{desired} updated"
        if replicas > updated:
            return False, f"{replicas - updated} old replica(s) still running"
        available = _int(status, "availableReplicas")
        return available >= desired, f"{available}/{desired} ready"
    if kind == "StatefulSet":
        strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type")
        updated = _int(status, "updatedReplicas")
        if strategy != "OnDelete" and "updatedReplicas" in status and updated < desired:
            return False, f"{updated}/{desired} updated"
    ready = _int(status, "readyReplicas")
    return ready >= desired, f"{ready}/{desired} ready"


def _job_ready(obj: Obj, status: Obj) -> tuple[bool, str]:
    failed = _condition(status, "Failed")
    if failed and failed.get("status") == "True":
        return False, f"failed: {failed.get('reason') or failed.get('message') or 'Job failed'}"
    complete = _condition(status, "Complete")
    succeeded = _int(status, "succeeded")
    spec = obj.get("spec")
    completions = (spec.get("completions") if isinstance(spec, Mapping) else None) or 1
    if (complete and complete.get("status") == "True") or succeeded >= completions:
        return True, "complete"
    return False, f"{succeeded}/{completions} completed, {_int(status, 'active')} active"


def scaled(obj: Obj) -> bool:
    """A workload whose desired count is its spec.replicas (a DaemonSet's is the status's
    desiredNumberScheduled, a Job has none)."""
    group, kind = group_kind(obj)
    return group == "apps" and kind in _APPS_WORKLOADS - {"DaemonSet"}
