"""List, then watch from where the list (or the last event) left off: the agent's pullers' loop.

Each resync period the caller gets the whole list (the agent re-applies everything then: drift correction), and
in between the changes. A watch that ends before the period is over (a dropped connection, the parent's API
server restarting, a proxy's idle timeout) resumes from the last resourceVersion seen, BOOKMARK events included
(asked for with allowWatchBookmarks), instead of listing again: a parent restart then costs a thousand agents a
watch each, not a list each all at once. Only 410 Gone (the version compacted away) or the period's end lists
again. Retries wait a jittered, doubling delay (0.5 s to 8 s), so agents that lost the parent together do not
come back in step. client-go's reflector does the same, for the same reasons.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from clusternet_api.kube import ApiException, Kube, Obj

log = logging.getLogger(__name__)

FIRST_RETRY, MAX_RETRY = 0.5, 8.0


@dataclass
class ListWatch:
    """One kind in one namespace: `on_list(items)` each period, `on_event(event)` for ADDED/MODIFIED/DELETED."""

    kube: Kube
    api_version: str
    kind: str
    namespace: str
    period: float
    on_list: Callable[[list[Obj]], Awaitable[None]]
    on_event: Callable[[Obj], Awaitable[None]]
    clock: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())
    version: str = ""  # the last resourceVersion seen: of the list, then of each event and bookmark
    lists: int = 0  # counted for tests and logs
    watches: int = 0

    async def run(self) -> None:
        """Until cancelled; failures are logged and retried, never raised."""
        delay = FIRST_RETRY
        while True:
            try:
                await self._period()
                delay = FIRST_RETRY
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("watching %s failed: %s; retrying in %.1fs", self.kind, e, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(MAX_RETRY, delay * 2)

    async def _period(self) -> None:
        listing = await self.kube.request("GET", await self.kube.path(self.api_version, self.kind,
                                                                      namespace=self.namespace))
        self.lists += 1
        await self.on_list(listing.get("items", []))
        self.version = str(listing["metadata"]["resourceVersion"])
        end = self.clock() + self.period
        delay = FIRST_RETRY
        while (left := end - self.clock()) >= 1:
            try:
                await self._watch(int(left))
                delay = FIRST_RETRY
            except ApiException as e:
                if e.status == 410:  # compacted away: only a new list can say what is there
                    log.info("watching %s: resourceVersion %s is too old; listing again", self.kind, self.version)
                    return
                raise
            except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError) as e:
                log.info("watching %s ended early (%s); resuming at resourceVersion %s", self.kind, e, self.version)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(MAX_RETRY, delay * 2)

    async def _watch(self, seconds: int) -> None:
        """One watch request, from and updating `version` (kept when the stream breaks)."""
        self.watches += 1
        async for event in self.kube.watch(self.api_version, self.kind, self.namespace, server_timeout=seconds,
                                           resource_version=self.version):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                raise ApiException(status=int(obj.get("code") or 500), reason=obj.get("message"))
            self.version = str((obj.get("metadata") or {}).get("resourceVersion") or self.version)
            if kind != "BOOKMARK":
                await self.on_event(event)
