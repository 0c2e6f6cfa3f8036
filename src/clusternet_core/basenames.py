"""Which Base name a Subscription uses in a cluster namespace, so that no two Subscriptions ever share one.

A Base `<subscription>-<5 hex>` and its Descriptions `<base>-generic`/`-helm` are per (Subscription, cluster),
and the children mark every object with `<cluster namespace>.<description>`. The 5 hex digits (20 bits) of
`rendering.base_name` collide between Subscriptions of one name in different namespaces (38 % somewhere among
1,000 namespaces): both then wrote the same Base and Description, each push pruned the other's objects, and
deleting either Subscription removed the other's workloads through the shared Base.

Lengthening the digest for everyone would rename every Base of an existing installation: the hub would delete
the old Bases (their Descriptions and objects with them) and create new ones that cannot adopt the objects
marked with the old names. So the short name stays, and whoever holds it keeps it; a Subscription whose short
name is held by another one takes the `LONG_BASE_DIGITS` form instead (deterministic, so retries converge), and
keeps that form once it holds it, even after the other one is gone (moving back would redeploy it). If even that
is held by another Subscription, nothing is written for that cluster (`NameConflict`): nothing is overwritten
and nothing deleted.

Who holds a name is read from the labels the hub writes on Bases and Descriptions: the Subscription's
namespace and name (its uid when an object lacks them). Namespace and name rather than uid: a Subscription
deleted and created again under the same name is the same claimant, and waits for its predecessor's
Description to be cleaned up (plan.plan_cluster), as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusternet_api import known
from clusternet_core import rendering

Obj = Mapping[str, Any]
Key = tuple[str, str]

REASON_NAME_CONFLICT = "NameConflict"


def held_by_other(sub: Obj, obj: Obj) -> bool:
    """Does `obj` (a Base, Description or HelmRelease the hub wrote) belong to another Subscription than `sub`?"""
    return not same_subscription((sub.get("metadata") or {}), (obj.get("metadata") or {}).get("labels") or {})


def same_subscription(sub_meta: Obj, labels: Obj) -> bool:
    """Do `labels` (the hub's subs.* labels on an object) name the Subscription with metadata `sub_meta`?
    An object without those labels names nobody else."""
    namespace, name = labels.get(known.LABEL_SUBS_NAMESPACE), labels.get(known.LABEL_SUBS_NAME)
    if namespace is not None and name is not None:
        return (namespace, name) == (sub_meta.get("namespace"), sub_meta.get("name"))
    uid = labels.get(known.LABEL_SUBS_UID)
    return not uid or uid == sub_meta.get("uid")


@dataclass(frozen=True)
class BaseChoice:
    """The Base name for one cluster, or None with the reason when every candidate is held by another."""

    name: str | None
    conflict: str | None = None
    candidates: tuple[str, ...] = ()
    """Both forms of the name: a refused cluster keeps whichever Base of the Subscription's exists."""


def slot(namespace: str, base: str, bases: Mapping[Key, Obj], descriptions: Mapping[Key, Obj]) -> list[Obj]:
    """The cached Base of that name and its Descriptions."""
    found = [bases.get((namespace, base)), *(descriptions.get((namespace, rendering.description_name(base, d)))
                                              for d in ("Generic", "Helm"))]
    return [o for o in found if o is not None]


def choose_base_name(sub: Obj, namespace: str, bases: Mapping[Key, Obj],
                     descriptions: Mapping[Key, Obj]) -> BaseChoice:
    """The name `sub` uses for its Base in cluster namespace `namespace` (module docstring)."""
    short, long = rendering.base_names(sub)

    def state(name: str) -> str:
        objs = slot(namespace, name, bases, descriptions)
        others = [o for o in objs if held_by_other(sub, o)]
        return "free" if not objs else "ours" if not others else "theirs" if len(others) == len(objs) else "mixed"

    short_state, long_state = state(short), state(long)
    if short_state == "ours" or (short_state == "free" and long_state != "ours"):
        return BaseChoice(short, candidates=(short, long))
    if long_state == "ours" or (short_state == "theirs" and long_state == "free"):
        return BaseChoice(long, candidates=(short, long))
    holders = sorted({"/".join(((o["metadata"].get("labels") or {}).get(known.LABEL_SUBS_NAMESPACE, "?"),
                                (o["metadata"].get("labels") or {}).get(known.LABEL_SUBS_NAME, "?")))
                      for name in (short, long) for o in slot(namespace, name, bases, descriptions)
                      if held_by_other(sub, o)})
    return BaseChoice(None, f"{REASON_NAME_CONFLICT}: Base {namespace}/{short} (or its Descriptions) and "
                            f"{namespace}/{long} are held by {', '.join(holders)}; nothing is written for this "
                            "cluster, and nothing of theirs is overwritten or removed", (short, long))


def foreign_descriptions(sub: Obj, base: Obj, descriptions: Mapping[Key, Obj]) -> bool:
    """Does one of the Base's Descriptions belong to another Subscription? Then deleting the Base would take
    them with it (garbage collector), so the Subscription leaves it (only a hub before this check wrote such)."""
    namespace, name = str(base["metadata"].get("namespace") or ""), str(base["metadata"]["name"])
    return any(held_by_other(sub, d) for d in slot(namespace, name, {}, descriptions))
