"""How many more replicas of one workload a cluster can take: the arithmetic of the agent's built-in predictor.

The hub asks it for Dynamic Dividing (dynamic.py). For every node a replica could land on, the count is the
smallest over each requested resource of `(allocatable - requested by the pods already bound there) // request`,
and the node's free pod slots; the cluster's answer is the sum over those nodes. A replica could land on a node
that is schedulable (`spec.unschedulable` unset), whose NoSchedule and NoExecute taints the replica tolerates (the
node lifecycle controller taints a node whose kubelet went silent, so a lost node counts for nothing, as for
kube-scheduler), whose labels match the replica's nodeSelector and whose labels match one of the required node
affinity's terms. A replica asking for no resources is limited by pod slots alone. Pods still waiting for a node
(Pending, unbound) are then taken off the total, and so are the pods Deployments, StatefulSets and ReplicaSets want
and have not created yet, their requests summed and counted in replicas (_replicas_taken): they are the hub's
replicas given earlier that found no node yet, or others that will take the room first, and without them a cluster
that could not run what it was given kept reporting the same room, and was given more at every resync (found by
tests/integration/test_dividing.py, whose Nodes have no kubelet).

Like Clusternet's built-in predictor (`pkg/predictor`), this is a prediction from requests, not a simulation of
kube-scheduler: pod affinity, topology spread and preemption are not taken into account. Where we differ: the
required node affinity is honoured too (Clusternet's filter reads the taints alone), and pods that ended
(Succeeded or Failed) free their requests as they do for kube-scheduler.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from clusternet_api.quantity import parse_quantity
from clusternet_core.scheduling import FILTERING_EFFECTS, tolerates

Obj = Mapping[str, Any]

__all__ = ["acceptable_replicas", "coming", "node_fits", "requested"]

ENDED_PHASES = ("Succeeded", "Failed")


def acceptable_replicas(requirements: Obj, nodes: Iterable[Obj], pods: Iterable[Obj],
                        workloads: Iterable[Obj] = ()) -> int:
    """The replicas with `requirements` (a ReplicaRequirements: nodeSelector, tolerations, affinity,
    resources.requests) that still fit on `nodes`, given the `pods` already there and those the `workloads`
    (Deployments, StatefulSets, ReplicaSets) want and have not created yet."""
    wanted = {name: amount for name, amount in _quantities((requirements.get("resources") or {}).get("requests"))
              .items() if amount > 0}
    used: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    count: dict[str, int] = defaultdict(int)
    waiting: dict[str, Decimal] = defaultdict(Decimal)  # what the pods waiting for a node, or still to come, ask
    waiting_pods = 0
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if (pod.get("status") or {}).get("phase") in ENDED_PHASES:
            continue
        if not node:
            _add(waiting, requested(pod))
            waiting_pods += 1
            continue
        count[node] += 1
        for name, amount in requested(pod).items():
            used[node][name] += amount
    total = 0
    for node in nodes:
        if not node_fits(requirements, node):
            continue
        name = (node.get("metadata") or {}).get("name") or ""
        allocatable = _quantities((node.get("status") or {}).get("allocatable"))
        fits = int(allocatable.get("pods", Decimal(0))) - count[name]
        for resource, amount in wanted.items():
            fits = min(fits, int((allocatable.get(resource, Decimal(0)) - used[name][resource]) // amount))
        total += max(0, fits)
    for workload in workloads:
        if more := coming(workload):
            _add(waiting, requested({"spec": _pod_spec(workload)}), more)
            waiting_pods += more
    return max(0, total - _replicas_taken(waiting, waiting_pods, wanted))


def _add(total: dict[str, Decimal], asks: Mapping[str, Decimal], times: int = 1) -> None:
    for name, amount in asks.items():
        total[name] += amount * times


def coming(workload: Obj) -> int:
    """Pods a Deployment, StatefulSet or ReplicaSet wants and has not created yet (spec.replicas, 1 when unset,
    less status.replicas); none for a ReplicaSet a Deployment owns, counted as its Deployment's."""
    owners = (workload.get("metadata") or {}).get("ownerReferences") or []
    if workload.get("kind") == "ReplicaSet" and any(o.get("kind") == "Deployment" for o in owners):
        return 0
    wanted = (workload.get("spec") or {}).get("replicas")
    have = (workload.get("status") or {}).get("replicas")
    wanted = wanted if isinstance(wanted, int) else 1
    return max(0, wanted - (have if isinstance(have, int) else 0))


def _pod_spec(workload: Obj) -> Obj:
    template = (workload.get("spec") or {}).get("template") or {}
    spec = template.get("spec") if isinstance(template, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _replicas_taken(asks: Mapping[str, Decimal], pods: int, wanted: Mapping[str, Decimal]) -> int:
    """How many replicas' worth of room the `pods` waiting for a node (or to come) will take, asking `asks` in
    all: the most their requests cover of any resource a replica wants, or one pod slot each when a replica wants
    none. Summed before dividing: counted pod by pod, each rounded up to a whole replica, 1,000 waiting pods of
    0.1 CPU took the room of 1,000 one-CPU replicas instead of 100 (bench/predictor.py answered 0 on 640 free CPUs)."""
    if not wanted:
        return pods
    return max((math.ceil(asks.get(name, Decimal(0)) / amount) for name, amount in wanted.items()), default=0)


def node_fits(requirements: Obj, node: Obj) -> bool:
    """Whether a replica may be placed on `node` at all (module docstring)."""
    spec, labels = node.get("spec") or {}, (node.get("metadata") or {}).get("labels") or {}
    if spec.get("unschedulable"):
        return False
    tolerations = requirements.get("tolerations") or []
    if any(t.get("effect") in FILTERING_EFFECTS and not tolerates(tolerations, t) for t in spec.get("taints") or []):
        return False
    if any(labels.get(k) != v for k, v in (requirements.get("nodeSelector") or {}).items()):
        return False
    required = ((requirements.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    terms = (required or {}).get("nodeSelectorTerms") or []
    return not required or any(_term_matches(term, labels) for term in terms)


def requested(pod: Obj) -> dict[str, Decimal]:
    """What a pod asks of its node, as kube-scheduler counts it: the sum over its containers, or the largest
    init container's request when larger, plus its overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = defaultdict(Decimal)
    for container in spec.get("containers") or []:
        for name, amount in _quantities((container.get("resources") or {}).get("requests")).items():
            total[name] += amount
    for container in spec.get("initContainers") or []:
        for name, amount in _quantities((container.get("resources") or {}).get("requests")).items():
            total[name] = max(total[name], amount)
    for name, amount in _quantities(spec.get("overhead")).items():
        total[name] += amount
    return dict(total)


def _quantities(values: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """Resource name -> amount; an amount that does not parse is left out (it cannot be compared)."""
    out: dict[str, Decimal] = {}
    for name, value in (values or {}).items():
        try:
            out[name] = parse_quantity(value)
        except (ValueError, InvalidOperation):
            continue
    return out


def _term_matches(term: Obj, labels: Mapping[str, str]) -> bool:
    """One nodeSelectorTerm: every matchExpressions requirement holds (matchFields, which name nodes by field, is
    not evaluated and does not match, so a term relying on it predicts no room rather than too much)."""
    if term.get("matchFields"):
        return False
    return all(_requirement_holds(r, labels) for r in term.get("matchExpressions") or [])


def _requirement_holds(requirement: Obj, labels: Mapping[str, str]) -> bool:
    key, operator = requirement.get("key") or "", requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    present, value = key in labels, labels.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, bound = int(str(value)), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False
