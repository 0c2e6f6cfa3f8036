"""Writing Subscription status, paced by what the writes cost the parent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from clusternet_api import applier, known
from clusternet_api.kube import Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.timefmt import now_rfc3339
from clusternet_core import dynamic, failover, feedresolve, plan, refusals, substatus
from clusternet_core.plan import Key, StatusInputs, key_of
from clusternet_hub.controller.store import Store, write_back
from clusternet_hub.controller.writerefusals import REASON_WRITE_REFUSED

# How often the hub rewrites one Subscription's status while its Descriptions report in: after a write that
# took t, not again for STATUS_PACE_FACTOR x t (10 s at most). Every write stores the whole status, one entry
# per feed and cluster: at 100 clusters and 10 feeds one write cost the parent's apiserver ~160 ms of CPU, at
# 200 ~470 ms, so a big Subscription written at every report would keep the parent busy with little else.
STATUS_PACE_FACTOR = 10.0
STATUS_PACE_MAX = 10.0

WARNED_REASONS = frozenset({feedresolve.REASON_AMBIGUOUS, refusals.REASON_FEED_NOT_FOUND,
                            refusals.REASON_INVALID_OVERRIDE, REASON_WRITE_REFUSED})
"""Ready reasons of a Subscription whose new message is also a Warning event on it: nothing changes in the
clusters until the user acts, so `kubectl describe` should say why. Replicas that found no room
(dynamic.REASON_NO_ROOM) are an event when they first do: that message also follows the clusters' reports."""


