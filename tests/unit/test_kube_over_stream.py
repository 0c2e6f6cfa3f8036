"""`Kube(creds, opener=...)`: the same client API over HTTP/1.1 on tunnel streams (how the hub pushes).

A small aiohttp app stands in for a child's API server behind an in-memory hub/agent session pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from clusternet_api.fence import WRITE_FENCE, LeadershipLost
from clusternet_api.kube import ApiException, Credentials, Kube
from clusternet_api.tunnel import Session, Stream, StreamOpenError
from clusternet_api.tunnel.http import StreamOpener
from clusternet_api.tunnel.relay import LoopbackRelay
from clusternet_hub.sockets import SocketRegistry, Tunnel
from tests.unit.test_tunnel_mux import session_pair

pytestmark = pytest.mark.timeout(20)

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}, "data": {"k": "v"}}


def api_server(seen: list[tuple[str, str, str]]) -> web.Application:
    """GET/PATCH of one ConfigMap (404 for others), a watch of two events, and who asked with which headers."""

    async def configmap(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, request.headers.get("Authorization", "")))
        if request.match_info["name"] == "unserved":  # a path the server does not serve (a cold CRD handler)
            return web.Response(text="404 page not found\n", status=404)
        if request.match_info["name"] != "a":
            return web.json_response({"kind": "Status", "message": "configmaps \"b\" not found"}, status=404)
        if request.method == "PATCH":
            body = json.loads(await request.read())
            assert request.headers["Content-Type"] == "application/apply-patch+yaml"
            return web.json_response({**CM, "data": body["data"]})
        return web.json_response(CM)

    async def watch(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path_qs, request.headers.get("Authorization", "")))
        response = web.StreamResponse()
        await response.prepare(request)
        for kind in ("ADDED", "MODIFIED"):  # split across writes, as a real server may
            line = json.dumps({"type": kind, "object": CM}).encode() + b"\n"
            await response.write(line[:10])
            await response.write(line[10:])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/ns/configmaps/{name}", configmap)
    app.router.add_get("/api/v1/namespaces/ns/configmaps", watch)
    return app


@contextlib.asynccontextmanager
async def tunnel_to_api_server(seen: list[tuple[str, str, str]]) -> AsyncIterator[tuple[StreamOpener, Session,
                                                                                          Session]]:
    """(an opener of streams to the fake API server, the hub's session, the agent's)."""
    runner = web.AppRunner(api_server(seen))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    address = f"127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with session_pair() as (hub, agent):
            async def opener() -> Stream:
                return await hub.open_stream(address)

            yield opener, hub, agent
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def kube_through_tunnel(seen: list[tuple[str, str, str]]) -> AsyncIterator[tuple[Kube, Session, Session]]:
    """(a Kube whose opener opens streams to the fake API server, the hub's session, the agent's)."""
    async with tunnel_to_api_server(seen) as (opener, hub, agent):
        creds = Credentials(server="https://child.example:6443", token="child-token")
        async with Kube(creds, opener=opener) as kube:
            yield kube, hub, agent


async def test_requests_go_over_one_kept_alive_stream_with_the_credentials() -> None:
    seen: list[tuple[str, str, str]] = []
    async with kube_through_tunnel(seen) as (kube, _, agent):
        assert await kube.get("v1", "ConfigMap", "a", "ns") == CM
        assert await kube.get("v1", "ConfigMap", "b", "ns") is None  # 404 as None, as over aiohttp
        applied = await kube.apply({**CM, "data": {"k": "w"}}, field_manager="test")
        assert applied["data"] == {"k": "w"}
        assert agent.streams_opened == 1
    assert seen[0] == ("GET", "/api/v1/namespaces/ns/configmaps/a", "Bearer child-token")
    assert seen[2] == ("PATCH", "/api/v1/namespaces/ns/configmaps/a?fieldManager=test&force=true",
                       "Bearer child-token")


async def test_errors_carry_the_status_message() -> None:
    async with kube_through_tunnel([]) as (kube, _, _):
        with pytest.raises(ApiException) as info:
            await kube.request("DELETE", "/api/v1/namespaces/ns/configmaps/b")
        assert info.value.status == 404 and info.value.reason == 'configmaps "b" not found'


async def test_a_404_without_a_status_is_no_answer_about_the_object() -> None:
    """"404 page not found" (text) says the path is not served, as a kube-apiserver just started says of custom
    resources: taken for "gone", it had callers delete or re-create what exists."""
    async with kube_through_tunnel([]) as (kube, _, _):
        assert await kube.get("v1", "ConfigMap", "b", "ns") is None
        with pytest.raises(ApiException) as info:
            await kube.get("v1", "ConfigMap", "unserved", "ns")
    assert info.value.status == 404 and "not served by the API server now" in str(info.value)


async def test_watch_yields_whole_events() -> None:
    seen: list[tuple[str, str, str]] = []
    async with kube_through_tunnel(seen) as (kube, _, _):
        events = [event async for event in kube.watch("v1", "ConfigMap", "ns", server_timeout=5)]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"] and events[0]["object"] == CM
    assert seen[0][1].startswith("/api/v1/namespaces/ns/configmaps?watch=1&timeoutSeconds=5")


async def test_concurrent_requests_are_limited_to_the_connection_count() -> None:
    async with kube_through_tunnel([]) as (kube, _, agent):
        kube._stream_slots = asyncio.Semaphore(2)
        await asyncio.gather(*(kube.get("v1", "ConfigMap", "a", "ns") for _ in range(10)))
        assert agent.streams_opened <= 2


async def test_a_closed_tunnel_fails_the_request() -> None:
    async with kube_through_tunnel([]) as (kube, hub, _):
        await kube.get("v1", "ConfigMap", "a", "ns")
        await hub.close("agent disconnected")  # what the hub does when the agent's websocket drops
        with pytest.raises((StreamOpenError, ConnectionError)):
            async with asyncio.timeout(5):
                await kube.get("v1", "ConfigMap", "a", "ns")


async def test_a_push_client_on_the_registry_outlives_a_reconnect() -> None:
    """The deployer keeps one Kube per child: its opener finds whichever tunnel is live at each request."""
    runner = web.AppRunner(api_server([]))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    address = f"127.0.0.1:{runner.addresses[0][1]}"
    registry = SocketRegistry(None)  # type: ignore[arg-type]  # no parent API needed for get/opener
    creds = Credentials(server="https://child.example:6443", token="child-token")
    try:
        async with Kube(creds, opener=registry.opener("c1", address)) as kube:
            with pytest.raises(StreamOpenError, match="tunnel of cluster c1 is down"):
                await kube.get("v1", "ConfigMap", "a", "ns")
            for connection in range(2):
                async with session_pair() as (hub, _):
                    registry.tunnels["c1"] = Tunnel("c1", hub, "ns", "mc")
                    assert await kube.get("v1", "ConfigMap", "a", "ns") == CM, f"connection {connection}"
                    await registry.tunnels["c1"].close("agent disconnected")
    finally:
        await runner.cleanup()


async def test_a_loopback_relay_pipes_tcp_connections_into_tunnel_streams() -> None:
    """Helm's Go client can only dial an address: the hub's relay turns each connection into a stream."""
    seen: list[tuple[str, str, str]] = []
    async with tunnel_to_api_server(seen) as (opener, _, agent):
        relay = await LoopbackRelay(opener).start()
        try:
            for _ in range(2):  # two connections, two streams
                tls = ssl.create_default_context(cadata=relay.ca_pem.decode())
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.port, ssl=tls)
                writer.write(b"GET /api/v1/namespaces/ns/configmaps/a HTTP/1.1\r\nHost: x\r\n"
                             b"Authorization: Bearer t\r\nConnection: close\r\n\r\n")
                await writer.drain()
                answer = await reader.read()
                writer.close()
                assert answer.startswith(b"HTTP/1.1 200") and b'"name": "a"' in answer
            assert agent.streams_opened == 2 and relay.url.startswith("https://127.0.0.1:")
        finally:
            await relay.close()
    assert seen == [("GET", "/api/v1/namespaces/ns/configmaps/a", "Bearer t")] * 2


async def test_a_relay_started_by_leader_work_that_lost_its_lease_relays_nothing() -> None:
    """Helm's bytes to the child go through the relay: once the fence trips (clusternet_api.fence) the request
    is not passed on, and Helm's connection is closed instead of waiting for an answer."""
    seen: list[tuple[str, str, str]] = []
    lost = [False]

    def lease_fence() -> None:
        if lost[0]:
            raise LeadershipLost("lease expired")

    async with tunnel_to_api_server(seen) as (opener, _, _agent):
        token = WRITE_FENCE.set(lease_fence)
        try:
            relay = await LoopbackRelay(opener).start()  # as the leader's ReleasePusher starts it
        finally:
            WRITE_FENCE.reset(token)
        try:
            answers = []
            for expired in (False, True):
                lost[0] = expired
                tls = ssl.create_default_context(cadata=relay.ca_pem.decode())
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.port, ssl=tls)
                writer.write(b"GET /api/v1/namespaces/ns/configmaps/a HTTP/1.1\r\nHost: x\r\n"
                             b"Authorization: Bearer t\r\nConnection: close\r\n\r\n")
                await writer.drain()
                answers.append(await asyncio.wait_for(reader.read(), 5))
                writer.close()
            assert answers[0].startswith(b"HTTP/1.1 200") and answers[1] == b""
        finally:
            await relay.close()
    assert len(seen) == 1


async def test_closing_the_relay_with_a_connection_open_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Every hub shutdown printed asyncio's "Exception in callback ... CancelledError" for a connection Helm's
    client still held (the day-2 audit)."""
    gate = asyncio.Event()

    async def never_opens() -> Stream:
        await gate.wait()
        raise AssertionError("not reached")

    relay = await LoopbackRelay(never_opens).start()
    tls = ssl.create_default_context(cadata=relay.ca_pem.decode())
    _, writer = await asyncio.open_connection("127.0.0.1", relay.port, ssl=tls)
    for _ in range(100):  # until the relay took the connection
        if relay.tasks:
            break
        await asyncio.sleep(0.01)
    await relay.close()
    writer.close()
    await asyncio.sleep(0.05)  # the server's callbacks run
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
