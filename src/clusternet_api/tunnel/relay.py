"""A loopback TCP listener whose connections become tunnel streams: for clients that need an address.

Our own clients speak HTTP over tunnel streams directly (clusternet_api.kube with an opener), but Helm's Go
client, loaded in-process through helm-python-sdk, can only dial a host and port. The relay listens on
127.0.0.1 at a port the kernel picks and pipes each accepted connection, byte for byte, into a new stream
to the child's API server. Streams carry plain HTTP, like every request the hub sends through a tunnel: the
agent holds the TLS connection to its API server (verified against the child's CA) and the websocket itself
is TLS. The listener speaks TLS too, with a certificate from a CA made for this relay alone (`ca_pem`, for the
client to verify): client-go sends no credentials to an `http://` server, and the token is not put on a
socket in clear. The client authenticates with the child's deployer token, so the relay adds reachability
and no authority: a local process that connects gets nothing without a token the child accepts.

A relay started by leader work keeps its fence (clusternet_api.fence): once the Lease may have passed to
another replica, no more bytes go from Helm to the child, and the connection is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from clusternet_api import fence
from clusternet_api.pki import issue_cert, make_ca
from clusternet_api.tlsfiles import load_cert_chain_pem
from clusternet_api.tunnel.bytestreams import ByteStream
from clusternet_api.tunnel.http import StreamOpener

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class LoopbackRelay:
    """`url` (https://127.0.0.1:<port>, certificate signed by `ca_pem`) reaches whatever `opener` opens
    streams to, while started."""

    def __init__(self, opener: StreamOpener) -> None:
        self.opener = opener
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.fence: fence.Fence | None = None
        self.closed = False
        self._starting = asyncio.Lock()
        ca, ca_key, ca_cert = make_ca("clusternet-hub-relay-ca")
        pair = issue_cert(ca_key, ca_cert, "clusternet-hub-relay", ips=["127.0.0.1"], server=True)
        self.ca_pem = ca.cert_pem
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        load_cert_chain_pem(self.tls, pair.cert_pem, pair.key_pem)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> LoopbackRelay:
        """Listen, once however many callers start it at the same time (the owner creates the relay and keeps it
        before starting it, so two workers of one cluster share one); not after `close`."""
        async with self._starting:
            if self.closed:
                raise RuntimeError("the relay was closed")
            if self.server is None:
                self.fence = fence.current()
                server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
                if self.closed:  # closed meanwhile: nobody would close this listener
                    server.close()
                    raise RuntimeError("the relay was closed")
                self.server, self.port = server, server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.closed = True
        if self.server is not None:
            self.server.close()
            self.server = None
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        stream: ByteStream | None = None
        try:
            stream = await self.opener()
            up = asyncio.create_task(_to_stream(reader, stream, self.fence))
            try:
                while data := await stream.read(CHUNK):
                    writer.write(data)
                    await writer.drain()
            finally:
                up.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await up
        except asyncio.CancelledError:
            # close() cancels us; asyncio's server started this task and reads its outcome, and a cancelled one
            # made it log "Exception in callback ... CancelledError" with a traceback at every hub shutdown
            log.debug("relayed connection cancelled")
        except (ConnectionError, OSError, TimeoutError) as e:
            log.debug("relayed connection ended: %s", e)
        except Exception as e:  # a stream that cannot be opened (tunnel down): the client sees a reset
            log.debug("relay could not open a stream: %s", e)
        finally:
            if stream is not None:
                stream.close()
            writer.close()
            self.tasks.discard(task)


async def _to_stream(reader: asyncio.StreamReader, stream: ByteStream, fenced: fence.Fence | None) -> None:
    while data := await reader.read(CHUNK):
        if fenced is not None:
            try:
                fence.check(fence=fenced)
            except fence.LeadershipLost:
                stream.close()  # ends the other direction's read too: _serve then closes Helm's connection
                raise
        await stream.write(data)
    stream.write_eof()
