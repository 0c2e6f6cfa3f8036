"""ListWatch, an informer: one list, then a watch into a cache that each period's `on_list` gets (no request);
an interrupted watch resumes from the last resourceVersion (bookmarks too); only 410 lists again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import clusternet_api.listwatch as listwatch
from clusternet_api.kube import ApiException, Obj
from clusternet_api.listwatch import ListWatch

Step = Obj | Callable[[], Awaitable[None]]  # an event to send, or something to wait for first


class FakeKube:
    """Scripted lists (version, objects) and watches: each a list of steps, then an exception raised or None (the
    server ends it); the script over, the next watch cancels the test's ListWatch."""

    def __init__(self, listings: list[tuple[str, list[Obj]]], watches: list[tuple[list[Step], BaseException | None]]
                 ) -> None:
        self.listings = listings
        self.watches = watches
        self.watched_from: list[str] = []
        self.timeouts: list[int] = []
        self.listed = 0

    async def path(self, *_: Any, **__: Any) -> str:
        return "/apis/x/v1/namespaces/ns/things"

    async def request(self, method: str, path: str) -> Obj:
        assert method == "GET"
        version, items = self.listings.pop(0)
        self.listed += 1
        return {"metadata": {"resourceVersion": version}, "items": items}

    async def watch(self, *_: Any, server_timeout: int, resource_version: str, **__: Any) -> AsyncIterator[Obj]:
        self.watched_from.append(resource_version)
        self.timeouts.append(server_timeout)
        if not self.watches:
            raise asyncio.CancelledError  # the script is over: end the test
        steps, error = self.watches.pop(0)
        for step in steps:
            if callable(step):
                await step()
            else:
                yield step
        if error is not None:
            raise error


def thing(name: str, version: str) -> Obj:
    return {"metadata": {"name": name, "resourceVersion": version}}


def event(kind: str, version: str, name: str = "a") -> Obj:
    return {"type": kind, "object": thing(name, version)}


class Recorder:
    """on_list and on_event for a ListWatch: what each on_list got ({name: version}) and each event."""

    def __init__(self) -> None:
        self.lists: list[dict[str, str]] = []
        self.events: list[str] = []
        self.changed = asyncio.Event()
        self.fail_lists = 0  # this many on_list calls raise first

    async def on_list(self, items: list[Obj]) -> None:
        self.lists.append({o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in items})
        self.changed.set()
        if self.fail_lists:
            self.fail_lists -= 1
            raise RuntimeError("the ManagedCluster could not be read")

    async def on_event(self, e: Obj) -> None:
        self.events.append(f"{e['type']}@{e['object']['metadata']['resourceVersion']}")

    def lists_reach(self, n: int) -> Callable[[], Awaitable[None]]:
        """A watch step: wait (at most 10 s) until on_list has been called n times."""
        async def wait() -> None:
            async with asyncio.timeout(10):
                while len(self.lists) < n:
                    self.changed.clear()
                    await self.changed.wait()
        return wait


async def run(kube: FakeKube, recorder: Recorder | None = None, period: float = 100.0) -> ListWatch:
    recorder = recorder or Recorder()
    lw = ListWatch(kube, "x/v1", "Thing", "ns", period, recorder.on_list, recorder.on_event)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await lw.run()
    return lw


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listwatch, "FIRST_RETRY", 0.001)


async def test_one_list_over_several_periods_each_resync_gets_the_cache_as_the_events_left_it() -> None:
    rec = Recorder()
    kube = FakeKube([("10", [thing("a", "1"), thing("b", "2")])], [
        ([event("ADDED", "11", "c"), event("MODIFIED", "12", "a"), event("DELETED", "13", "b"),
          rec.lists_reach(3), event("BOOKMARK", "20"), rec.lists_reach(4)], ConnectionResetError("dropped")),
        ([rec.lists_reach(6), event("MODIFIED", "21", "c"), rec.lists_reach(7)], asyncio.CancelledError())])
    lw = await run(kube, rec, period=0.02)
    assert kube.listed == 1 and lw.lists == 1  # six resyncs, not one list more
    assert rec.lists == [{"a": "1", "b": "2"}, *[{"a": "12", "c": "11"}] * 5, {"a": "12", "c": "21"}]
    assert lw.resyncs == 6
    assert rec.events == ["ADDED@11", "MODIFIED@12", "DELETED@13", "MODIFIED@21"]  # bookmarks are not events
    assert kube.watched_from == ["10", "20"]  # resumed at the bookmark
    assert lw.watches == 2 and lw.version == "21"


async def test_the_watch_runs_across_periods_until_the_server_ends_it() -> None:
    rec = Recorder()
    kube = FakeKube([("10", [thing("a", "1")])], [([rec.lists_reach(4)], asyncio.CancelledError())])
    lw = await run(kube, rec, period=0.01)
    assert lw.watches == 1 and lw.resyncs == 3
    assert listwatch.WATCH_TIMEOUT <= kube.timeouts[0] <= 2 * listwatch.WATCH_TIMEOUT  # jittered, minutes


