"""The controller's work queue: de-duplication, one worker per key, delayed and backed-off requeues."""

from __future__ import annotations

import asyncio

import pytest

from clusternet_hub.controller.workqueue import Backoff, WorkQueue


async def test_a_key_queued_twice_runs_once_and_keeps_either_force() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    q.add("a", force=True)
    q.add("a")
    assert len(q) == 2 and q.force_of("a") is True and q.force_of("b") is False
    assert await q.get() == ("a", True)
    assert await q.get() == ("b", False)
    assert len(q) == 0 and q.force_of("a") is None


async def test_a_key_queued_while_processed_runs_again_after_and_never_alongside() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key, _ = await q.get()
    assert q.waiting("a")
    q.add("a")  # arrives while a worker has it: deferred, not handed to a second worker
    q.add("a", force=True)
    assert len(q) == 0
    q.done(key)
    assert q.drain() == [("a", True)]  # once, with the force asked for meanwhile
    assert not q.waiting("a")


async def test_a_key_done_without_new_requests_is_not_queued_again() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key, _ = await q.get()
    q.done(key)
    assert len(q) == 0 and not q.waiting("a")


async def test_workers_sharing_a_queue_never_process_one_key_at_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    running, most, runs = 0, 0, 0

    async def worker() -> None:
        nonlocal running, most, runs
        while True:
            key, _ = await q.get()
            running += 1
            most, runs = max(most, running), runs + 1
            await asyncio.sleep(0.02)
            running -= 1
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for _ in range(3):
        q.add("a")
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    for w in workers:
        w.cancel()
    assert most == 1 and runs == 2  # the first request, then one for everything that came meanwhile


async def test_add_after_brings_a_key_back_later() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.02, force=True)
    assert len(q) == 0
    await asyncio.sleep(0.05)
    assert q.drain() == [("a", True)]


async def test_a_key_brought_back_later_has_one_timer_the_soonest() -> None:
    """A failed push or a chart check asks to come back later, and so does each run of it an event or the resync
    caused: those requests must not become series of retries of their own, the key coming back once each time."""
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.05)  # a retry after a failure
    q.add_after("a", 0.3, force=True)  # another run (the resync's) failed too: its retry comes later
    await asyncio.sleep(0.15)
    assert q.drain() == [("a", True)]  # back once, at the sooner time, with any request's force
    await asyncio.sleep(0.3)
    assert len(q) == 0  # and not a second time
    q.add_after("a", 0.3)
    q.add_after("a", 0.05)  # a sooner request moves it forward
    await asyncio.sleep(0.15)
    assert q.drain() == [("a", False)]
    await asyncio.sleep(0.3)
    assert len(q) == 0


def test_backoff_doubles_from_its_first_delay_to_its_cap_and_forget_resets_it() -> None:
    b: Backoff[str] = Backoff(2.0, 60.0)
    assert [b.next("a") for _ in range(7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert b.next("b") == 2.0  # per key
    b.forget("a")
    assert b.current("a") is None and b.next("a") == 2.0


async def test_background_keys_wait_until_no_other_key_does() -> None:
    """The periodic resync's keys (drift) never hold up work that events asked for: at 1,000 clusters they
    took the workers from the Descriptions not deployed yet."""
    q: WorkQueue[str] = WorkQueue()
    q.add("drift-1", force=True, background=True)
    q.add("drift-2", force=True, background=True)
    q.add("new-1")
    q.add("new-2")
    assert [await q.get() for _ in range(2)] == [("new-1", False), ("new-2", False)]
    q.add("new-3")
    assert await q.get() == ("new-3", False)
    assert [await q.get() for _ in range(2)] == [("drift-1", True), ("drift-2", True)]


async def test_a_background_key_asked_for_again_moves_to_the_front_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", background=True)
    q.add("b", background=True)
    q.add("b", force=True)  # an event for b: promoted, its force kept
    q.add("a", background=True)  # asked again by the resync: still one entry, still behind
    assert q.drain() == [("b", True), ("a", False)]
    assert not q.drain() and len(q) == 0


async def test_a_background_request_during_processing_stays_in_the_background() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key, _ = await q.get()
    q.add("a", background=True)
    q.add("b")
    q.done(key)
    assert q.drain() == [("b", False), ("a", False)]


def grouped() -> WorkQueue[str]:
    """Keys `<group>/<name>` at most 2 of a group at once; keys without a slash have no group."""
    return WorkQueue(lambda key: (key.split("/")[0], 2) if "/" in key else None)


async def test_at_most_the_limit_of_one_group_at_once_the_others_pass() -> None:
    q = grouped()
    for key in ("slow/1", "slow/2", "slow/3", "slow/4", "sub", "fast/1"):
        q.add(key)
    taken = [(await q.get())[0] for _ in range(4)]
    assert taken == ["slow/1", "slow/2", "sub", "fast/1"]  # slow/3 and slow/4 wait aside, still queued
    assert q.waiting("slow/3") and len(q) == 2
    q.add("other")
    assert (await q.get())[0] == "other"
    q.done("slow/1")  # the first set aside goes back to the front, before what came in after it
    q.add("late")
    assert (await q.get())[0] == "slow/3"
    q.done("slow/2")
    assert q.drain() == [("slow/4", False), ("late", False)]


async def test_a_key_set_aside_in_the_background_and_promoted_runs_once() -> None:
    q = grouped()
    q.add("c/1")
    q.add("c/2")
    q.add("c/3", background=True)
    assert [(await q.get())[0] for _ in range(2)] == ["c/1", "c/2"]
    with pytest.raises(TimeoutError):  # its background entry is taken and set aside: its group is full
        await asyncio.wait_for(q.get(), 0.05)
    assert q.waiting("c/3")
    q.add("c/3", force=True)  # asked for normally meanwhile: promoted to the front lane, its force kept
    with pytest.raises(TimeoutError):  # and set aside again, from the front lane
        await asyncio.wait_for(q.get(), 0.05)
    q.done("c/1")  # one slot free: c/3 runs, not its left-behind background entry in its place
    assert await asyncio.wait_for(q.get(), 1) == ("c/3", True)
    q.done("c/2")
    q.done("c/3")
    assert q.drain() == [] and not q.waiting("c/3")  # once, not once per lane


async def test_workers_never_take_more_of_a_group_than_its_limit_and_all_gets_done() -> None:
    q = grouped()
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    done: list[str] = []

    async def worker() -> None:
        while True:
            key, _ = await q.get()
            group = key.split("/")[0]
            running[group] = running.get(group, 0) + 1
            most[group] = max(most.get(group, 0), running[group])
            await asyncio.sleep(0.01 if group == "slow" else 0.001)
            running[group] -= 1
            done.append(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(6)]
    keys = [f"slow/{i}" for i in range(8)] + [f"fast/{i}" for i in range(8)]
    for key in keys:
        q.add(key, background=key.endswith("3"))
    for _ in range(200):
        if len(done) == len(keys):
            break
        await asyncio.sleep(0.01)
    for w in workers:
        w.cancel()
    assert sorted(done) == sorted(keys) and most == {"slow": 2, "fast": 2}
    assert done.index("fast/7") < done.index("slow/7")  # the fast group was not held behind the slow one
