"""Failing fast towards an API server that cannot be reached: the hub's clients of the children it pushes to.

A child cut off by a network partition, behind an address nothing routes, or with its API server frozen held one of
the hub's 8 workers per request for the whole request timeout (120 s; kube.DEFAULT_TIMEOUT), round after round of 8
objects: a Description of 100 objects to a black-holed child kept a worker 26 minutes, and a few such clusters left
none for the other clusters' pushes or for any Subscription (audit s36, controllers, finding 7).

Here, once a new connection could not be made (refused, no route, DNS, or no TCP and TLS handshake within the
connect timeout), the server is not asked again until a hold has passed: HOLD_FIRST, doubling up to HOLD_MAX while
it stays out of reach. Meanwhile requests fail at once with `Unreachable`. After the hold one request (the probe)
goes out, and the others wait for its outcome: they go on once it connected (an answer, an error status, even a
read timeout), and fail with it otherwise. A probe cancelled (or refused by the fence) lets the next one probe.

Only the connection counts. A server slow to answer on an open connection (admission webhooks, a large LIST) is
left to the request's own timeouts: its next request makes a new connection, which a frozen or cut-off server
fails within the connect timeout, and the hold begins then (review s37: holding on a read timeout cut slow but
correct answers, and held the whole cluster for them). A TLS verification failure answers at once: not held.

Every failure of the hold, the one that began it and the probes' included, is the same `Unreachable` text, with no
times in it: that text lands in the Description's status, which must not change at each retry (review s37: a
status write and a Warning event per retry and Description). client-go, under Clusternet's deployer, has no such
breaker. `Unreachable` is an OSError, so what cannot be read for it counts as passing (apierrors.is_passing): a
cleanup or prune in a cluster out of reach waits, never takes the object as gone."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import aiohttp

# As a failed push's retries (controller/pusher.py: 2 s doubling to 60 s): a push's first retry finds the server
# asked again, and a cluster out of reach for long costs one probe a minute
HOLD_FIRST, HOLD_MAX = 2.0, 60.0


TIMED_OUT = "connection timed out"


def held_words(server: str, what: str, first: float = HOLD_FIRST, cap: float = HOLD_MAX) -> str:
    """What every request fails with while `server` is held, `what` saying why the hold began."""
    return (f"{server} cannot be reached ({what}); asked again by one request at a time, every {first:.0f} s at "
            f"first, at most every {cap:.0f} s")


class Unreachable(OSError):
    """A request that found no connection to its server, or was not sent because the server could not be reached
    lately."""


def cannot_connect(e: BaseException) -> bool:
    """Whether a request failed for want of a connection (not for a certificate it refused)."""
    return isinstance(e, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError) and \
        not isinstance(e, aiohttp.ClientSSLError)


class Reachability:
    """The hold on one server (see the module's docstring). One event loop; not thread-safe."""

    def __init__(self, server: str, first: float = HOLD_FIRST, cap: float = HOLD_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.server, self.first, self.cap, self.clock = server, first, cap, clock
        self._why: str | None = None  # the hold's text; None: the server answers
        self._until = self._hold = 0.0
        self._probe: asyncio.Future[None] | None = None  # the probe out now, done when it ends

    @property
    def held(self) -> bool:
        return self._why is not None

    @contextlib.asynccontextmanager
    async def attempt(self) -> AsyncIterator[None]:
        """Around one request: raises Unreachable at once while held, waits for a probe that is out, and learns
        from how the request ends."""
        probe = await self._admit()
        try:
            yield
        except Exception as e:
            if cannot_connect(e):
                raise Unreachable(self._failed(e, probe)) from e
            # any other failure of the client's (a read timeout, a connection closed mid-answer) came after a
            # connection was made: the hold is over; those waiting go on at once instead of probing one by one, a
            # read timeout each (re-review s37). Anything else (the fence, a bug) says nothing either way.
            self._end_probe(probe, answered=isinstance(e, aiohttp.ClientError))
            raise
        except BaseException:
            self._end_probe(probe, answered=False)
            raise
        self._end_probe(probe, answered=True)

    async def _admit(self) -> bool:
        """Whether this request is the probe; raises Unreachable while held."""
        while self._why is not None:
            if self._probe is not None:  # wait for its outcome (shielded: a waiter cancelled leaves it alone)
                await asyncio.shield(self._probe)
                continue
            if self.clock() < self._until:
                raise Unreachable(self._why)
            self._probe = asyncio.get_running_loop().create_future()
            return True
        return False

    def _end_probe(self, probe: bool, answered: bool) -> None:
        if answered:
            self._why = None
        if probe and self._probe is not None:
            self._probe.set_result(None)
            self._probe = None

    def _failed(self, e: BaseException, probe: bool) -> str:
        """Begin (or, for a probe, lengthen) the hold; the text every request fails with meanwhile."""
        try:
            if self._why is None:  # the words of the whole outage: a probe's failure may name another address
                self._hold = self.first
                what = TIMED_OUT if isinstance(e, aiohttp.ConnectionTimeoutError) else str(e)
                self._why = held_words(self.server, what, self.first, self.cap)
                self._until = self.clock() + self._hold
            elif probe:
                self._hold = min(self._hold * 2, self.cap)
                self._until = self.clock() + self._hold
            return self._why
        finally:
            self._end_probe(probe, answered=False)
