"""A cluster's labels after registration: what the child asks for, what the parent's admin allows.

Labels decide placement: a Subscription selects clusters by label, so a child that could relabel itself
could make Subscriptions meant for other clusters (and the Secrets they carry) bind it. In Clusternet the
agent's Role in its dedicated namespace is `*/*/*`, so a compromised child can do exactly that; the CRR's
`clusterLabels` are applied once, when the hub creates the ManagedCluster, and a later change of
`--cluster-labels` is ignored.

Here the child's identity may write only its ManagedCluster's status. Labels come from the registration
request (applied at approval, as in Clusternet) and from administrators. Afterwards the agent writes the
labels it wants into its own request's `spec.clusterLabels` (the only object besides statuses it may
change), and the hub applies additions, changes and removals of keys that start with one of the prefixes
of its `--cluster-label-prefixes` flag (default: none, so nothing changes after registration). It refuses
the rest and says so: a Warning event on the request and on the ManagedCluster, and the annotation
`clusters.clusternet.io/cluster-labels-verdict` on the request, which the agent reads and logs.

The hub remembers which labels came from the request (annotation `clusters.clusternet.io/labels-from-request`
on the ManagedCluster, which the child cannot write), so it removes only those: a label an administrator set,
or changed, on the ManagedCluster is the administrator's and is never removed or overwritten by a request.
Clusters registered before this existed have no such annotation: all their labels count as the admin's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clusternet_api import applier, dnsnames, known
from clusternet_api.kube import Kube, Obj

log = logging.getLogger(__name__)
API = known.CLUSTERS_API_VERSION
FLAG = "--cluster-label-prefixes"
# the cluster's identity: set by the hub, never by a request, whatever the prefixes allow
RESERVED = frozenset({known.LABEL_CLUSTER_ID, known.LABEL_CLUSTER_NAME, known.LABEL_CREATED_BY})


@dataclass(frozen=True)
class Refusal:
    """One requested label change the hub did not make, and why ("prefix", "admin", "reserved", "invalid")."""

    key: str
    change: str  # "add", "change" or "remove"
    value: str | None  # the requested value (None for a removal)
    why: str


@dataclass(frozen=True)
class Plan:
    """What to do to the ManagedCluster: a merge patch of its labels, the new record of request-made labels."""

    labels_patch: dict[str, str | None]
    from_request: dict[str, str]
    refused: tuple[Refusal, ...]


def parse_prefixes(text: str) -> tuple[str, ...]:
    """`--cluster-label-prefixes` as given: comma-separated, blanks dropped (an empty flag allows nothing)."""
    return tuple(p for p in (part.strip() for part in text.split(",")) if p)


def allowed(key: str, prefixes: Iterable[str]) -> bool:
    """A plain string prefix of the whole key: `site.example.com/` allows every key of that DNS prefix,
    `env` allows `env` and `env-tier` alike."""
    return any(key.startswith(p) for p in prefixes)


def valid_label(key: str, value: str) -> bool:
    """Kubernetes label syntax, so one bad key cannot make the whole patch of the ManagedCluster fail."""
    prefix, slash, name = key.rpartition("/")
    if slash and not dnsnames.is_dns_subdomain(prefix):
        return False
    return dnsnames.is_label_name(name) and (not value or dnsnames.is_label_name(value))


def initial_from_request(requested: Mapping[str, str] | None, request: str = "") -> dict[str, str]:
    """The labels a new ManagedCluster takes from its registration request (identity keys are the hub's). One that
    is no label is left out with a warning naming it: the ManagedCluster's create failed on it (422), and the
    approval was retried every 2 s for good with no word to anyone (audit s36; Clusternet's agent checks its
    --cluster-labels, a hand-written request need not)."""
    labels = {str(k): str(v) for k, v in (requested or {}).items() if k not in RESERVED}
    if invalid := sorted(k for k, v in labels.items() if not valid_label(k, v)):
        log.warning("registration %s: spec.clusterLabels %s left out: not valid Kubernetes labels (a key "
                    "[prefix/]name, a value of at most 63 letters, digits, '-', '_' and '.')", request,
                    ", ".join(f"{k}={labels[k]}" for k in invalid))
    return {k: v for k, v in labels.items() if k not in invalid}


def _why_not(key: str, want: str | None, prefixes: Iterable[str]) -> str | None:
    if key in RESERVED:
        return "reserved"
    if want is not None and not valid_label(key, want):
        return "invalid"
    return None if allowed(key, prefixes) else "prefix"


def plan(requested: Mapping[str, str], current: Mapping[str, str], recorded: Mapping[str, str],
         prefixes: Iterable[str]) -> Plan:
    """Diff the requested labels against the ManagedCluster's.

    Only labels the hub applied from the request, still holding the value it applied, are the request's to
    change or remove; any other label present is an administrator's and is left alone (a request for a
    different value of it is refused, one for the same value is a no-op)."""
    prefixes = tuple(prefixes)
    owned = {k: v for k, v in recorded.items() if current.get(k) == v and k not in RESERVED}
    patch: dict[str, str | None] = {}
    from_request = dict(owned)
    refused: list[Refusal] = []
    for key in sorted(set(requested) | set(owned)):
        want, have = requested.get(key), current.get(key)
        if want == have:
            continue
        if key in owned:
            change = "remove" if want is None else "change"
        elif have is not None:
            refused.append(Refusal(key, "change", want, "reserved" if key in RESERVED else "admin"))
            continue
        else:
            change = "add"
        why = _why_not(key, want, prefixes)
        if why:
            refused.append(Refusal(key, change, want, why))
            continue
        patch[key] = want
        if want is None:
            from_request.pop(key, None)
        else:
            from_request[key] = want
    return Plan(patch, from_request, tuple(refused))


_REASONS = {
    "prefix": "key matches no prefix of the hub's {flag} ({prefixes}); a parent administrator can allow it "
              "by adding a prefix of it to {flag}, or set the label on the ManagedCluster",
    "admin": "an administrator set this label on the ManagedCluster; only they can change it",
    "reserved": "part of the cluster's identity, set by the hub",
    "invalid": "not a valid Kubernetes label",
}


def describe(refused: Iterable[Refusal], prefixes: Iterable[str]) -> str:
    """One sentence per refused change, naming the key and the flag that would allow it."""
    shown = ",".join(prefixes) or "none"
    parts = []
    for r in refused:
        what = f"remove {r.key}" if r.change == "remove" else f"{r.change} {r.key}={r.value}"
        parts.append(f"{what} ({_REASONS[r.why].format(flag=FLAG, prefixes=shown)})")
    return "refused cluster label changes: " + "; ".join(parts)


def verdict(generation: int, refused: Iterable[Refusal], prefixes: Iterable[str]) -> dict[str, Any]:
    """What the agent reads back from its request (annotation ANNOTATION_LABELS_VERDICT)."""
    refused = list(refused)
    return {"observedGeneration": generation,
            "refused": [{"key": r.key, "change": r.change, "value": r.value, "reason": r.why} for r in refused],
            "message": describe(refused, prefixes) if refused else ""}


def recorded_labels(mc: Obj) -> dict[str, str]:
    """The ManagedCluster's record of request-made labels; a missing or garbled one records none."""
    text = (mc["metadata"].get("annotations") or {}).get(known.ANNOTATION_LABELS_FROM_REQUEST)
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


