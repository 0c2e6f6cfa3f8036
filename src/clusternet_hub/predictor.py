"""Asking the bound clusters' predictors how many more replicas they can take (Dynamic Dividing).

Clusternet's wire format: a POST of one replica's ReplicaRequirements (JSON) to `<predictorAddress>/replicas/predict`,
with the cluster's ID in a `Cluster-ID` header, answered by `{"replicas": {"default": <count>}}`. A cluster whose
status says `predictorDirectAccess: true` is asked at that address from the hub; the others through their tunnel,
whichever hub replica holds it, at the predictor's address as the agent reports it (`http://<host:port>`: the
agent dials it, or answers in-process for its built-in one, clusternet_api.known.TUNNEL_PREDICTOR_ADDRESS).

Where we differ from Clusternet: a direct predictor's TLS certificate is verified (Clusternet skips verification),
and one cluster's failure costs that cluster its new replicas, not the whole Subscription's scheduling
(clusternet_core/dynamic.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import aiohttp

from clusternet_api.logs import error_text
from clusternet_api.tunnel import MuxError
from clusternet_api.tunnel.http import ProtocolError, http_dial_address
from clusternet_core.dynamic import PredictionRequest, Predictions
from clusternet_hub.sockets import SocketRegistry

log = logging.getLogger(__name__)

# Clusternet's scheduler gives a predictor 32 s; a cluster that slow holds one scheduling worker that long. The
# built-in predictor answered in 0.10-0.16 s on a child of 1,000 pods and in 0.70-0.93 s with 5,000 (bench/predictor.py,
# 2026-12-07: its CPU grows with the pods it reads, 0.1 ms each), so 10 s leaves room for ~50,000 pods.
PREDICT_TIMEOUT = 10.0
# Clusters asked at once for one Subscription: the tunnel relays are cheap, each predictor LISTs its own cluster.
CLUSTERS_AT_ONCE = 16
PREDICT_PATH = "/replicas/predict"
ANSWER_KEY = "default"  # Clusternet's DefaultAcceptableReplicasKey


class PredictorError(Exception):
    """A predictor that could not be asked, or whose answer is not one."""


class Predictor:
    """Asks predictors through the hub's tunnels (SocketRegistry) or directly."""

    def __init__(self, sockets: SocketRegistry) -> None:
        self.sockets = sockets
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def ask(self, request: PredictionRequest) -> Predictions:
        """Binding key -> feed key -> replicas that cluster can still take, or why it could not say."""
        limit = asyncio.Semaphore(CLUSTERS_AT_ONCE)

        async def one(key: str, cluster: Mapping[str, Any]) -> tuple[str, dict[str, int] | str]:
            async with limit:
                try:
                    return key, {feed: await self.predict(cluster, requirements)
                                 for feed, requirements in request.requirements.items()}
                except (PredictorError, OSError, TimeoutError, aiohttp.ClientError, MuxError, ProtocolError) as e:
                    why = error_text(e)
                    log.warning("no prediction from cluster %s: %s", key, why)
                    return key, why

        return dict(await asyncio.gather(*(one(key, mc) for key, mc in request.clusters)))

    async def predict(self, cluster: Mapping[str, Any], requirements: Mapping[str, Any]) -> int:
        """One cluster's answer for one replica's `requirements`."""
        status, spec = cluster.get("status") or {}, cluster.get("spec") or {}
        cluster_id, address = str(spec.get("clusterId") or ""), str(status.get("predictorAddress") or "")
        if not status.get("predictorEnabled") or not address:
            raise PredictorError("its agent runs no predictor (feature gate Predictor)")
        body = json.dumps(dict(requirements)).encode()
        headers = {"Content-Type": "application/json", "Cluster-ID": cluster_id}
        async with asyncio.timeout(PREDICT_TIMEOUT):
            if status.get("predictorDirectAccess"):
                answer = await self._direct(address, headers, body)
            else:
                answer = await self._through_tunnel(cluster_id, address, headers, body)
        return parse_answer(answer)

    async def _direct(self, address: str, headers: dict[str, str], body: bytes) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(address.rstrip("/") + PREDICT_PATH, data=body, headers=headers) as response:
            data = await response.read()
            if response.status != 200:
                raise PredictorError(f"HTTP {response.status}: {data[:200].decode(errors='replace')}")
            return data

    async def _through_tunnel(self, cluster_id: str, address: str, headers: dict[str, str], body: bytes) -> bytes:
        dial = http_dial_address(address)
        if dial is None:
            raise PredictorError(f"predictorAddress {address!r} cannot be reached through the tunnel (an http:// "
                                 "address is, or set predictorDirectAccess)")
        http = await self.sockets.http_for(cluster_id)
        if http is None:
            raise PredictorError("its tunnel is down")
        target = urlparse(address).path.rstrip("/") + PREDICT_PATH
        response = await http.request(dial, "POST", target, [("Host", dial), *headers.items()], body)
        data = b"".join([chunk async for chunk in response.body])
        if response.status != 200:
            raise PredictorError(f"HTTP {response.status}: {data[:200].decode(errors='replace')}")
        return data


def parse_answer(data: bytes) -> int:
    """The count in `{"replicas": {"default": N}}`."""
    try:
        count = json.loads(data)["replicas"][ANSWER_KEY]
    except (ValueError, KeyError, TypeError) as e:
        raise PredictorError(f"not a predictor's answer: {data[:200].decode(errors='replace')!r}") from e
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise PredictorError(f"not a replica count: {count!r}")
    return count


__all__ = ["PREDICT_PATH", "Predictor", "PredictorError", "parse_answer"]
