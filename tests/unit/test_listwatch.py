"""ListWatch: an interrupted watch resumes from the last resourceVersion (bookmarks too); 410 and the period's
end list again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import clusternet_api.listwatch as listwatch
from clusternet_api.kube import ApiException, Obj
from clusternet_api.listwatch import ListWatch


class FakeKube:
    """Scripted watches: each a list of events, or an exception raised after them."""

    def __init__(self, watches: list[tuple[list[Obj], BaseException | None]]) -> None:
        self.watches = watches
        self.watched_from: list[str] = []
        self.listed = 0

    async def path(self, *_: Any, **__: Any) -> str:
        return "/apis/x/v1/namespaces/ns/things"

    async def request(self, method: str, path: str) -> Obj:
        self.listed += 1
        return {"metadata": {"resourceVersion": f"list-{self.listed}"}, "items": [{"n": self.listed}]}

    async def watch(self, *_: Any, server_timeout: int, resource_version: str, **__: Any) -> AsyncIterator[Obj]:
        self.watched_from.append(resource_version)
        if not self.watches:
            raise asyncio.CancelledError  # the script is over: end the test
        events, error = self.watches.pop(0)
        for event in events:
            yield event
        if error is not None:
            raise error


def event(kind: str, version: str) -> Obj:
    return {"type": kind, "object": {"metadata": {"name": "a", "resourceVersion": version}}}


async def run(kube: FakeKube, period: float = 100.0) -> tuple[list[int], list[str]]:
    listed: list[int] = []
    seen: list[str] = []

    async def on_list(items: list[Obj]) -> None:
        listed.append(len(items))

    async def on_event(e: Obj) -> None:
        seen.append(f"{e['type']}@{e['object']['metadata']['resourceVersion']}")

    with pytest.raises(asyncio.CancelledError):
        await ListWatch(kube, "x/v1", "Thing", "ns", period, on_list, on_event).run()  # type: ignore[arg-type]
    return listed, seen


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listwatch, "FIRST_RETRY", 0.001)


async def test_a_dropped_watch_resumes_from_the_last_version_without_listing() -> None:
    kube = FakeKube([([event("ADDED", "5"), event("BOOKMARK", "9")], ConnectionResetError("parent restarted")),
                     ([event("MODIFIED", "12")], None)])
    listed, seen = await run(kube)
    assert listed == [1] and kube.listed == 1  # one list only
    assert kube.watched_from == ["list-1", "9", "12"]  # resumed at the bookmark, then at the last event
    assert seen == ["ADDED@5", "MODIFIED@12"]  # bookmarks are not events


async def test_410_gone_lists_again() -> None:
    gone = ApiException(status=410, reason="too old resource version")
    kube = FakeKube([([event("ADDED", "5")], gone), ([], None)])
    await run(kube)
    assert kube.listed == 2 and kube.watched_from == ["list-1", "list-2", "list-2"]


async def test_an_error_event_in_the_stream_is_handled_like_the_status_it_carries() -> None:
    expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "expired"}}
    kube = FakeKube([([expired], None), ([], None)])
    await run(kube)
    assert kube.listed == 2