class StatusWriter:
    def __init__(self, kube: KubeApi, store: Store) -> None:
        self.kube, self.store = kube, store
        # Subscription -> (monotonic time of its last status write, how long that write took)
        self.written: dict[Key, tuple[float, float]] = {}
        self.later: set[Key] = set()  # Subscriptions whose next status write is scheduled
        # Subscription -> the condition's lines while the parent refuses some of its objects (writerefusals.py):
        # kept between reconciles, so the reports of the other clusters' Descriptions never hide them
        self.refused_writes: dict[Key, list[str]] = {}
        # Subscription -> its last reconcile's render problems (a broken override), kept in the same way
        self.render_problems: dict[Key, list[str]] = {}
        # Subscription -> held while its status is computed and written: by a report's rewrite (a `status` work
        # item) and by its reconcile, which run on different workers. A rewrite computed from the cache before a
        # reconcile's write and landing after it put back the Ready of the spec before (`SpecChangePending`), and
        # every later rewrite kept it until the next reconcile, up to a resync later (review s36, finding 3).
        # Only the status writes take turns: a long reconcile (its Bases and Descriptions) does not hold them.
        self.writing: dict[Key, tuple[asyncio.Lock, int]] = {}  # -> (the lock, how many hold or wait for it)
        # Subscription -> (uid, what its last reconcile decided: its StatusInputs, or a refusal's Ready), kept once
        # that reconcile's status was written, for the rewrites after it. From the cache a rewrite could take the
        # decision before (write_back keeps an event that came in meanwhile, such as a label edit, rather than the
        # write's answer) and put SpecChangePending back (review s37, finding 3); remembered before the write, a
        # failed write's generation was stamped on the old bindings (re-review s37).
        self.decided: dict[Key, tuple[str, StatusInputs | Obj]] = {}

    async def paced_update(self, key: Key) -> None:
        """Rewrite the status for Descriptions that reported in, no more often than the cost of the last write
        allows (STATUS_PACE_FACTOR); what arrives meanwhile goes into the next, scheduled, write."""
        if key not in self.store.caches.subscriptions:
            self.written.pop(key, None)  # deleted: nothing to pace any more
            self.refused_writes.pop(key, None)
            self.render_problems.pop(key, None)
            self.decided.pop(key, None)
            return
        if key in self.later:
            return
        written, took = self.written.get(key, (float("-inf"), 0.0))
        wait = written + min(STATUS_PACE_MAX, STATUS_PACE_FACTOR * took) - time.monotonic()
        if wait <= 0:
            await self.update(key)
            return
        self.later.add(key)

        def due() -> None:
            self.later.discard(key)
            self.store.enqueue("status", key)

        asyncio.get_running_loop().call_later(wait, due)

    async def update(self, key: Key, inputs: StatusInputs | None = None) -> None:
        """Recompute the status from the cached Descriptions (and what a reconcile learnt) and write it."""
        async with self._in_turn(key):
            await self._update(key, inputs)

    async def _update(self, key: Key, inputs: StatusInputs | None) -> None:
        sub = self.store.caches.subscriptions.get(key)
        if sub is None or sub["metadata"].get("deletionTimestamp"):
            return
        uid = str(sub["metadata"].get("uid"))
        decided = inputs
        if inputs is not None:
            if inputs.problems:
                self.render_problems[key] = list(inputs.problems)
            else:
                self.render_problems.pop(key, None)
        else:
            remembered = self.decided.get(key)
            mine = remembered[1] if remembered is not None and remembered[0] == uid else None
            refusal = mine if isinstance(mine, dict) else self._written_refusal(sub) if mine is None else None
            if refusal is not None:  # refused as a whole: its Ready stands, what the reports say is brought up to date
                await self._write_refusal(sub, refusal)
                return
            decided = mine if isinstance(mine, StatusInputs) else None
            if decided is not None and decided.failing_back:  # a report may let the others give their share back
                self.store.enqueue("sub", key, background=True)
        status, ready = substatus.subscription_status(sub, decided, self.store.caches, self.render_problems.get(key))
        if refused := self.refused_writes.get(key):
            ready = substatus.with_planned_generation(sub, refusals.condition(
                "False", REASON_WRITE_REFUSED, "; ".join(refused)), decided.generation if decided else None)
        await self._write(sub, status, ready)
        if inputs is not None:
            self.decided[key] = (uid, inputs)

    async def write(self, sub: Obj, ready: Obj) -> None:
        """Write a reconcile's refusal of the Subscription as a whole (its Ready), in turn with the rewrites
        (`writing`), which keep that Ready until the next reconcile (`decided`) and bring the rest up to date.

        The rest is computed from the caches, not copied from the status before (review s39-b, finding 1): a
        refused Subscription's objects stay deployed, but its clusters still go silent, fail or leave, and the copy
        kept `completedReleases` and `available` of the moment of the refusal for as long as it lasted (a resync
        wrote the same copy again, and reports were not written at all). Written onto the cached Subscription: a
        report's rewrite landing between the reconcile's read and this write hid the refusal (finding 2)."""
        key = key_of(sub)
        async with self._in_turn(key):
            await self._write_refusal(self.store.caches.subscriptions.get(key, sub), ready)
            self.decided[key] = (str(sub["metadata"].get("uid")), ready)

    async def _write_refusal(self, sub: Obj, ready: Obj) -> None:
        """A refusal's Ready over the rest of the status as the caches have it now (`write`)."""
        fresh, _ = substatus.subscription_status(sub, None, self.store.caches)
        await self._write(sub, fresh, ready)

    @staticmethod
    def _written_refusal(sub: Obj) -> Obj | None:
        """For a hub that has not reconciled the Subscription yet (just started, or just leading): the refusal as a
        whole (InvalidSubscription) that the hub before wrote for this generation. A report's rewrite computed the
        reports' Ready instead (`decided` is this process's memory), and `kubectl wait` saw Ready=True on a refused
        Subscription until the next resync (review s39-b, finding 2). The feeds' refusals (FeedNotFound, ...) are
        found again by substatus itself."""
        last = plan.ready_of(sub)
        if last.get("reason") == "InvalidSubscription" and last.get("observedGeneration") == sub["metadata"].get(
                "generation"):
            return {k: v for k, v in last.items() if k != "lastTransitionTime"}
        return None

    @contextlib.asynccontextmanager
    async def _in_turn(self, key: Key) -> AsyncIterator[None]:
        """Hold the Subscription's status lock (`writing`), dropped once nobody holds or waits for it."""
        lock, users = self.writing.get(key, (asyncio.Lock(), 0))
        self.writing[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self.writing[key]
            if users > 1:
                self.writing[key] = (lock, users - 1)
            else:
                del self.writing[key]

    async def _write(self, sub: Obj, status: Obj, ready: Obj) -> None:
        new = substatus.status_update(sub, status, ready, now_rfc3339())
        if new is None:
            return
        old = plan.ready_of(sub)
        if ready.get("reason") in WARNED_REASONS and (old.get("reason"), old.get("message")) != (
                ready.get("reason"), ready.get("message")):
            await applier.post_event(self.kube, sub, "Warning", ready["reason"], ready["message"], known.CREATED_BY_HUB)
        if ready.get("reason") == dynamic.REASON_NO_ROOM != old.get("reason"):
            await applier.post_event(self.kube, sub, "Warning", ready["reason"], ready["message"], known.CREATED_BY_HUB)
        moved = failover.failover_events(dict(sub.get("status") or {}), new)
        key = key_of(sub)
        started = time.monotonic()
        # the next status is compared with this one, not with an older one; through on_subscription, so a spec
        # edit committed before this write and not yet watched is planned now (it used to be stored unseen)
        await write_back(self.store.caches.subscriptions, key, self.kube.patch(
            known.APPS_API_VERSION, "Subscription", key[1], {"status": substatus.status_patch(
                dict(sub.get("status") or {}), new)}, key[0], subresource="status"),
            self.store.on_subscription)
        self.written[key] = (time.monotonic(), time.monotonic() - started)
        for event in moved:  # once written: a refused write is retried, and would post them again
            await applier.post_event(self.kube, sub, *event, known.CREATED_BY_HUB)
