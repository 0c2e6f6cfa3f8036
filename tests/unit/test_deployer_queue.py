"""The deployer's push bookkeeping: one push of a Description at a time, failed pushes retried later."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from clusternet_api.kube import Credentials, Kube
from clusternet_hub.deployer import Deployer


def deployer() -> Deployer:
    async def no_tunnel(cluster_id: str) -> None:
        return None

    # never used for requests: push() is replaced below
    return Deployer(Kube(Credentials("https://127.0.0.1:1")), {}, no_tunnel)


async def test_pushes_of_one_description_never_overlap_and_requests_meanwhile_are_kept() -> None:
    d = deployer()
    running, most, calls = 0, 0, []

    async def fake_push(namespace: str, name: str, force: bool = False) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        calls.append(force)
        await asyncio.sleep(0.05)
        running -= 1

    d.push = fake_push  # type: ignore[method-assign]
    first = asyncio.create_task(d.push_once("ns", "desc", False))
    await asyncio.sleep(0.01)
    await d.push_once("ns", "desc", False)  # arrives while the first runs: deferred, not run alongside
    await d.push_once("ns", "desc", True)
    await first
    assert most == 1 and calls == [False]
    assert d.queue.get_nowait() == ("push", "ns", "desc") and d.pending[("push", "ns", "desc")] is True


async def test_failed_push_is_retried_with_growing_delay_and_success_resets_it() -> None:
    d = deployer()
    key = ("ns", "desc")
    d._retry_later(key, failed=True)
    assert d.retry_delay[key] == 2.0
    d._retry_later(key, failed=True)
    assert d.retry_delay[key] == 4.0
    for _ in range(10):
        d._retry_later(key, failed=True)
    assert d.retry_delay[key] == 60.0
    d._retry_later(key, failed=False)
    assert key not in d.retry_delay


async def test_retry_enqueues_a_forced_push() -> None:
    d = deployer()
    loop: Any = asyncio.get_running_loop()
    scheduled: list[tuple[float, Any]] = []
    original = loop.call_later
    loop.call_later = lambda delay, cb, *a: scheduled.append((delay, cb))
    try:
        d._retry_later(("ns", "desc"), failed=True)
    finally:
        loop.call_later = original
    (delay, callback), = scheduled
    assert delay == 2.0
    callback()
    assert d.queue.get_nowait() == ("push", "ns", "desc") and d.pending[("push", "ns", "desc")] is True


async def test_status_of_a_big_subscription_is_rewritten_at_its_pace_and_nothing_is_lost() -> None:
    d = deployer()
    key = ("default", "app")
    writes: list[float] = []

    async def fake_update(namespace: str, name: str) -> None:
        writes.append(asyncio.get_running_loop().time())
        d.status_written[(namespace, name)] = (time.monotonic(), 0.02)  # a write that took 20 ms

    d.update_subscription_status = fake_update  # type: ignore[assignment]
    await d.paced_status_update(*key)  # nothing written yet: at once
    assert len(writes) == 1
    for _ in range(5):  # reports arriving within 10 x 20 ms: one later write for all of them
        await d.paced_status_update(*key)
    assert len(writes) == 1 and d.queue.empty() and key in d.status_later
    await asyncio.sleep(0.25)
    assert d.queue.get_nowait() == ("status", *key) and key not in d.status_later
    d.pending.clear()
    await d.paced_status_update(*key)
    assert len(writes) == 2 and writes[1] - writes[0] >= 0.2 - 0.01


def test_resync_pushes_again_only_what_is_neither_fresh_nor_already_on_its_way() -> None:
    d = deployer()
    for name in ("old", "fresh", "in-flight", "queued"):
        d.caches.descriptions[("ns", name)] = {"metadata": {"name": name, "namespace": "ns"}}
    now = time.monotonic()
    d.pushed[("ns", "old")] = ("u", 1, now - d.resync_interval)
    d.pushed[("ns", "fresh")] = ("u", 1, now)
    d.pushing[("ns", "in-flight")] = None
    d.enqueue("push", "ns", "queued")  # by an event, not taken by a worker yet
    d.resync_pushes()
    assert [d.queue.get_nowait() for _ in range(d.queue.qsize())] == [("push", "ns", "queued"), ("push", "ns", "old")]
    assert d.pending[("push", "ns", "old")] is True and d.pending[("push", "ns", "queued")] is False
