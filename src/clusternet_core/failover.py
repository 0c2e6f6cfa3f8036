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
and the others scaled down while the returning cluster's replicas might still be starting. Its reports count only
one heartbeat period after the hub heard it again (the one the hub holds may be from before its silence, and its
agent re-applies and reports at its start or next resync), and the wait ends after FAILBACK_TIMEOUT whatever they
say. The Subscription's status names the clusters failed over (STATUS_FAILED_OVER) and failing back
(STATUS_FAILING_BACK): they are what Ready's note and the events are told from, and Dynamic Dividing, whose usual
split weights cannot give, reads who returns from them (dynamic.spread).

Where we differ from Clusternet: its `FailOver` gate re-enqueues the Subscription when a cluster stops being Ready,
and its scheduler then filters the tainted cluster out: the cluster is unbound, and its Base, Description and
workloads are deleted once it returns (a redeploy, new UIDs). Here nothing a silent cluster runs is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from clusternet_api import known

Obj = Mapping[str, Any]

__all__ = ["BACK_PREFIX", "FAILBACK_TIMEOUT", "NOTE_PREFIX", "STATUS_FAILED_OVER", "STATUS_FAILING_BACK",
           "failback_split", "failing_back_note", "failover_events", "failover_note", "failover_notes",
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


FAILBACK_TIMEOUT = 600.0
"""How long (seconds since the hub heard it again) the others keep a returning cluster's share at most: a cluster that
cannot run its share (no room, a rollout stuck) would keep the surplus elsewhere for good. Karmada's graceful
eviction gives up after the same 10 minutes (`--graceful-eviction-timeout`); after it the usual split comes back,
and Ready says what that cluster lacks."""

STATUS_FAILED_OVER = "failedOverClusters"
"""Subscription status (ours): the silent bound clusters whose replicas the others took on."""
STATUS_FAILING_BACK = "failingBackClusters"
"""Subscription status (ours): the clusters that report again and whose share the others keep until they run it."""


def failback_split(desired: int, keys: Sequence[str], split: Sequence[int], previous: Mapping[str, int],
                   silent_keys: Collection[str], returning: Collection[str], ready: Callable[[str, str], bool],
                   feed: str) -> tuple[list[int], list[str]]:
    """`split` (the usual or failed-over one) with the clusters it shrinks keeping their `previous` shares while a
    `returning` cluster (one the status names failed over or failing back, that reports again) does not run its
    share yet: make before break. Returns the split to write and the returning clusters still awaited.

    Only a written split that adds up to more than `desired` is held, and only while a returning cluster is awaited:
    a scale-down with no cluster back from silence applies at once (review s46 found every scale-down held when a
    cluster was not ready). A returning cluster is awaited while its share is not `ready(binding key, feed)` (its
    generic Description deployed for the current spec and the feed reported available there; placement.feed_ready
    also waits one heartbeat period after it reports again and gives up after FAILBACK_TIMEOUT), whether or not
    anything is held meanwhile: it stays named (STATUS_FAILING_BACK) until it runs its share, so a later giving back
    (another cluster back from silence) waits for it too (re-review s46). One whose share changes is awaited at
    least once more: its Description is rewritten with the new share first."""
    back = {key for key in returning if key not in silent_keys}

    def awaited(shares: Sequence[int]) -> list[str]:
        return [key for i, key in enumerate(keys) if key in back and shares[i] > 0
                and not (shares[i] == previous.get(key) and ready(key, feed))]

    if not back.intersection(keys):
        return list(split), []
    shrinking = {i for i, key in enumerate(keys) if key not in silent_keys and split[i] < previous.get(key, 0)}
    if shrinking and sum(previous.get(key, 0) for key in keys) > desired:
        held = [previous[key] if i in shrinking else split[i] for i, key in enumerate(keys)]
        if waiting := awaited(held):
            return held, waiting
    return list(split), awaited(split)


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
    """What the Subscription's Ready message says while clusters back from silence are awaited (failback_split)."""
    if not awaited:
        return None
    report, it, its = ("report", "they run", "their") if len(awaited) > 1 else ("reports", "it runs", "its")
    return (f"{BACK_PREFIX}{', '.join(sorted(awaited))} {report} again; the other clusters give back the replicas "
            f"they took on once {it} {its} share ({int(FAILBACK_TIMEOUT) // 60} minutes at most)")


def failover_notes(status: Obj) -> str | None:
    """What the Subscription's Ready message adds, told from its status fields (STATUS_FAILED_OVER,
    STATUS_FAILING_BACK), so a rewrite without a reconcile's findings says it too."""
    notes = [failover_note(status.get(STATUS_FAILED_OVER) or []), failing_back_note(status.get(STATUS_FAILING_BACK)
                                                                                   or [])]
    return "; ".join(note for note in notes if note) or None


def failover_events(old: Obj, new: Obj) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events a change of the Subscription's status (`old` -> `new`) is worth: a
    cluster's replicas taken on, a cluster awaited once back, the usual split back. The Ready message said it alone
    until 2026-12-07; until review s46 the events were read from that message, which other notes lengthen and
    problems replace (a broken override posted FailedBack while the cluster was still silent)."""
    was_over, over = set(old.get(STATUS_FAILED_OVER) or []), set(new.get(STATUS_FAILED_OVER) or [])
    was_back, back = set(old.get(STATUS_FAILING_BACK) or []), set(new.get(STATUS_FAILING_BACK) or [])
    events: list[tuple[str, str, str]] = []
    if over - was_over and (note := failover_note(over)):
        events.append(("Warning", "FailedOver", note.removeprefix(NOTE_PREFIX)))
    if back - was_back and (note := failing_back_note(back)):
        events.append(("Normal", "FailingBack", note.removeprefix(BACK_PREFIX)))
    if (was_over or was_back) and not over and not back:
        events.append(("Normal", "FailedBack", "no replicas are failed over any more: the usual split is back"))
    return events
