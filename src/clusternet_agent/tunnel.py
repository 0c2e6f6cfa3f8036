"""The agent's end of the tunnel: one outbound websocket to the hub, streams into this cluster.

The agent dials out, so a child behind NAT or a firewall stays reachable. Each stream the hub opens is
dialled here, with TLS to the target verified against this cluster's CA: the hub speaks plain HTTP inside
the (TLS-protected) tunnel and never needs the child's CA or any child credential of its own. Targets are
allow-listed: by default only this cluster's API server and, with the Predictor gate, the predictor
(Clusternet's agent dials any address).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from clusternet_api import fence, known
from clusternet_api.backoff import Backoff
from clusternet_api.logs import error_text
from clusternet_api.tunnel import FrameError, Session

log = logging.getLogger(__name__)
# Reconnecting: soon after a blip (a hub killed at 100 clusters served again within a second in bench/scale.py),
# doubling to 30 s, so the agents of a hub down for long each knock at most twice a minute.
RECONNECT_FIRST_SECONDS, RECONNECT_MAX_SECONDS = 0.25, 30.0
Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def tunnel_url(parent_url: str, cluster_id: str, override: str | None = None) -> str:
    base = override or parent_url
    url = urlparse(base)
    path = url.path.rstrip("/")
    if not path.endswith(cluster_id):
        path = f"{path}{known.SOCKETS_PATH}/{cluster_id}"
    return url._replace(scheme="wss" if url.scheme in ("https", "wss") else "ws", path=path).geturl()


class StreamDialer:
    """Dials what the hub asks for: this cluster's API server, or an allow-listed HTTPS address.

    The API server is verified as the agent's own client verifies it: with this cluster's CA alone, unless
    --apiserver-url names another endpoint (`apiserver_system_cas`), whose certificate may come from a public CA.
    Allow-listed services may have either, so they are verified with the system's CAs and this cluster's. Until
    2026-12-07 one context trusted both for everything, and each agent loaded the system's CAs for it at start
    (26-47 ms of CPU here; 250 simulated agents per process in bench/scale.py paid it 250 times)."""

    def __init__(self, apiserver_url: str, ca_pem: bytes | None, allowed: tuple[str, ...] = (),
                 apiserver_system_cas: bool = False, predictor: Connect | None = None,
                 plain: tuple[str, ...] = ()) -> None:
        url = urlparse(apiserver_url)
        self.apiserver = (url.hostname or "127.0.0.1", url.port or 443)
        self.allowed = set(allowed)
        self.ca_pem = ca_pem
        self.apiserver_tls = trusting(ca_pem, apiserver_system_cas)
        self._services_tls: ssl.SSLContext | None = None  # made at the first dial of an allow-listed address
        self.predictor = predictor  # the built-in predictor's in-process connections (predictor.py)
        self.plain = set(plain)  # dialled without TLS: an external http:// predictor the hub asks through us

    def allow(self, address: str) -> bool:
        return address == known.TUNNEL_APISERVER_ADDRESS or address in self.allowed or address in self.plain or (
            address == known.TUNNEL_PREDICTOR_ADDRESS and self.predictor is not None)

    async def dial(self, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection for a stream the hub opens; refused (LeadershipLost, the hub's OPEN answered with it) once
        this agent's leadership may have passed to another replica, whose tunnel the hub then uses."""
        fence.check()
        if address == known.TUNNEL_PREDICTOR_ADDRESS and self.predictor is not None:
            return await self.predictor()
        if address in self.plain:
            host, _, port_text = address.rpartition(":")
            return await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port_text)), timeout=10)
        if address == known.TUNNEL_APISERVER_ADDRESS:
            (host, port), tls = self.apiserver, self.apiserver_tls
        else:
            host, _, port_text = address.rpartition(":")
            host, port = host.strip("[]"), int(port_text)
            if self._services_tls is None:
                self._services_tls = trusting(self.ca_pem, system_cas=True)
            tls = self._services_tls
        return await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=host), timeout=10)


def trusting(ca_pem: bytes | None, system_cas: bool) -> ssl.SSLContext:
    """A client TLS context trusting `ca_pem` alone, or with the system's CAs too when `system_cas` or when no
    CA is known.

    The tunnel (its context made with this) carries the agent's parent token, which the parent's own client
    sends only to a server the pinned CA vouches for; until 2026-12-07 the tunnel trusted every system CA besides
    the pinned one, so a publicly issued certificate for the parent's host name would have been shown the token.
    --tunnel-url without --tunnel-ca-file (a hub behind an ingress of its own) keeps the system's CAs."""
    if ca_pem and not system_cas:
        return ssl.create_default_context(cadata=ca_pem.decode())
    tls = ssl.create_default_context()
    if ca_pem:
        tls.load_verify_locations(cadata=ca_pem.decode())
    return tls


async def run_tunnel(url: str, token: Callable[[], str], tls: ssl.SSLContext, dialer: StreamDialer,
                     on_state: Callable[[bool], None] | None = None) -> None:
    """Hold the tunnel forever, reconnecting with capped, jittered exponential backoff. Cancel to stop."""
    backoff = Backoff(RECONNECT_FIRST_SECONDS, RECONNECT_MAX_SECONDS)
    while True:
        try:
            async with connect(url, additional_headers={"Authorization": f"Bearer {token()}"},
                               ssl=tls if url.startswith("wss") else None, max_size=2 * 1024 * 1024,
                               ping_interval=20, ping_timeout=20, open_timeout=10, compression=None) as ws:
                log.info("tunnel to the hub is up")
                backoff.reset()
                if on_state:
                    on_state(True)
                async with Session(ws.send, is_client=False, accept=dialer.dial, allow=dialer.allow) as session:
                    try:
                        async for message in ws:
                            if isinstance(message, str):
                                raise FrameError("text message on the tunnel")
                            session.feed(message)
                    except FrameError as e:
                        await ws.close(1002, str(e)[:120])
            log.warning("tunnel to the hub closed (%s); reconnecting", ws.close_reason or ws.close_code)
        except InvalidStatus as e:
            code = e.response.status_code
            body = e.response.body.decode(errors="replace")[:300] if e.response.body else ""
            if code in (502, 503, 504):  # the hub (or its parent) is not ready to take it: passes by itself
                log.warning("the hub cannot take the tunnel now (HTTP %s): %s; trying again", code, body)
            else:
                log.error("the hub refused the tunnel (HTTP %s): %s", code, body)
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as e:
            log.warning("tunnel to the hub failed: %s", error_text(e))
        if on_state:
            on_state(False)
        await asyncio.sleep(backoff.next())
