"""Releases left pending by an operation that died, told apart from live ones by the judge's own clock (review F9).

A release whose install, upgrade or rollback died with its process (a hub leader or agent killed mid-operation,
an interrupted `helm`) stays `pending-*` for ever: Helm refuses every later operation on it ("another operation
(install/upgrade/rollback) is in progress") until someone repairs it by hand. The deployer repairs it itself
(`unstick`), but only once nobody can still be working on it: Helm's waits and hooks end by the operation's
timeout, so a revision pending for longer than that plus STALE_MARGIN is one whose operation is gone.

"Longer" is measured on the judging deployer's own monotonic clock, never against Helm's `last_deployed`: that
time was written by whoever ran the operation, and when the hub and an agent take turns at one cluster (Dual
mode, Push and Pull switches) that is another machine, whose clock may be minutes off; with enough skew a live
install was uninstalled, a live upgrade rolled back. So `PendingReleases` remembers, per HelmRelease, the
pending revision it saw and when it first saw it; the wait restarts whenever that revision changes (every Helm
operation writes a new one) and is forgotten when the release is no longer pending.

The memory is the deployer process's own: after a restart (or a new hub leader) the wait starts again from the
first look, once. That covers the deployer that started the operation itself and crashed: after its restart it
waits the full timeout plus STALE_MARGIN before repairing, where before it could compare with the time Helm
wrote: later than before, never early.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clusternet_api.apiresource import key_of
from clusternet_api.helm.driver import ClusterAccess, HelmDriver, ReleaseState

log = logging.getLogger(__name__)

STALE_MARGIN = 60
"""Seconds past its own timeout that a deployer must have seen a revision pending before taking its operation for
dead: time for Helm to record the end of an operation that timed out. An `uninstalling` release is not judged so
(`helm uninstall` by hand: the next resync waits for it)."""
FORGET_SECONDS = 3600.0
"""A HelmRelease not looked at for this long is forgotten (deleted, or its cluster deployed by the other side):
looked at again, its wait starts afresh."""

Obj = Mapping[str, Any]
Seen = tuple[str, str, int, str, str | None]
"""A pending revision as seen: namespace, release name, revision, Helm status, Helm's last_deployed."""


@dataclass(frozen=True)
class _Sighting:
    seen: Seen
    since: float
    """Monotonic time this deployer first saw `seen`."""
    last: float
    """Monotonic time this deployer last looked."""
    wall: float
    """Wall-clock time of `since`: only to tell people when the release is recovered, never to judge."""


class PendingReleases:
    """What one deployer (the hub leader's release pusher, one agent's release puller) has seen pending, in memory.

    `clock` is the deployer's monotonic clock (tests give their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.clock, self.wall_clock = clock, wall_clock
        self._seen: dict[tuple[str, str], _Sighting] = {}

    def stuck(self, hr: Obj, state: ReleaseState | None, timeout_seconds: int) -> bool:
        """Note what the HelmRelease's release is now; True when it is the same pending revision this deployer has
        seen, unchanged, for longer than `timeout_seconds` plus STALE_MARGIN."""
        now = self.clock()
        self._forget_idle(now)
        key = key_of(hr)
        if state is None or not state.status.startswith("pending-"):
            self._seen.pop(key, None)
            return False
        seen: Seen = (state.namespace, state.name, state.revision, state.status, state.last_deployed)
        before = self._seen.get(key)
        since, wall = (before.since, before.wall) if before is not None and before.seen == seen else (
            now, self.wall_clock())
        self._seen[key] = _Sighting(seen, since, now, wall)
        return now - since > timeout_seconds + STALE_MARGIN

    def recovery_note(self, hr: Obj, timeout_seconds: int) -> str:
        """When this deployer will take the pending release for interrupted, for its status message (fifth audit:
        "waiting for it" said neither why nor until when). Stable from one look to the next, so the status is not
        rewritten at every resync; empty when it has not seen the release pending."""
        sighting = self._seen.get(key_of(hr))
        if sighting is None:
            return ""
        at = datetime.datetime.fromtimestamp(sighting.wall + timeout_seconds + STALE_MARGIN, datetime.UTC)
        return (f"; if it is still so at {at.strftime('%Y-%m-%dT%H:%M:%SZ')} (its timeout of {timeout_seconds} s "
                f"and {STALE_MARGIN} s more after this deployer first saw it), its operation is taken for "
                "interrupted and the release recovered")

    def waited(self, hr: Obj) -> float:
        """Seconds this deployer has seen the HelmRelease's release pending as it is (0 when it has not)."""
        sighting = self._seen.get(key_of(hr))
        return 0.0 if sighting is None else self.clock() - sighting.since

    def _forget_idle(self, now: float) -> None:
        self._seen = {k: s for k, s in self._seen.items() if now - s.last <= FORGET_SECONDS}


async def unstick(driver: HelmDriver, access: ClusterAccess, state: ReleaseState, where: tuple[str, str],
                  timeout_seconds: int, waited: float) -> ReleaseState | None:
    """A release left pending by a dead operation, made usable the way Helm's users do by hand: an interrupted
    install is uninstalled (it never ran as a whole), an interrupted upgrade or rollback rolled back to the
    revision before it. Returns the release as it is now."""
    namespace, name = where
    log.warning("release %s/%s has been %s at revision %s for %.0f s as this deployer saw it (timeout %s s; Helm "
                "says it started at %s): the operation was interrupted, recovering it", namespace, name,
                state.status, state.revision, waited, timeout_seconds, state.last_deployed)
    if state.status == "pending-install" or state.revision <= 1:
        await driver.uninstall(access, namespace, name, timeout_seconds)
    else:
        await driver.rollback(access, namespace, name, state.revision - 1, timeout_seconds)
    return await driver.get(access, namespace, name)
