"""The agent's built-in predictor (feature gate `Predictor`): how many more replicas this cluster can take.

The hub asks it for Dynamic Dividing with Clusternet's request (a POST of one replica's ReplicaRequirements to
`/replicas/predict`) and gets Clusternet's answer (`{"replicas": {"default": N}}`); the count comes from this
cluster's Nodes, its Pods and the workloads that will create more (clusternet_core/capacity.py), read when asked,
from the API server's watch cache. Scale-ups alone ask, so a quiet fleet costs nothing.

Where we differ from Clusternet: its built-in predictor listens on `--predictor-port` (plain HTTP, every pod of the
cluster may ask it) and the hub reaches it through the tunnel. Here it listens nowhere: the hub's stream to the
reserved tunnel address (known.TUNNEL_PREDICTOR_ADDRESS) is answered in-process, over a socket pair handed to
aiohttp's HTTP server, so no port is opened and only the hub, through the agent's own tunnel, can ask. An external
predictor (`--predictor-addr`) is reported instead, asked by the hub directly (`--predictor-direct-access`) or
through the tunnel, which dials it (plain TCP for an http:// address).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from aiohttp import web

from clusternet_api import known
from clusternet_api.kube import Kube
from clusternet_api.logs import error_text
from clusternet_api.tunnel.http import http_dial_address
from clusternet_core.capacity import acceptable_replicas

log = logging.getLogger(__name__)

BUILTIN_ADDRESS = f"http://{known.TUNNEL_PREDICTOR_ADDRESS.removesuffix(':80')}"
"""What the agent reports as its predictorAddress when the built-in predictor answers."""
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
WORKLOADS = ("Deployment", "StatefulSet", "ReplicaSet")  # their pods not created yet take room too (capacity.py)


def status_fields(gate: bool, address: str | None, direct: bool) -> dict[str, Any]:
    """The predictor fields of the ManagedCluster's status: Clusternet's `predictorEnabled`, `predictorAddress`
    and `predictorDirectAccess`. With the gate off, predictorEnabled false (the hub then gives this cluster no new
    replicas of a Dynamic Dividing Subscription and says why)."""
    if not gate:
        return {"predictorEnabled": False}
    if address:
        return {"predictorEnabled": True, "predictorAddress": address, "predictorDirectAccess": direct}
    return {"predictorEnabled": True, "predictorAddress": BUILTIN_ADDRESS, "predictorDirectAccess": False}


def tunnel_target(address: str | None, direct: bool) -> str | None:
    """host:port the tunnel dials plainly for an external predictor the hub reaches through it, else None."""
    return http_dial_address(address) if address and not direct else None


class BuiltinPredictor:
    """Answers predictions from this cluster's Nodes and Pods; `connect()` opens an in-process HTTP connection."""

    def __init__(self, child: Kube) -> None:
        self.child = child
        self.server = web.Server(self.handle)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection whose other end aiohttp's server answers (module docstring)."""
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        await asyncio.get_running_loop().connect_accepted_socket(self.server, theirs)
        return await asyncio.open_connection(sock=ours)

    async def close(self) -> None:
        await self.server.shutdown(1.0)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/replicas/predict":
            return web.json_response({"message": "not found"}, status=404)
        if request.method != "POST":
            return web.json_response({"message": "POST only"}, status=405)
        try:
            requirements = json.loads(await request.read() or b"{}")
            if not isinstance(requirements, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            return web.json_response({"message": f"not ReplicaRequirements: {e}"}, status=400)
        try:
            count = await self.predict(requirements)
        except Exception as e:  # the child's API server out of reach: the hub names the cluster and moves on
            log.warning("predicting replicas failed: %s", error_text(e))
            return web.json_response({"message": f"could not read this cluster's nodes and pods: "
                                                 f"{error_text(e)}"}, status=503)
        return web.json_response({"replicas": {"default": count}})

    async def predict(self, requirements: dict[str, Any]) -> int:
        nodes = await self.child.list("v1", "Node", cached=True)
        pods = await self.child.request("GET", "/api/v1/pods", query={"fieldSelector": LIVE_PODS,
                                                                      "resourceVersion": "0"})
        workloads = [w for kind in WORKLOADS for w in await self.child.list("apps/v1", kind, cached=True)]
        return acceptable_replicas(requirements, nodes, pods.get("items") or [], workloads)
