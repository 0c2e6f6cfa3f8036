"""The aiohttp session of a `Kube`: its connection pool, and the write fence asked again on each connection."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from clusternet_api import fence


def client_session(context: ssl.SSLContext | None, connections: int) -> aiohttp.ClientSession:
    """`connections` at most to the server, verified with `context` (None: plain HTTP). trust_env off: no proxy
    or netrc lookups (aiohttp runs those in a thread per request)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context if context is not None else False, limit=connections),
        trust_env=False, auto_decompress=True, trace_configs=[fence_on_connection()])


def fence_on_connection() -> aiohttp.TraceConfig:
    """The fence asked again when a request gets its connection, before it is written: a write that passed
    `Kube._raw_once`'s check and then waited for one of the pool's few connections (2 per child pushed directly) went
    out after the fence had expired, when a frozen leader woke (audit s36, F1). The method comes in the
    request's trace context; a request without one (a watch, a read) is not fenced. A write frozen in the middle
    of a TCP or TLS handshake is the one wait still unchecked."""
    config = aiohttp.TraceConfig()

    async def recheck(_session: aiohttp.ClientSession, context: Any, _params: Any) -> None:
        fence.check(str((context.trace_request_ctx or {}).get("method") or "GET"))

    # once a request waited for a slot, and before a new connection is made: both raise holding no socket (aiohttp
    # closes none refused at create_end or at reuseconn: re-review s36); a pooled connection taken with no wait
    # follows _raw_once's check at once
    config.on_connection_queued_end.append(recheck)
    config.on_connection_create_start.append(recheck)
    return config
