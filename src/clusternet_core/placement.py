"""What a Subscription has placed in the cluster namespaces, read from the hub's cached Bases and Descriptions.

Two questions of `plan.plan_subscription` turn on it, the two sides of one rule (a cluster is unbound by a user's
change, never by an outage):

- Which clusters stay bound through a NoSchedule taint (scheduling.schedule's `holding`): besides those in
  `status.bindingClusters`, every cluster that still holds a Base or Description of the Subscription, one being
  deleted too. A silent cluster unbound by a short-lived change keeps its Description, deleting with its cleanup
  pending until the cluster returns. Were it kept off by the hub's NoSchedule taint once the change was undone, its
  Base would stay deleted, the Pull agent's still-wanted check (it reads the Base) and the hub's (it schedules)
  would both say "not wanted", and the cleanup would delete on its return workloads the Subscription wants again.
  Bound again, the cluster gets its Base back at once (plan.plan_cluster writes it while it waits for the old
  Description), so either deployer lets the old Description go without touching the child, and the hub writes it
  again under the same name, which adopts the child's objects.
- Which of its Bases go (`unbound_bases`): those in clusters it no longer binds.

And one for Dynamic Dividing (`applying_clusters`): which clusters have not applied the share they were given last;
and one for failing back (`feed_ready`): which clusters run their share of a feed.

Objects are the Subscription's by the uid label the hub writes on them: a Subscription deleted and created again
under the same name is a new one, and NoSchedule keeps a new one off a silent cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from clusternet_api import known
from clusternet_api.apiresource import key_of
from clusternet_api.heartbeats import heartbeat_seconds
from clusternet_core import basenames, failover, feedstatus, rendering
from clusternet_core.scheduling import binding_key, feed_key

Obj = Mapping[str, Any]
Key = tuple[str, str]
ObjT = TypeVar("ObjT", bound=Obj)  # the caller's own object type comes back


def _uid_of(obj: Obj) -> Any:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(known.LABEL_SUBS_UID)


def holding_clusters(sub: Obj, clusters: Iterable[Obj], bases: Mapping[Key, Obj],
                     descriptions: Mapping[Key, Obj]) -> set[str]:
    """Binding keys (`<namespace>/<name>`) of the clusters whose namespace holds a Base or Description of `sub`,
    being deleted or not, under either name its Base may have (basenames.py): a few cache lookups per cluster, not
    a pass over every Description of the parent."""
    uid, names = sub["metadata"].get("uid"), rendering.base_names(sub)
    if not uid:  # nothing can be told to be its own (an object without the label is nobody's)
        return set()

    def holds(namespace: str) -> bool:
        return any(_uid_of(obj) == uid
                   for name in names for obj in basenames.slot(namespace, name, bases, descriptions))

    return {binding_key(mc) for mc in clusters if holds(str((mc.get("metadata") or {}).get("namespace") or ""))}


def owned_bases(sub: Obj, bases: Iterable[ObjT]) -> list[ObjT]:
    uid = sub["metadata"]["uid"]
    return [b for b in bases if _uid_of(b) == uid]


def unbound_bases(sub: Obj, bases: Iterable[ObjT], bound: set[Key],
                  descriptions: Mapping[Key, Obj] | None = None) -> list[ObjT]:
    """The Subscription's Bases in clusters it no longer binds (all of them when `bound` is empty), except one
    with another Subscription's Description (basenames.foreign_descriptions): the collector would take it along.
    As cached: they are deleted only as such (review F8)."""
    return [b for b in owned_bases(sub, bases)
            if key_of(b) not in bound and not b["metadata"].get("deletionTimestamp")
            and not basenames.foreign_descriptions(sub, b, descriptions or {})]


def applying_clusters(sub: Obj, clusters: Iterable[Key], descriptions: Mapping[Key, Obj],
                      holding: set[str]) -> list[str]:
    """Binding keys, among `holding` (the clusters with a share of a divided feed), of those whose generic
    Description of `sub` is not deployed for its current generation yet (dynamic.APPLYING)."""
    mine = generic_descriptions(sub, descriptions)
    return sorted(f"{ns}/{name}" for ns, name in clusters if f"{ns}/{name}" in holding
                  and not feedstatus.applied(mine.get(ns)))


def feed_ready(sub: Obj, descriptions: Mapping[Key, Obj], clusters: Mapping[Key, Obj] | None = None,
               back_for: Callable[[str], float] | None = None) -> Callable[[str, str], bool]:
    """(binding key, feed key) -> whether that cluster runs its share of the feed (failover.failback_split): its
    generic Description of `sub` (not one being deleted) deploys the feed for its current generation and reports it
    available. With `back_for` (seconds since the hub heard the cluster again): not before one heartbeat period of
    the cluster has passed since (the report may be from before its silence: its agent re-applies and reports at its
    start or next resync), and always after failover.FAILBACK_TIMEOUT (it will not run its share, and the others
    stop waiting). Descriptions are looked up once, when first asked: most reconciles never ask."""
    feeds = list((sub.get("spec") or {}).get("feeds") or [])
    by_feed = {feed_key(f): f for f in feeds}
    mine: dict[str, Obj] | None = None

    def ready(cluster: str, feed: str) -> bool:
        nonlocal mine
        namespace = cluster.partition("/")[0]
        if back_for is not None:
            back = back_for(cluster)
            if back >= failover.FAILBACK_TIMEOUT:
                return True
            if back < _settle_seconds(clusters, cluster):
                return False
        if mine is None:
            mine = generic_descriptions(sub, descriptions, live_only=True)
        wanted = by_feed.get(feed)
        return wanted is not None and feedstatus.available_in(mine.get(namespace), feeds, wanted)

    return ready


def _settle_seconds(clusters: Mapping[Key, Obj] | None, binding: str) -> float:
    """How long after its return a cluster's reports are not read yet: one heartbeat period (a period of 10
    minutes or more would leave no time to read any report before FAILBACK_TIMEOUT)."""
    namespace, _, name = binding.partition("/")
    return min(heartbeat_seconds((clusters or {}).get((namespace, name)) or {}), failover.FAILBACK_TIMEOUT / 2)


def failback_wake(awaited: Iterable[str], clusters: Mapping[Key, Obj],
                  back_for: Callable[[str], float]) -> float | None:
    """Seconds until the soonest moment a failing-back cluster's wait changes without any report: its reports start
    to count (`feed_ready` waits one heartbeat period after its return), or FAILBACK_TIMEOUT ends the wait. None when
    no such moment is ahead. The hub brings the Subscription back then: a report or the 30-s resync did before, so
    the others gave their surplus back up to 30 s late (the s46 note)."""
    ahead = []
    for binding in awaited:
        back = back_for(binding)
        ahead += [end - back for end in (_settle_seconds(clusters, binding), failover.FAILBACK_TIMEOUT) if end > back]
    return min(ahead) if ahead else None


def generic_descriptions(sub: Obj, descriptions: Mapping[Key, Obj], live_only: bool = False) -> dict[str, Obj]:
    """Cluster namespace -> the generic Description of `sub` there (with `live_only`, not one being deleted)."""
    uid = (sub.get("metadata") or {}).get("uid")
    return {ns: desc for (ns, _), desc in descriptions.items()
            if _uid_of(desc) == uid and (desc.get("spec") or {}).get("deployer") == "Generic"
            and not (live_only and (desc.get("metadata") or {}).get("deletionTimestamp"))}
