"""HTTP/1.1 spoken straight onto tunnel streams: the one way the hub talks HTTP to a child through a tunnel.

Proxied requests, upgrades (exec/attach/port-forward, websocket watches) and the hub's pushes (a `Kube`
built with a stream opener) all write their request onto a tunnel stream themselves and parse the answer
with httptools (llhttp, the parser of Node.js, in C). Going through a loopback listener instead costs two
socket hops and a second HTTP stack per request. Idle streams are kept per target address for reuse like
any keep-alive pool; a stream is reused only after a complete, clean exchange, anything else (a watch the
client left, an error, `Connection: close`, cancellation) aborts it, so the agent never keeps a connection
nobody reads.

Why not h11 (used until 2026-12-04): sans-IO in pure Python, it cost ~85 µs of hub CPU per proxied GET
(sending and parsing), ~10 % of the hub's whole cost of one; llhttp parses the same answer in ~3 µs. Requests
are written here, checked as strictly as h11 checked them (no control characters or spaces where HTTP forbids
them), so nothing a client sends can smuggle a second request onto a shared stream.

A body that stops before its end (stream reset because the agent went away, the child closing early, broken
framing) raises `BodyCut` instead of just ending: to a caller, an ended iterator means a complete body.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlparse

import httptools

from clusternet_api import fence
from clusternet_api.logs import error_text
from clusternet_api.tunnel.bytestreams import ByteStream

MAX_IDLE = 64
# Idle streams kept per address. 16 made a burst of 50 concurrent proxied GETs on warm client connections open
# 34 new streams, each a new TLS connection from the agent to its API server: 5.2x direct instead of 2.4x
# (bench/proxy.py, 2026-12-03). client-go keeps 25 per host; idle ones close after IDLE_SECONDS, as Go's 90 s.
IDLE_SECONDS = 90.0
MAX_HEAD = 256 * 1024  # bytes of response headers we accept (h11's limit before; Go's default is 1 MiB)
OpenStream = Callable[[str], Awaitable[ByteStream]]  # address -> a new stream to it
StreamOpener = Callable[[], Awaitable[ByteStream]]  # a new stream to one fixed address (see clusternet_api.kube)
Headers = list[tuple[str, str]]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: methods and header names
_TARGET = re.compile(r"[\x21-\x7e]+")  # a request target: visible ASCII only (h11's rule)
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters (CR and LF among them) but tab


class ProtocolError(Exception):
    """Malformed HTTP: a request we refuse to write, or an answer that does not parse."""


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


@dataclass
class Head:
    """A response's status line and headers, as the child sent them."""

    status: int
    headers: Headers


class _End:
    """The marker events: the answer's end, and the stream closing before an answer began."""

    def __init__(self, name: str) -> None:
        self.name = name


END: Final = _End("end of the response")
CLOSED: Final = _End("connection closed")
Event = Head | bytes | _End


def encode_request(method: str, target: str, headers: Headers, body: bytes | None) -> bytes:
    """The request as bytes, refused (ProtocolError) where HTTP/1.1 forbids what a caller passed."""
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise ProtocolError(f"illegal request line: {method!r} {target!r}")
    lines = [f"{method} {target} HTTP/1.1"]
    host = False
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ProtocolError(f"illegal header {name!r}")
        host = host or name.lower() == "host"
        lines.append(f"{name}: {value.strip()}")
    if not host:
        raise ProtocolError("missing Host header")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as e:
        raise ProtocolError(f"header value not encodable as ISO-8859-1: {e}") from e
    return head + body if body else head


