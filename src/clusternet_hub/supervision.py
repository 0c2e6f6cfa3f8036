"""The hub's long-running tasks: one that ends is logged with its traceback, and the hub exits with status 1.

The deployment controller, the health checks, the serving-certificate check and the peer Lease renewal run as
tasks beside kopf. They were started and never awaited: one that crashed (the controller's first LIST failing
while the parent started) ended without a word, and the hub went on serving with nothing reconciled, pushed or
cleaned up until it was restarted by hand. Each retries what it expects to fail (the parent out of reach); what
still ends one is a bug or a state nobody planned for.

Exit rather than restart the task in place: a restarted controller would start from caches and a work queue
in an unknown state (half a reconcile done, kopf's events queued for workers that are gone); a new process
lists everything again and starts clean. Kubernetes restarts the pod (with backoff, and a CrashLoopBackOff
anyone can see), and with leader election another replica takes the Lease at once, which this one releases.
As Clusternet's hub, whose controllers end the process (klog.Fatal) on what they cannot recover from.

A task that ends cancelled is stopped, not dead, only when someone asked for it (`task.cancel()`: the hub shutting
down, leadership lost). A CancelledError can also come out of a task nobody cancelled: one that a shared wait
handed on (a discovery whose first caller was cancelled did, review 6, finding 2), or an `except BaseException`
that swallowed one cancellation and raised another. Taken for a stop, such a task ended with no log line while the
hub went on leading with nothing reconciled; it is a death like any other. Asyncio counts the requests
(`Task.cancelling()`: `cancel` adds one, a timeout that fired and was handled takes its own back), so the two are
told apart without the owner's help.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class ComponentDied(RuntimeError):
    """A supervised task ended; the hub exits (status 1) so that it is restarted clean."""


class Supervisor:
    """Tasks that must run as long as the work they serve; `run` ends that work when one of them ends."""

    def __init__(self) -> None:
        self._died: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def start(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` as a task named `name` (named in the log line if it ends); cancelling it (`task.cancel()`)
        is no death, ending cancelled when nobody asked is."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            if task.cancelling():
                return  # stopped by whoever cancelled it
            log.error("%s ended cancelled although nobody cancelled it", task.get_name(), exc_info=_cancellation(task))
        elif (error := task.exception()) is None:
            log.error("%s returned, which it never should", task.get_name())
        else:
            log.error("%s crashed: %s", task.get_name(), error, exc_info=error)
        if not self._died.done():
            self._died.set_result(task.get_name())

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Await `work`; should a supervised task end first, cancel `work` and raise ComponentDied."""
        main = asyncio.ensure_future(work)
        finished_first = False
        try:
            waited: set[asyncio.Future[Any]] = {main, self._died}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            finished_first = main.done()
        finally:
            if not main.done():
                main.cancel()
                await asyncio.wait({main})  # its outcome is read below, or not wanted
        if not finished_first:
            if not main.cancelled() and main.exception() is not None:
                log.debug("cancelled after %s ended: %s", self._died.result(), main.exception())
            raise ComponentDied(f"{self._died.result()} ended; exiting so that the hub is restarted clean")
        return main.result()


def _cancellation(task: asyncio.Task[None]) -> BaseException | None:
    """The CancelledError a cancelled task ended with, its traceback showing where it came from."""
    try:
        task.result()
    except asyncio.CancelledError as e:
        return e
    return None
