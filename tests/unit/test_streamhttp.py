"""HTTP/1.1 over tunnel streams: a real aiohttp server behind an in-memory hub/agent session pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from clusternet_api.tunnel import StreamOpenError
from clusternet_api.tunnel.http import StreamHttp
from tests.unit.test_tunnel_mux import session_pair

pytestmark = pytest.mark.timeout(20)


@contextlib.asynccontextmanager
async def http_server(seen: dict[str, int]) -> AsyncIterator[str]:
    async def small(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path, "query": request.query_string})

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), headers={"Warning": "a", "X-Multi": "1"})

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(5):
            await response.write(b"part%d;" % i)
        await response.write_eof()
        return response

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"event\n")
                await asyncio.sleep(0.01)
        finally:
            seen["endless_ended"] = seen.get("endless_ended", 0) + 1

    async def closing(request: web.Request) -> web.Response:
        response = web.Response(text="bye")
        response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_post("/echo", echo)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/endless", endless)
    app.router.add_get("/closing", closing)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def body_of(http: StreamHttp, address: str, method: str, target: str, body: bytes | None = None
                  ) -> tuple[int, dict[str, list[str]], bytes]:
    response = await http.request(address, method, target, [("Host", address)], body)
    headers: dict[str, list[str]] = {}
    for k, v in response.headers:
        headers.setdefault(k.lower(), []).append(v)
    return response.status, headers, b"".join([chunk async for chunk in response.body])


async def test_keep_alive_requests_share_one_stream() -> None:
    async with http_server({}) as address, session_pair() as (hub, agent):
        http = StreamHttp(lambda a: hub.open_stream(a))
        for i in range(5):
            status, _, body = await body_of(http, address, "GET", f"/small?i={i}")
            assert status == 200 and body == b'{"path": "/small", "query": "i=%d"}' % i
        assert agent.streams_opened == 1


async def test_request_body_and_repeated_headers_pass_through() -> None:
    async with http_server({}) as address, session_pair() as (hub, _):
        http = StreamHttp(lambda a: hub.open_stream(a))
        status, headers, body = await body_of(http, address, "POST", "/echo", b"x" * 200_000)
        assert status == 200 and body == b"x" * 200_000
        assert headers["warning"] == ["a"] and headers["x-multi"] == ["1"]


async def test_chunked_response_is_reassembled() -> None:
    async with http_server({}) as address, session_pair() as (hub, _):
        http = StreamHttp(lambda a: hub.open_stream(a))
        _, _, body = await body_of(http, address, "GET", "/chunked")
        assert body == b"part0;part1;part2;part3;part4;"


async def test_abandoned_stream_is_aborted_and_not_reused() -> None:
    seen: dict[str, int] = {}
    async with http_server(seen) as address, session_pair() as (hub, agent):
        http = StreamHttp(lambda a: hub.open_stream(a))
        response = await http.request(address, "GET", "/endless", [("Host", address)], None)
        async with contextlib.aclosing(response.body) as chunks:
            async for chunk in chunks:
                assert chunk.startswith(b"event")
                break  # the client went away mid-watch
        for _ in range(100):  # the server notices the reset connection
            if seen.get("endless_ended"):
                break
            await asyncio.sleep(0.02)
        assert seen.get("endless_ended") == 1
        status, _, _ = await body_of(http, address, "GET", "/small")
        assert status == 200 and agent.streams_opened == 2


async def test_connection_close_is_honoured_and_next_request_opens_a_stream() -> None:
    async with http_server({}) as address, session_pair() as (hub, agent):
        http = StreamHttp(lambda a: hub.open_stream(a))
        assert (await body_of(http, address, "GET", "/closing"))[2] == b"bye"
        assert (await body_of(http, address, "GET", "/small"))[0] == 200
        assert agent.streams_opened == 2


async def test_unreachable_target_fails_to_open() -> None:
    async with session_pair() as (hub, _):
        http = StreamHttp(lambda a: hub.open_stream(a))
        with pytest.raises(StreamOpenError) as info:  # the proxy turns this into a 503 with the message
            await http.request("127.0.0.1:1", "GET", "/", [("Host", "x")], None)
        assert "127.0.0.1:1" in str(info.value)


async def test_a_burst_keeps_its_streams_warm_until_they_idle_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """50 concurrent requests, then 50 again: the second burst opens no stream (MAX_IDLE covers it); streams
    idle for IDLE_SECONDS are closed, so a burst long past holds nothing in the agent."""
    import clusternet_api.tunnel.http as streamhttp

    monkeypatch.setattr(streamhttp, "IDLE_SECONDS", 0.3)
    async with http_server({}) as address, session_pair() as (hub, agent):
        http = StreamHttp(lambda a: hub.open_stream(a))
        for _ in range(2):
            results = await asyncio.gather(*(body_of(http, address, "GET", "/small") for _ in range(50)))
            assert all(status == 200 for status, _, _ in results)
        assert agent.streams_opened == 50 and len(http.idle[address]) == 50
        await asyncio.sleep(0.6)
        assert http.idle[address] == [] and hub.open_streams == 0
        status, _, _ = await body_of(http, address, "GET", "/small")
        assert status == 200 and agent.streams_opened == 51
