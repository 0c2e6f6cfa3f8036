"""List once, then watch from where the list (or the last event) left off, into a local cache: the agent's
pullers' loop, an informer as client-go's.

The cache (name -> object) starts from the list and follows every watch event: ADDED and MODIFIED replace an
object, DELETED removes it, BOOKMARK (asked for with allowWatchBookmarks) only moves the resourceVersion on.
Each event also goes to `on_event`; each resync period `on_list` gets the cached objects, and that costs no
request (the caller re-applies everything then: drift correction in the child, which needs no fresh copy from
the parent, whose changes the watch has brought already). client-go's resync replays its cache for the same
reason: listing every period instead would have a thousand agents each ask the parent for everything every
30 s for nothing, when, at steady state, nothing changed.

The watch runs across periods: the server ends each one after timeoutSeconds (5 to 10 minutes, jittered, as
client-go's reflector), and a watch that ends, early or not (a dropped connection, the parent's API server
restarting, a proxy's idle timeout), resumes from the last resourceVersion seen, bookmarks included, instead
of listing again: a parent restart then costs a thousand agents a watch each, not a list each all at once.
A busy or briefly broken server (429, 5xx) is watched again from there too. Only when the watch cannot be
resumed is there a list again: 410 Gone (the version compacted away: only a list can say what is there now),
at once; a watch refused otherwise (403, say) or a stream that could not be read, after a delay. That list
replaces the cache and goes to `on_list` at once (while it is retried, resyncs replay the cache as it was).
Retries wait a jittered, doubling delay (0.5 s to 8 s), so agents that lost the parent together do not come
back in step; an `on_list` that fails is tried again, from the cache, after such a delay too. An `on_event`
that fails is logged and the watch goes on: the cache is right, and the next resync tries again.

`on_list` and `on_event` never run at the same time (one lock), so a handler sees each object's changes in
order; a slow handler holds the watch back (its stream is read between events), as it did before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from clusternet_api.backoff import Backoff, jittered
from clusternet_api.kube import ApiException, Kube, Obj

log = logging.getLogger(__name__)

FIRST_RETRY, MAX_RETRY = 0.5, 8.0
RETRY_SPREAD = (0.5, 1.0)  # jittered downwards: the first retry within half a second, as before the shared rule
RESUMABLE = frozenset({429, 500, 502, 503, 504})  # a busy or briefly broken server: watch again from where we were
WATCH_TIMEOUT = 300.0  # each watch asks the server to end it after this to twice this (client-go: 5-10 min)


def retries() -> Backoff:
    """The pauses of one retry loop: FIRST_RETRY doubling to MAX_RETRY (read when called, so tests can shorten
    them)."""
    return Backoff(FIRST_RETRY, MAX_RETRY, RETRY_SPREAD)


class ShortWatch(Exception):
    """A watch that ended at once without an event: waited on like a failure, never looped on (client-go)."""


@dataclass
class ListWatch:
    """One kind in one namespace: `on_list(cached objects)` after each list and each period, `on_event(event)`
    for each ADDED/MODIFIED/DELETED."""

    kube: Kube
    api_version: str
    kind: str
    namespace: str
    period: float
    on_list: Callable[[list[Obj]], Awaitable[None]]
    on_event: Callable[[Obj], Awaitable[None]]
    clock: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())
    watch_timeout: float = WATCH_TIMEOUT
    version: str = ""  # the last resourceVersion seen: of the list, then of each event and bookmark; "" lists
    cache: dict[str, Obj] = field(default_factory=dict)  # by name, as of `version`
    lists: int = 0  # counted for tests and logs
    watches: int = 0
    resyncs: int = 0  # on_list calls from the cache (not counting those right after a list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _due: float | None = field(default=None, init=False, repr=False)  # the next on_list; None until listed
    _rescheduled: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _on_list_backoff: Backoff = field(default_factory=retries, init=False, repr=False)  # on_list failing

    def objects(self) -> list[Obj]:
        """The cached objects, by name (a list's order)."""
        return [self.cache[name] for name in sorted(self.cache)]

    async def revisit(self, name: str, handle: Callable[[Obj], Awaitable[None]]) -> bool:
        """`handle` the cached object `name` as it is now, under the lock `on_list` and `on_event` share, for a
        caller that must look at one object again when no event will bring it (a Pull agent's look at a deleting
        Description when a grace ends). False, and nothing handled, when it is no longer cached."""
        async with self._lock:
            obj = self.cache.get(name)
            if obj is None:
                return False
            await handle(obj)
            return True

    async def run(self) -> None:
        """Until cancelled; failures are logged and retried, never raised."""
        resyncs = asyncio.create_task(self._resyncs(), name=f"resync {self.kind} in {self.namespace}")
        try:
            await self._list_and_watch()
        finally:
            resyncs.cancel()
            await asyncio.wait({resyncs})

    async def _list_and_watch(self) -> None:
        backoff = retries()
        while True:
            try:
                if not self.version:
                    await self._list()
                await self._watch(int(jittered(self.watch_timeout, (1.0, 2.0))))
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except ApiException as e:
                if e.status == 410:  # compacted away: only a new list can say what is there
                    log.info("watching %s: resourceVersion %s is too old; listing again", self.kind, self.version)
                    self.version = ""
                    backoff.reset()
                    continue
                await self._failed(e, backoff.next(), resume=e.status in RESUMABLE)
            except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError, ShortWatch) as e:
                await self._failed(e, backoff.next(), resume=True)
            except Exception as e:  # a stream we could not read: resuming would stop at the same place
                await self._failed(e, backoff.next(), resume=False)

    async def _failed(self, e: BaseException, delay: float, resume: bool) -> None:
        """Wait `delay` (jittered already); then the watch resumes (the cache kept) or, when it cannot, a list
        follows."""
        if not self.version:
            log.warning("listing %s failed: %s; retrying in %.1fs", self.kind, e, delay)
        elif resume:
            log.info("watching %s ended (%s); resuming at resourceVersion %s in %.1fs", self.kind, e, self.version,
                     delay)
        else:
            log.warning("watching %s failed (%s) at resourceVersion %s; listing again in %.1fs", self.kind, e,
                        self.version, delay)
            self.version = ""
        await asyncio.sleep(delay)

    async def _list(self) -> None:
        listing = await self.kube.request("GET", await self.kube.path(self.api_version, self.kind,
                                                                      namespace=self.namespace))
        self.lists += 1
        async with self._lock:
            self.cache = {o["metadata"]["name"]: o for o in listing.get("items") or []}
            self.version = str(listing["metadata"]["resourceVersion"])
            await self._deliver()

    async def _resyncs(self) -> None:
        """Hand `on_list` the cache whenever it is due (a period after the last time, sooner after a failure)."""
        while True:
            self._rescheduled.clear()
            wait = None if self._due is None else self._due - self.clock()
            if wait is not None and wait <= 0:
                async with self._lock:
                    if self._due is not None and self._due <= self.clock():  # not just delivered by a list
                        self.resyncs += 1
                        await self._deliver()
                continue
            # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancellation that comes as the event is set
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._rescheduled.wait()

    async def _deliver(self) -> None:
        """`on_list` with the cached objects (the lock held), and when it is due next."""
        try:
            await self.on_list(self.objects())
        except asyncio.CancelledError:
            raise
        except Exception as e:
            delay = self._on_list_backoff.next()
            log.warning("handling the cached %ss failed: %s; trying again in %.1fs", self.kind, e, delay)
            self._due = self.clock() + delay
        else:
            self._on_list_backoff.reset()
            self._due = self.clock() + self.period
        self._rescheduled.set()

    async def _watch(self, seconds: int) -> None:
        """One watch request, from and updating `version` and the cache (both kept when the stream breaks)."""
        self.watches += 1
        started, events = self.clock(), 0
        async for event in self.kube.watch(self.api_version, self.kind, self.namespace, server_timeout=seconds,
                                           resource_version=self.version):
            events += 1
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                raise ApiException(status=int(obj.get("code") or 500), reason=obj.get("message"))
            meta = obj.get("metadata") or {}
            if kind == "BOOKMARK":
                self.version = str(meta.get("resourceVersion") or self.version)
                continue
            async with self._lock:
                name = meta.get("name")
                if name and kind == "DELETED":
                    self.cache.pop(name, None)
                elif name and kind in ("ADDED", "MODIFIED"):
                    self.cache[name] = obj
                self.version = str(meta.get("resourceVersion") or self.version)
                try:
                    await self.on_event(event)
                except Exception as e:  # the watch goes on: the cache is right, and the next resync tries again
                    log.warning("handling %s %s %s failed: %s", kind, self.kind, name, e)
        if not events and self.clock() - started < 1:
            raise ShortWatch(f"the watch of {self.kind} ended at once, without an event")
