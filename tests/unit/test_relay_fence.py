"""A deposed agent leader relays nothing more from the hub to its child (audit s36, HA F12): the tunnel's pipe asks
leader work's fence per chunk, and the agent's dialer before each connection."""

from __future__ import annotations

import asyncio
from contextvars import copy_context

import pytest

from clusternet_agent.tunnel import StreamDialer
from clusternet_api import known
from clusternet_api.fence import WRITE_FENCE, LeadershipLost
from clusternet_api.tunnel.bytestreams import pipe
from tests.unit.test_tunnel_mux import tcp_server


class QueuedStream:
    """A tunnel stream whose incoming chunks the test hands in."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.aborted: str | None = None
        self.done = False
        self.bytes_out = 0

    async def read(self, n: int = 0) -> bytes:
        return await self.chunks.get()

    async def write(self, data: bytes) -> None:
        self.bytes_out += len(data)

    def write_eof(self) -> None:
        pass

    def abort(self, reason: str = "aborted") -> None:
        self.aborted = reason

    def close(self) -> None:
        self.done = True


async def test_a_relay_stops_at_the_first_chunk_after_the_lease_may_be_lost() -> None:
    received: list[bytes] = []
    lost = [False]

    def lease_fence() -> None:
        if lost[0]:
            raise LeadershipLost("Lease not renewed within 10s")

    async def child(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.append(data)

    async with tcp_server(child) as address:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        stream = QueuedStream()
        leader_work = copy_context()
        leader_work.run(WRITE_FENCE.set, lease_fence)
        relay = asyncio.create_task(pipe(stream, reader, writer), context=leader_work)
        stream.chunks.put_nowait(b"PATCH /api/v1/namespaces/a HTTP/1.1\r\n")
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        lost[0] = True  # frozen past the Lease: what the hub sent meanwhile is still buffered
        stream.chunks.put_nowait(b"late bytes of an old push")
        await asyncio.wait_for(relay, 2)
        await asyncio.sleep(0.05)
    assert b"".join(received) == b"PATCH /api/v1/namespaces/a HTTP/1.1\r\n"
    assert stream.aborted is not None and "LeadershipLost" in stream.aborted and stream.done


async def test_a_deposed_agent_dials_nothing_for_the_hub() -> None:
    def lost() -> None:
        raise LeadershipLost("Lease not renewed")

    dialer = StreamDialer("https://127.0.0.1:1", None)
    leader_work = copy_context()
    leader_work.run(WRITE_FENCE.set, lost)
    with pytest.raises(LeadershipLost):
        await asyncio.create_task(dialer.dial(known.TUNNEL_APISERVER_ADDRESS), context=leader_work)
