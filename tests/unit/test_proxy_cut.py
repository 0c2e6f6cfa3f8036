"""A proxied response cut mid-body must reach the client as cut, not as complete.

The real hub app (routes, Proxy) serves plain HTTP on loopback; its tunnel is an in-memory hub/agent session
pair whose agent dials a real aiohttp server standing in for the child's API server. Closing the hub's
Tunnel is what the hub does when an agent's websocket drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import yarl
from aiohttp import web

from clusternet_api.tunnel.http import StreamHttp
from clusternet_hub.proxy import WHOLE_BODY_LIMIT, Proxy
from clusternet_hub.server import SOCKETS, build_app
from clusternet_hub.sockets import Tunnel
from tests.unit.test_tunnel_mux import session_pair

pytestmark = pytest.mark.timeout(20)

CLUSTER = "00000000-0000-4000-8000-00000000c0de"
AUTH = {"Authorization": "Bearer child-token"}
BIG = WHOLE_BODY_LIMIT * 4  # streamed, not relayed in one piece


def child_app() -> web.Application:
    """The child's API server: an endless watch, a finite chunked body, bodies that stall or stop early, and a
    websocket."""

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:
            await response.write(b'{"type":"BOOKMARK"}\n')
            await asyncio.sleep(0.02)

    async def finite(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(5):
            await response.write(b"part%d;" % i)
        await response.write_eof()
        return response

    async def short(request: web.Request) -> web.StreamResponse:
        """Promises `size` bytes, sends a third, then its connection closes (a FIN, not a reset)."""
        size = int(request.query["size"])
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        await response.write(b"x" * (size // 3))
        assert request.transport is not None
        request.transport.close()
        return response

    async def stall(request: web.Request) -> web.StreamResponse:
        """Promises BIG bytes, sends a third, then waits (until the tunnel under it goes)."""
        response = web.StreamResponse()
        response.content_length = BIG
        await response.prepare(request)
        await response.write(b"x" * (BIG // 3))
        await asyncio.Event().wait()
        return response

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        """Sends `count` messages then closes normally (code 1000); without `count`, sends until cut."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        count = int(request.query.get("count", "-1"))
        while count != 0:
            await ws.send_str("event")
            count -= 1
            await asyncio.sleep(0.02)
        await ws.close()
        return ws

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"raw_path": request.rel_url.raw_path, "query": request.rel_url.raw_query_string,
                                  "selector": request.query.get("labelSelector")})

    app = web.Application()
    app.router.add_get("/echo/{name}", echo)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/watch", watch)
    app.router.add_get("/stall", stall)
    app.router.add_get("/finite", finite)
    app.router.add_get("/short", short)
    return app


