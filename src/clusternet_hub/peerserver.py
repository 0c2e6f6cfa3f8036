"""The peer port's server (clusternet_hub.peers is the client side and the Leases): what another hub replica asks
of this one about the tunnels it holds, authenticated with the shared peer token."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from clusternet_api.tunnel import ByteStream, StreamOpenError, pipe
from clusternet_hub.peers import Peers
from clusternet_hub.peerstreams import SOCKETS, UPGRADE
from clusternet_hub.takeover import answer_switching


def peer_app(peers: Peers, has_tunnel: Callable[[str], bool],
             open_local: Callable[[str, str], Awaitable[ByteStream]],
             verify: Callable[[str], Coroutine[Any, Any, None]] | None = None) -> web.Application:
    """The peer port's server: is a tunnel here (GET .../<id>), streams into it (GET .../<id>/stream), and the
    agent connected to another replica (POST .../<id>/elsewhere?from=<its id>: where the tunnel is now is
    noted, and `verify` checks our own tunnel of it, in the background). `has_tunnel(cluster_id)` and
    `open_local(cluster_id, address)` look at this replica's own tunnels only."""
    app = web.Application()
    checks: set[asyncio.Task[None]] = set()

    async def elsewhere(request: web.Request) -> web.Response:
        if not peers.authorized(request):
            return web.Response(status=401)
        cluster_id = request.match_info["cluster_id"]
        peers.moved(cluster_id, request.query.get("from", ""))
        if verify is not None and has_tunnel(cluster_id):
            task = asyncio.create_task(verify(cluster_id))
            checks.add(task)
            task.add_done_callback(checks.discard)
        return web.Response(status=202)

    async def holds(request: web.Request) -> web.Response:
        if not peers.authorized(request):
            peers.refused(request)
            return web.Response(status=401)
        return web.Response(status=200 if has_tunnel(request.match_info["cluster_id"]) else 404)

    async def stream(request: web.Request) -> web.StreamResponse:
        if not peers.authorized(request):
            return web.Response(status=401)
        if request.headers.get("Upgrade", "").lower() != UPGRADE:
            return web.Response(status=400, text=f"Upgrade: {UPGRADE} expected")
        cluster_id = request.match_info["cluster_id"]
        if not has_tunnel(cluster_id):
            return web.Response(status=404)
        try:
            tunnel_stream = await open_local(cluster_id, request.query.get("address", ""))
        except (StreamOpenError, ConnectionError, TimeoutError) as e:
            return web.Response(status=503, text=str(e))
        reader, writer, response = await answer_switching(
            request, tunnel_stream, [("Connection", "Upgrade"), ("Upgrade", UPGRADE)])
        await pipe(tunnel_stream, reader, writer, close_at_eof=True)
        return response

    app.router.add_get(SOCKETS + "{cluster_id}", holds)
    app.router.add_get(SOCKETS + "{cluster_id}/stream", stream)
    app.router.add_post(SOCKETS + "{cluster_id}/elsewhere", elsewhere)
    return app
