"""Respecting an API server as client-go does: a token bucket per client, and the Retry-After rules.

A `Kube` built with `qps` > 0 (clusternet_api.kube) takes a token from its own bucket (`qps` per second, up to
`burst` at once) before each non-watch request, waiting asynchronously when the bucket is empty; watches do not
count. A 429, or a 503 with Retry-After, is retried after the seconds the server asks for (at most
MAX_RETRY_AFTER each, MAX_RETRIES times), as client-go's request retry does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

MAX_RETRIES = 10  # client-go's default maxRetries for a request answered 429 / 5xx with Retry-After
MAX_RETRY_AFTER = 10.0  # seconds: a longer Retry-After is shortened to this (a stuck process helps nobody)
DEFAULT_RETRY_AFTER = 1.0  # seconds after a 429 without a usable Retry-After


class TokenBucket:
    """client-go's token-bucket rate limiter (flowcontrol.NewTokenBucketRateLimiter): `qps` tokens a second, at
    most `burst` saved up. `wait()` reserves a token and sleeps (asynchronously) until it is due, so waiters are
    served in arrival order and the event loop never blocks."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self.qps = qps
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take a token (the count may go negative: a reservation); returns the seconds until it is due."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self._tokens += 1  # give the unused reservation back
                raise


def retry_after(status: int, headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait before retrying an answer, or None when it is final: 429 always (Retry-After, else
    DEFAULT_RETRY_AFTER), 503 only when the server sent Retry-After (it is shedding load, not broken)."""
    if status not in (429, 503):
        return None
    value = (headers or {}).get("Retry-After")
    seconds: float | None = None
    if value is not None:
        with contextlib.suppress(ValueError):
            seconds = max(0.0, float(value.strip()))
    if seconds is None:
        if status == 503:
            return None
        seconds = DEFAULT_RETRY_AFTER
    return min(seconds, MAX_RETRY_AFTER)