@dataclass
class OneTunnel:
    """The registry as the proxy sees it, holding one live tunnel."""

    tunnel: Tunnel

    def get(self, cluster_id: str) -> Tunnel | None:
        return self.tunnel if cluster_id == CLUSTER and not self.tunnel.session.closed else None

    async def cluster_exists(self, cluster_id: str) -> bool:
        return cluster_id == CLUSTER

    async def http_for(self, cluster_id: str) -> StreamHttp | None:
        tunnel = self.get(cluster_id)
        return tunnel.http if tunnel else None


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, handler_cancellation=True)  # as the hub runs (server.start)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def hub_with_tunnel() -> AsyncIterator[tuple[str, Tunnel]]:
    """(base URL of the proxy path for CLUSTER, the hub's Tunnel), the agent dialling the child app."""
    async with serve(child_app()) as child_port:
        async def dial_child(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", child_port)

        async with session_pair(accept=dial_child) as (hub_session, _):
            tunnel = Tunnel(CLUSTER, hub_session, "ns", "mc")
            proxy = Proxy(OneTunnel(tunnel), lambda _: True)  # type: ignore[arg-type]
            async with serve(build_app(None, proxy)) as hub_port:  # type: ignore[arg-type]
                yield f"http://127.0.0.1:{hub_port}{SOCKETS}/{CLUSTER}/proxy/direct", tunnel


async def test_tunnel_closed_mid_watch_aborts_the_response(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "clusternet_hub.proxy")
    async with (hub_with_tunnel() as (base, tunnel), aiohttp.ClientSession() as client,
                client.get(f"{base}/watch", headers=AUTH) as response):
        assert response.status == 200
        assert await response.content.readline() == b'{"type":"BOOKMARK"}\n'
        await tunnel.close("agent disconnected")  # what the hub does when the agent's websocket drops
        with pytest.raises(aiohttp.ClientPayloadError):  # no terminating chunk: the client sees a cut
            async with asyncio.timeout(5):
                while await response.content.readline():
                    pass
    assert any("cut after" in r.getMessage() and "agent disconnected" in r.getMessage() for r in caplog.records)


async def test_tunnel_closed_mid_content_length_body_aborts_the_response() -> None:
    async with (hub_with_tunnel() as (base, tunnel), aiohttp.ClientSession() as client,
                client.get(f"{base}/stall", headers=AUTH) as response):
        assert response.content_length == BIG
        await response.content.readexactly(1000)
        await tunnel.close("agent disconnected")
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(5):
                await response.read()


async def test_child_closing_before_content_length_is_complete_aborts_the_response() -> None:
    async with hub_with_tunnel() as (base, _), aiohttp.ClientSession() as client:
        async with client.get(f"{base}/short?size={BIG}", headers=AUTH) as response:
            assert response.status == 200 and response.content_length == BIG
            with pytest.raises(aiohttp.ClientPayloadError):
                async with asyncio.timeout(5):
                    await response.read()
        # a small answer is relayed whole, so its cut is still reported as an error status
        async with client.get(f"{base}/short?size=3000", headers=AUTH) as response:
            assert response.status == 503 and "lost the answer" in (await response.json())["message"]


async def test_a_normal_end_still_ends_normally() -> None:
    async with hub_with_tunnel() as (base, _), aiohttp.ClientSession() as client:
        for _ in range(2):  # and the client's connection stays usable
            async with client.get(f"{base}/finite", headers=AUTH) as response:
                assert await response.read() == b"part0;part1;part2;part3;part4;"


async def test_upgraded_connection_cut_is_not_a_normal_close() -> None:
    """After a 101 there is no HTTP framing left to withhold: the relayed protocol's own close (a websocket
    close frame, SPDY's stream ends) marks a normal end, and a cut tunnel never relays one."""
    async with hub_with_tunnel() as (base, tunnel), aiohttp.ClientSession() as client:
        async with client.ws_connect(f"{base}/ws?count=3", headers=AUTH) as ws:
            assert [msg.data async for msg in ws] == ["event"] * 3
            assert ws.close_code == aiohttp.WSCloseCode.OK
        async with client.ws_connect(f"{base}/ws", headers=AUTH) as ws:
            assert (await ws.receive_str()) == "event"
            await tunnel.close("agent disconnected")
            async with asyncio.timeout(5):
                while not ws.closed:
                    await ws.receive()
            assert ws.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE


async def test_a_replica_not_leading_tells_disconnected_from_unknown_clusters() -> None:
    """A standby replica has no cache of clusters (its controllers do not run): it asks the parent, so a
    cluster whose agent is away is 503 "disconnected", and only an unknown ID is 404."""
    async with hub_with_tunnel() as (_, tunnel), aiohttp.ClientSession() as client:
        await tunnel.session.close()  # the agent is away
        standby = Proxy(OneTunnel(tunnel), lambda _: False)  # type: ignore[arg-type]
        async with serve(build_app(None, standby)) as port:  # type: ignore[arg-type]
            for cluster, status, words in ((CLUSTER, 503, "is disconnected"), ("unknown", 404, "no managed cluster")):
                url = f"http://127.0.0.1:{port}{SOCKETS}/{cluster}/proxy/direct/api"
                async with client.get(url, headers=AUTH) as response:
                    assert response.status == status and words in (await response.json())["message"]


async def test_path_and_query_reach_the_child_as_the_client_encoded_them() -> None:
    """client-go encodes a selector `app in (a,b)` as `app+in+%28a%2Cb%29`: decoded, it would hold spaces no
    request line may carry, and a decoded `%2F`, `%3F` or `%26` would change what the child is asked for."""
    query = "labelSelector=app+in+%28a%2Cb%29&fieldSelector=metadata.name%3Dx%26y"
    async with hub_with_tunnel() as (base, _), aiohttp.ClientSession() as client:
        url = yarl.URL(f"{base}/echo/a%2Fb%3Fc?{query}", encoded=True)
        async with client.get(url, headers=AUTH) as response:
            assert response.status == 200
            assert await response.json() == {"raw_path": "/echo/a%2Fb%3Fc", "query": query,
                                             "selector": "app in (a,b)"}


def test_a_401_from_the_child_says_whose_credentials_failed() -> None:
    """Relayed as the child wrote it, plus a Warning header: through the parent, a bare "Unauthorized" did not
    say that the child token was the one refused."""
    from clusternet_hub.proxy import CHILD_REJECTED_WARNING, response_headers

    child = [("Content-Type", "application/json"), ("Warning", '299 - "child says"'), ("Connection", "close")]
    refused = response_headers(child, 401)
    assert refused.getall("Warning") == ['299 - "child says"', CHILD_REJECTED_WARNING]
    assert "Connection" not in refused
    assert response_headers(child, 200).getall("Warning") == ['299 - "child says"']
