"""A TCP front for several hub replicas, standing in for the hub's Service in tests.

Each new connection goes to the first backend that accepts it, in the order given, and bytes are copied both
ways unchanged (TLS passes through, so the hubs' certificate must name the balancer's address). Like a
Service, it keeps no state: when a replica dies, its connections end and reconnecting clients land on the next.

`cut()` resets every connection it relays, as a failing network or a restarted load balancer does: fault tests
drop an agent's tunnel that way while the agent itself lives on and has to reconnect by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading

from clusternet_testing.controlplane import free_port

RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on with a zero timeout: closing sends RST instead of FIN."""


class Balancer:
    """`url` reaches whichever of `backends` (host, port) accepts first; runs in a thread of its own."""

    def __init__(self, backends: list[tuple[str, int]], host: str = "127.0.0.1") -> None:
        self.backends, self.host, self.port = backends, host, free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.connections = 0
        """Connections relayed so far (a client that reconnects counts again)."""
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def live(self) -> int:
        """Connections relayed right now."""
        return len(self._pairs)

    def cut(self) -> int:
        """Reset every relayed connection, both ends at once (RST, nothing flushed); how many there were."""
        async def reset() -> int:
            pairs, self._pairs = list(self._pairs), set()
            for pair in pairs:
                for writer in pair:
                    with contextlib.suppress(OSError):
                        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
                    writer.transport.abort()
            return len(pairs)

        return asyncio.run_coroutine_threadsafe(reset(), self.loop).result(10)

    def __enter__(self) -> Balancer:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, self.port), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # none left pending when the loop stops

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for host, port in self.backends:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer), return_exceptions=True)
        finally:
            self._pairs.discard(pair)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()