async def test_a_dropped_watch_resumes_from_the_last_version_without_listing() -> None:
    rec = Recorder()
    kube = FakeKube([("list-1", [])], [
        ([event("ADDED", "5"), event("BOOKMARK", "9")], ConnectionResetError("parent restarted")),
        ([event("MODIFIED", "12")], TimeoutError()),
        ([event("DELETED", "13")], None)])
    lw = await run(kube, rec)
    assert rec.lists == [{}] and kube.listed == 1  # one list only
    assert kube.watched_from == ["list-1", "9", "12", "13"]  # resumed at the bookmark, then at the last event
    assert rec.events == ["ADDED@5", "MODIFIED@12", "DELETED@13"]
    assert lw.cache == {}


async def test_410_gone_lists_exactly_once_more_and_the_new_list_replaces_the_cache() -> None:
    rec = Recorder()
    gone = ApiException(status=410, reason="too old resource version")
    kube = FakeKube([("10", [thing("a", "1")]), ("20", [thing("b", "15"), thing("c", "16")])], [
        ([event("ADDED", "11", "b")], gone),
        ([rec.lists_reach(4)], asyncio.CancelledError())])
    lw = await run(kube, rec, period=0.01)
    assert kube.listed == 2 and lw.lists == 2
    assert kube.watched_from == ["10", "20"]
    # the list after the 410 goes to on_list at once; resyncs then replay it (`a` went while we were away)
    assert rec.lists == [{"a": "1"}, {"b": "15", "c": "16"}, {"b": "15", "c": "16"}, {"b": "15", "c": "16"}]


async def test_an_error_event_in_the_stream_is_handled_like_the_status_it_carries() -> None:
    expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "expired"}}
    kube = FakeKube([("1", []), ("2", [])], [([expired], None), ([], asyncio.CancelledError())])
    await run(kube)
    assert kube.listed == 2 and kube.watched_from == ["1", "2"]


async def test_a_busy_or_briefly_broken_server_is_watched_again_from_where_we_were() -> None:
    rec = Recorder()
    kube = FakeKube([("10", [thing("a", "1")])], [
        ([], ApiException(status=500, reason="etcd leader changed")),
        ([event("ADDED", "11", "b")], ApiException(status=429, reason="too many requests")),
        ([event("ADDED", "12", "c")], None)])
    lw = await run(kube, rec)
    assert kube.listed == 1 and kube.watched_from == ["10", "10", "11", "12"]
    assert sorted(lw.cache) == ["a", "b", "c"]


@pytest.mark.parametrize("error", [ApiException(status=403, reason="forbidden"),
                                   ValueError("Expecting value: line 1 column 1 (char 0)")])
async def test_a_watch_that_cannot_be_resumed_lists_again_after_a_delay(error: Exception) -> None:
    rec = Recorder()
    kube = FakeKube([("10", [thing("a", "1")]), ("20", [thing("b", "2")])], [
        ([event("ADDED", "11", "c")], error),
        ([], asyncio.CancelledError())])
    lw = await run(kube, rec)
    assert kube.listed == 2 and kube.watched_from == ["10", "20"]
    assert rec.lists == [{"a": "1"}, {"b": "2"}] and list(lw.cache) == ["b"]


async def test_a_failing_on_event_does_not_end_the_watch() -> None:
    seen: list[str] = []

    async def on_event(e: Obj) -> None:
        seen.append(e["object"]["metadata"]["name"])
        if len(seen) == 1:
            raise RuntimeError("the ManagedCluster could not be read")

    async def on_list(items: list[Obj]) -> None:
        pass

    kube = FakeKube([("10", [])], [([event("ADDED", "11", "a"), event("ADDED", "12", "b")], asyncio.CancelledError())])
    lw = ListWatch(kube, "x/v1", "Thing", "ns", 100, on_list, on_event)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await lw.run()
    assert seen == ["a", "b"] and lw.watches == 1 and sorted(lw.cache) == ["a", "b"]


async def test_a_failed_on_list_is_tried_again_from_the_cache_soon_without_listing() -> None:
    rec = Recorder()
    rec.fail_lists = 2
    kube = FakeKube([("10", [thing("a", "1")])], [([rec.lists_reach(3)], asyncio.CancelledError())])
    lw = await run(kube, rec, period=100)  # the period is far: the retries come from the backoff
    assert rec.lists == [{"a": "1"}] * 3 and kube.listed == 1 and lw.resyncs == 2


async def test_on_list_and_on_event_never_overlap() -> None:
    running = asyncio.Event()
    overlaps: list[bool] = []
    calls = 0

    async def on_list(items: list[Obj]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # a resync, slow: an event arrives meanwhile
            running.set()
            await asyncio.sleep(0.05)
            running.clear()

    async def on_event(e: Obj) -> None:
        overlaps.append(running.is_set())

    async def resync_started() -> None:
        await running.wait()

    kube = FakeKube([("10", [])], [([resync_started, event("ADDED", "11")], asyncio.CancelledError())])
    lw = ListWatch(kube, "x/v1", "Thing", "ns", 0.01, on_list, on_event)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await lw.run()
    assert overlaps == [False]


async def test_a_watch_that_ends_at_once_without_events_waits_before_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listwatch, "FIRST_RETRY", 0.05)
    kube = FakeKube([("10", [])], [([], None), ([], None)])
    started = asyncio.get_running_loop().time()
    await run(kube)
    assert kube.watched_from == ["10", "10", "10"]
    assert asyncio.get_running_loop().time() - started >= 0.05 * 0.5 + 0.1 * 0.5  # two jittered, doubling waits
