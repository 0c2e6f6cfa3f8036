"""Dividing while a bound cluster is silent (the `FailOver` gate): the other clusters take its replicas on, and
the silent cluster keeps what it was given.

A silent cluster is one whose Ready the hub judged Unknown (no heartbeat for three periods) and that stays bound
through the hub's NoSchedule taint `clusters.clusternet.io/unschedulable` (scheduling's module docstring). Without
the gate its share of each divided feed stays where it is, and whatever of it really stopped stays missing until the
cluster returns. With it, the clusters that answer divide each feed's whole count among themselves by weight, while
the silent one's share stays as the Subscription's status last gave it (`status.replicas`): its count does not
change and nothing there is deleted, since a cluster the parent cannot hear may well still be running (a parent or
network outage). Until it returns, the Subscription runs more than the template's count. Once it reports again,
the clusters that took its share on keep it until the returning cluster reports its own share of the feed available
(failback_split): one whose pods were lost meanwhile (a node failed with it, say) is waited for, so the feed never
runs short of the template's count while the split goes back. Until 2026-12-07 the usual split came back at once,
and the others scaled down while the returning cluster's replicas might still be starting. The report waited for
may be the last one the cluster sent before it went silent, until its agent reports again (it re-applies and
reports at its start): the hub cannot tell a report's age. The Subscription's `status.failedOverClusters` names
the clusters whose share was taken on, silent or awaited; Dynamic Dividing, whose usual split weights cannot give,
reads who returns from it (dynamic.spread), and a status rewrite says from it whom it waits for.

Where we differ from Clusternet: its `FailOver` gate re-enqueues the Subscription when a cluster stops being Ready,
and its scheduler then filters the tainted cluster out: the cluster is unbound, and its Base, Description and
workloads are deleted once it returns (a redeploy, new UIDs). Here nothing a silent cluster runs is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from clusternet_api import known

Obj = Mapping[str, Any]

__all__ = ["BACK_PREFIX", "NOTE_PREFIX", "failback_split", "failing_back_note", "failover_event", "failover_note",
           "failover_split", "previous_shares", "silent"]


def silent(cluster: Obj, blocking: Sequence[Obj]) -> bool:
    """Whether the cluster is bound through the hub's taint (among the taints that keep this Subscription off it,
    `blocking`: one that tolerates the taint divides as usual) and is silent: the hub judged its Ready Unknown, no
    heartbeat for three periods. The same taint on a cluster whose agent reports Ready=False (its API server failed
    one probe: the agent is heard, its workloads most likely run) moves nothing: review s44 found every Dividing
    Subscription scaled up elsewhere and back down at each such blip."""
    ready = next((c for c in (cluster.get("status") or {}).get("conditions") or []
                  if c.get("type") == known.CONDITION_READY), None)
    return (ready is not None and ready.get("status") == "Unknown"
            and any(t.get("key") == known.TAINT_UNSCHEDULABLE for t in blocking))


def previous_shares(subscription: Obj, feed_key: str) -> dict[str, int]:
    """Binding key -> the replicas of `feed_key` the Subscription's status last gave each cluster."""
    status = subscription.get("status") or {}
    bindings = status.get("bindingClusters") or []
    split = (status.get("replicas") or {}).get(feed_key) or []
    return {key: count for key, count in zip(bindings, split, strict=False) if isinstance(count, int)}


def failover_split(desired: int, keys: Sequence[str], weights: Sequence[int], silent_keys: Collection[str],
                   previous: Mapping[str, int], divide: Callable[[int, list[int]], list[int]]) -> list[int] | None:
    """The split of `desired` replicas over `keys` (weights aligned) while `silent_keys` are silent: the others
    divide the whole count by their weights (`divide`: scheduling.divide_replicas), each silent cluster keeps its
    `previous` share (its usual share when it has none yet). None when no cluster that answers has a weight: there
    is nowhere to fail over to, and the usual split stands."""
    answering = [0 if key in silent_keys else weight for key, weight in zip(keys, weights, strict=True)]
    if not silent_keys or sum(answering) == 0:
        return None
    split, usual = divide(desired, answering), divide(desired, list(weights))
    return [previous.get(key, usual[i]) if key in silent_keys else split[i] for i, key in enumerate(keys)]


