"""Upgrades through the hub: the hub asks the child for the switch on a tunnel stream, the hub takes the client's
connection from aiohttp (public asyncio calls only) and relays raw bytes both ways.

The child is a raw TCP server speaking a made-up upgraded protocol, as SPDY (kubectl exec/port-forward) is
to the hub: aiohttp's own parser treats only websocket upgrades as upgrades, so a SPDY-like one shows that
the takeover does not depend on it. The hub serves over TLS, as in production, and over plain TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from clusternet_api.tunnel.http import Response, StreamHttp, Upgraded
from clusternet_hub.proxy import Proxy
from clusternet_hub.server import SOCKETS, build_app, server_ssl_context
from clusternet_hub.sockets import Tunnel
from tests.unit.test_proxy_cut import CLUSTER, OneTunnel
from tests.unit.test_tunnel_mux import session_pair, tcp_server

pytestmark = pytest.mark.timeout(20)

UPGRADE = b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nAuthorization: Bearer child-token\r\n"


async def read_head(reader: asyncio.StreamReader) -> list[bytes]:
    return (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[:-2]


async def spdy_child(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers 101 with a greeting right behind the head, echoes lines, says bye and closes on `quit`;
    anything but an upgrade request gets 403."""
    head = await read_head(reader)
    if b"upgrade: spdy/3.1" not in [line.lower() for line in head]:
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Why: test\r\n\r\nno way")
        await writer.drain()
        writer.close()
        return
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\nhello\n")
    while (line := await reader.readline()) not in (b"", b"quit\n"):
        writer.write(b"echo " + line)
        await writer.drain()
    writer.write(b"bye\n")
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def hub(tls: bool) -> AsyncIterator[tuple[int, ssl.SSLContext | None, Tunnel]]:
    """(hub port, client TLS context, the hub's Tunnel), the agent dialling `spdy_child`."""
    async with tcp_server(spdy_child) as child:
        host, _, child_port = child.rpartition(":")

        async def dial_child(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(host, int(child_port))

        async with session_pair(accept=dial_child) as (hub_session, _):
            tunnel = Tunnel(CLUSTER, hub_session, "ns", "mc")
            async with serve_hub(tunnel, tls) as served:
                yield (*served, tunnel)


@contextlib.asynccontextmanager
async def serve_hub(tunnel: Tunnel, tls: bool) -> AsyncIterator[tuple[int, ssl.SSLContext | None]]:
    """The hub's app with `tunnel` as its only one, on a loopback port, over TLS (self-signed) or not."""
    proxy = Proxy(OneTunnel(tunnel), lambda _: True)  # type: ignore[arg-type]
    runner = web.AppRunner(build_app(None, proxy), handler_cancellation=True)  # type: ignore[arg-type]
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(None, None) if tls else None
                      ).start()
    client_tls = None
    if tls:
        client_tls = ssl.create_default_context()
        client_tls.check_hostname, client_tls.verify_mode = False, ssl.CERT_NONE
    try:
        yield runner.addresses[0][1], client_tls
    finally:
        await runner.cleanup()


async def ask_upgrade(port: int, tls: ssl.SSLContext | None, extra: bytes = UPGRADE
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(b"POST " + SOCKETS.encode() + b"/" + CLUSTER.encode() + b"/proxy/direct/exec?x=1 HTTP/1.1\r\n"
                 b"Host: hub\r\n" + extra + b"\r\n")
    return reader, writer, await read_head(reader)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_spdy_like_upgrade_is_relayed_both_ways_and_ends_with_the_child(tls: bool) -> None:
    async with hub(tls) as (port, client_tls, _):
        reader, writer, head = await ask_upgrade(port, client_tls)
        assert head[0].startswith(b"HTTP/1.1 101") and b"Upgrade: SPDY/3.1" in head
        assert await reader.readline() == b"hello\n"  # sent by the child right behind its 101
        for i in range(3):
            writer.write(b"line %d\n" % i)
            assert await reader.readline() == b"echo line %d\n" % i
        writer.write((b"x" * 999 + b"\n") * 300)  # more than the read limits and a tunnel window at once
        for _ in range(300):
            assert await reader.readline() == b"echo " + b"x" * 999 + b"\n"
        writer.write(b"quit\n")
        async with asyncio.timeout(5):  # the child closed: so does the client's connection, TLS or not
            assert await reader.read() == b"bye\n"
        writer.close()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_cut_tunnel_aborts_the_upgraded_connection(tls: bool) -> None:
    async with hub(tls) as (port, client_tls, tunnel):
        reader, writer, _ = await ask_upgrade(port, client_tls)
        assert await reader.readline() == b"hello\n"
        await tunnel.close("agent disconnected")
        async with asyncio.timeout(5):
            with contextlib.suppress(ConnectionError):
                assert await reader.read() == b""  # no "bye": the child's end never came
        writer.close()


async def test_a_refused_upgrade_is_an_ordinary_answer() -> None:
    async with hub(False) as (port, _, _):
        reader, writer, head = await ask_upgrade(port, None, UPGRADE.replace(b"SPDY/3.1", b"nope"))
        assert head[0].startswith(b"HTTP/1.1 403") and b"X-Why: test" in head
        assert await reader.readexactly(6) == b"no way"
        writer.close()


async def test_client_leaving_ends_the_relay_and_the_stream() -> None:
    async with hub(True) as (port, client_tls, tunnel):
        reader, writer, _ = await ask_upgrade(port, client_tls)
        assert await reader.readline() == b"hello\n"
        writer.transport.abort()
        for _ in range(100):
            if tunnel.session.open_streams == 0:
                break
            await asyncio.sleep(0.02)
        assert tunnel.session.open_streams == 0


async def test_stream_http_upgrade_hands_over_the_stream_with_what_followed_the_101() -> None:
    async with tcp_server(spdy_child) as child, session_pair() as (hub_session, _):
        http = StreamHttp(lambda a: hub_session.open_stream(a))
        head = [("Host", "x"), ("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        upgraded = await http.upgrade(child, "POST", "/exec", head)
        assert isinstance(upgraded, Upgraded) and ("Upgrade", "SPDY/3.1") in upgraded.headers
        assert upgraded.leftover == b"hello\n"
        await upgraded.stream.write(b"ping\nquit\n")
        received = b""
        while data := await upgraded.stream.read():
            received += data
        assert received == b"echo ping\nbye\n"
        refused = await http.upgrade(child, "POST", "/exec", [("Host", "x"), ("Connection", "Upgrade"),
                                                               ("Upgrade", "other")])
        assert isinstance(refused, Response) and refused.status == 403
        assert b"".join([chunk async for chunk in refused.body]) == b"no way"
