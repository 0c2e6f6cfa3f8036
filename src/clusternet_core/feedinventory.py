"""FeedInventory: how many replicas each feed of a Subscription wants, what one replica needs, and where the
replica count lives in the object, so Dividing scheduling can split it and the renderer can set each share.

Pure, like scheduling.py and rendering.py: the deployer hands in the Subscription and its feed templates
(Manifests); everything here can be unit-tested without a cluster.

The in-tree parser is Clusternet's (`pkg/controllers/apps/feedinventory`): Deployment and StatefulSet in
apps/v1, apps/v1beta1, apps/v1beta2 and extensions/v1beta1, ReplicaSet in apps/v1 and extensions/v1beta1
(plus apps/v1beta2, which Kubernetes served and Clusternet forgot). It reads `spec.replicas` (replica JSON
pointer `/spec/replicas`) and, from the pod template, `nodeSelector`, `tolerations`, `affinity` and the
resources of one replica: the containers' requests and limits summed, then raised to any single init
container's when that is larger. Other kinds get an entry without `desiredReplicas`, so they are deployed
unchanged to every bound cluster.

One difference: an unset `spec.replicas` counts as 1 (what Kubernetes defaults it to), where Clusternet's
parser reads nil and then does not divide the workload at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from pydantic import ValidationError

from clusternet_api import known
from clusternet_api.models import FeedInventory, FeedInventorySpec, FeedOrder, ReplicaRequirements
from clusternet_api.models.common import ObjectMeta
from clusternet_api.quantity import parse_quantity
from clusternet_core.rendering import ReplicaSplit
from clusternet_core.scheduling import feed_key, feed_ref, format_feed

__all__ = [
    "PARSED_KINDS",
    "REPLICA_JSON_PATH",
    "InventoryResult",
    "UnparseableFeed",
    "build_feed_inventory",
    "format_resource_quantity",
    "is_dividing",
    "parse_workload",
    "replica_requirements",
    "replica_splits",
]

Obj = Mapping[str, Any]

REPLICA_JSON_PATH = "/spec/replicas"

_POD_WORKLOADS = {
    "Deployment": ("apps/v1", "apps/v1beta1", "apps/v1beta2", "extensions/v1beta1"),
    "StatefulSet": ("apps/v1", "apps/v1beta1", "apps/v1beta2", "extensions/v1beta1"),
    "ReplicaSet": ("apps/v1", "apps/v1beta2", "extensions/v1beta1"),
}
PARSED_KINDS: frozenset[tuple[str, str]] = frozenset(
    (api_version, kind) for kind, versions in _POD_WORKLOADS.items() for api_version in versions
)
"""(apiVersion, kind) pairs the in-tree parser reads replicas and pod requirements from."""


class UnparseableFeed(ValueError):
    """A workload template whose replica count or pod requirements cannot be read."""


def is_dividing(subscription: Obj) -> bool:
    """Whether the Subscription divides replicas (schedulingStrategy Dividing, any dividing type)."""
    return ((subscription.get("spec") or {}).get("schedulingStrategy") or "Replication") == "Dividing"


# ---------------------------------------------------------------------------------------------------------
# Parsing one template
# ---------------------------------------------------------------------------------------------------------

_BINARY_SUFFIXES = (("Ei", 1024**6), ("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2),
                    ("Ki", 1024))
_DECIMAL_SUFFIXES = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))


def format_resource_quantity(value: Decimal, binary: bool = False) -> str:
    """A quantity as Kubernetes would print it: the largest exact suffix (`1536Mi`, `2G`), fractions in
    milli-, micro- or nano-units (`1500m`), rounded up to a nano-unit like resource.Quantity."""
    if value == value.to_integral_value():
        n = int(value)
        for suffix, size in _BINARY_SUFFIXES if binary else _DECIMAL_SUFFIXES:
            if n and n % size == 0:
                return f"{n // size}{suffix}"
        return str(n)
    for suffix, scale in (("m", 10**3), ("u", 10**6)):
        scaled = value * scale
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{suffix}"
    return f"{int((value * 10**9).to_integral_value(rounding=ROUND_CEILING))}n"


def _is_binary(text: Any) -> bool:
    return isinstance(text, str) and text.strip()[-2:] in {s for s, _ in _BINARY_SUFFIXES}


class _Totals:
    """Per resource name: a sum or a max of quantities, remembering whether the first was binary (Go's
    Quantity.Add keeps the format of the quantity it adds to)."""

    def __init__(self) -> None:
        self.values: dict[str, Decimal] = {}
        self.binary: dict[str, bool] = {}

    def add(self, name: str, raw: Any, where: str, keep_max: bool = False) -> None:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise UnparseableFeed(f"{where}: {name} must be a quantity such as 500m or 1Gi, got {raw!r}")
        try:
            value = parse_quantity(raw)
        except ValueError as exc:
            raise UnparseableFeed(f"{where}: {name}: {exc}") from exc
        if name not in self.values:
            self.values[name], self.binary[name] = value, _is_binary(raw)
        elif keep_max:
            self.values[name] = max(self.values[name], value)
        else:
            self.values[name] += value

    def as_dict(self) -> dict[str, str]:
        return {name: format_resource_quantity(v, self.binary[name]) for name, v in sorted(self.values.items())}


def _containers(pod_spec: Obj, field_name: str) -> list[Obj]:
    containers = pod_spec.get(field_name) or []
    if not isinstance(containers, list) or not all(isinstance(c, Mapping) for c in containers):
        raise UnparseableFeed(f"spec.template.spec.{field_name} must be a list of containers")
    return containers


def _resources(pod_spec: Obj) -> dict[str, dict[str, str]]:
    limits, requests = _Totals(), _Totals()
    for field_name, keep_max in (("containers", False), ("initContainers", True)):
        for i, container in enumerate(_containers(pod_spec, field_name)):
            resources = container.get("resources") or {}
            where = f"spec.template.spec.{field_name}[{i}].resources"
            if not isinstance(resources, Mapping):
                raise UnparseableFeed(f"{where} must be an object")
            for part, totals in (("limits", limits), ("requests", requests)):
                values = resources.get(part) or {}
                if not isinstance(values, Mapping):
                    raise UnparseableFeed(f"{where}.{part} must be an object of resource: quantity")
                for name, raw in values.items():
                    totals.add(str(name), raw, f"{where}.{part}", keep_max)
    result: dict[str, dict[str, str]] = {}
    if limits.values:
        result["limits"] = limits.as_dict()
    if requests.values:
        result["requests"] = requests.as_dict()
    return result


def replica_requirements(pod_spec: Obj) -> ReplicaRequirements:
    """What one replica needs, from a pod spec: node selector, tolerations, affinity, summed resources.

    Raises UnparseableFeed with a readable reason when a field has the wrong shape.
    """
    if not isinstance(pod_spec, Mapping):
        raise UnparseableFeed("spec.template.spec must be an object")
    tolerations = pod_spec.get("tolerations")
    if tolerations is not None and not isinstance(tolerations, list):
        raise UnparseableFeed("spec.template.spec.tolerations must be a list")
    data: dict[str, Any] = {
        "nodeSelector": pod_spec.get("nodeSelector") or None,
        # empty strings mean "unset" in a toleration (an empty effect matches every effect)
        "tolerations": [{k: v for k, v in t.items() if v not in ("", None)} if isinstance(t, Mapping) else t
                        for t in tolerations] if tolerations else None,
        "affinity": pod_spec.get("affinity") or None,
        "resources": _resources(pod_spec),
    }
    try:
        return ReplicaRequirements.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"spec.template.spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise UnparseableFeed(problems) from exc


def parse_workload(template: Obj) -> tuple[int | None, ReplicaRequirements | None, str | None]:
    """(desiredReplicas, replicaRequirements, replicaJsonPath) of a feed's template.

    (None, None, None) for kinds the in-tree parser does not know. Raises UnparseableFeed when a known
    workload has a replica count or pod template the apiserver would not accept.
    """
    if (str(template.get("apiVersion") or ""), str(template.get("kind") or "")) not in PARSED_KINDS:
        return None, None, None
    spec = template.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise UnparseableFeed("spec must be an object")
    replicas = spec.get("replicas")
    if replicas is None:
        replicas = 1  # Kubernetes' default
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise UnparseableFeed(f"spec.replicas must be a non-negative integer, got {replicas!r}")
    pod_template = spec.get("template") or {}
    if not isinstance(pod_template, Mapping):
        raise UnparseableFeed("spec.template must be an object")
    return replicas, replica_requirements(pod_template.get("spec") or {}), REPLICA_JSON_PATH


# ---------------------------------------------------------------------------------------------------------
# The whole inventory
# ---------------------------------------------------------------------------------------------------------


@dataclass
class InventoryResult:
    """The FeedInventory for a Subscription, and the feeds whose templates could not be parsed."""

    inventory: FeedInventory
    problems: list[str] = field(default_factory=list)
    """Sentences naming each unparseable feed; its entry has no desiredReplicas (not divided)."""

    def desired_replicas(self) -> dict[str, int]:
        """Feed key -> desiredReplicas, for scheduling.schedule."""
        return {order.key(): order.desired_replicas for order in self.inventory.spec.feeds
                if order.desired_replicas is not None}

    def body(self) -> dict[str, Any]:
        """The object to server-side apply."""
        return self.inventory.to_dict()


def _template_of(found: Obj) -> Obj:
    if found.get("kind") == "Manifest" and isinstance(found.get("template"), Mapping):
        template: Obj = found["template"]
        return template
    return found


def build_feed_inventory(subscription: Obj, templates: Mapping[str, Obj]) -> InventoryResult:
    """The FeedInventory of a Subscription, named like it, in its namespace, owned by it.

    `templates` maps feed keys to Manifests (or bare templates), as the deployer finds them. A feed
    without a template gets an entry without desiredReplicas (the renderer reports it as not found);
    an unparseable one too, with a problem. Like Clusternet, entries follow spec.feeds in order.
    """
    meta = subscription.get("metadata") or {}
    name, namespace, uid = str(meta.get("name") or ""), str(meta.get("namespace") or ""), meta.get("uid")
    labels = {known.LABEL_CREATED_BY: known.CREATED_BY_HUB, known.LABEL_SUBS_NAME: name,
              known.LABEL_SUBS_NAMESPACE: namespace}
    owners: list[dict[str, Any]] | None = None
    if uid:
        labels[known.LABEL_SUBS_UID] = str(uid)
        owners = [{"apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
                   "name": name, "uid": str(uid), "controller": True, "blockOwnerDeletion": True}]
    result = InventoryResult(FeedInventory(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels, owner_references=owners),
        spec=FeedInventorySpec(feeds=[])))
    for feed in (subscription.get("spec") or {}).get("feeds") or []:
        ref = {k: v for k, v in feed_ref(feed).items() if v}
        order = FeedOrder.model_validate(ref)
        found = templates.get(feed_key(feed))
        if found is not None:
            try:
                replicas, requirements, path = parse_workload(_template_of(found))
            except UnparseableFeed as exc:
                result.problems.append(f"cannot read the replicas of {ref.get('apiVersion')}/{format_feed(ref)}: "
                                       f"{exc}")
            else:
                order.desired_replicas, order.replica_requirements, order.replica_json_path = (
                    replicas, requirements, path)
        result.inventory.spec.feeds.append(order)
    return result


def replica_splits(replicas: Mapping[str, Sequence[int]], binding_clusters: Sequence[str], cluster_key: str,
                   inventory: FeedInventory | Iterable[FeedOrder], subscription: str) -> dict[str, ReplicaSplit]:
    """One cluster's share of each divided feed, for rendering.render_generic.

    `replicas` and `binding_clusters` are Subscription.status's (or the scheduler's result, aligned the
    same way); `cluster_key` is the cluster's `<namespace>/<name>`; `subscription` its `<namespace>/<name>`
    for reports. Feeds without desiredReplicas, a replica JSON pointer or a count for this cluster are left
    out, as Clusternet's deployer skips them.
    """
    if cluster_key not in binding_clusters:
        return {}
    index = list(binding_clusters).index(cluster_key)
    orders = inventory.spec.feeds if isinstance(inventory, FeedInventory) else list(inventory)
    splits: dict[str, ReplicaSplit] = {}
    for order in orders:
        counts = replicas.get(order.key())
        if order.desired_replicas is None or not order.replica_json_path or not counts or index >= len(counts):
            continue
        splits[order.key()] = ReplicaSplit(int(counts[index]), subscription, order.replica_json_path)
    return splits


def plan_inventory(sub: Obj, templates: Mapping[str, Obj], existing: Obj | None,
                   ) -> tuple[InventoryResult | None, dict[str, Any] | None, bool]:
    """(inventory, body to apply or None, delete the existing one) for a Subscription's FeedInventory.

    Only Dividing Subscriptions get one, like Clusternet's FeedInventory controller (it skips the
    others): Replication never reads it, and one object per Subscription would double the objects
    the hub writes and a user could mistake for a setting. The one this hub wrote goes when the
    Subscription no longer divides; it is written only when it changed.
    """
    uid = sub["metadata"].get("uid")
    owned = existing is not None and any(ref.get("uid") == uid for ref in existing["metadata"].get(
        "ownerReferences") or [])
    if not is_dividing(sub):
        return None, None, owned
    inventory = build_feed_inventory(sub, templates)
    body = inventory.body()
    changed = not owned or (existing or {}).get("spec") != body["spec"]
    return inventory, body if changed else None, False
