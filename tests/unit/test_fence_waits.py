"""The write fence is asked again once a write has its connection or stream (audit s36, F1): a write that passed
the first check and then waited (for one of a child client's few connections, for the agent's OPEN answer or a
peer replica's dial) was sent after the fence had expired, when a frozen leader woke."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from clusternet_api import fence
from clusternet_api.credentials import Credentials
from clusternet_api.kube import Kube


@contextlib.asynccontextmanager
async def local_server(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[int]:
    """An HTTP server on a free local port answering every path with `handler`: its port."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


class Switch:
    """A fence that refuses once `expired` is set, as one whose Lease may be another replica's."""

    def __init__(self) -> None:
        self.expired = False

    def __call__(self) -> None:
        if self.expired:
            raise fence.LeadershipLost("the Lease may be another replica's")


async def test_a_write_queued_for_a_connection_is_refused_once_the_fence_expired() -> None:
    gate, seen = asyncio.Event(), []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        if request.path == "/first":
            await gate.wait()
        return web.json_response({"kind": "Status"})

    switch = Switch()
    async with local_server(handler) as port, \
            Kube(Credentials(server=f"http://127.0.0.1:{port}", token="t"), connections=1) as kube:
        async def leader_work() -> tuple[asyncio.Task[Any], asyncio.Task[Any]]:
            fence.WRITE_FENCE.set(switch)
            first = asyncio.create_task(kube.raw("POST", "/first", {}))
            await asyncio.sleep(0.2)
            second = asyncio.create_task(kube.raw("POST", "/second", {}))  # passes the fence, then queues
            await asyncio.sleep(0.2)
            return first, second

        first, second = await asyncio.create_task(leader_work())
        switch.expired = True
        gate.set()
        await first
        with pytest.raises(fence.LeadershipLost):
            await second
    assert seen == ["/first"]


class Stream:
    """A tunnel stream answering every request 200 {}, noting the request lines written."""

    def __init__(self, written: list[bytes]) -> None:
        self.written, self.answers, self.done, self.sent = written, asyncio.Queue[bytes](), False, 0

    @property
    def bytes_out(self) -> int:
        return self.sent

    async def read(self, n: int = 65536) -> bytes:
        return await self.answers.get()

    async def write(self, data: bytes) -> None:
        self.sent += len(data)
        self.written.append(data.split(b"\r\n", 1)[0])
        self.answers.put_nowait(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    def write_eof(self) -> None:
        pass

    def abort(self, reason: str = "") -> None:
        self.done = True

    def close(self) -> None:
        self.done = True


async def test_a_write_whose_stream_opens_after_the_fence_expired_is_not_sent() -> None:
    gate, written = asyncio.Event(), list[bytes]()

    async def opener() -> Stream:
        await gate.wait()  # the agent's OPEN answer, or a peer replica's dial, under way
        return Stream(written)

    switch = Switch()
    async with Kube(Credentials(server="https://child"), opener=opener) as kube:  # type: ignore[arg-type]
        async def leader_work() -> asyncio.Task[Any]:
            fence.WRITE_FENCE.set(switch)
            task = asyncio.create_task(kube.raw("DELETE", "/api/v1/namespaces/x/configmaps/y"))
            await asyncio.sleep(0.1)
            return task

        task = await asyncio.create_task(leader_work())
        switch.expired = True
        gate.set()
        with pytest.raises(fence.LeadershipLost):
            await task
    assert written == []


async def test_a_refused_write_opens_no_connection() -> None:
    """Review s36: refused once its new connection was made, the socket was left open (aiohttp neither pools nor
    closes it then); now a new connection is checked before it is made."""
    opened: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    switch = Switch()
    switch.expired = True
    async with local_server(handler) as port, Kube(Credentials(server=f"http://127.0.0.1:{port}", token="t")) as kube:
        session = kube.session()
        real = session.connector._create_connection  # type: ignore[union-attr]

        async def noting(*args: Any, **kwargs: Any) -> Any:
            opened.append(args)
            return await real(*args, **kwargs)

        session.connector._create_connection = noting  # type: ignore[union-attr, method-assign]

        async def leader_work() -> None:
            fence.WRITE_FENCE.set(switch)
            await kube.session().post(f"http://127.0.0.1:{port}/x", trace_request_ctx={"method": "POST"})

        with pytest.raises(fence.LeadershipLost):
            await asyncio.create_task(leader_work())
    assert opened == []
