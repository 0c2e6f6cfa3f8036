"""The tunnel multiplexer: sessions back to back over in-memory queues, raw frames, and a real websocket.

Only loopback TCP is used, for the targets the accepting side dials.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from clusternet_api.tunnel.bytestreams import pipe
from clusternet_api.tunnel.frames import INITIAL_WINDOW, MAX_FRAME_PAYLOAD, Frame, FrameError, FrameType
from clusternet_api.tunnel.mux import Accept, Session, Stream, StreamOpenError, dial_tcp

pytestmark = pytest.mark.timeout(10)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def allow_all(address: str) -> bool:
    return True


# --- loopback TCP targets -------------------------------------------------------------------------


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def reply_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers only once the client half-closed: proves data still flows after FIN."""
    body = await reader.read()
    writer.write(b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode()))
    await writer.drain()


async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"f" * 65536
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(chunk)
            await writer.drain()


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` on 127.0.0.1 and yield ``host:port``.

    On exit, leftover connections are aborted (not their tasks cancelled) so handlers end by themselves.
    """
    connections: dict[asyncio.Task[object], asyncio.StreamWriter] = {}

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections[task] = writer
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in connections.values():
            writer.transport.abort()
        await asyncio.gather(*connections, return_exceptions=True)


@pytest.fixture
async def echo_address() -> AsyncIterator[str]:
    async with tcp_server(echo) as address:
        yield address


def closed_port_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


# --- session harnesses ---------------------------------------------------------------------------


async def _pump(queue: asyncio.Queue[bytes], session: Session) -> None:
    while True:
        session.feed(await queue.get())


@contextlib.asynccontextmanager
async def session_pair(
    *,
    accept: Accept | None = dial_tcp,
    allow: Callable[[str], bool] = allow_all,
    hub_accept: Accept | None = None,
    max_streams: int = 1024,
) -> AsyncIterator[tuple[Session, Session]]:
    """A hub and an agent session wired back to back through queues (the 'websocket')."""
    to_hub: asyncio.Queue[bytes] = asyncio.Queue()
    to_agent: asyncio.Queue[bytes] = asyncio.Queue()
    hub = Session(to_agent.put, is_client=True, accept=hub_accept, allow=allow)
    agent = Session(to_hub.put, is_client=False, accept=accept, allow=allow, max_streams=max_streams)
    pumps = [asyncio.create_task(_pump(to_hub, hub)), asyncio.create_task(_pump(to_agent, agent))]
    try:
        yield hub, agent
    finally:
        for task in pumps:
            task.cancel()
        await hub.close()
        await agent.close()
        await asyncio.gather(*pumps, return_exceptions=True)


@contextlib.asynccontextmanager
async def raw_session(
    *, accept: Accept | None = None, allow: Callable[[str], bool] = allow_all
) -> AsyncIterator[tuple[Session, asyncio.Queue[Frame]]]:
    """A hub-side session whose peer is the test itself: it reads sent frames and feeds raw ones."""
    sent: asyncio.Queue[Frame] = asyncio.Queue()

    async def send(message: bytes) -> None:
        await sent.put(Frame.decode(message))

    session = Session(send, is_client=True, accept=accept, allow=allow)
    try:
        yield session, sent
    finally:
        await session.close()


async def open_raw(session: Session, sent: asyncio.Queue[Frame]) -> Stream:
    opening = asyncio.create_task(session.open_stream("svc.example:443", 1))
    request = await sent.get()
    assert request.type is FrameType.OPEN
    assert request.address == "svc.example:443"
    session.feed(Frame.open_ok(request.stream_id).encode())
    return await opening


async def read_all(stream: Stream) -> bytes:
    received = bytearray()
    while chunk := await stream.read():
        received += chunk
    return bytes(received)


async def exchange(stream: Stream, payload: bytes) -> bytes:
    """Write everything then half-close, while reading until the peer's EOF."""

    async def send() -> None:
        await stream.write(payload)
        stream.write_eof()

    sender = asyncio.create_task(send())
    received = await read_all(stream)
    await sender
    return received


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll a counter-based condition for up to a second (counters have no event to wait on)."""
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached within 1 s")


# --- opening streams -----------------------------------------------------------------------------


async def test_half_close_then_reply_and_counters() -> None:
    payload = os.urandom(100_000)
    async with tcp_server(reply_after_eof) as target, session_pair() as (hub, agent):
        stream = await hub.open_stream(target, 1)
        assert stream.stream_id == 1
        reply = await exchange(stream, payload)

        assert reply == b"%d %s" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
        assert stream.done
        assert (stream.bytes_out, stream.bytes_in) == (len(payload), len(reply))
        assert (hub.bytes_out, hub.bytes_in) == (len(payload), len(reply))
        assert (agent.bytes_in, agent.bytes_out) == (len(payload), len(reply))
        assert hub.streams_opened == agent.streams_opened == 1
        await eventually(lambda: hub.open_streams == agent.open_streams == 0)


async def test_interleaved_echo(echo_address: str) -> None:
    async with session_pair() as (hub, _):
        stream = await hub.open_stream(echo_address, 1)
        for i in range(5):
            message = b"ping %d" % i
            await stream.write(message)
            assert await stream.read() == message
        stream.write_eof()
        assert await stream.read() == b""


async def test_open_refused_by_target() -> None:
    address = closed_port_address()
    async with session_pair() as (hub, agent):
        with pytest.raises(StreamOpenError, match=f"dial {address} failed: ConnectionRefusedError"):
            await hub.open_stream(address, 1)
        assert hub.open_streams == agent.open_streams == 0


@pytest.mark.parametrize(
    ("accept", "allow"),
    [(dial_tcp, lambda address: not address.startswith("127.")), (None, allow_all)],
    ids=["allow-list", "no-acceptor"],
)
async def test_open_not_allowed(echo_address: str, accept: Accept | None, allow: Callable[[str], bool]) -> None:
    async with session_pair(accept=accept, allow=allow) as (hub, agent):
        with pytest.raises(StreamOpenError, match="address not allowed"):
            await hub.open_stream(echo_address, 1)
        with pytest.raises(StreamOpenError, match="address not allowed"):
            await agent.open_stream(echo_address, 1)  # the hub accepts nothing by default


async def test_open_timeout_resets_the_peer() -> None:
    release = asyncio.Event()

    async def slow_dial(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await release.wait()
        return await dial_tcp(address)

    async with tcp_server(echo) as target, session_pair(accept=slow_dial) as (hub, agent):
        with pytest.raises(StreamOpenError, match=f"opening {target} timed out after 0.1s"):
            await hub.open_stream(target, 0.1)
        assert hub.open_streams == 0
        await eventually(lambda: agent.open_streams == 0)  # the RST reached the dialling side
        release.set()
        await asyncio.sleep(0.05)
        assert agent.streams_opened == 0  # the late connection was dropped, not answered


async def test_max_streams(echo_address: str) -> None:
    async with session_pair(max_streams=1) as (hub, agent):
        first = await hub.open_stream(echo_address, 1)
        with pytest.raises(StreamOpenError, match="too many streams"):
            await hub.open_stream(echo_address, 1)
        first.close()
        await eventually(lambda: agent.open_streams == 0)
        await hub.open_stream(echo_address, 1)


async def test_stream_ids_have_parity_and_are_never_reused(echo_address: str) -> None:
    async with session_pair(hub_accept=dial_tcp) as (hub, agent):
        hub_ids, agent_ids = [], []
        for _ in range(3):
            stream = await hub.open_stream(echo_address, 1)
            hub_ids.append(stream.stream_id)
            stream.close()
        for _ in range(2):
            stream = await agent.open_stream(echo_address, 1)
            agent_ids.append(stream.stream_id)
            stream.close()
        assert hub_ids == [1, 3, 5]
        assert agent_ids == [2, 4]
        with pytest.raises(StreamOpenError):  # a failed open consumes its id too
            await hub.open_stream(closed_port_address(), 1)
        assert (await hub.open_stream(echo_address, 1)).stream_id == 9


async def test_incoming_ids_must_have_peer_parity_and_increase(echo_address: str) -> None:
    async with raw_session(accept=dial_tcp) as (session, sent):  # hub side: the peer's ids are even
        session.feed(Frame.open(3, echo_address).encode())
        assert await sent.get() == Frame.open_err(3, "invalid stream id")
        session.feed(Frame.open(4, echo_address).encode())
        assert await sent.get() == Frame.open_ok(4)
        for stale in (2, 4):
            session.feed(Frame.open(stale, echo_address).encode())
            assert await sent.get() == Frame.open_err(stale, "invalid stream id")


async def test_goaway(echo_address: str) -> None:
    async with session_pair() as (hub, agent):
        existing = await hub.open_stream(echo_address, 1)
        agent.goaway("agent upgrading")
        # This OPEN crosses the GOAWAY on the wire, so the agent refuses it.
        with pytest.raises(StreamOpenError, match=r"^going away$"):
            await hub.open_stream(echo_address, 1)
        assert hub.peer_going_away
        with pytest.raises(StreamOpenError, match="peer is going away: agent upgrading"):
            await hub.open_stream(echo_address, 1)
        assert await exchange(existing, b"still works") == b"still works"


# --- data and flow control -----------------------------------------------------------------------


async def test_large_transfer_integrity(echo_address: str) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    async with session_pair() as (hub, _):
        stream = await hub.open_stream(echo_address, 1)
        started = time.monotonic()
        echoed = await exchange(stream, payload)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        assert time.monotonic() - started < 2


async def test_stalled_stream_does_not_block_others(echo_address: str) -> None:
    async with tcp_server(firehose) as hose, session_pair() as (hub, _):
        stalled = await hub.open_stream(hose, 1)  # its consumer never reads
        await eventually(lambda: stalled.bytes_in == INITIAL_WINDOW)
        busy = await hub.open_stream(echo_address, 1)
        payload = os.urandom(2 * 1024 * 1024)
        assert await exchange(busy, payload) == payload
        assert stalled.bytes_in == INITIAL_WINDOW  # bounded by its window the whole time


async def test_writer_waits_for_credit() -> None:
    async with raw_session() as (session, sent):
        stream = await open_raw(session, sent)
        writing = asyncio.create_task(stream.write(b"w" * (INITIAL_WINDOW + 1000)))
        frames = [await sent.get() for _ in range(INITIAL_WINDOW // MAX_FRAME_PAYLOAD)]
        assert all(f.type is FrameType.DATA and len(f.payload) == MAX_FRAME_PAYLOAD for f in frames)
        await asyncio.sleep(0.02)
        assert not writing.done()
        assert sent.empty()

        session.feed(Frame.window(1, 600).encode())
        assert len((await sent.get()).payload) == 600
        session.feed(Frame.window(1, 10_000).encode())
        assert len((await sent.get()).payload) == 400
        await writing


async def test_credit_is_returned_as_the_consumer_reads() -> None:
    async with raw_session() as (session, sent):
        stream = await open_raw(session, sent)
        for _ in range(INITIAL_WINDOW // MAX_FRAME_PAYLOAD):
            session.feed(Frame.data(1, b"d" * MAX_FRAME_PAYLOAD).encode())
        await stream.read(INITIAL_WINDOW // 2 - 1)
        await asyncio.sleep(0)
        assert sent.empty()  # below half a window: no WINDOW frame yet
        await stream.read(1)
        assert await sent.get() == Frame.window(1, INITIAL_WINDOW // 2)
        for _ in range(INITIAL_WINDOW // 2 // MAX_FRAME_PAYLOAD):  # exactly the new credit is fine
            session.feed(Frame.data(1, b"e" * MAX_FRAME_PAYLOAD).encode())
        assert stream.bytes_in == INITIAL_WINDOW * 3 // 2
        assert sent.empty()


async def test_sending_beyond_credit_resets_the_stream() -> None:
    async with raw_session() as (session, sent):
        stream = await open_raw(session, sent)
        for _ in range(INITIAL_WINDOW // MAX_FRAME_PAYLOAD):
            session.feed(Frame.data(1, b"d" * MAX_FRAME_PAYLOAD).encode())
        session.feed(Frame.data(1, b"!").encode())
        rst = await sent.get()
        assert rst.type is FrameType.RST
        assert rst.reason == "protocol error: DATA beyond flow-control window"
        with pytest.raises(ConnectionResetError, match="flow-control window"):
            await stream.read()
        assert session.open_streams == 0
        assert not session.closed  # only the offending stream is reset


async def test_data_after_fin_resets_the_stream() -> None:
    async with raw_session() as (session, sent):
        stream = await open_raw(session, sent)
        session.feed(Frame.fin(1).encode())
        session.feed(Frame.data(1, b"late").encode())
        assert (await sent.get()).reason == "protocol error: DATA after FIN"
        with pytest.raises(ConnectionResetError):
            await stream.read()


async def test_peer_reset_fails_reads_and_writes() -> None:
    async with raw_session() as (session, sent):
        stream = await open_raw(session, sent)
        session.feed(Frame.data(1, b"discarded").encode())
        session.feed(Frame.rst(1, "target went away").encode())
        with pytest.raises(ConnectionResetError, match="reset by peer: target went away"):
            await stream.read()
        with pytest.raises(ConnectionResetError):
            await stream.write(b"x")
        stream.close()  # no RST back for a stream the peer already reset
        await asyncio.sleep(0)
        assert sent.empty()


async def test_abort_reaches_the_target() -> None:
    target_closed = asyncio.Event()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        target_closed.set()

    async with tcp_server(watch) as target, session_pair() as (hub, agent):
        stream = await hub.open_stream(target, 1)
        stream.abort("client went away")
        async with asyncio.timeout(1):
            await target_closed.wait()
        await eventually(lambda: agent.open_streams == 0)
        with pytest.raises(ConnectionResetError, match="client went away"):
            await stream.read()


async def test_hundred_concurrent_streams(echo_address: str) -> None:
    async with session_pair() as (hub, agent):

        async def one(i: int) -> None:
            stream = await hub.open_stream(echo_address, 2)
            payload = os.urandom(32 * 1024) + b"%d" % i
            assert await exchange(stream, payload) == payload

        async with asyncio.timeout(2):
            await asyncio.gather(*(one(i) for i in range(100)))
        assert hub.streams_opened == agent.streams_opened == 100
        await eventually(lambda: hub.open_streams == agent.open_streams == 0)


# --- session lifecycle ---------------------------------------------------------------------------


async def test_close_wakes_readers_writers_and_openers() -> None:
    async with raw_session() as (session, sent):
        stream = await open_raw(session, sent)
        reading = asyncio.create_task(stream.read())
        writing = asyncio.create_task(stream.write(b"x" * (INITIAL_WINDOW + 1)))
        opening = asyncio.create_task(session.open_stream("other.example:443", 5))
        await asyncio.sleep(0.01)

        await session.close("agent disconnected")
        with pytest.raises(ConnectionResetError, match="session closed: agent disconnected"):
            await reading
        with pytest.raises(ConnectionResetError, match="session closed: agent disconnected"):
            await writing
        with pytest.raises(StreamOpenError, match="session closed: agent disconnected"):
            await opening
        with pytest.raises(StreamOpenError, match="session closed"):
            await session.open_stream("other.example:443", 1)
        session.feed(b"ignored after close")
        assert session.closed
        assert session.open_streams == 0


async def test_malformed_message_closes_the_session() -> None:
    async with raw_session() as (session, sent):
        stream = await open_raw(session, sent)
        with pytest.raises(FrameError, match="short frame"):
            session.feed(b"\x01\x04")
        assert session.closed
        with pytest.raises(ConnectionResetError, match="protocol error: short frame"):
            await stream.read()


async def test_send_failure_closes_the_session() -> None:
    async def broken_send(message: bytes) -> None:
        raise ConnectionResetError("websocket gone")

    async with Session(broken_send, is_client=True) as session:
        with pytest.raises(StreamOpenError, match="send failed: ConnectionResetError: websocket gone"):
            await session.open_stream("svc.example:443", 1)
        assert session.closed


# --- over a real websocket -----------------------------------------------------------------------


async def test_tcp_through_a_real_websocket(echo_address: str) -> None:
    """client TCP -> hub listener -> pipe -> websocket -> agent -> pipe -> echo server, and back."""
    hub_sessions: asyncio.Queue[Session] = asyncio.Queue()

    async def hub_endpoint(ws: ServerConnection) -> None:
        async with Session(ws.send, is_client=True) as session:
            await hub_sessions.put(session)
            async for message in ws:
                assert isinstance(message, bytes)
                session.feed(message)

    async def feed_all(ws: ClientConnection, session: Session) -> None:
        async for message in ws:
            assert isinstance(message, bytes)
            session.feed(message)

    async with (
        serve(hub_endpoint, "127.0.0.1", 0) as server,
        connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}") as ws,
        Session(ws.send, is_client=False, accept=dial_tcp, allow=lambda a: a == echo_address) as agent,
    ):
        agent_reader = asyncio.create_task(feed_all(ws, agent))
        hub = await hub_sessions.get()

        async def local_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await pipe(await hub.open_stream(echo_address, 1), reader, writer)

        async with tcp_server(local_client) as listener:
            host, port = listener.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            payload = os.urandom(1024 * 1024)
            writer.write(payload)
            writer.write_eof()
            assert await reader.read() == payload
            writer.close()
        assert hub.streams_opened == agent.streams_opened == 1
        assert hub.bytes_out == hub.bytes_in == agent.bytes_in == agent.bytes_out == len(payload)
        await ws.close()
        await agent_reader  # ends cleanly: a normal close, not an error
