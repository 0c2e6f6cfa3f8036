"""A work queue of keys, with per-key de-duplication and delayed, backed-off requeues.

Watch events only mark a key as due; workers take keys from here. Like client-go's workqueue:
- a key queued twice runs once (a `force` asked for by either request is kept);
- a key is never processed by two workers at once: one queued again while being processed runs again once
  the worker is done with it (so a push of a Description never races another push's creates, and what
  arrived during a reconcile is never lost);
- `add_after` brings a key back later (retries), without holding a worker meanwhile;
- unlike client-go, keys of the periodic resync (`background=True`) wait until no other key does: at 1,000
  clusters a rollout outlasted the 30-s resync, and re-pushing every Description already deployed (drift
  correction) took the workers from the ones not deployed yet, each round more of them (bench/scale.py:
  738 s to deploy 1,000 clusters, 165 s to re-apply them all). A key asked for again normally while it
  waits in the background lane moves to the front lane;
- unlike client-go, keys of one group (`group` gives a key's group and that group's limit) are processed by at
  most that many workers at once; the others wait aside, in order, and the first of them goes back to the front
  of its lane when one of its group is done. A few clusters slow to answer held every worker, so the other
  clusters' pushes and every Subscription waited for them (audit s36, controllers, finding 7).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Group = tuple[Hashable, int]
"""A group of keys and how many of them may be processed at once."""


class WorkQueue(Generic[K]):
    def __init__(self, group: Callable[[K], Group | None] | None = None) -> None:
        """`group`: a key's group and how many keys of it may be processed at once, or None when it has none."""
        self._group = group
        self._busy: dict[Hashable, int] = {}  # group -> its keys being processed
        self._aside: dict[Hashable, deque[tuple[K, int]]] = {}  # group -> (key, lane) waiting for one of them
        self._lanes: tuple[deque[K], deque[K]] = (deque(), deque())  # (front, background)
        self._entries: asyncio.Queue[None] = asyncio.Queue()  # one per lane entry, left-behind ones included
        self._queued: dict[K, bool] = {}  # key -> force, for keys waiting in a lane
        self._background: set[K] = set()  # queued keys waiting in the background lane only
        self._processing: set[K] = set()
        self._again: dict[K, tuple[bool, bool]] = {}  # keys queued again while processed -> (force, background)
        self._later: dict[K, tuple[asyncio.TimerHandle, bool]] = {}  # keys add_after brings back -> (timer, force)

    def add(self, key: K, force: bool = False, background: bool = False) -> None:
        if key in self._processing:
            was_force, was_background = self._again.get(key, (False, True))
            self._again[key] = (was_force or force, was_background and background)
        elif key in self._queued:
            self._queued[key] = self._queued[key] or force
            if not background and key in self._background:  # promoted: its background entry is left behind
                self._background.discard(key)
                self._put(key, 0)
        else:
            self._queued[key] = force
            if background:
                self._background.add(key)
            self._put(key, 1 if background else 0)

    def _put(self, key: K, lane: int) -> None:
        self._lanes[lane].append(key)
        self._entries.put_nowait(None)

    def add_after(self, key: K, delay: float, force: bool = False) -> None:
        """Add `key` after `delay`, or sooner when it is to come back sooner already: one timer per key, whose
        `force` is that of any request. Each request used to get its own timer, so every run no timer had caused
        (an event, the periodic resync, a worker's error retry) started one more series of retries or rechecks:
        a Description its child refuses gained a series at each resync for as long as it failed, and a HelmChart
        one per edit, for ever (each a repository download every 10 minutes)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._later.get(key)
        if pending is not None:
            timer, was_forced = pending
            if timer.when() <= when:
                self._later[key] = (timer, was_forced or force)
                return
            timer.cancel()
            force = force or was_forced
        self._later[key] = (loop.call_at(when, self._bring_back, key), force)

    def _bring_back(self, key: K) -> None:
        _, force = self._later.pop(key)
        self.add(key, force)

    async def get(self) -> tuple[K, bool]:
        """The next key and whether any of its requests asked for force; call `done` when finished."""
        while True:
            await self._entries.get()
            if (taken := self._take()) is not None:
                return taken

    def _take(self) -> tuple[K, bool] | None:
        """Take the next entry (front lane first): its key, or None for an entry a promotion left behind."""
        lane = 0 if self._lanes[0] else 1
        key = self._lanes[lane].popleft()
        if not self._still_in(key, lane):
            return None
        group, limit = (self._group(key) if self._group is not None else None) or (None, 0)
        if group is not None:
            if self._busy.get(group, 0) >= limit:
                self._aside.setdefault(group, deque()).append((key, lane))
                return None
            self._busy[group] = self._busy.get(group, 0) + 1
        self._background.discard(key)
        self._processing.add(key)
        return key, self._queued.pop(key)

    def _still_in(self, key: K, lane: int) -> bool:
        """Whether the key still waits in that lane: not an entry a promotion (or a run) left behind."""
        return key in self._queued and (lane == 1) == (key in self._background)

    def _group_done(self, key: K) -> None:
        """One key of its group less at work: the first of the group set aside goes to the front of its lane."""
        group, _ = (self._group(key) if self._group is not None else None) or (None, 0)
        if group is None:
            return
        if (busy := self._busy.pop(group, 1) - 1) > 0:
            self._busy[group] = busy
        aside = self._aside.get(group)
        while aside:
            waiting, lane = aside.popleft()
            if self._still_in(waiting, lane):
                self._lanes[lane].appendleft(waiting)
                self._entries.put_nowait(None)
                break
        if not aside:
            self._aside.pop(group, None)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        self._group_done(key)
        if key in self._again:
            force, background = self._again.pop(key)
            self.add(key, force, background)

    def waiting(self, key: K) -> bool:
        """Queued or being processed: work for it is on its way."""
        return key in self._queued or key in self._processing

    def force_of(self, key: K) -> bool | None:
        """The force of a queued key, None when it is not queued."""
        return self._queued.get(key)

    def __len__(self) -> int:
        return len(self._queued)

    def drain(self) -> list[tuple[K, bool]]:
        """Every queued key in the order workers would take them, taken out without processing (tests)."""
        out = []
        while not self._entries.empty():
            self._entries.get_nowait()
            if (taken := self._take()) is not None:
                self._processing.discard(taken[0])
                self._group_done(taken[0])
                out.append(taken)
        return out


class Backoff(Generic[K]):
    """Per-key delays growing by `factor` from `first` to `cap`, until `forget`."""

    def __init__(self, first: float, cap: float, factor: float = 2.0) -> None:
        self.first, self.cap, self.factor = first, cap, factor
        self._delays: dict[K, float] = {}

    def next(self, key: K) -> float:
        """The delay before this key's next attempt, one step longer than the last."""
        last = self._delays.get(key)
        delay = self.first if last is None else min(last * self.factor, self.cap)
        self._delays[key] = delay
        return delay

    def current(self, key: K) -> float | None:
        return self._delays.get(key)

    def forget(self, key: K) -> None:
        self._delays.pop(key, None)
