"""HTTP/1.1 spoken straight onto tunnel streams, so proxied requests skip a loopback hop.

The proxy used to hand each request to an HTTP client connected to a loopback listener that piped the bytes
into a tunnel stream: two extra socket hops and a second HTTP stack per request. Here the hub writes the
request onto a stream itself and parses the answer with h11 (sans-IO), keeping idle streams per target
address for reuse like any keep-alive pool. A stream is reused only after a complete, clean exchange;
anything else (a watch the client left, an error, `Connection: close`) aborts it.

A body that stops before its end (stream reset because the agent went away, the child closing early, broken
framing) raises `BodyCut` instead of just ending: to a caller, an ended iterator means a complete body.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import h11

from clusternet_api.tunnel import Stream

MAX_IDLE = 16  # idle streams kept per address; more concurrent requests simply open more streams
OpenStream = Callable[[str], Awaitable[Stream]]


class UpstreamError(Exception):
    """The child side broke the exchange (stream reset, malformed HTTP) before a response began."""


class BodyCut(ConnectionResetError):
    """The response body stopped before its end: the stream was reset or closed early, or its framing broke.

    A ConnectionResetError, as stream failures are elsewhere, so a caller that treats any of them alike
    keeps working; a caller relaying the body must not end its own copy normally (see proxy.relay_body).
    """


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncGenerator[bytes, None]


class Channel:
    """One HTTP/1.1 connection over one tunnel stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=256 * 1024)

    @property
    def reusable(self) -> bool:
        return (not self.stream.done and self.conn.our_state is h11.DONE
                and self.conn.their_state is h11.DONE)

    async def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None) -> None:
        if body:
            headers = [*headers, ("Content-Length", str(len(body)))]
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.write(data)

    async def next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.read())

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
            if not channel.stream.done:
                return channel
        return Channel(await self.open_stream(address))

    def _release(self, address: str, channel: Channel) -> None:
        if channel.reusable and channel.conn.their_http_version == b"1.1":
            channel.conn.start_next_cycle()
            pool = self.idle.setdefault(address, [])
            if len(pool) < MAX_IDLE:
                pool.append(channel)
                return
        channel.stream.close()

    async def request(self, address: str, method: str, target: str, headers: list[tuple[str, str]],
                      body: bytes | None) -> Response:
        """Send one request; the response body must be consumed (or the iterator closed) by the caller."""
        for attempt in range(2):
            channel = await self._channel(address)
            fresh = channel.conn.our_state is h11.IDLE and channel.stream.bytes_out == 0
            try:
                await channel.send(method, target, headers, body)
                event = await channel.next_event()
                while isinstance(event, h11.InformationalResponse):
                    event = await channel.next_event()
            except (ConnectionResetError, h11.ProtocolError) as e:
                channel.abort(f"request failed: {e}")
                if fresh or attempt:  # an idle stream may have died meanwhile: one retry on a new one
                    raise UpstreamError(str(e) or type(e).__name__) from e
                continue
            if isinstance(event, h11.ConnectionClosed) and not fresh and not attempt:
                channel.abort("closed while idle")  # the child closed the kept-alive connection: retry
                continue
            if not isinstance(event, h11.Response):
                channel.abort("unexpected HTTP event")
                raise UpstreamError(f"the child answered with {type(event).__name__} instead of a response")
            headers_out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
            return Response(event.status_code, headers_out, self._body(address, channel))
        raise AssertionError("unreachable")

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
                with contextlib.suppress(Exception):
                    channel.stream.close()
        self.idle.clear()

