"""The event loop the hub and the agent run on (uvloop, unless `CLUSTERNET_EVENT_LOOP=asyncio` is set), and how
their processes end once it has stopped (`exit_if_threads_remain`).

Why: both processes spend most of their CPU in the loop's socket and TLS work (py-spy of the hub during
bench/proxy.py's bursts: TLS and socket writes ~20 %, the loop's bookkeeping most of the rest outside
aiohttp). CPython's asyncio does TLS in pure Python (`asyncio.sslproto`); uvloop does it, and the loop,
in C on libuv. The variable exists to measure one against the other (bench/README.md) and as an escape
hatch; Clusternet (Go) has no counterpart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

ENV_EVENT_LOOP = "CLUSTERNET_EVENT_LOOP"
THREADS_GRACE_SECONDS = 3.0
"""How long a stopping hub or agent waits for worker threads (Helm calls) to finish after its loop ended."""
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's own loop (asked for, or uvloop not importable)."""
    if os.environ.get(ENV_EVENT_LOOP, "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # a platform without uvloop wheels (Windows): asyncio's loop works, only slower
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def exit_if_threads_remain(code: int, log: logging.Logger) -> None:
    """End the process with `code` without joining worker threads still in a Helm call (a chart fetch from a
    repository that does not answer, an install's or uninstall's wait), once THREADS_GRACE_SECONDS have
    passed; return if none is left, for the caller to exit as usual.

    Python joins such threads at exit: a hub that had stopped serving stayed alive for minutes after SIGTERM
    (the day-2 audit), until the kubelet killed it, and a Pull-mode agent did the same, holding up the agent
    replica waiting for its Lease. Everything of ours is closed by then (tunnels, Lease, listeners); the
    release such a call was changing is recovered later (clusternet_api.helm.releases: a stale pending release)."""
    deadline = time.monotonic() + THREADS_GRACE_SECONDS
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t.name for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if busy:
        log.warning("exiting without waiting for %d worker thread(s): %s", len(busy), ", ".join(busy))
        logging.shutdown()
        os._exit(code)