def failback_split(desired: int, keys: Sequence[str], split: Sequence[int], previous: Mapping[str, int],
                   silent_keys: Collection[str], ready: Callable[[str, str], bool], feed: str,
                   ) -> tuple[list[int], list[str]]:
    """`split` (the usual or failed-over one) with the clusters that took a silent cluster's replicas on keeping
    their `previous` shares while a cluster that now reports is not yet `ready` with its share: make before break.

    Only a written split that adds up to more than `desired` is held (a failover's: every other split adds up to
    the template's count, whatever the gate), and only the clusters `split` shrinks that report (not silent) keep
    their share; the ones awaited are those that report and that `split` keeps or grows, with a share, that are
    not `ready(binding key, feed)` (their generic Description deployed for the current spec with that share, and
    the feed reported available there). One that `split` grows is never ready yet: its Description is rewritten
    with the new share first. Returns the split to write and the clusters awaited (empty: `split` as it is). A
    scale-down shrinks the share of every cluster, so nobody is awaited and it is not held."""
    if sum(previous.get(key, 0) for key in keys) <= desired:
        return list(split), []
    shrinking = {i for i, key in enumerate(keys) if key not in silent_keys and split[i] < previous.get(key, 0)}
    awaited = [key for i, key in enumerate(keys) if key not in silent_keys and i not in shrinking and split[i] > 0
               and not (split[i] == previous.get(key) and ready(key, feed))]
    if not shrinking or not awaited:
        return list(split), []
    return [previous[key] if i in shrinking else split[i] for i, key in enumerate(keys)], awaited


NOTE_PREFIX = "failed over: "
BACK_PREFIX = "failing back: "


def failover_note(failed_over: Collection[str]) -> str | None:
    """What the Subscription's Ready message says while replicas are failed over."""
    if not failed_over:
        return None
    their, it_reports = ("their", "they report") if len(failed_over) > 1 else ("its", "it reports")
    return (f"{NOTE_PREFIX}{', '.join(sorted(failed_over))} silent (Ready Unknown); {their} replicas are kept "
            f"there and the other clusters run each feed's whole count until {it_reports} again")


def failing_back_note(awaited: Collection[str]) -> str | None:
    """What the Subscription's Ready message says while the clusters that took replicas on keep them
    (failback_split)."""
    if not awaited:
        return None
    their = "their shares are" if len(awaited) > 1 else "its share is"
    return (f"{BACK_PREFIX}the other clusters keep the replicas they took on until {their} available in "
            f"{', '.join(sorted(awaited))}")


def failover_event(old_message: str, new_message: str) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event a Ready message's change is worth: replicas failing over, waiting to
    fail back, or the usual split back; None otherwise. The Ready message said it alone until 2026-12-07, and
    `kubectl describe` showed nothing of when it happened."""
    def note(message: str, prefix: str) -> str | None:  # the last parts of the message (substatus), failover first
        at = message.find(prefix)
        return message[at:].split(f"; {BACK_PREFIX}")[0] if at >= 0 else None

    before, now = note(old_message, NOTE_PREFIX), note(new_message, NOTE_PREFIX)
    back_before, back_now = note(old_message, BACK_PREFIX), note(new_message, BACK_PREFIX)
    if now is not None and now != before:
        return "Warning", "FailedOver", now.removeprefix(NOTE_PREFIX)
    if back_now is not None and back_before is None:
        return "Normal", "FailingBack", back_now.removeprefix(BACK_PREFIX)
    if (before is not None or back_before is not None) and now is None and back_now is None:
        return "Normal", "FailedBack", "every bound cluster reports again: the usual split is back"
    return None
