"""How the agent keeps its background tasks alive: a failure is logged with its traceback, and the task restarted.

The agent's work is split in two. What runs in the foreground (registration, then the heartbeat loop) *is* the
agent: when it fails, the agent ends, the CLI logs the traceback and exits 1, and the Deployment starts it again.
Everything else runs beside the heartbeats as tasks: the tunnel, the label request, deploying and its two pullers
(Descriptions, HelmReleases). Nothing awaits those until re-registration or shutdown, so one that ended with an
exception used to end silently: heartbeats still said Ready while nothing was applied any more. Those tasks are
restarted here, in the process, rather than the agent exiting: their failures come from the parent's or the
child's API server (restarting, frozen, refusing), which a restart a moment later outlives, and exiting would
also stop the heartbeats, re-register and show the cluster NotReady for what only one task had trouble with.
A task that keeps failing logs one error, with its traceback, per restart (at most one a minute).

Cancelling the task stops it (`task.cancel()`: re-registration, shutdown). A CancelledError that comes out of the
work although nobody cancelled this task (a shared wait handing on another caller's cancellation, as discovery did:
review 6, finding 2) is a failure like any other: taken for a stop, it ended the task for good, without a word,
while the heartbeats went on saying Ready. Asyncio counts the requests to cancel a task (`Task.cancelling()`), so
the two are told apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from clusternet_api.backoff import Backoff

log = logging.getLogger(__name__)
# The first restart comes soon: most failures are a blip of an API server (a connection refused, a timeout).
RESTART_FIRST_SECONDS = 1.0
# Doubling up to a minute: a task failing for good (a bug, a permission gone) logs once a minute, not in a loop,
# and one recovering waits at most that long.
RESTART_MAX_SECONDS = 60.0
# A run this long was no crash loop: the next failure is restarted soon again.
HEALTHY_RUN_SECONDS = 300.0


async def supervised(name: str, run: Callable[[], Awaitable[None]], *, forever: bool = False) -> None:
    """Await `run()` (a fresh one each time) until it returns; after an exception, log it with its traceback and
    run it again, with capped, jittered backoff. `forever`: the task is meant never to end (a puller, the
    tunnel), so a return is logged and restarted too. Cancel the task to stop it; a CancelledError nobody asked
    for (the task's cancellation count is 0) is a failure, logged and restarted."""
    backoff = Backoff(RESTART_FIRST_SECONDS, RESTART_MAX_SECONDS)
    while True:
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            await run()
        except Exception as e:
            failure = e
        except asyncio.CancelledError as e:
            if _cancel_requested():
                raise
            failure = e
        if failure is None and not forever:
            return
        if time.monotonic() - started > HEALTHY_RUN_SECONDS:
            backoff.reset()
        how = "ended" if failure is None else \
            "ended cancelled although nobody cancelled it" if isinstance(failure, asyncio.CancelledError) else "failed"
        pause = backoff.next()
        log.error("%s %s; starting it again in %.0fs", name, how, backoff.delay, exc_info=failure)
        await asyncio.sleep(pause)


def _cancel_requested() -> bool:
    """Whether someone called `cancel()` on the running task (and no timeout took it back)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
