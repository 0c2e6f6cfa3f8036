"""Refusing a Subscription as a whole: the Ready=False condition for a feed that names several templates or
none, or for a Globalization of its feeds that cannot be evaluated (refusal_condition), over its status as it is.

Split from plan.py, which refuses with these before it plans anything; substatus.py keeps a refusal over what the
clusters report, and `kubectl clusternet render` explains one. `condition` makes every Ready condition of a
Subscription, the refusals' and the status's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from clusternet_api import known
from clusternet_core import feedresolve, rendering
from clusternet_core.overrides import unusable_overrides
from clusternet_core.scheduling import feed_key, feed_ref, format_feed

if TYPE_CHECKING:
    from clusternet_core.plan import FeedRef

Obj = dict[str, Any]


def condition(status: str, reason: str, message: str) -> Obj:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


def ambiguous_condition(resolved: feedresolve.FeedResolution) -> Obj:
    """Ready=False for a feed naming several templates (the hub used to deploy the first it saw)."""
    return condition("False", feedresolve.REASON_AMBIGUOUS, resolved.message() + REFUSED)


REFUSED = "; the Subscription is refused as a whole until then: nothing is deployed, changed or removed"
REASON_FEED_NOT_FOUND = "FeedNotFound"
REASON_INVALID_OVERRIDE = "InvalidOverride"


def missing_feeds(feeds: list[FeedRef], resolved: feedresolve.FeedResolution) -> list[str]:
    """The template feeds with no Manifest at all (HelmChart feeds are the Helm deployer's to report), each with
    the apiVersions its kind, namespace and name have a template under (`did you mean apiVersion v1?`)."""
    ambiguous = {feed_key(a.feed) for a in resolved.ambiguous}

    def hint(ref: Mapping[str, str]) -> str:
        versions = resolved.other_versions.get(feed_key(ref))
        return f" (did you mean apiVersion {' or '.join(versions)}?)" if versions else ""

    return [f"feed {ref['apiVersion']}/{format_feed(ref)} not found: no Manifest in "
            f"{known.RESERVED_NAMESPACE}{hint(ref)}" for ref in map(feed_ref, feeds)
            if not rendering.is_helm_chart_feed(ref) and feed_key(ref) not in resolved.templates
            and feed_key(ref) not in ambiguous]


def refusal_condition(feeds: list[FeedRef], resolved: feedresolve.FeedResolution,
                      globalizations: Iterable[Obj] = ()) -> Obj | None:
    """Ready=False when a feed names several templates or none, or one of its Globalizations cannot be evaluated:
    the Subscription is refused as a whole, so what it deployed stays as it is. A feed without its Manifest used
    to be rendered out of the Descriptions, and the deployers then removed its object from every cluster: a
    template deleted by mistake, or one the hub had not seen yet, cost the children their workload (and a new
    UID when it came back). Clusternet refuses too. A Globalization whose clusterAffinity the CRD accepts but no
    selector code can evaluate (`In` without values) did the same: its feed was left out of the render."""
    if resolved.ambiguous:
        return ambiguous_condition(resolved)
    missing = missing_feeds(feeds, resolved)
    if missing:
        return condition("False", REASON_FEED_NOT_FOUND, "; ".join(missing) + REFUSED)
    unusable = unusable_overrides(rendering.resolved_feeds(feeds, resolved.templates), globalizations)
    if unusable:
        return condition("False", REASON_INVALID_OVERRIDE, "; ".join(unusable) + REFUSED)
    return None

