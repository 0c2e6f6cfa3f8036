"""The agent's pauses that end early (clusternet_agent/pauses.py)."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

from clusternet_agent.pauses import rest_of_step, sleep_or_stop


async def test_a_step_whose_deadline_has_passed_waits_for_nothing_and_leaves_no_coroutine_behind() -> None:
    """A heartbeat step that overran its period asked for a pause of 0 s: wait_for cancelled the pause before it ran,
    and the tunnel's wait it was given was never awaited (a RuntimeWarning per step, bench/scale.py at 2,000)."""
    stop, came_up = asyncio.Event(), asyncio.Event()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await rest_of_step(stop, time.monotonic() - 1, came_up) == "step"
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


async def test_a_pause_ends_when_what_it_waits_for_happens_or_the_agent_stops() -> None:
    stop, came_up = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, came_up.set)
    assert await rest_of_step(stop, time.monotonic() + 5, came_up) == "tunnel"
    assert not came_up.is_set()  # each coming up is seen once
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await sleep_or_stop(stop, 5) is True
    assert await sleep_or_stop(asyncio.Event(), 0.01) is False
