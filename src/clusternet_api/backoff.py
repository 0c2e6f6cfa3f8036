"""Capped, jittered, doubling pauses between retries: one rule for every retry loop of ours.

Five loops of the agent and the agents' list-and-watch each wrote this out by hand (a delay, a jitter, a doubling
with a cap, a reset after success), with the same bug risk in each: a reset forgotten, a log line naming one
delay while the sleep used another. The jitter keeps a thousand agents that lost the parent together from
coming back in step, as client-go's wait.Backoff (Jitter) and Clusternet's agents, which retry through it, do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

JITTER = (0.8, 1.2)
"""The default spread of a pause around its delay: ±20 %, so doubling (2x) still beats the jitter (1.5x at most)
and every pause is longer than the one before until the cap."""


def jittered(seconds: float, spread: tuple[float, float] = JITTER) -> float:
    """`seconds` scaled by a random factor within `spread`."""
    return seconds * random.uniform(*spread)


@dataclass
class Backoff:
    """The pauses of one retry loop: `first`, doubling up to `cap`, each jittered within `spread`.

    `delay` is the last pause's un-jittered delay, 0 before the first. `reset()` after a success starts the
    pauses again from `first`."""

    first: float
    cap: float
    spread: tuple[float, float] = JITTER
    delay: float = 0.0

    def next(self) -> float:
        """The next pause, in seconds."""
        self.delay = self.first if self.delay <= 0 else min(self.delay * 2, self.cap)
        return jittered(self.delay, self.spread)

    def reset(self) -> None:
        self.delay = 0.0