class _Answer:
    """httptools' callbacks, collected as events (1xx heads other than 101 are dropped, as h11 did)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.events: deque[Event] = deque()
        self.headers: list[tuple[bytes, bytes]] = []
        self.size = 0
        self.in_message = False
        self.informational = False
        self.keep_alive = False

    def on_message_begin(self) -> None:
        self.headers, self.size, self.in_message = [], 0, True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value) + 4
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.informational = 100 <= status < 200 and status != 101
        if not self.informational:
            self.events.append(Head(status, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers]))

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if not self.informational:
            self.keep_alive = self.parser.should_keep_alive() and self.parser.get_http_version() == "1.1"
            self.events.append(END)


def _describe(event: Event) -> str:
    if isinstance(event, Head):
        return f"a second response head (status {event.status})"
    return event.name if isinstance(event, _End) else "body bytes"


def _until_eof(head: Head, method: str) -> bool:
    """An answer whose body ends only when the connection does (no length, not chunked)."""
    if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
        return False
    names = {k.lower(): v.lower() for k, v in head.headers}
    return "content-length" not in names and "chunked" not in names.get("transfer-encoding", "")


class Channel:
    """One HTTP/1.1 connection over one tunnel stream."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.expiry: asyncio.TimerHandle | None = None  # while idle in the pool
        self.leftover = b""  # bytes behind a 101 head
        self._answer = _Answer()
        self._method = ""
        self._sent = False
        self._reusable = False  # the answer ended completely and the child keeps the connection open
        self._eof = False
        self._until_eof = False

    @property
    def reusable(self) -> bool:
        return not self.stream.done and self._reusable

    @property
    def fresh(self) -> bool:
        """Nothing sent yet: a failure is the target's answer, not an idle stream that died meanwhile."""
        return not self._sent and self.stream.bytes_out == 0

    def next_cycle(self) -> None:
        self._sent = self._reusable = self._until_eof = False

    async def send(self, method: str, target: str, headers: Headers, body: bytes | None) -> None:
        data = encode_request(method, target, headers, body)
        self._method, self._sent = method, True
        await self.stream.write(data)

    async def next_event(self) -> Event:
        answer = self._answer
        while not answer.events:
            if self._eof:
                return self._at_eof()
            data = await self.stream.read()
            if not data:
                self._eof = True
            else:
                self._feed(data)
        event = answer.events.popleft()
        if isinstance(event, Head) and self._method == "HEAD":
            answer.events.clear()  # no body follows, whatever the headers say; llhttp cannot be told so
            answer.events.append(END)
            self._eof = True  # ... and the parser expects one: this stream is never reused
        elif isinstance(event, Head):
            self._until_eof = _until_eof(event, self._method)
        elif event is END:
            self._reusable = answer.keep_alive and not self._eof
        return event

    def _feed(self, data: bytes) -> None:
        try:
            self._answer.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.leftover = data[e.args[0]:]
            self._eof = True  # what follows is the upgraded protocol's, read by whoever takes the stream
        except httptools.HttpParserError as e:
            raise ProtocolError(f"malformed response: {e}") from e
        if self._answer.size > MAX_HEAD:
            raise ProtocolError(f"response headers larger than {MAX_HEAD} bytes")

    def _at_eof(self) -> Event:
        if not self._answer.in_message:
            return CLOSED
        if self._until_eof:  # the body's end is the connection's end
            self._answer.in_message = False
            return END
        raise ProtocolError("the connection closed before the end of the response")

    async def exchange(self, method: str, target: str, headers: Headers, body: bytes | None) -> Event:
        """Send a request and return the first event of the answer (1xx heads but 101 are skipped)."""
        await self.send(method, target, headers, body)
        return await self.next_event()

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

    @staticmethod
    def _fenced(channel: Channel, method: str) -> Channel:
        """The channel, once the write fence (clusternet_api.fence) still lets leader work write: opening a stream
        waits for the agent's OPEN answer or a peer replica's dial, seconds in which a frozen leader's Lease may
        pass, and a write checked only before went out after the fence had expired (audit s36, F1)."""
        try:
            fence.check(method)
        except fence.LeadershipLost:
            channel.abort("leadership lost")
            raise
        return channel

    def _release(self, address: str, channel: Channel) -> None:
        if channel.reusable:
            channel.next_cycle()
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
            channel = self._fenced(await self._channel(address), method)
            fresh = channel.fresh
            try:
                event = await channel.exchange(method, target, headers, body)
            except (ConnectionResetError, ProtocolError) as e:
                channel.abort(f"request failed: {e}")
                if fresh or attempt:  # an idle stream may have died meanwhile: one retry on a new one
                    raise UpstreamError(error_text(e)) from e
                continue
            except BaseException:  # cancelled or timed out waiting: nobody will read this answer
                channel.abort("request abandoned")
                raise
            if event is CLOSED and not fresh and not attempt:
                channel.abort("closed while idle")  # the child closed the kept-alive connection: retry
                continue
            return self._response(address, channel, event)
        raise AssertionError("unreachable")

    async def upgrade(self, address: str, method: str, target: str, headers: Headers) -> Upgraded | Response:
        """Ask for a protocol switch (`headers` carry Connection: Upgrade and Upgrade) on a new stream.

        On 101 the stream is handed over (`Upgraded`); any other answer is an ordinary `Response`.
        """
        channel = self._fenced(Channel(await self.open_stream(address)), method)
        try:
            event = await channel.exchange(method, target, headers, None)
        except (ConnectionResetError, ProtocolError) as e:
            channel.abort(f"upgrade failed: {e}")
            raise UpstreamError(error_text(e)) from e
        except BaseException:
            channel.abort("upgrade abandoned")
            raise
        if isinstance(event, Head) and event.status == 101:  # exchange() returns no other 1xx
            return Upgraded(event.headers, channel.stream, channel.leftover)
        return self._response(address, channel, event)

    def _response(self, address: str, channel: Channel, event: Event) -> Response:
        if not isinstance(event, Head) or event.status == 101:
            channel.abort("unexpected HTTP event")
            what = f"status {event.status}" if isinstance(event, Head) else _describe(event)
            raise UpstreamError(f"the child answered with {what} instead of a response")
        return Response(event.status, event.headers, self._body(address, channel))

    async def _body(self, address: str, channel: Channel) -> AsyncGenerator[bytes, None]:
        finished = False
        try:
            while True:
                try:
                    event = await channel.next_event()
                except (ConnectionResetError, ProtocolError) as e:  # reset, or closed before the end
                    raise BodyCut(error_text(e)) from e
                if isinstance(event, bytes):
                    yield event
                elif event is END:
                    finished = True
                    return
                else:  # a protocol surprise: the body's end never came
                    raise BodyCut(f"{_describe(event)} before the end of the response body")
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


def http_dial_address(url: str) -> str | None:
    """The `host:port` a tunnel stream dials for an `http://` URL (port 80 when it names none); None for any other
    URL, which no stream reaches in plain text. The hub asks an external predictor through the tunnel at it, and the
    agent allows and dials the same address (Dynamic Dividing)."""
    parsed = urlparse(url)
    if parsed.scheme != "http" or not parsed.hostname:
        return None
    return f"{parsed.hostname}:{parsed.port or 80}"
