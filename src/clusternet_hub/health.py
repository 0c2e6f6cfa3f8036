"""Keeping ManagedCluster health honest on the hub.

An agent that stops sending heartbeats cannot say so itself, so the hub decides: after 3 x the cluster's
heartbeat period without a report, Ready turns Unknown, the health probes read false (so `kubectl get
mcls` never shows a silent cluster as healthy) and the cluster is tainted unschedulable. When reports
resume (the agent writes Ready=True again), the taint goes. Nothing deployed is touched: the taint is
NoSchedule, which keeps new Subscriptions off the cluster and never unbinds what is bound there
(scheduling.py).

A missing heartbeat is only evidence when the hub could have seen it arrive. So the hub judges a cluster
only after it has itself watched for a whole grace period: since it started (or first saw the cluster) and
since it last regained the parent's API server. A hub restart or a parent outage therefore never turns
live clusters Unknown (Kubernetes' node lifecycle controller likewise times node heartbeats by its own
observation; Clusternet compares the last report with the wall clock alone).

A stall counts as an outage: when the parent takes longer than one heartbeat period to answer the hub (its
etcd stuck on a slow disk holds every write, the agents' heartbeats included), or the hub's own loop wakes
that much late (a frozen machine freezes the agents too), the observation restarts as if the parent had
been lost. One period is half the margin: a report is late by the stall, and a verdict needs a gap of
three periods. Found by a CI run where both children's heartbeats went missing for 18 s while a third
kube-apiserver restarted on the same two cores.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from clusternet_api import known
from clusternet_api.ratelimit import MAX_RETRY_AFTER
from clusternet_api.timefmt import format_rfc3339

Obj = dict[str, Any]
DEFAULT_HEARTBEAT_SECONDS = 180  # Clusternet's default --cluster-status-update-frequency (3m)
GRACE_MULTIPLIER = 3


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def heartbeat_seconds(mc: Obj) -> int:
    """The cluster's report period, as its agent states it."""
    return int((mc.get("status") or {}).get("heartbeatFrequencySeconds") or DEFAULT_HEARTBEAT_SECONDS)


def grace_period(mc: Obj) -> datetime.timedelta:
    return datetime.timedelta(seconds=GRACE_MULTIPLIER * heartbeat_seconds(mc))


def heartbeat_period(clusters: Iterable[Obj]) -> float:
    """The shortest heartbeat period among `clusters` in seconds: a stall that long may hold a heartbeat."""
    return float(min((heartbeat_seconds(mc) for mc in clusters), default=DEFAULT_HEARTBEAT_SECONDS))


def ready_condition(mc: Obj) -> Obj | None:
    for c in (mc.get("status") or {}).get("conditions") or []:
        if c.get("type") == known.CONDITION_READY:
            return dict(c)
    return None


def is_ready(mc: Obj) -> bool:
    """Ready=True: the agent reports and the hub has not judged it silent (what pushing and cleanup wait for)."""
    return (ready_condition(mc) or {}).get("status") == "True"


@dataclass(frozen=True)
class HealthPatch:
    """The changes to write: a status merge patch and/or a new spec.taints list (None = leave as is)."""

    status: Obj | None
    taints: list[Obj] | None


def _with_taint(taints: list[Obj], reason: str, now: datetime.datetime) -> list[Obj]:
    if any(t.get("key") == known.TAINT_UNSCHEDULABLE and t.get("effect") == "NoSchedule" for t in taints):
        return taints
    return [*taints, {"key": known.TAINT_UNSCHEDULABLE, "value": reason, "effect": "NoSchedule",
                      "timeAdded": format_rfc3339(now)}]


def _without_taint(taints: list[Obj]) -> list[Obj]:
    return [t for t in taints if t.get("key") != known.TAINT_UNSCHEDULABLE]


@dataclass
class Observation:
    """Since when the hub has been in a position to see each cluster's heartbeats arrive."""

    parent_since: datetime.datetime | None = None
    """Start of the hub's current unbroken contact with the parent's API server (None: not reached now)."""
    first_seen: dict[tuple[str, str], datetime.datetime] = field(default_factory=dict)

    def parent_reached(self, now: datetime.datetime) -> None:
        if self.parent_since is None:
            self.parent_since = now

    def parent_back(self, now: datetime.datetime) -> None:
        """The parent answers (again): as parent_reached, but counting from MAX_RETRY_AFTER later. A parent that
        was starting turned the agents' heartbeats away with 503 and a Retry-After, which they wait out (up to
        that long) before writing again: counted from its return, a 2-s heartbeat's 6-s grace ran out first and
        every cluster was marked Unknown although every agent was reporting (test_faults, once in CI)."""
        if self.parent_since is None:
            self.parent_since = now + datetime.timedelta(seconds=MAX_RETRY_AFTER)

    def parent_lost(self) -> None:
        self.parent_since = None

    def interrupted(self, now: datetime.datetime) -> None:
        """The hub could not have seen heartbeats arrive until `now` (a stalled parent or hub)."""
        self.parent_since = now

    def forget(self, key: tuple[str, str]) -> None:
        self.first_seen.pop(key, None)

    def watched_since(self, key: tuple[str, str], now: datetime.datetime) -> datetime.datetime | None:
        """When the hub's watch of this cluster began, as far as heartbeats go; None while the parent is
        out of reach (nothing can be judged then)."""
        seen = self.first_seen.setdefault(key, now)
        return None if self.parent_since is None else max(seen, self.parent_since)


def evaluate(mc: Obj, now: datetime.datetime, watched_since: datetime.datetime | None = None) -> HealthPatch:
    """What the hub must change on this ManagedCluster now (both fields None when nothing).

    `watched_since`: when the hub began to watch (Observation.watched_since); a heartbeat is overdue only
    once the hub has watched for a whole grace period after that."""
    status = mc.get("status") or {}
    taints: list[Obj] = list((mc.get("spec") or {}).get("taints") or [])
    last = parse_time(status.get("lastObservedTime"))
    created = parse_time(mc["metadata"].get("creationTimestamp")) or now
    reference = max(last or created, watched_since) if watched_since else last or created
    ready = ready_condition(mc)
    new_status: Obj | None = None
    stale = now - reference > grace_period(mc)
    if stale:
        reason = known.REASON_STATUS_UNKNOWN if last else known.REASON_NEVER_UPDATED
        message = (f"no heartbeat from the cluster agent since {format_rfc3339(last)} "
                   f"(grace period {int(grace_period(mc).total_seconds())}s = 3 x heartbeat period)"
                   if last else "the cluster agent has never reported status")
        unchanged = (ready is not None and ready.get("status") == "Unknown" and ready.get("reason") == reason
                     and not any(status.get(p) for p in ("readyz", "livez", "healthz")))
        if not unchanged:
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != known.CONDITION_READY]
            conditions.append({"type": known.CONDITION_READY, "status": "Unknown", "reason": reason,
                               "message": message, "lastTransitionTime": format_rfc3339(now)})
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
