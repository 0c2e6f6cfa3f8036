"""A Base or Description the parent refuses to store, said in one line per distinct error.

A reconcile writes every bound cluster's Base and Descriptions. One write the parent refuses (413: the objects
are larger than the API server takes in one request; 422: invalid; 403: the cluster's namespace is being
deleted) used to fail the whole reconcile: no other cluster got its Description, stale Bases stayed, no
condition or event said anything, and the work was retried every 2 s for ever. Now only that cluster fails
(subscriptions.py); the Subscription's Ready condition (reason WriteRefused) and a Warning event name the
object, the clusters and the parent's answer, and the retry backs off (controller.py). Clusternet's deployer
returns the error and requeues the whole Subscription, without a condition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from clusternet_api import known
from clusternet_api.kube import ApiException, Obj

REASON_WRITE_REFUSED = "WriteRefused"
NAMED_CLUSTERS = 5
"""Clusters named per line; more are counted (a 413 is usually the same for every cluster)."""
MAX_DETAIL = 300
"""Characters of the parent's message kept in a line."""

LASTING = {
    400: "bad request", 413: "request entity too large: its objects exceed the API server's request limit",
    422: "invalid",
}
"""Answers that the same request will get again: retrying cannot heal them, a change of the Subscription,
its feeds or overrides can."""


class WriteRefused(Exception):
    """The parent answered a write of one of our objects with an error."""

    def __init__(self, kind: str, name: str, error: ApiException) -> None:
        super().__init__(f"the parent refused {kind} {name}: {error}")
        self.kind, self.name, self.error = kind, name, error


class WritesRefused(Exception):
    """A reconcile wrote what it could, but the parent refused some clusters' objects (retried with backoff)."""


@contextlib.contextmanager
def refused_as(obj: Obj) -> Iterator[None]:
    """Turn the parent's ApiException for a write of `obj` into WriteRefused, naming it."""
    try:
        yield
    except ApiException as e:
        raise WriteRefused(str(obj.get("kind")), str(obj["metadata"]["name"]), e) from e


def cluster_of(base: Obj) -> str:
    """`<namespace>/<name>` of the ManagedCluster a Base is for, as in status.bindingClusters."""
    meta = base["metadata"]
    return f"{meta['namespace']}/{(meta.get('labels') or {}).get(known.LABEL_CLUSTER_NAME, '?')}"


TOO_LARGE_FOR_ETCD = ("request is too large", "resourceexhausted", "larger than max")
"""How a 500 says the object passed the API server's request limit (3 MiB) but not etcd's (1.5 MiB by default,
2 MiB of gRPC message): the same object is refused again, however often it is retried."""


def explain(error: ApiException) -> str:
    """The parent's answer, one line, and whether retrying can help."""
    detail = " ".join(str(error.reason or "").split())[:MAX_DETAIL]
    lasting = LASTING.get(error.status)
    if error.status == 500 and any(s in detail.lower() for s in TOO_LARGE_FOR_ETCD):
        lasting = "too large for the parent's etcd (about 1.5 MB per object): split the feeds across Subscriptions"
    if lasting is not None:
        return f"{error.status} {lasting}: {detail}; retrying will not heal this, changing the Subscription, " \
               "its feeds or their overrides can"
    return f"HTTP {error.status}: {detail}; retrying"


def refusal_lines(failed: list[tuple[str, WriteRefused]]) -> list[str]:
    """One line per distinct (object, answer), naming its clusters: the same refusal in many clusters is said
    once, as the condition's other errors are."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for cluster, refusal in failed:
        grouped.setdefault((refusal.kind, refusal.name, explain(refusal.error)), []).append(cluster)
    lines = []
    for (kind, name, why), clusters in grouped.items():
        clusters = sorted(clusters)
        named = ", ".join(clusters[:NAMED_CLUSTERS])
        more = f" and {len(clusters) - NAMED_CLUSTERS} more" if len(clusters) > NAMED_CLUSTERS else ""
        which = f"cluster {named}" if len(clusters) == 1 else f"clusters {named}{more}"
        lines.append(f"the parent refused {kind} {name} for {which} ({why})")
    return sorted(lines)
