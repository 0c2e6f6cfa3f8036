"""Failing fast towards an API server that does not answer: the hub's clients of the children it pushes to.

A child cut off by a network partition, behind an address nothing routes, or with its API server wedged held one
of the hub's 8 workers per request for the whole request timeout (120 s; kube.DEFAULT_TIMEOUT), round after round
of 8 objects: a Description of 100 objects to a black-holed child kept a worker 26 minutes, and a few such clusters
left none for the other clusters' pushes or for any Subscription (audit s36, controllers, finding 7).

Here, once a request could not connect or got no answer in time, the server is not asked again until a hold has
passed: HOLD_FIRST, doubling up to HOLD_MAX while it stays silent. Meanwhile requests fail at once with
`Unreachable`, saying when the server was last tried and how that failed. After the hold one request (the probe)
goes out, and the others still fail at once until it ends. Any answer ends the hold, an error status included.
A request that ends some other way (cancelled, cut mid-answer) frees the probe for the next one.

client-go, under Clusternet's deployer, has no such breaker: each request waits out its own dial and TLS
timeouts. `Unreachable` is an OSError, so what cannot be read for it counts as passing (apierrors.is_passing): a
cleanup or prune in a cluster out of reach waits, never takes the object as gone."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import aiohttp

# As a failed push's retries (controller/pusher.py: 2 s doubling to 60 s): a push's first retry finds the server
# asked again, and a cluster silent for long costs one probe a minute
HOLD_FIRST, HOLD_MAX = 2.0, 60.0
# What says the server did not answer: no connection (refused, no route, DNS, TLS, the connect timeout), or
# no answer before the request's timeout. A connection the server closed (ServerDisconnectedError: a restart)
# is not one: the next request reconnects at once.
NO_ANSWER = (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError, TimeoutError)


class Unreachable(OSError):
    """A request not sent: its server did not answer lately."""


class Reachability:
    """The hold on one server (see the module's docstring). Not thread-safe: one event loop."""

    def __init__(self, server: str, first: float = HOLD_FIRST, cap: float = HOLD_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.server, self.first, self.cap, self.clock = server, first, cap, clock
        self._why: str | None = None  # how the last attempt failed; None: the server answers
        self._failed_at = self._until = self._hold = 0.0
        self._probing = False

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """Around one request: raises Unreachable at once while held, and learns from how the request ends."""
        probe = self._admit()
        try:
            yield
        except NO_ANSWER as e:
            self._failed(e, probe)
            raise
        except BaseException:
            if probe:
                self._probing = False
            raise
        else:
            self._why, self._probing = None, False

    @property
    def held(self) -> bool:
        return self._why is not None

    def _admit(self) -> bool:
        """Whether this request is the probe; raises Unreachable while held or while another probe is out."""
        if self._why is None:
            return False
        now = self.clock()
        if now < self._until or self._probing:
            raise Unreachable(f"{self.server} not asked: it {self._why} {now - self._failed_at:.0f}s ago, and is "
                              + ("being asked again now" if self._probing else
                                 f"asked again in {self._until - now:.0f}s"))
        self._probing = True
        return True

    def _failed(self, e: BaseException, probe: bool) -> None:
        if self._why is None:
            self._hold = self.first
        elif probe:
            self._hold = min(self._hold * 2, self.cap)
        elif self._probing or self.clock() < self._until:  # sent before the hold began: it says nothing new
            return
        self._probing = False
        self._failed_at = self.clock()
        self._until = self._failed_at + self._hold
        self._why = f"did not answer ({type(e).__name__}: {e})" if str(e) else \
            f"did not answer ({type(e).__name__})"
