"""Pauses of the agent's loops that end early: when the agent stops, or when what they wait for has happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable


async def sleep_or_stop(stop: asyncio.Event, seconds: float, until: Awaitable[object] | None = None) -> bool:
    """Sleep, waking early when stopped (True) or when `until` is done; False when not stopped. No time left: `until`
    is not awaited, and closed when it is a coroutine (wait_for cancelled the task before it ran, and each such
    pause left a "coroutine 'Event.wait' was never awaited" warning: bench/scale.py at 2,000 clusters)."""
    if seconds <= 0:
        if asyncio.iscoroutine(until):
            until.close()
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait() if until is None else _first(stop, until), timeout=seconds)
    except TimeoutError:
        return False
    return stop.is_set()


async def _first(stop: asyncio.Event, until: Awaitable[object]) -> None:
    """Until `stop` is set or `until` is done, whichever comes first."""
    tasks = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(until)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their clients closed before the caller goes on


async def rest_of_step(stop: asyncio.Event, deadline: float, tunnel_came_up: asyncio.Event | None) -> str:
    """The heartbeat loop's pause until `deadline` (time.monotonic()): "step" when it is reached, "stopped" when
    the agent stops, "tunnel" as soon as `tunnel_came_up` is set (cleared here, so each coming up is seen once)."""
    if not stop.is_set() and not (tunnel_came_up is not None and tunnel_came_up.is_set()):
        await sleep_or_stop(stop, max(0.0, deadline - time.monotonic()),
                            tunnel_came_up.wait() if tunnel_came_up is not None else None)
    if stop.is_set():
        return "stopped"
    if tunnel_came_up is not None and tunnel_came_up.is_set():
        tunnel_came_up.clear()
        return "tunnel"
    return "step"
