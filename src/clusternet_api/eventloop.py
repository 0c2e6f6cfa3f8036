"""The event loop the hub and the agent run on: uvloop, unless `CLUSTERNET_EVENT_LOOP=asyncio` is set.

Why: both processes spend most of their CPU in the loop's socket and TLS work (py-spy of the hub during
bench/proxy.py's bursts: TLS and socket writes ~20 %, the loop's bookkeeping most of the rest outside
aiohttp). CPython's asyncio does TLS in pure Python (`asyncio.sslproto`); uvloop does it, and the loop,
in C on libuv. The variable exists to measure one against the other (bench/README.md) and as an escape
hatch; Clusternet (Go) has no counterpart.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

ENV_EVENT_LOOP = "CLUSTERNET_EVENT_LOOP"
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
