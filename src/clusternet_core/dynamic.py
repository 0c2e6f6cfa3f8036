"""Dynamic Dividing (strategy Spread): each feed's replicas follow what the clusters can take.

A feed's split changes by its *deviation*: the desired count less what the Subscription's status gives the clusters
still bound (`status.replicas`). The first scheduling and a scale-up divide the deviation in proportion to the
replicas each cluster says it can still take (its predictor's answer); a scale-down divides it in proportion to
the current split, so every cluster gives back its share; no deviation keeps the split as it is, whatever the
predictors would say now, so workloads never move because a cluster got busier. Replicas of a cluster no longer
bound count for nothing, so they are placed again as a scale-up. This is Clusternet's rule (its
`DynamicDivideReplicas`), and predictors are asked only when a scale-up needs them. With the FailOver gate, the
clusters that answer take a silent one's share on as such a scale-up, and give it back once it runs it again
(spread).

Where we differ from Clusternet: when the clusters can take fewer replicas than the deviation, both give each
cluster all it can take, but here the Subscription's Ready says how many replicas found no room (Clusternet says
nothing), and the next resync asks the predictors again; a cluster whose predictor does not answer, or that is still
applying the share it was given last (APPLYING), is given no new replicas and is named in that message, where
Clusternet's scheduling of the whole Subscription fails on a predictor's error (unless its
FeasibleClustersToleration gate lets a share of the clusters fail) and its scheduler gives the same room out
again. `Binpack`, which Clusternet declares and does not implement, is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["APPLYING", "REASON_NO_ROOM", "DynamicSplit", "PredictionRequest", "Predictions", "deviation",
           "dynamic_split", "shortfall_note", "spread", "unplaced_as_written"]


@dataclass
class PredictionRequest:
    """What to ask the bound clusters' predictors before a scale-up can be planned (plan.plan_subscription)."""

    clusters: Sequence[tuple[str, Mapping[str, Any]]]
    """(binding key, ManagedCluster) of every bound cluster."""
    requirements: Mapping[str, Mapping[str, Any]]
    """Feed key -> the ReplicaRequirements of one replica (FeedInventory), of the feeds to scale up."""


Predictions = Mapping[str, Mapping[str, int] | str]
"""Binding key -> feed key -> the replicas that cluster can still take, or why its predictor did not answer."""


@dataclass(frozen=True)
class DynamicSplit:
    replicas: list[int]
    unplaced: int = 0
    """Replicas of the deviation no cluster had room for."""


def deviation(desired: int, keys: Sequence[str], previous: Mapping[str, int]) -> int:
    """How many replicas the split of `keys` must gain (or lose, negative) to reach `desired`."""
    return desired - sum(previous.get(key, 0) for key in keys)


def dynamic_split(desired: int, keys: Sequence[str], previous: Mapping[str, int], room: Mapping[str, int],
                  divide: Callable[[int, list[int]], list[int]]) -> DynamicSplit:
    """The split of `desired` replicas over `keys`, from the `previous` split and (for a scale-up) the `room` each
    cluster has left (clusters missing from it have none). `divide`: scheduling.divide_replicas, largest remainder.

    A scale-down never takes a cluster below zero: each gives back floor(share) or one more, and the one more goes
    only to clusters whose exact share has a fraction, so to clusters holding more than their floor."""
    current = [max(0, previous.get(key, 0)) for key in keys]
    change = desired - sum(current)
    if change < 0:
        return DynamicSplit([have - gone for have, gone in zip(current, divide(-change, current), strict=True)])
    if change == 0:
        return DynamicSplit(current)
    free = [max(0, room.get(key, 0)) for key in keys]
    if sum(free) <= change:  # every cluster takes all it can
        return DynamicSplit([have + more for have, more in zip(current, free, strict=True)], change - sum(free))
    return DynamicSplit([have + more for have, more in zip(current, divide(change, free), strict=True)])


def spread(desired: int, keys: Sequence[str], previous: Mapping[str, int], room: Mapping[str, int] | None,
           divide: Callable[[int, list[int]], list[int]], silent: Collection[str] = (),
           returning: Collection[str] = ()) -> DynamicSplit | None:
    """dynamic_split of `desired` over `keys`, None when it is a scale-up and the `room` is not known yet.

    With the FailOver gate (failover.py): the `silent` clusters keep their `previous` share and the others spread
    the whole count among themselves, as a scale-up (no cluster to fail over to: nothing moves). The `returning`
    ones (their share was taken on, and they report again) keep theirs while the others give back what they took
    on, in proportion to what they run; failover.failback_split holds that until the returning clusters run their
    share. Clusternet's FailOver unbinds a silent cluster instead, and its replicas are placed again elsewhere."""
    answering = [key for key in keys if key not in silent] or list(keys)
    have = {key: max(0, previous.get(key, 0)) for key in keys}
    back = [key for key in answering if key in returning]
    others = [key for key in answering if key not in returning]
    target = desired - sum(have[key] for key in back)
    shares = {key: have[key] for key in keys if key not in answering}
    if back and others and 0 <= target < sum(have[key] for key in others):
        shares.update(zip(others, dynamic_split(target, others, have, {}, divide).replicas, strict=True))
        return DynamicSplit([shares.get(key, have[key]) for key in keys])
    if room is None and deviation(desired, answering, have) > 0:
        return None
    split = dynamic_split(desired, answering, have, room or {}, divide)
    shares.update(zip(answering, split.replicas, strict=True))
    # what a silent cluster keeps may still run there: only what is missing beyond it found no room
    kept = sum(have[key] for key in keys if key not in answering)
    return DynamicSplit([shares[key] for key in keys], max(0, split.unplaced - kept))


APPLYING = "still applying its last share"
"""Why a cluster gets none of a scale-up: a predictor sees the pods and workloads its cluster holds, not replicas
the hub gave a moment ago that its Description has not brought there yet. Without it the reconcile after a short
scale-up gave the same room out again (tests/integration/test_dividing.py: 30 replicas for room of 16 grew to 8
and 22)."""


REASON_NO_ROOM = "InsufficientCapacity"
"""Ready's reason while replicas of a Dynamic Dividing Subscription found no room in its clusters."""


def shortfall_note(unplaced: Mapping[str, int], unanswered: Mapping[str, str]) -> str | None:
    """What Ready says of replicas that found no room and, with them, of the predictors that did not answer (once
    every replica is placed nothing is missing, and the next reconcile, with nothing to scale up, asks no one: a
    note on who did not answer would come and go)."""
    parts = [f"{count} replica(s) of {feed} found no room in the bound clusters (their predictors are asked again "
             "at each resync)" for feed, count in sorted(unplaced.items())]
    parts += [f"no prediction from {key}: {why}" for key, why in sorted(unanswered.items()) if unplaced]
    return "; ".join(parts) or None


def unplaced_as_written(sub: Mapping[str, object], desired: Mapping[str, int]) -> dict[str, int]:
    """Feed key -> replicas the written split of a Dynamic Dividing Subscription leaves unplaced (`desired`: the
    FeedInventory's counts), for a status rewrite without a reconcile's findings."""
    spec = sub.get("spec")
    dividing = spec.get("dividingScheduling") if isinstance(spec, Mapping) else None
    if not isinstance(dividing, Mapping) or dividing.get("type") != "Dynamic":
        return {}
    status = sub.get("status")
    split = (status.get("replicas") if isinstance(status, Mapping) else None) or {}
    if not isinstance(split, Mapping):
        return {}
    return {key: count - sum(split.get(key) or []) for key, count in desired.items()
            if key in split and count > sum(split.get(key) or [])}
