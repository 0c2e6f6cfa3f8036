"""Pauses of the agent's loops that end early: when the agent stops, or when what they wait for has happened."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def sleep_or_stop(stop: asyncio.Event, seconds: float, until: Awaitable[object] | None = None) -> bool:
    """Sleep, waking early when stopped (True) or when `until` is done; False when not stopped."""
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
