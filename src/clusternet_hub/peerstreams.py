"""Peer streams: the byte pipe one hub replica opens into a tunnel that another replica holds (clusternet_hub.peers).

A TLS connection to the peer's port, upgraded (`Upgrade: clusternet-peer-stream`) by a GET of
`/peer/v1/sockets/<cluster>/stream?address=<host:port>` with the peers' shared bearer token; past the 101 it is
used as a tunnel stream (clusternet_api.tunnel.mux.Stream), so proxied requests, upgrades, pushes and Helm's relay
ride on it unchanged. The server side is clusternet_hub.peerserver.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from urllib.parse import quote

from clusternet_api.logs import error_text
from clusternet_api.tunnel import MAX_FRAME_PAYLOAD, StreamOpenError

log = logging.getLogger(__name__)

SOCKETS = "/peer/v1/sockets/"
UPGRADE = "clusternet-peer-stream"
DIAL_TIMEOUT = 5.0  # a TCP+TLS handshake to a replica in the same cluster takes milliseconds
HEAD_LIMIT = 16 * 1024


class NotHere(StreamOpenError):
    """The peer holds no tunnel of that cluster (any more)."""


class Unreachable(StreamOpenError):
    """The peer did not answer the dial (gone, black-holed, not a replica), as opposed to refusing the stream."""


@dataclass(frozen=True)
class Peer:
    id: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


class PeerStream:
    """A TLS connection to a peer, past its 101, used like a tunnel stream (clusternet_api.tunnel.mux.Stream).

    TLS cannot half-close, so write_eof() sends nothing: HTTP/1.1 and the upgraded protocols kubectl speaks
    never need it, and the far side ends the connection when the child's side ends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        self.reader, self.writer, self.peer = reader, writer, peer
        self._bytes_out = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"PeerStream({self.peer.url})"

    @property
    def bytes_out(self) -> int:
        return self._bytes_out

    @property
    def done(self) -> bool:
        return self._closed or self.reader.at_eof() or self.writer.is_closing()

    async def read(self, n: int = MAX_FRAME_PAYLOAD) -> bytes:
        try:
            return await self.reader.read(n)
        except (OSError, ssl.SSLError) as e:
            raise ConnectionResetError(f"hub replica {self.peer.url}: {e}") from e

    async def write(self, data: bytes) -> None:
        if self._closed or self.writer.is_closing():
            raise ConnectionResetError(f"hub replica {self.peer.url}: connection closed")
        self.writer.write(data)
        self._bytes_out += len(data)
        try:
            await self.writer.drain()
        except (OSError, ssl.SSLError) as e:
            raise ConnectionResetError(f"hub replica {self.peer.url}: {e}") from e

    def write_eof(self) -> None:
        """Nothing: see the class docstring."""

    def abort(self, reason: str = "aborted") -> None:
        log.debug("peer stream to %s aborted: %s", self.peer.url, reason)
        self._closed = True
        self.writer.transport.abort()

    def close(self) -> None:
        self._closed = True
        self.writer.close()


def client_context(trust_pem: bytes) -> ssl.SSLContext:
    """Verifies a peer's certificate against `trust_pem` (CA and/or the served certificate itself; partial chains
    allowed so a leaf can be the anchor), without a host name check (see the module docstring)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=trust_pem.decode())
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


async def dial(peer: Peer, cluster_id: str, address: str, token: str, tls: ssl.SSLContext,
               server_name: str | None = None) -> PeerStream:
    """A peer stream to `address` in cluster `cluster_id` through the tunnel `peer` holds.

    A connection whose upgrade fails (a replica that accepts but does not answer in time, one that hangs up
    mid-answer, a caller that gives up) is aborted: it used to stay open, a socket more per failed dial."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(DIAL_TIMEOUT):
            reader, writer = await asyncio.open_connection(peer.host, peer.port, ssl=tls, limit=HEAD_LIMIT * 4,
                                                           server_hostname=server_name)
            head = (f"GET {SOCKETS}{quote(cluster_id)}/stream?address={quote(address)} HTTP/1.1\r\n"
                    f"Host: {peer.host}:{peer.port}\r\nAuthorization: Bearer {token}\r\n"
                    f"Connection: Upgrade\r\nUpgrade: {UPGRADE}\r\n\r\n")
            writer.write(head.encode())
            answer = await reader.readuntil(b"\r\n\r\n")
    except BaseException as e:
        if writer is not None:
            writer.transport.abort()
        if isinstance(e, (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError,
                          asyncio.LimitOverrunError)):
            raise Unreachable(f"hub replica {peer.url} unreachable: {error_text(e)}") from e
        raise
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status == 101:
        return PeerStream(reader, writer, peer)
    writer.close()
    if status == 404:
        raise NotHere(f"hub replica {peer.url} holds no tunnel of cluster {cluster_id}")
    raise StreamOpenError(f"hub replica {peer.url} refused the stream: {status_line}")


