"""Keeping ManagedCluster health honest on the hub.

An agent that stops sending heartbeats cannot say so itself, so the hub decides: after 3 x the cluster's
heartbeat period without a report, Ready turns Unknown, the health probes read false (so `kubectl get
mcls` never shows a silent cluster as healthy) and the cluster is tainted unschedulable. When reports
resume (the agent writes Ready=True again), the taint goes. Nothing deployed is touched.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from clusternet_api import known

Obj = dict[str, Any]
DEFAULT_HEARTBEAT_SECONDS = 180  # Clusternet's default --cluster-status-update-frequency (3m)
GRACE_MULTIPLIER = 3


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def fmt_time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def grace_period(mc: Obj) -> datetime.timedelta:
    freq = (mc.get("status") or {}).get("heartbeatFrequencySeconds") or DEFAULT_HEARTBEAT_SECONDS
    return datetime.timedelta(seconds=GRACE_MULTIPLIER * int(freq))


def ready_condition(mc: Obj) -> Obj | None:
    for c in (mc.get("status") or {}).get("conditions") or []:
        if c.get("type") == known.CONDITION_READY:
            return dict(c)
    return None


@dataclass(frozen=True)
class HealthPatch:
    """The changes to write: a status merge patch and/or a new spec.taints list (None = leave as is)."""

    status: Obj | None
    taints: list[Obj] | None


def _with_taint(taints: list[Obj], reason: str, now: datetime.datetime) -> list[Obj]:
    if any(t.get("key") == known.TAINT_UNSCHEDULABLE and t.get("effect") == "NoSchedule" for t in taints):
        return taints
    return [*taints, {"key": known.TAINT_UNSCHEDULABLE, "value": reason, "effect": "NoSchedule",
                      "timeAdded": fmt_time(now)}]


def _without_taint(taints: list[Obj]) -> list[Obj]:
    return [t for t in taints if t.get("key") != known.TAINT_UNSCHEDULABLE]


def evaluate(mc: Obj, now: datetime.datetime) -> HealthPatch:
    """What the hub must change on this ManagedCluster now (both fields None when nothing)."""
    status = mc.get("status") or {}
    taints: list[Obj] = list((mc.get("spec") or {}).get("taints") or [])
    last = parse_time(status.get("lastObservedTime"))
    created = parse_time(mc["metadata"].get("creationTimestamp")) or now
    reference = last or created
    ready = ready_condition(mc)
    new_status: Obj | None = None
    stale = now - reference > grace_period(mc)
    if stale:
        reason = known.REASON_STATUS_UNKNOWN if last else known.REASON_NEVER_UPDATED
        message = (f"no heartbeat from the cluster agent since {fmt_time(reference)} "
                   f"(grace period {int(grace_period(mc).total_seconds())}s = 3 x heartbeat period)"
                   if last else "the cluster agent has never reported status")
        unchanged = (ready is not None and ready.get("status") == "Unknown" and ready.get("reason") == reason
                     and not any(status.get(p) for p in ("readyz", "livez", "healthz")))
        if not unchanged:
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != known.CONDITION_READY]
            conditions.append({"type": known.CONDITION_READY, "status": "Unknown", "reason": reason,
                               "message": message, "lastTransitionTime": fmt_time(now)})
            new_status = {"conditions": conditions, "readyz": False, "livez": False, "healthz": False}
        effective: str = "Unknown"
        effective_reason = reason
    else:
        effective = str(ready.get("status")) if ready else "Unknown"
        effective_reason = (ready or {}).get("reason") or known.REASON_NOT_READY
    if effective == "True":
        wanted_taints = _without_taint(taints)
    else:
        wanted_taints = _with_taint(taints, str(effective_reason), now)
        if not stale and ready is None:  # fresh cluster, no report yet: wait for the grace period
            wanted_taints = taints
    return HealthPatch(new_status, wanted_taints if wanted_taints != taints else None)


def next_check_in(mc: Obj, now: datetime.datetime) -> float:
    """Seconds until this cluster's heartbeat deadline (so the checker need not poll blindly)."""
    status = mc.get("status") or {}
    reference = parse_time(status.get("lastObservedTime")) or parse_time(
        mc["metadata"].get("creationTimestamp")) or now
    return max(0.0, (reference + grace_period(mc) - now).total_seconds())