async def warn(kube: Kube, objs: Iterable[Obj], message: str) -> None:
    """Best effort: a lost event must not undo or repeat the label change."""
    for obj in objs:
        await applier.post_event(kube, {"apiVersion": API, **obj}, "Warning", "ClusterLabelsRefused", message,
                                 known.CREATED_BY_HUB)


async def sync(kube: Kube, crr: Obj, prefixes: Iterable[str], cached: Obj | None = None) -> None:
    """Bring the ManagedCluster's request-made labels in line with an approved request; report refusals.

    The ManagedCluster is patched with its resourceVersion, so an administrator's concurrent edit is never
    overwritten (the 409 makes kopf retry with fresh objects). `cached`: a copy to read instead of the API."""
    prefixes = tuple(prefixes)
    status = crr.get("status") or {}
    namespace, name = status.get("dedicatedNamespace"), status.get("managedClusterName")
    if not namespace or not name:
        return
    mc = cached if cached is not None else await kube.get(API, "ManagedCluster", name, namespace)
    if mc is None:
        return
    recorded = recorded_labels(mc)
    requested = {str(k): str(v) for k, v in ((crr.get("spec") or {}).get("clusterLabels") or {}).items()}
    p = plan(requested, mc["metadata"].get("labels") or {}, recorded, prefixes)
    if p.labels_patch or p.from_request != recorded:
        meta: Obj = {"resourceVersion": mc["metadata"]["resourceVersion"], "annotations": {
            known.ANNOTATION_LABELS_FROM_REQUEST: json.dumps(p.from_request, sort_keys=True)}}
        if p.labels_patch:  # (a null `labels` in a merge patch would drop them all)
            meta["labels"] = p.labels_patch
        mc = await kube.patch(API, "ManagedCluster", name, {"metadata": meta}, namespace)
        log.info("cluster %s/%s: labels from its request now %s", namespace, name, p.from_request)
    await record_verdict(kube, crr, mc, verdict(crr["metadata"].get("generation", 0), p.refused, prefixes))


async def record_verdict(kube: Kube, crr: Obj, mc: Obj, result: dict[str, Any]) -> None:
    """Write the verdict on the request when it changed, with one Warning event per new refusal.

    A request that never had a refusal gets no verdict (one write less per registration): an agent waits for
    one only after it asked for a change."""
    text = json.dumps(result, sort_keys=True)
    previous = (crr["metadata"].get("annotations") or {}).get(known.ANNOTATION_LABELS_VERDICT)
    if previous == text or (previous is None and not result["refused"] and result["observedGeneration"] <= 1):
        return
    await kube.patch(API, "ClusterRegistrationRequest", crr["metadata"]["name"],
                     {"metadata": {"annotations": {known.ANNOTATION_LABELS_VERDICT: text}}})
    if result["refused"]:
        log.warning("cluster %s/%s: %s", mc["metadata"]["namespace"], mc["metadata"]["name"], result["message"])
        await warn(kube, ({**crr, "kind": "ClusterRegistrationRequest"}, {**mc, "kind": "ManagedCluster"}),
                   result["message"])
