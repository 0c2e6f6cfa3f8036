"""Keeping ManagedCluster health honest on the hub.

An agent that stops sending heartbeats cannot say so itself, so the hub decides: after 3 x the cluster's
heartbeat period without a report, Ready turns Unknown, the health probes read false (so `kubectl get
mcls` never shows a silent cluster as healthy) and the cluster is tainted unschedulable. When reports
resume (the agent writes Ready=True again), the taint goes. Nothing deployed is touched: the taint is
NoSchedule, which keeps new Subscriptions off the cluster and never unbinds what is bound there
(scheduling.py).

Silence is measured on the hub's own clock, from when the hub last saw a report arrive (a new
`lastObservedTime`), never by comparing that timestamp, the child's clock, with the hub's: a child clock
minutes off made a live cluster flap Unknown, or kept a dead one Ready as long (review 6). Kubernetes'
node lifecycle controller likewise times node heartbeats by when it observed them (its probeTimestamp);
Clusternet compares the child's timestamp with the hub's clock. `lastObservedTime` is shown and measured
(the heartbeat-age metric), not judged.

A missing heartbeat is only evidence when the hub could have seen it arrive. So the hub judges a cluster
only after it has itself watched for a whole grace period: since it started (or first saw the cluster) and
since it last regained the parent's API server. A hub restart or a parent outage therefore never turns
live clusters Unknown.

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
from clusternet_api.heartbeats import DEFAULT_HEARTBEAT_SECONDS, heartbeat_seconds
from clusternet_api.ratelimit import MAX_RETRY_AFTER
from clusternet_api.timefmt import format_rfc3339

Obj = dict[str, Any]
GRACE_MULTIPLIER = 3


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


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


Key = tuple[str, str]


@dataclass
class Observation:
    """What the hub itself has seen of each cluster's heartbeats, on its own monotonic clock (`now` below):
    since when it could have seen them arrive, and when it last saw one arrive.

    A report counts when the cluster's `lastObservedTime` *changes*, whatever its value: it is the one field
    only the agent writes, once per report. Its value is the child's clock, compared with nothing here (a
    child clock minutes behind made a live cluster Unknown before each report, one ahead let a dead one stay
    Ready as long). Not the resourceVersion: the hub writes the status too (its verdicts, SocketConnected)
    and the spec (taints), and an administrator the labels, none of which is a sign of life."""

    parent_since: float | None = None
    """Start of the hub's current unbroken contact with the parent's API server (None: not reached now)."""
    first_seen: dict[Key, float] = field(default_factory=dict)
    reports: dict[Key, tuple[str | None, float]] = field(default_factory=dict)
    """The last lastObservedTime seen of each cluster, and when the hub first saw that value."""
    heard_from: set[Key] = field(default_factory=set)
    """Clusters whose lastObservedTime this hub has seen change: a report that arrived while it watched."""
    rebased: set[Key] = field(default_factory=set)
    """Clusters not read since the hub could not watch: their next copy only sets the stamp to compare with."""

    def parent_reached(self, now: float) -> None:
        if self.parent_since is None:
            self.parent_since = now

    def parent_back(self, now: float) -> None:
        """The parent answers (again): as parent_reached, but counting from MAX_RETRY_AFTER later. A parent that
        was starting turned the agents' heartbeats away with 503 and a Retry-After, which they wait out (up to
        that long) before writing again: counted from its return, a 2-s heartbeat's 6-s grace ran out first and
        every cluster was marked Unknown although every agent was reporting (test_faults, once in CI)."""
        if self.parent_since is None:
            self.parent_since = now + MAX_RETRY_AFTER

    def parent_lost(self) -> None:
        self.parent_since = None
        self._unheard()

    def interrupted(self, now: float) -> None:
        """The hub could not have seen heartbeats arrive until `now` (a stalled parent or hub)."""
        self.parent_since = now
        self._unheard()

    def _unheard(self) -> None:
        """An agent may die unseen while the hub cannot watch, as while no hub runs (heard): every cluster must
        report anew, and the first copy read afterwards, whatever its stamp (a report written while the hub was cut
        off, the agent dead since), is no report of its own (review s32 and its re-review). Silence is measured as
        before: the stamps stay."""
        self.heard_from.clear()
        self.rebased.update(self.reports)

    def forget(self, key: Key) -> None:
        self.first_seen.pop(key, None)
        self.reports.pop(key, None)
        self.heard_from.discard(key)
        self.rebased.discard(key)

    def heard(self, key: Key) -> bool:
        """Whether this hub has seen a report of the cluster arrive since it started (or first saw the cluster).

        What cleanups wait for (controller/pusher.py): the first copy a starting hub reads says Ready=True for
        a cluster whose agent may have died while no hub ran, and health judges nobody for a grace period after
        the start: deleting through the API server of a cluster not heard from may act on a silent one (review
        F9). A first copy of a cluster is no report: its lastObservedTime must change while the hub watches. The
        same holds after the parent was out of reach or stalled (parent_lost, interrupted: review s32)."""
        return key in self.heard_from

    def saw(self, key: Key, mc: Obj, now: float, cached: bool = False) -> None:
        """The hub sees this copy of the cluster now (a watch event, a read): a new report if its
        lastObservedTime differs from the last one seen. A `cached` copy (the health pass's, from the watch's
        cache) is no read made afterwards: it leaves the rebase for the next real copy. Consumed by the health
        pass that follows a stall, it made a report written during the stall and delivered later count as heard,
        though the agent may have died since (audit s36)."""
        self.first_seen.setdefault(key, now)
        stamp = (mc.get("status") or {}).get("lastObservedTime")
        rebased = key in self.rebased
        if not cached:
            self.rebased.discard(key)
        if key not in self.reports or self.reports[key][0] != stamp:
            if key in self.reports and stamp is not None and not rebased:
                self.heard_from.add(key)
            self.reports[key] = (stamp, now)

    def silence(self, key: Key, now: float) -> float | None:
        """For how many seconds the hub has watched this cluster without seeing a report arrive: since it
        started (or first saw the cluster), regained the parent, or saw the last report, whichever is latest;
        None while the parent is out of reach (nothing can be judged then)."""
        seen = self.first_seen.setdefault(key, now)
        if self.parent_since is None:
            return None
        heard = self.reports.get(key, (None, seen))[1]
        return now - max(seen, self.parent_since, heard)


def evaluate(mc: Obj, now: datetime.datetime, silence: float) -> HealthPatch:
    """What the hub must change on this ManagedCluster now (both fields None when nothing).

    `silence`: for how long the hub has watched the cluster without a report (Observation.silence); a
    heartbeat is overdue once that exceeds the grace period. `now` (wall clock) only dates what is written."""
    status = mc.get("status") or {}
    taints: list[Obj] = list((mc.get("spec") or {}).get("taints") or [])
    last = status.get("lastObservedTime")
    ready = ready_condition(mc)
    new_status: Obj | None = None
    grace = int(grace_period(mc).total_seconds())
    stale = silence > grace
    if stale:
        reason = known.REASON_STATUS_UNKNOWN if last else known.REASON_NEVER_UPDATED
        message = (f"no heartbeat from the cluster agent for {int(silence)}s, as the hub observed "
                   f"(the last report is stamped {last} by the cluster's clock; grace period {grace}s = "
                   f"3 x heartbeat period)" if last else "the cluster agent has never reported status")
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
