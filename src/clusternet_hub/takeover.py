"""Taking a client's connection from aiohttp after an upgrade, with public APIs only.

After answering 101 Switching Protocols, the proxy relays raw bytes between the client and a tunnel stream.
aiohttp has no public call for that: its own WebSocketResponse feeds a parser through
`RequestHandler.set_parser`, an undocumented method the proxy used to call with a made-up parser under a
`type: ignore`. What is public is the asyncio transport under the request (`request.transport`), and asyncio
lets anyone put another protocol on a transport (`get_protocol`/`set_protocol`): from then on the bytes the
client sends go to that protocol, and aiohttp sees none of them. The hub puts a `StreamReaderProtocol` there
and gets a plain (StreamReader, StreamWriter) pair, as for any TCP connection.

aiohttp must still learn when the connection ends, so that it forgets it and, with handler_cancellation,
cancels the handler when the client goes away: the new protocol hands `connection_lost` on to aiohttp's
protocol, through asyncio's public Protocol interface.

Limit: bytes a client sends behind its upgrade request before it has the 101 stay in aiohttp's buffers and
are lost. Clients wait for the 101 (RFC 6455 4.1 for websockets; Go's SPDY and websocket dialers used by
kubectl read the response before they use the connection), so none are expected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiohttp import web

from clusternet_api.tunnel import ByteStream

READ_LIMIT = 64 * 1024  # the reader pauses the client's socket when twice this much waits to go upstream


class _HandedOver(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol that tells the connection's former owner when the connection is gone."""

    def __init__(self, reader: asyncio.StreamReader, owner: asyncio.BaseProtocol) -> None:
        super().__init__(reader)
        self._owner = owner

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._owner.connection_lost(exc)


def take_over(request: web.Request) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The request's connection as a stream pair; call it before the 101 leaves, so no byte sent in answer
    to the 101 can reach aiohttp first. Raises ConnectionResetError when the client is already gone."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client closed its connection")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_LIMIT, loop=loop)
    protocol = _HandedOver(reader, transport.get_protocol())
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if not transport.is_reading():  # aiohttp may have paused it while its own buffers were full
        transport.resume_reading()
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def answer_switching(request: web.Request, stream: ByteStream, headers: Iterable[tuple[str, str]],
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, web.StreamResponse]:
    """Take the client's connection and answer 101 Switching Protocols with `headers`: what is left is to
    pipe the stream pair to `stream`. A client gone before the 101 left aborts `stream` (no one would read it).
    The connection is never kept alive afterwards: it belongs to the upgraded protocol."""
    response = web.StreamResponse(status=101)
    for name, value in headers:
        response.headers.add(name, value)
    try:
        reader, writer = take_over(request)
        await response.prepare(request)
    except BaseException:
        stream.abort("the client left before the upgrade")
        raise
    response.force_close()
    return reader, writer, response
