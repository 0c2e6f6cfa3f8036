"""TCP-stream multiplexer over one message connection (the hub<->agent websocket).

The tunnel is L4: each stream is a TCP connection the accepting side (the agent) dials
for the opening side (the hub), so exec, port-forward, watch and TLS pass through
untouched. The ``Session`` knows nothing about websockets: its owner hands it an async
``send`` and calls ``feed`` for every incoming binary message.

Flow control is per stream and credit based (like HTTP/2): a receiver buffers at most
``INITIAL_WINDOW`` bytes and returns credit with WINDOW frames as its consumer reads.
``feed`` therefore never waits on a consumer, so one stalled stream cannot block the
others, and memory per stream stays bounded. A peer that sends beyond its credit is reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from clusternet_api.tunnel.bytestreams import describe_error, pipe
from clusternet_api.tunnel.frames import (
    INITIAL_WINDOW,
    MAX_FRAME_PAYLOAD,
    MAX_STREAM_ID,
    Frame,
    FrameError,
    FrameType,
    split_address,
)

logger = logging.getLogger(__name__)

Send = Callable[[bytes], Awaitable[None]]
Accept = Callable[[str], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Allow = Callable[[str], bool]

DIAL_TIMEOUT = 10.0


class MuxError(Exception):
    """Base class of multiplexer errors (stream I/O errors are ConnectionResetError instead)."""


class StreamOpenError(MuxError):
    """The peer refused or failed to open a stream, the open timed out, or the session is gone."""


class StreamOpenTimeout(StreamOpenError):
    """The peer did not answer an OPEN in time (it may be frozen, or the path to it dead)."""


PROBE_ADDRESS = "probe.clusternet.invalid:1"
"""Never allowed and never dialled: an OPEN to it is refused at once by a live peer (Session.answers)."""


def deny_all(address: str) -> bool:
    """Default allow-list: accept nothing, so dialling has to be enabled deliberately."""
    return False


async def dial_tcp(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Default ``accept`` for the agent: a plain TCP connection to ``host:port``."""
    host, port = split_address(address)
    async with asyncio.timeout(DIAL_TIMEOUT):
        return await asyncio.open_connection(host, port)


class Stream:
    """One bidirectional byte stream of a Session, used like a TCP connection.

    Supports one reader task and one writer task at a time. Errors surface as
    ConnectionResetError carrying the reset reason.
    """

    def __init__(self, session: Session, stream_id: int, address: str) -> None:
        self._session = session
        self.stream_id = stream_id
        self.address = address
        self._buffer = bytearray()
        self._recv_credit = INITIAL_WINDOW  # bytes the peer may still send us
        self._consumed = 0  # bytes read locally and not yet granted back
        self._send_credit = INITIAL_WINDOW  # bytes we may still send
        self._eof = False  # peer sent FIN
        self._fin_sent = False
        self._reset_reason: str | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        # Set while the opener waits for OPEN_OK / OPEN_ERR.
        self._opening: asyncio.Future[None] | None = None
        self._bytes_in = 0
        self._bytes_out = 0

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} {self.address} in={self._bytes_in} out={self._bytes_out}>"

    @property
    def bytes_in(self) -> int:
        return self._bytes_in

    @property
    def bytes_out(self) -> int:
        return self._bytes_out

    @property
    def done(self) -> bool:
        """True once reset, or once FIN went both ways (buffered data may still be read)."""
        return self._reset_reason is not None or (self._fin_sent and self._eof)

    async def read(self, n: int = MAX_FRAME_PAYLOAD) -> bytes:
        """Return up to ``n`` bytes as soon as any are buffered; ``b""`` after the peer's FIN."""
        if n <= 0:
            raise ValueError("n must be positive")
        while not self._buffer and not self._eof and self._reset_reason is None:
            self._readable.clear()
            await self._readable.wait()
        if self._reset_reason is not None:
            raise ConnectionResetError(self._reset_reason)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        self._grant(len(data))
        return data

    async def write(self, data: bytes) -> None:
        """Queue ``data`` for the peer in frames of at most 64 KiB, waiting for credit as needed."""
        view = memoryview(data)
        while view:
            if self._reset_reason is not None:
                raise ConnectionResetError(self._reset_reason)
            if self._fin_sent:
                raise RuntimeError("write after write_eof")
            if not self._send_credit:
                self._writable.clear()
                await self._writable.wait()
                continue
            chunk = bytes(view[: min(self._send_credit, MAX_FRAME_PAYLOAD)])
            self._send_credit -= len(chunk)
            self._bytes_out += len(chunk)
            self._session._enqueue(Frame.data(self.stream_id, chunk))
            view = view[len(chunk) :]

    def write_eof(self) -> None:
        """Half-close: the peer reads EOF after the data already written; reading continues.

        Synchronous like ``asyncio.StreamWriter.write_eof``: the FIN is queued behind earlier data.
        """
        if self._fin_sent or self._reset_reason is not None:
            return
        self._fin_sent = True
        self._session._enqueue(Frame.fin(self.stream_id))
        self._forget_if_done()

    def abort(self, reason: str = "aborted") -> None:
        """Reset the stream: both directions stop and the peer's reads and writes fail with ``reason``."""
        if self.done:
            return
        self._session._enqueue(Frame.rst(self.stream_id, reason))
        self._reset(reason)

    def close(self) -> None:
        """Release the stream; a no-op after a clean two-way FIN, otherwise a reset."""
        self.abort("stream closed")

    def _grant(self, consumed: int) -> None:
        # Batch credit into half-window increments: fewer WINDOW frames, still no stalls.
        self._consumed += consumed
        if self._eof or self._consumed < INITIAL_WINDOW // 2:
            return
        self._recv_credit += self._consumed
        self._session._enqueue(Frame.window(self.stream_id, self._consumed))
        self._consumed = 0

    def _receive(self, frame: Frame) -> None:
        """Apply one frame from the peer. Never waits: data lands in the bounded buffer."""
        match frame.type:
            case FrameType.OPEN_OK:
                if self._opening is not None and not self._opening.done():
                    self._opening.set_result(None)
            case FrameType.OPEN_ERR:
                if self._opening is not None and not self._opening.done():
                    self._reset(frame.reason)
            case FrameType.RST:
                self._reset(f"reset by peer: {frame.reason}")
            case FrameType.DATA:
                if self._eof:
                    self._violation("DATA after FIN")
                elif len(frame.payload) > self._recv_credit:
                    self._violation("DATA beyond flow-control window")
                else:
                    self._recv_credit -= len(frame.payload)
                    self._bytes_in += len(frame.payload)
                    self._buffer += frame.payload
                    self._readable.set()
            case FrameType.WINDOW:
                self._send_credit += frame.increment
                self._writable.set()
            case FrameType.FIN:
                self._eof = True
                self._readable.set()
                self._forget_if_done()

    def _violation(self, what: str) -> None:
        logger.warning("tunnel stream %d (%s): protocol violation: %s", self.stream_id, self.address, what)
        self.abort(f"protocol error: {what}")

    def _reset(self, reason: str) -> None:
        if self._reset_reason is not None:
            return
        self._reset_reason = reason
        self._buffer.clear()
        self._readable.set()
        self._writable.set()
        if self._opening is not None and not self._opening.done():
            self._opening.set_exception(StreamOpenError(reason))
        self._session._forget(self)

    def _forget_if_done(self) -> None:
        if self.done:
            self._session._forget(self)


