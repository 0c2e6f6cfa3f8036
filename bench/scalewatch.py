"""What bench/scale.py observes: ManagedClusters, registrations, Descriptions and the Subscription on the parent
(timestamped on arrival), and the hub's own gauges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from clusternet_api import known
from clusternet_api.kube import ApiException, Kube, Obj
from common import Hub, https_status

APPS = known.APPS_API_VERSION
CLUSTERS = known.CLUSTERS_API_VERSION

log = logging.getLogger("bench.scale")




def condition(obj: Obj, ctype: str) -> str | None:
    return next((str(c.get("status")) for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == ctype), None)


@dataclass
class Cluster:
    index: int
    cluster_id: str
    namespace: str = ""  # its dedicated namespace on the parent
    ready: str | None = None
    socket: str | None = None
    last_observed: str | None = None
    crr_at: float | None = None  # its ClusterRegistrationRequest appeared
    approved_at: float | None = None  # the hub wrote Approved
    ready_at: float | None = None  # first Ready=True
    socket_up_at: list[float] = field(default_factory=list)
    socket_down_at: list[float] = field(default_factory=list)  # SocketConnected left True
    heartbeat_at: list[float] = field(default_factory=list)  # lastObservedTime changed (arrival time)
    not_ready: list[tuple[float, str]] = field(default_factory=list)  # Ready left True: (when, new status)


@dataclass
class DescState:
    generation: int = 0
    names: set[str] = field(default_factory=set)
    success_at: dict[int, float] = field(default_factory=dict)  # generation -> first Success for it
    created_at: float | None = None  # first seen: where propagation's time goes (creating vs pushing)
    deleted: list[float] = field(default_factory=list)


class Watcher:
    """ManagedClusters and Descriptions on the parent, timestamped on arrival."""

    def __init__(self, kube: Kube, clusters: dict[str, Cluster], sub: str, feeds: int) -> None:
        self.kube = kube
        self.sub, self.feeds = sub, feeds  # the Subscription followed, and how many objects each Description holds
        self.by_id = clusters
        self.by_ns: dict[str, Cluster] = {}
        self.descs: dict[str, DescState] = {}
        self.sub_seen: float | None = None
        self.changed = asyncio.Event()
        self.relists = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        ready = {kind: asyncio.Event() for kind in ("ManagedCluster", "ClusterRegistrationRequest", "Description",
                                                    "Subscription")}
        self.tasks = [asyncio.create_task(self._follow(APPS if k in ("Description", "Subscription") else CLUSTERS,
                                                       k, ready[k])) for k in ready]
        for ev in ready.values():
            await asyncio.wait_for(ev.wait(), 30)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def on_mc(self, event: str, mc: Obj, now: float) -> None:
        cid = str((mc.get("spec") or {}).get("clusterId", ""))
        c = self.by_id.get(cid)
        if c is None or event == "DELETED":
            return
        c.namespace = mc["metadata"]["namespace"]
        self.by_ns[c.namespace] = c
        ready, sock = condition(mc, known.CONDITION_READY), condition(mc, known.CONDITION_SOCKET)
        observed = (mc.get("status") or {}).get("lastObservedTime")
        if ready == "True" and c.ready_at is None:
            c.ready_at = now
        if c.ready == "True" and ready != "True":
            c.not_ready.append((now, str(ready)))
        if sock == "True" and c.socket != "True":
            c.socket_up_at.append(now)
        if sock != "True" and c.socket == "True":
            c.socket_down_at.append(now)
        if observed and observed != c.last_observed:
            c.heartbeat_at.append(now)
        c.ready, c.socket, c.last_observed = ready, sock, observed

    def on_crr(self, event: str, crr: Obj, now: float) -> None:
        c = self.by_id.get(str((crr.get("spec") or {}).get("clusterId", "")))
        if c is None or event == "DELETED":
            return
        c.crr_at = c.crr_at or now
        if (crr.get("status") or {}).get("result") == "Approved":
            c.approved_at = c.approved_at or now

    def on_desc(self, event: str, desc: Obj, now: float) -> None:
        meta = desc["metadata"]
        if (meta.get("labels") or {}).get(known.LABEL_SUBS_NAME) != self.sub:
            return
        state = self.descs.setdefault(meta["namespace"], DescState())
        if event == "DELETED":
            state.names.discard(meta["name"])
            state.deleted.append(now)
            return
        state.names.add(meta["name"])
        state.created_at = state.created_at or now
        gen = int(meta.get("generation") or 0)
        state.generation = gen
        status = desc.get("status") or {}
        if status.get("phase") == "Success" and str(status.get("observedGeneration")) == str(gen) and \
                len(status.get("manifestStatuses") or []) == self.feeds:
            state.success_at.setdefault(gen, now)

    def on_sub(self, event: str, sub: Obj, now: float) -> None:
        if sub["metadata"]["name"] == self.sub and event != "DELETED" and self.sub_seen is None:
            self.sub_seen = now

    async def _follow(self, api: str, kind: str, ready: asyncio.Event) -> None:
        handle: Callable[[str, Obj, float], None] = {
            "ManagedCluster": self.on_mc, "ClusterRegistrationRequest": self.on_crr, "Description": self.on_desc,
            "Subscription": self.on_sub}[kind]
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listing = await self.kube.request("GET", await self.kube.path(api, kind))
                    now = time.monotonic()
                    for item in listing.get("items", []):
                        handle("ADDED", item, now)
                    rv = str(listing["metadata"]["resourceVersion"])
                    ready.set()
                async for event in self.kube.watch(api, kind, server_timeout=240, resource_version=rv):
                    now = time.monotonic()
                    if event["type"] == "ERROR":
                        rv = None
                        self.relists += 1
                        break
                    rv = str(event["object"]["metadata"]["resourceVersion"])
                    if event["type"] != "BOOKMARK":
                        handle(event["type"], event["object"], now)
                        self.changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("watch of %s broke: %r; listing again", kind, e)
                rv = None
                self.relists += 1
                await asyncio.sleep(0.5)

    async def until(self, done: Callable[[], bool], limit_s: float, what: str,
                    progress: Callable[[], str] = lambda: "") -> float:
        """Wait until `done()`; returns the time it became true (arrival time of the event that made it)."""
        deadline = time.monotonic() + limit_s
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} not reached within {limit_s:.0f} s {progress()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        return time.monotonic()


# --- the hub's numbers ----------------------------------------------------------------------------------------


def hub_metric(hub: Hub, name: str) -> float | None:
    ctx = ssl.create_default_context(cafile=str(hub.ca))
    with urllib.request.urlopen(f"{hub.url}/metrics", context=ctx, timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def created_despite_overload(kube: Kube, obj: dict[str, Any]) -> None:
    """Create, retrying what a saturated parent answers (at 1,000 clusters: HTTP 500 "resource quota evaluation
    timed out", 504) a few times; an object that exists already (an earlier try that did land) counts."""
    for attempt in range(5):
        try:
            await kube.create(obj)
            return
        except ApiException as e:
            if e.status == 409:
                return
            if e.status not in (500, 504) or attempt == 4:
                raise
        await asyncio.sleep(2.0 * (attempt + 1))


async def seconds_until(check: Callable[[], Awaitable[bool]], since: float, limit_s: float, interval: float,
                        errors: tuple[type[Exception], ...] = (OSError,)) -> float | None:
    """Seconds from `since` until `check()` holds, polled every `interval` (`errors` count as "not yet"); None
    past `limit_s`."""
    deadline = since + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(*errors):
            if await check():
                return time.monotonic() - since
        await asyncio.sleep(interval)
    return None


async def tunnels_held(hub: Hub, n: int, since: float, limit_s: float) -> float | None:
    """Seconds from `since` until the hub holds `n` tunnels (its clusternet_socket_connections gauge)."""
    async def held() -> bool:
        count = await asyncio.to_thread(hub_metric, hub, "clusternet_socket_connections")
        return count is not None and count >= n

    return await seconds_until(held, since, limit_s, 0.25)


async def hub_healthy(hub: Hub, since: float, limit_s: float) -> float | None:
    """Seconds from `since` until the hub's /healthz answers 200."""
    async def healthy() -> bool:
        return await asyncio.to_thread(https_status, f"{hub.url}/healthz", hub.ca) == 200

    return await seconds_until(healthy, since, limit_s, 0.1, (OSError, ValueError))
