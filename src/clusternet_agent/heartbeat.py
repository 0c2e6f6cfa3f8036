"""Heartbeats: collect the child's health often, report it to the parent's ManagedCluster less often.

Collection (every --cluster-status-collect-frequency) reads /version, the health endpoints and the Nodes;
reporting (every --cluster-status-update-frequency) writes the ManagedCluster status in the agent's own
dedicated namespace. The Ready condition follows Clusternet: (livez and readyz) or healthz.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from clusternet_api import __version__, known
from clusternet_api.kube import ApiException, Kube, Obj
from clusternet_api.quantity import format_quantity, parse_quantity
from clusternet_api.timefmt import now_rfc3339

log = logging.getLogger(__name__)
MC_API = known.CLUSTERS_API_VERSION
SUMMED_RESOURCES = ("cpu", "memory", "nvidia.com/gpu", "pods")


def node_statistics(nodes: list[Obj]) -> dict[str, int]:
    """Counts by the NodeReady condition; a node without one is "lost"."""
    stats = {"readyNodes": 0, "notReadyNodes": 0, "unknownNodes": 0, "lostNodes": 0}
    for node in nodes:
        cond = next((c for c in (node.get("status") or {}).get("conditions") or []
                     if c.get("type") == "Ready"), None)
        if cond is None:
            stats["lostNodes"] += 1
        elif cond.get("status") == "True":
            stats["readyNodes"] += 1
        elif cond.get("status") == "False":
            stats["notReadyNodes"] += 1
        else:
            stats["unknownNodes"] += 1
    return stats


def sum_resources(nodes: list[Obj], field: str) -> dict[str, str]:
    """Sum of node .status.capacity or .status.allocatable for the resources schedulers care about."""
    totals: dict[str, Decimal] = {}
    for node in nodes:
        for name, value in ((node.get("status") or {}).get(field) or {}).items():
            if name in SUMMED_RESOURCES:
                totals[name] = totals.get(name, Decimal(0)) + parse_quantity(value)
    return {name: format_quantity(v) for name, v in sorted(totals.items())}


def ready_condition(healthz: bool, livez: bool, readyz: bool, previous: Obj | None) -> Obj:
    ok = (livez and readyz) or healthz
    status = "True" if ok else "False"
    transition = (previous or {}).get("lastTransitionTime") if (previous or {}).get("status") == status else None
    return {
        "type": known.CONDITION_READY, "status": status,
        "reason": known.REASON_READY if ok else known.REASON_NOT_READY,
        "message": "managed cluster is ready" if ok else
        f"child apiserver health: healthz={healthz} livez={livez} readyz={readyz}",
        "lastTransitionTime": transition or now_rfc3339(),
    }


async def _probe(child: Kube, path: str) -> bool:
    try:
        status, _ = await child.raw("GET", path)
    except Exception:
        return False
    return status == 200


async def collect(child: Kube, *, apiserver_url: str, heartbeat_seconds: int, app_pusher: bool,
                  use_socket: bool, predictor: Obj | None = None) -> Obj:
    """One observation of the child, shaped as ManagedCluster status fields (without conditions)."""
    # one after the other on one kept-alive connection: in parallel they would cost four more TLS
    # handshakes per collection, more CPU than the few milliseconds of latency they save
    status, version = await child.raw("GET", "/version")
    nodes = await child.list("v1", "Node")
    healthz, livez, readyz = [await _probe(child, path) for path in ("/healthz", "/livez", "/readyz")]
    observed: Obj = {
        "k8sVersion": version.get("gitVersion") if status == 200 and isinstance(version, dict) else None,
        "platform": version.get("platform") if status == 200 and isinstance(version, dict) else None,
        "agentVersion": __version__,
        "apiserverURL": apiserver_url,
        "healthz": healthz,
        "livez": livez,
        "readyz": readyz,
        "appPusher": app_pusher,
        "useSocket": use_socket,
        "heartbeatFrequencySeconds": heartbeat_seconds,
        "nodeStatistics": node_statistics(nodes),
        "capacity": sum_resources(nodes, "capacity"),
        "allocatable": sum_resources(nodes, "allocatable"),
        **(predictor or {}),  # predictorEnabled, predictorAddress, predictorDirectAccess (agent predictor.py)
    }
    return observed


def unreachable(observed: Obj) -> Obj:
    """An observation with the child's API server down (Ready False on the parent), the rest as last seen."""
    return {**observed, "healthz": False, "livez": False, "readyz": False}


def socket_condition(connected: bool, previous: Obj | None) -> Obj:
    status = "True" if connected else "False"
    transition = (previous or {}).get("lastTransitionTime") if (previous or {}).get("status") == status else None
    return {"type": known.CONDITION_SOCKET, "status": status,
            "reason": "TunnelConnected" if connected else "TunnelDisconnected",
            "message": known.SOCKET_CONNECTED_MESSAGE if connected else "the agent's tunnel to the hub is down",
            "lastTransitionTime": transition or now_rfc3339()}


def status_patch(observed: Obj, current_mc: Obj | None, tunnel_up: bool | None = None) -> Obj:
    """The status to write: the observation, now as lastObservedTime, a Ready condition and, when the
    agent holds a tunnel, its SocketConnected condition; other parties' conditions are kept."""
    conditions = list(((current_mc or {}).get("status") or {}).get("conditions") or [])
    by_type = {c.get("type"): c for c in conditions}
    ready = ready_condition(bool(observed["healthz"]), bool(observed["livez"]), bool(observed["readyz"]),
                            by_type.get(known.CONDITION_READY))
    ours = [ready]
    if tunnel_up is not None:
        ours.append(socket_condition(tunnel_up, by_type.get(known.CONDITION_SOCKET)))
    mine = {c["type"] for c in ours}
    others = [c for c in conditions if c.get("type") not in mine]
    return {**observed, "lastObservedTime": now_rfc3339(), "conditions": [*others, *ours]}


async def report(parent: Kube, namespace: str, name: str, observed: Obj,
                 tunnel_up: Callable[[], bool | None] | bool | None = None) -> Obj:
    """Write the status with optimistic concurrency, so conditions the hub set meanwhile are not lost.

    `tunnel_up` (a callable: the tunnel's state now) is read after each read of the ManagedCluster, never
    before: the hub marks SocketConnected=True right after the agent's tunnel comes up, and a state taken
    earlier (a freshly registered agent reports while its tunnel is still connecting) would overwrite
    the hub's True with a stale False until the next report, 3 minutes later by default.

    The first read is from the parent's watch cache (resourceVersion=0), as the hub's approvals and the agents'
    polls are: a copy that trails storage only costs a 409 on the write, and the retries read storage."""
    for attempt in range(3):
        current = await parent.get(MC_API, "ManagedCluster", name, namespace, cached=attempt == 0)
        if current is None:
            raise LookupError(f"ManagedCluster {namespace}/{name} does not exist on the parent")
        up = tunnel_up() if callable(tunnel_up) else tunnel_up
        body: dict[str, Any] = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                                "status": status_patch(observed, current, up)}
        try:
            return await parent.patch(MC_API, "ManagedCluster", name, body, namespace, subresource="status")
        except ApiException as e:
            if e.status != 409 or attempt == 2:
                raise
    raise AssertionError("unreachable")