class Session:
    """Both ends of the tunnel run one Session per websocket connection.

    ``is_client=True`` on the hub, which opens streams: its ids are odd and the agent's
    even, so both may open streams without collisions; ids are never reused. The accepting
    side passes ``accept`` (dial the target) and ``allow`` (allow-list, must not raise);
    OPENs for other addresses get OPEN_ERR "address not allowed".

    Must be created inside a running event loop: it starts the task that alone calls
    ``send``, which keeps frames in order and lets ``feed`` return without waiting.
    """

    def __init__(
        self,
        send: Send,
        *,
        is_client: bool,
        accept: Accept | None = None,
        allow: Allow = deny_all,
        max_streams: int = 1024,
    ) -> None:
        self._send = send
        self._accept = accept
        self._allow = allow
        self._max_streams = max_streams
        self._next_id = 1 if is_client else 2
        self._peer_parity = 0 if is_client else 1
        self._last_peer_id = 0
        self._streams: dict[int, Stream] = {}
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed_reason: str | None = None
        self._goaway_sent = False
        self._peer_goaway: str | None = None
        self._streams_opened = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._writer = asyncio.create_task(self._write_loop())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close("session ended")

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def peer_going_away(self) -> bool:
        """The peer sent GOAWAY: open_stream fails, existing streams continue."""
        return self._peer_goaway is not None

    @property
    def open_streams(self) -> int:
        """Streams currently registered, including ones still opening or dialling."""
        return len(self._streams)

    @property
    def streams_opened(self) -> int:
        """Streams established so far, in either direction."""
        return self._streams_opened

    @property
    def bytes_in(self) -> int:
        """Stream payload bytes received."""
        return self._bytes_in

    @property
    def bytes_out(self) -> int:
        """Stream payload bytes queued for sending."""
        return self._bytes_out

    # The timeout is part of the operation: on expiry the peer gets RST and the caller a
    # StreamOpenError naming the address. Outer cancellation is handled too.
    async def open_stream(self, address: str, timeout: float = DIAL_TIMEOUT) -> Stream:  # noqa: ASYNC109
        """Ask the peer to dial ``address`` (``host:port``) and return the connected stream.

        Raises StreamOpenError if refused, timed out or the session is unusable, and
        FrameError (a ValueError) if ``address`` is malformed.
        """
        if self._closed_reason is not None:
            raise StreamOpenError(f"session closed: {self._closed_reason}")
        if self._peer_goaway is not None:
            raise StreamOpenError(f"peer is going away: {self._peer_goaway}")
        if self._next_id > MAX_STREAM_ID:
            raise StreamOpenError("stream ids exhausted; reconnect")
        request = Frame.open(self._next_id, address)
        self._next_id += 2
        stream = Stream(self, request.stream_id, address)
        stream._opening = asyncio.get_running_loop().create_future()
        self._streams[stream.stream_id] = stream
        self._enqueue(request)
        try:
            async with asyncio.timeout(timeout):
                await stream._opening
        except TimeoutError:
            stream.abort("open timed out")
            raise StreamOpenTimeout(f"opening {address} timed out after {timeout:g}s") from None
        except asyncio.CancelledError:
            stream.abort("open cancelled")
            raise
        stream._opening = None
        self._streams_opened += 1
        return stream

    async def answers(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Whether the peer answers within `timeout`: an OPEN of PROBE_ADDRESS, which a live peer refuses at
        once, costs it no dial and needs nothing new of its protocol (agents of earlier versions answer too)."""
        try:
            stream = await self.open_stream(PROBE_ADDRESS, timeout)
        except StreamOpenTimeout:
            return False
        except StreamOpenError:
            return not self.closed
        stream.close()
        return True

    def feed(self, message: bytes) -> None:
        """Handle one incoming websocket message without ever waiting.

        On a malformed message the session is closed and FrameError is raised; the owner
        should then drop the connection. Messages after close are ignored.
        """
        if self._closed_reason is not None:
            return
        try:
            frame = Frame.decode(message)
        except FrameError as exc:
            self._terminate(f"protocol error: {exc}")
            raise
        if frame.type is FrameType.DATA:
            self._bytes_in += len(frame.payload)
        if frame.type is FrameType.OPEN:
            self._on_open(frame)
        elif frame.type is FrameType.GOAWAY:
            logger.info("tunnel peer is going away: %s", frame.reason)
            self._peer_goaway = frame.reason
        elif (stream := self._streams.get(frame.stream_id)) is not None:
            stream._receive(frame)
        # Frames for unknown ids are late arrivals for streams already reset here: drop them.

    def goaway(self, reason: str = "going away") -> None:
        """Ask the peer to open no new streams (e.g. before shutdown); existing streams go on."""
        if self._goaway_sent or self._closed_reason is not None:
            return
        self._goaway_sent = True
        self._enqueue(Frame.goaway(reason))

    async def close(self, reason: str = "session closed") -> None:
        """Reset every stream locally, fail pending opens, stop tasks. Unsent frames are dropped."""
        self._terminate(reason)
        current = asyncio.current_task()
        others = [task for task in (*self._tasks, self._writer) if task is not current]
        await asyncio.gather(*others, return_exceptions=True)

    def _on_open(self, frame: Frame) -> None:
        stream_id, address = frame.stream_id, frame.address
        if stream_id % 2 != self._peer_parity or stream_id <= self._last_peer_id:
            self._refuse(stream_id, address, "invalid stream id")
            return
        self._last_peer_id = stream_id
        if self._goaway_sent:
            self._refuse(stream_id, address, "going away")
            return
        if self._accept is None or not self._allow(address):
            self._refuse(stream_id, address, "address not allowed")
            return
        if len(self._streams) >= self._max_streams:
            self._refuse(stream_id, address, "too many streams")
            return
        stream = Stream(self, stream_id, address)
        self._streams[stream_id] = stream
        task = asyncio.create_task(self._serve(stream, self._accept))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, stream_id: int, address: str, reason: str) -> None:
        logger.log(logging.DEBUG if address == PROBE_ADDRESS else logging.INFO, "tunnel refused stream %d to %s: %s",
                   stream_id, address, reason)
        self._enqueue(Frame.open_err(stream_id, reason))

    async def _serve(self, stream: Stream, accept: Accept) -> None:
        """Dial the target of a peer's OPEN, answer it, then pump bytes until the stream ends."""
        try:
            reader, writer = await accept(stream.address)
        except Exception as exc:  # every dial failure is reported to the opener
            reason = f"dial {stream.address} failed: {describe_error(exc)}"
            self._enqueue(Frame.open_err(stream.stream_id, reason))
            stream._reset(reason)
            return
        if stream.done:  # the opener gave up while we dialled
            writer.close()
            return
        self._streams_opened += 1
        self._enqueue(Frame.open_ok(stream.stream_id))
        await pipe(stream, reader, writer)

    async def _write_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                await self._send(message)
            except Exception as exc:  # the transport is gone, whatever its library calls it
                self._terminate(f"send failed: {describe_error(exc)}")
                return

    def _enqueue(self, frame: Frame) -> None:
        if self._closed_reason is not None:
            return
        if frame.type is FrameType.DATA:
            self._bytes_out += len(frame.payload)
        self._outbox.put_nowait(frame.encode())

    def _forget(self, stream: Stream) -> None:
        self._streams.pop(stream.stream_id, None)

    def _terminate(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        logger.info("tunnel session closed: %s (%d streams reset)", reason, len(self._streams))
        self._closed_reason = reason
        for stream in list(self._streams.values()):
            stream._reset(f"session closed: {reason}")
        current = asyncio.current_task()
        for task in (*self._tasks, self._writer):
            if task is not current:
                task.cancel()
