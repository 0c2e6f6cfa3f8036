"""HTTP/1.1 spoken straight onto tunnel streams: the one way the hub talks HTTP to a child through a tunnel.

Proxied requests, upgrades (exec/attach/port-forward, websocket watches) and the hub's pushes (a `Kube`
built with a stream opener) all write their request onto a tunnel stream themselves and parse the answer
with h11 (sans-IO). Going through a loopback listener instead costs two socket hops and a second HTTP
stack per request. Idle streams are kept per target address for reuse like any keep-alive pool; a stream
is reused only after a complete, clean exchange, anything else (a watch the client left, an error,
`Connection: close`, cancellation) aborts it, so the agent never keeps a connection nobody reads.

A body that stops before its end (stream reset because the agent went away, the child closing early, broken
framing) raises `BodyCut` instead of just ending: to a caller, an ended iterator means a complete body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import h11

from clusternet_api.tunnel.mux import ByteStream

MAX_IDLE = 64
# Idle streams kept per address. 16 made a burst of 50 concurrent proxied GETs on warm client connections open
# 34 new streams, each a new TLS connection from the agent to its API server: 5.2x direct instead of 2.4x
# (bench/proxy.py, 2026-12-03). client-go keeps 25 per host; idle ones close after IDLE_SECONDS, as Go's 90 s.
IDLE_SECONDS = 90.0
OpenStream = Callable[[str], Awaitable[ByteStream]]  # address -> a new stream to it
StreamOpener = Callable[[], Awaitable[ByteStream]]  # a new stream to one fixed address (see clusternet_api.kube)
Headers = list[tuple[str, str]]
Event = h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]


class UpstreamError(ConnectionError):
    """The child side broke the exchange (stream reset, malformed HTTP) before a response began."""


class BodyCut(ConnectionResetError):
    """The response body stopped before its end: the stream was reset or closed early, or its framing broke.

    A ConnectionResetError, as stream failures are elsewhere, so a caller that treats any of them alike
    keeps working; a caller relaying the body must not end its own copy normally (see proxy.relay_body).
    """


@dataclass
class Response:
    status: int
    headers: Headers
    body: AsyncGenerator[bytes, None]


@dataclass
class Upgraded:
    """The child switched protocols (101): from here on `stream` carries the upgraded protocol's raw bytes.

    `leftover` is what the child sent right behind its 101 head, to be relayed before anything read later.
    """

    headers: Headers
    stream: ByteStream
    leftover: bytes


def _text_headers(event: h11.Response | h11.InformationalResponse) -> Headers:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()]


class Channel:
    """One HTTP/1.1 connection over one tunnel stream."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=256 * 1024)
        self.expiry: asyncio.TimerHandle | None = None  # while idle in the pool

    @property
    def reusable(self) -> bool:
        return (not self.stream.done and self.conn.our_state is h11.DONE
                and self.conn.their_state is h11.DONE)

    @property
    def fresh(self) -> bool:
        """Nothing sent yet: a failure is the target's answer, not an idle stream that died meanwhile."""
        return self.conn.our_state is h11.IDLE and self.stream.bytes_out == 0

    async def send(self, method: str, target: str, headers: Headers, body: bytes | None) -> None:
        if body:
            headers = [*headers, ("Content-Length", str(len(body)))]
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.write(data)

    async def next_event(self) -> Event:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.read())

    async def exchange(self, method: str, target: str, headers: Headers, body: bytes | None) -> Event:
        """Send a request and return the first event of the answer that is not a 1xx (101 excepted)."""
        await self.send(method, target, headers, body)
        event = await self.next_event()
        while isinstance(event, h11.InformationalResponse) and event.status_code != 101:
            event = await self.next_event()
        return event

    def abort(self, reason: str) -> None:
        self.stream.abort(reason)


