"""A byte stream as HTTP over streams, pipes and relays see it, and the pipe between one and a TCP connection.

Shared by the tunnel's Session (clusternet_api.tunnel.mux: the agent pipes each accepted stream to what it
dialled), the hub's proxy and its peer forwarding (clusternet_hub.peers), out of mux.py to keep it one subject.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from clusternet_api import fence
from clusternet_api.tunnel.frames import MAX_FRAME_PAYLOAD


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ByteStream(Protocol):
    """What HTTP over streams (tunnel.http), pipe() and relays need of a stream: a tunnel Stream, or a hub
    replica's connection to a tunnel held by another replica (clusternet_hub.peerstreams.PeerStream)."""

    @property
    def done(self) -> bool: ...
    @property
    def bytes_out(self) -> int: ...
    async def read(self, n: int = MAX_FRAME_PAYLOAD) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def abort(self, reason: str = "aborted") -> None: ...
    def close(self) -> None: ...


async def pipe(stream: ByteStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
               close_at_eof: bool = False) -> None:
    """Copy bytes both ways between a stream and a local TCP connection until both finish.

    EOF on either side becomes a half-close on the other (FIN / ``write_eof``), so
    request-then-response protocols work. With ``close_at_eof`` the local connection is closed
    instead when the stream ends (the hub's upgrade relay: the client must learn that the child is
    done, and TLS cannot half-close). An error on either side aborts both.
    """
    upstream = asyncio.create_task(_local_to_stream(reader, stream))
    downstream = asyncio.create_task(_stream_to_local(stream, writer, close_at_eof))
    try:
        await asyncio.gather(upstream, downstream)
    except (OSError, fence.LeadershipLost) as exc:  # ConnectionResetError from the stream, socket errors locally
        stream.abort(describe_error(exc))
        writer.transport.abort()
    finally:
        upstream.cancel()
        downstream.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        stream.close()
        writer.close()


async def _local_to_stream(reader: asyncio.StreamReader, stream: ByteStream) -> None:
    while data := await reader.read(MAX_FRAME_PAYLOAD):
        await stream.write(data)
    stream.write_eof()


async def _stream_to_local(stream: ByteStream, writer: asyncio.StreamWriter, close_at_eof: bool) -> None:
    while data := await stream.read():
        # Leader work's fence (clusternet_api.fence), asked per chunk as a relay cannot tell a read from a write: an
        # agent leader frozen past its Lease woke with the hub's frames buffered and relayed them to its child, a
        # late copy of a push the hub had meanwhile sent through the new leader's tunnel (audit s36, HA F12). No
        # fence (not leader work: the hub's relays, an agent without leader election): nothing asked.
        fence.check()
        writer.write(data)
        await writer.drain()
    if close_at_eof:
        writer.close()
    elif writer.can_write_eof():
        writer.write_eof()
