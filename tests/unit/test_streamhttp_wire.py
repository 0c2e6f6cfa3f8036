"""HTTP/1.1 on tunnel streams at the byte level: what we refuse to write, and answers servers really send
(1xx before the answer, bodies that end with the connection, HEAD, oversized or broken heads)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from clusternet_api.tunnel.http import MAX_HEAD, BodyCut, ProtocolError, StreamHttp, UpstreamError, encode_request
from tests.unit.test_tunnel_mux import session_pair

pytestmark = pytest.mark.timeout(20)
HOST = [("Host", "child")]


@pytest.mark.parametrize(("method", "target", "headers"), [
    ("GET", "/a b", HOST),  # a space would end the target and start a smuggled request line
    ("GET", "/a\r\nX: y", HOST),
    ("GE T", "/", HOST),
    ("GET", "/", [*HOST, ("X-Bad", "1\r\nInjected: yes")]),
    ("GET", "/", [*HOST, ("Bad Name", "1")]),
    ("GET", "/", [*HOST, ("X", "nul\x00")]),
    ("GET", "/", [("Accept", "*/*")]),  # HTTP/1.1 requires Host
    ("GET", "/", [*HOST, ("X", "\u20ac")]),  # not ISO-8859-1
])
def test_requests_http_forbids_are_refused(method: str, target: str, headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ProtocolError):
        encode_request(method, target, headers, None)


def test_request_bytes() -> None:
    assert encode_request("POST", "/x?y=1", [*HOST, ("X-Tab", "a\tb ")], b"body") == (
        b"POST /x?y=1 HTTP/1.1\r\nHost: child\r\nX-Tab: a\tb\r\nContent-Length: 4\r\n\r\nbody")


@contextlib.asynccontextmanager
async def raw_server(answers: list[bytes], close_after: bool = False) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server that answers the n-th request it reads (on any connection) with answers[n], byte for byte;
    with `close_after`, each connection closes after one answer."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while len(received) < len(answers):
            try:
                received.append(await reader.readuntil(b"\r\n\r\n"))
            except asyncio.IncompleteReadError:
                break
            writer.write(answers[len(received) - 1])
            await writer.drain()
            if close_after:
                break
        if close_after:
            writer.close()
        else:
            await reader.read()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}", received
    finally:
        server.close()


async def fetch(http: StreamHttp, address: str, method: str = "GET") -> tuple[int, bytes]:
    response = await http.request(address, method, "/", [("Host", address)], None)
    return response.status, b"".join([chunk async for chunk in response.body])


async def test_informational_heads_are_skipped_and_the_stream_reused() -> None:
    answers = [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]
    async with raw_server(answers) as (address, _), session_pair() as (hub, agent):
        http = StreamHttp(hub.open_stream)
        assert await fetch(http, address) == (200, b"ok")
        assert await fetch(http, address) == (200, b"abc")
        assert agent.streams_opened == 1


async def test_a_body_that_ends_with_the_connection_is_complete_and_not_reused() -> None:
    answers = [b"HTTP/1.1 200 OK\r\n\r\nuntil the end"]
    async with raw_server(answers, close_after=True) as (address, _), session_pair() as (hub, _agent):
        http = StreamHttp(hub.open_stream)
        assert await fetch(http, address) == (200, b"until the end")
        assert http.idle.get(address, []) == []


async def test_head_has_no_body_whatever_its_length_says() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"]
    async with raw_server(answers) as (address, _), session_pair() as (hub, agent):
        http = StreamHttp(hub.open_stream)
        assert await fetch(http, address, "HEAD") == (200, b"")
        assert await fetch(http, address) == (200, b"x")
        assert agent.streams_opened == 2  # the HEAD's stream is not reused: its parser waits for a body


async def test_a_body_cut_short_is_not_a_complete_body() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]
    async with raw_server(answers, close_after=True) as (address, _), session_pair() as (hub, _):
        http = StreamHttp(hub.open_stream)
        with pytest.raises(BodyCut):
            await fetch(http, address)


@pytest.mark.parametrize("answer", [
    b"HTTX/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\nContent-Length: 0\r\n\r\n",
])
async def test_broken_or_oversized_heads_are_upstream_errors(answer: bytes) -> None:
    async with raw_server([answer]) as (address, _), session_pair() as (hub, _):
        http = StreamHttp(hub.open_stream)
        with pytest.raises(UpstreamError):
            await fetch(http, address)


async def test_closed_before_any_answer_on_a_fresh_stream() -> None:
    async with raw_server([], close_after=True) as (address, _), session_pair() as (hub, _):
        http = StreamHttp(hub.open_stream)
        with pytest.raises(UpstreamError, match="connection closed"):
            await fetch(http, address)


async def test_kept_alive_stream_closed_by_the_child_is_retried_on_a_new_one() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"] * 2
    async with raw_server(answers, close_after=True) as (address, received), session_pair() as (hub, agent):
        http = StreamHttp(hub.open_stream)
        assert await fetch(http, address) == (200, b"a")
        await asyncio.sleep(0.1)  # the child closes the idle connection
        assert await fetch(http, address) == (200, b"a")
        assert agent.streams_opened == 2 and len(received) == 2