class StreamHttp:
    """Keep-alive HTTP over the streams of one tunnel, per target address."""

    def __init__(self, open_stream: OpenStream) -> None:
        self.open_stream = open_stream
        self.idle: dict[str, list[Channel]] = {}

    async def _channel(self, address: str) -> Channel:
        pool = self.idle.get(address) or []
        while pool:
            channel = pool.pop()
            if channel.expiry is not None:
                channel.expiry.cancel()
            if not channel.stream.done:
                return channel
        return Channel(await self.open_stream(address))

    def _release(self, address: str, channel: Channel) -> None:
        if channel.reusable and channel.conn.their_http_version == b"1.1":
            channel.conn.start_next_cycle()
            pool = self.idle.setdefault(address, [])
            if len(pool) < MAX_IDLE:
                pool.append(channel)
                channel.expiry = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._expire, pool, channel)
                return
        channel.stream.close()

    @staticmethod
    def _expire(pool: list[Channel], channel: Channel) -> None:
        """Close a stream idle for IDLE_SECONDS, so a burst long past does not hold the agent's connections."""
        if channel in pool:
            pool.remove(channel)
            channel.stream.close()

    async def request(self, address: str, method: str, target: str, headers: Headers,
                      body: bytes | None) -> Response:
        """Send one request; the response body must be consumed (or the iterator closed) by the caller."""
        for attempt in range(2):
            channel = await self._channel(address)
            fresh = channel.fresh
            try:
                event = await channel.exchange(method, target, headers, body)
            except (ConnectionResetError, h11.ProtocolError) as e:
                channel.abort(f"request failed: {e}")
                if fresh or attempt:  # an idle stream may have died meanwhile: one retry on a new one
                    raise UpstreamError(str(e) or type(e).__name__) from e
                continue
            except BaseException:  # cancelled or timed out waiting: nobody will read this answer
                channel.abort("request abandoned")
                raise
            if isinstance(event, h11.ConnectionClosed) and not fresh and not attempt:
                channel.abort("closed while idle")  # the child closed the kept-alive connection: retry
                continue
            return self._response(address, channel, event)
        raise AssertionError("unreachable")

    async def upgrade(self, address: str, method: str, target: str, headers: Headers) -> Upgraded | Response:
        """Ask for a protocol switch (`headers` carry Connection: Upgrade and Upgrade) on a new stream.

        On 101 the stream is handed over (`Upgraded`); any other answer is an ordinary `Response`.
        """
        channel = Channel(await self.open_stream(address))
        try:
            event = await channel.exchange(method, target, headers, None)
        except (ConnectionResetError, h11.ProtocolError) as e:
            channel.abort(f"upgrade failed: {e}")
            raise UpstreamError(str(e) or type(e).__name__) from e
        except BaseException:
            channel.abort("upgrade abandoned")
            raise
        if isinstance(event, h11.InformationalResponse):  # exchange() returns no other 1xx than 101
            return Upgraded(_text_headers(event), channel.stream, bytes(channel.conn.trailing_data[0]))
        return self._response(address, channel, event)

    def _response(self, address: str, channel: Channel, event: Event) -> Response:
        if not isinstance(event, h11.Response):
            channel.abort("unexpected HTTP event")
            raise UpstreamError(f"the child answered with {getattr(event, '__name__', type(event).__name__)} "
                                "instead of a response")
        return Response(event.status_code, _text_headers(event), self._body(address, channel))

    async def _body(self, address: str, channel: Channel) -> AsyncGenerator[bytes, None]:
        finished = False
        try:
            while True:
                try:
                    event = await channel.next_event()
                except (ConnectionResetError, h11.ProtocolError) as e:  # reset, or closed before the end
                    raise BodyCut(str(e) or type(e).__name__) from e
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    finished = True
                    return
                else:  # a protocol surprise: the body's end never came
                    raise BodyCut(f"{type(event).__name__} before the end of the response body")
        finally:
            if finished:
                self._release(address, channel)
            else:
                channel.abort("response not read to the end")

    def close(self) -> None:
        for pool in self.idle.values():
            for channel in pool:
                if channel.expiry is not None:
                    channel.expiry.cancel()
                with contextlib.suppress(Exception):
                    channel.stream.close()
        self.idle.clear()


async def read_body(response: Response) -> bytes:
    """The whole body; the stream goes back to the pool, or is aborted if reading fails or is cancelled."""
    async with contextlib.aclosing(response.body) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def lines(response: Response) -> AsyncGenerator[bytes, None]:
    """The body split after each newline (as a watch sends events); a last unterminated piece comes last."""
    pending = b""
    async with contextlib.aclosing(response.body) as chunks:
        async for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
    if pending:
        yield pending
