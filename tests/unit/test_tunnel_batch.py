"""Batched tunnel frames are sent only to a peer that said in the websocket handshake that it reads them
(frames.BATCH_HEADER): an agent or hub of an earlier version refuses a batch as a frame of an unknown version."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from clusternet_agent import tunnel
from clusternet_api.tunnel import BATCH_HEADER, Session


@pytest.mark.parametrize("hub_reads_batches", [False, True])
async def test_the_agent_batches_only_to_a_hub_that_says_it_reads_batches(
        monkeypatch: pytest.MonkeyPatch, hub_reads_batches: bool) -> None:
    asked: list[str | None] = []
    sessions: list[bool] = []
    started = asyncio.Event()

    class Recording(Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            sessions.append(bool(kwargs.get("batch")))
            started.set()
            super().__init__(*args, **kwargs)

    async def hub(request: web.Request) -> web.WebSocketResponse:
        asked.append(request.headers.get(BATCH_HEADER))
        ws = web.WebSocketResponse()
        if hub_reads_batches:  # an earlier hub says nothing
            ws.headers[BATCH_HEADER] = "1"
        await ws.prepare(request)
        async for _ in ws:  # holds the tunnel until the agent closes it
            pass
        return ws

    monkeypatch.setattr(tunnel, "Session", Recording)
    app = web.Application()
    app.router.add_get("/tunnel", hub)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dialer = SimpleNamespace(dial=None, allow=lambda address: False)
    running = asyncio.create_task(tunnel.run_tunnel(f"ws://127.0.0.1:{port}/tunnel", lambda: "token", None,
                                                    dialer))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            await started.wait()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await runner.cleanup()
    assert asked == ["1"] and sessions == [hub_reads_batches]
