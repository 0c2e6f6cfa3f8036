"""The agent's copy of its own ManagedCluster, kept fresh by its heartbeats.

The pullers ask one question of it: does the hub deploy here (`applier.deployable_by_hub`: the mode is not Pull
and the agent allows pushes)? They used to GET the ManagedCluster at every resync and every change, which at
Clusternet's 30-s resync was two of the ~3.5 requests per cluster per minute the parent served at steady state
(bench/scale.py at 1,000 clusters). Every heartbeat reads and writes the ManagedCluster anyway, so its answer is
kept here and the pullers read it while it is younger than `max_age` (the report period and a half), asking the
parent themselves only when the heartbeats have not refreshed it. What decides the answer changes rarely: the
mode is the hub's (fixed at registration, or an admin's edit) and `appPusher` is the agent's own report; an
admin's change of the mode takes effect within one report period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clusternet_api import known
from clusternet_api.kube import Kube, Obj

MC_API = known.CLUSTERS_API_VERSION


@dataclass
class ClusterView:
    parent: Kube
    namespace: str
    name: str
    max_age: float
    clock: Callable[[], float] = field(default=time.monotonic)
    mc: Obj | None = None
    at: float = float("-inf")
    reads: int = 0  # GETs made here, counted for tests

    def saw(self, mc: Obj) -> None:
        """The ManagedCluster as the parent just returned it (a heartbeat's PATCH answers with it)."""
        self.mc, self.at = mc, self.clock()

    def forget(self) -> None:
        """The parent said the ManagedCluster is gone (a heartbeat's 404): the next `get` asks the parent. A copy
        kept after that told the pullers the cluster lived for up to a report period and a half more. (Deletions
        never rest on this copy either: namespaceguard reads the ManagedCluster afresh.)"""
        self.mc, self.at = None, float("-inf")

    async def get(self) -> Obj | None:
        if self.mc is not None and self.clock() - self.at <= self.max_age:
            return self.mc
        self.reads += 1
        mc = await self.parent.get(MC_API, "ManagedCluster", self.name, self.namespace)
        if mc is not None:
            self.saw(mc)
        else:
            self.forget()
        return mc

    def tunnel_unreported(self, up: bool | None) -> bool:
        """Whether the tunnel's state now differs from the SocketConnected the last copy carries: a report is due
        now, not a report period later. The hub marks a new tunnel connected the moment it attaches it; an agent
        that has not yet read the websocket's 101 then reports False over it, and with Clusternet's 3-minute
        period the cluster showed SocketConnected=False that long (bench/scale.py: warm-up tunnels)."""
        if up is None or self.mc is None:
            return False
        written = next((c.get("status") for c in (self.mc.get("status") or {}).get("conditions") or []
                        if c.get("type") == known.CONDITION_SOCKET), None)
        return written is not None and written != ("True" if up else "False")
