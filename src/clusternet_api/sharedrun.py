"""One run of a coroutine that concurrent callers share, each of them free to give up alone.

A group-version's discovery (kube.Kube), an exec plugin's run (execplugin.ExecPlugin) and the shadow API's
discovery of the parent (clusternet_hub.shadow) are asked for by many tasks at once, and done once. The first two
used to run in the first caller's task and hand its outcome to the others, a cancellation too: when that caller was
cancelled (a tunnel handler whose agent gave up), the others raised a CancelledError nobody had sent them. A task
that receives one ends as if it had been stopped on purpose: the hub's deployment controller, priming its caches on
the same discovery, did so without a word (review 6, finding 2).

Here the run is a task of its own, which every caller, the first included, awaits through `shield`: a cancelled
caller stops waiting, and the run goes on for the others. When the last caller has left, the run is cancelled,
as it was when the first caller ran it: nobody wants its outcome, and one that hangs (an exec plugin waiting for
a login nobody completes) is not left behind. A run leaves the table when it ends, failed or not, and when it is
abandoned, so the next caller starts a new one: a failure is not kept, and nobody joins a run being cancelled.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class _Run(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


class SharedRuns(Generic[K, T]):
    """The runs in flight, one per key."""

    def __init__(self) -> None:
        self._runs: dict[K, _Run[T]] = {}

    def __contains__(self, key: K) -> bool:
        """Whether a run of `key` is in flight (one that ended or was abandoned is not)."""
        return key in self._runs

    async def run(self, key: K, start: Callable[[], Coroutine[Any, Any, T]], name: str) -> T:
        """The outcome of the run of `key` in flight, or of a new one of `start()` (a task named `name`)."""
        entry = self._runs.get(key)
        if entry is None:
            entry = self._runs[key] = _Run(asyncio.create_task(start(), name=name))
            entry.task.add_done_callback(functools.partial(self._ended, key, entry))
        entry.waiters += 1
        try:
            return await asyncio.shield(entry.task)
        finally:
            entry.waiters -= 1
            if not entry.waiters and not entry.task.done():  # the last caller left: nobody wants it
                self._forget(key, entry)
                entry.task.cancel()

    def _forget(self, key: K, entry: _Run[T]) -> None:
        if self._runs.get(key) is entry:
            del self._runs[key]

    def _ended(self, key: K, entry: _Run[T], task: asyncio.Task[T]) -> None:
        self._forget(key, entry)
        if not task.cancelled():
            task.exception()  # retrieved: its callers raise it; when they all left first, nobody needs it


__all__ = ["SharedRuns"]
