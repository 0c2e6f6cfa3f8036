"""A work queue of keys, with per-key de-duplication and delayed, backed-off requeues.

Watch events only mark a key as due; workers take keys from here. Like client-go's workqueue:
- a key queued twice runs once (a `force` asked for by either request is kept);
- a key is never processed by two workers at once: one queued again while being processed runs again once
  the worker is done with it (so a push of a Description never races another push's creates, and what
  arrived during a reconcile is never lost);
- `add_after` brings a key back later (retries), without holding a worker meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: dict[K, bool] = {}  # key -> force, for keys waiting in _queue
        self._processing: set[K] = set()
        self._again: dict[K, bool] = {}  # keys queued again while being processed -> force

    def add(self, key: K, force: bool = False) -> None:
        if key in self._processing:
            self._again[key] = self._again.get(key, False) or force
        elif key in self._queued:
            self._queued[key] = self._queued[key] or force
        else:
            self._queued[key] = force
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float, force: bool = False) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key, force)

    async def get(self) -> tuple[K, bool]:
        """The next key and whether any of its requests asked for force; call `done` when finished."""
        key = await self._queue.get()
        self._processing.add(key)
        return key, self._queued.pop(key)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._again:
            self.add(key, self._again.pop(key))

    def waiting(self, key: K) -> bool:
        """Queued or being processed: work for it is on its way."""
        return key in self._queued or key in self._processing

    def force_of(self, key: K) -> bool | None:
        """The force of a queued key, None when it is not queued."""
        return self._queued.get(key)

    def __len__(self) -> int:
        return len(self._queued)

    def drain(self) -> list[tuple[K, bool]]:
        """Every queued key in order, taken out without processing (tests)."""
        out = []
        while not self._queue.empty():
            key = self._queue.get_nowait()
            out.append((key, self._queued.pop(key)))
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
