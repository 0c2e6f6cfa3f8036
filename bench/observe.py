"""Watching a parent for bench/propagation.py and bench/helm.py: Subscriptions and Descriptions timestamped on
arrival, and waiting for namespaces to be gone."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from clusternet_api import known
from clusternet_api.kube import Kube, Obj

APPS = known.APPS_API_VERSION


@dataclass
class Track:
    """One Subscription: when it appeared and, per cluster namespace, when its Description appeared and
    first reported Success with every object."""

    expected: int = 0
    seen: float | None = None
    created: dict[str, float] = field(default_factory=dict)
    success: dict[str, float] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, list[Obj]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Observer:
    """Watches Subscriptions and Descriptions on the parent and timestamps what matters on arrival."""

    def __init__(self, kube: Kube, feeds: int) -> None:
        self.kube = kube
        self.feeds = feeds  # objects per Description: Success counts once all of them report
        self.tracks: dict[str, Track] = collections.defaultdict(Track)
        self.ready = {kind: asyncio.Event() for kind in ("Subscription", "Description")}
        self.relists = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Observer:
        self.tasks = [asyncio.create_task(self._follow(kind)) for kind in self.ready]
        for event in self.ready.values():
            await asyncio.wait_for(event.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _on(self, kind: str, event: str, obj: Obj) -> None:
        now = time.monotonic()
        meta = obj["metadata"]
        if kind == "Subscription":
            track = self.tracks[meta["name"]]
            if track.seen is None and event != "DELETED":
                track.seen = now
            track.changed.set()
            return
        sub = (meta.get("labels") or {}).get(known.LABEL_SUBS_NAME)
        if not sub:
            return
        track, ns = self.tracks[sub], meta["namespace"]
        if event == "DELETED":
            track.live.discard(ns)
        else:
            track.live.add(ns)
            track.created.setdefault(ns, now)
            status = obj.get("status") or {}
            statuses = status.get("manifestStatuses") or []
            if status.get("phase") == "Success" and len(statuses) == self.feeds and ns not in track.success:
                track.success[ns] = now
                track.statuses[ns] = statuses
            elif status.get("phase") == "Failure":
                track.failures[ns] = str(status.get("reason"))
        track.changed.set()

    async def _follow(self, kind: str) -> None:
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listing = await self.kube.request("GET", await self.kube.path(APPS, kind))
                    for item in listing.get("items", []):
                        self._on(kind, "ADDED", item)
                    rv = str(listing["metadata"]["resourceVersion"])
                    self.ready[kind].set()
                async for event in self.kube.watch(APPS, kind, server_timeout=240, resource_version=rv):
                    if event["type"] == "ERROR":  # e.g. 410 Gone: list again
                        rv = None
                        self.relists += 1
                        break
                    rv = str(event["object"]["metadata"]["resourceVersion"])
                    if event["type"] != "BOOKMARK":
                        self._on(kind, event["type"], event["object"])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                print(f"  (watch of {kind} broke: {e!r}; listing again)", file=sys.stderr, flush=True)
                rv = None
                self.relists += 1
                await asyncio.sleep(0.5)

    async def until(self, sub: str, done: Callable[[Track], bool], limit_s: float, what: str) -> Track:
        track = self.tracks[sub]
        deadline = time.monotonic() + limit_s
        while not done(track):
            track.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: {len(track.success)}/{track.expected} Success after {limit_s:.0f} s; "
                                   f"failures: {dict(list(track.failures.items())[:3])}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(track.changed.wait(), left)
        return track

    async def all_success(self, sub: str, expected: int, limit_s: float) -> Track:
        self.tracks[sub].expected = expected
        return await self.until(sub, lambda t: len(t.success) >= expected and t.seen is not None, limit_s,
                                f"Subscription {sub}")

    async def all_gone(self, sub: str, limit_s: float) -> None:
        await self.until(sub, lambda t: not t.live, limit_s, f"clean-up of Subscription {sub}")


async def namespaces_gone(kubes: Iterable[Kube], prefix: str, limit_s: float) -> bool:
    """Wait until no namespace starting with `prefix` is left (Terminating ones included) in these clusters:
    their deletion keeps the namespace controller busy long after the DELETE, so the next step would be
    timed on a busier machine than the one before. False when some are still there after `limit_s`."""
    deadline = time.monotonic() + limit_s
    for kube in kubes:
        while any(ns["metadata"]["name"].startswith(prefix) for ns in await kube.list("v1", "Namespace")):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.5)
    return True
