"""The proxies.clusternet.io API: child API servers (and allowed in-cluster HTTPS services) via tunnels.

`/apis/proxies.clusternet.io/v1alpha1/sockets/<clusterID>/proxy/direct/<path>` reaches the child's API
server; `/proxy/https/<host:port>/<path>` an in-cluster HTTPS service on the agent's allow-list.

The hub never uses its own identity towards a child. The caller's child credentials travel either as a
bearer token sent straight to the hub, or, as in Clusternet, as impersonation extras
(`Impersonate-User: clusternet` + `Impersonate-Extra-Clusternet-Token`), which reach the hub as
`X-Remote-Extra-Clusternet-Token` when the request comes through the parent's aggregation layer.
Other `Clusternet-<Header>` extras become `<Header>` in the child (e.g. child-side impersonation).
The child API server then applies its own RBAC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from clusternet_api.tunnel import StreamOpenError, pipe
from clusternet_api.tunnel.http import BodyCut, Response, StreamHttp, Upgraded, UpstreamError
from clusternet_hub import metrics
from clusternet_hub.sockets import APISERVER_ADDRESS, SocketRegistry, status_body
from clusternet_hub.takeover import answer_switching

log = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host"}
# the request body is read whole and re-sent, so its length is recomputed by the client
REQUEST_DROPPED = HOP_BY_HOP | {"content-length"}
UPGRADE_TIMEOUT = 30.0  # seconds for the child's answer to an upgrade request
WHOLE_BODY_LIMIT = 256 * 1024  # answers up to this size (with a Content-Length) are relayed in one piece
EXTRA_PREFIX_FRONT = "x-remote-extra-clusternet-"
EXTRA_PREFIX_DIRECT = "impersonate-extra-clusternet-"


class ProxyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def upstream_headers(headers: Iterable[tuple[str, str]] | Mapping[str, str],
                     via_front_proxy: bool) -> list[tuple[str, str]]:
    """Headers for the child: hop-by-hop and identity headers removed, child credentials put in place.

    An extra may carry several values (`--clusternet-as-group a --clusternet-as-group b` arrives as two
    `X-Remote-Extra-Clusternet-Impersonate-Group` headers), and each becomes one header in the child."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    out: list[tuple[str, str]] = []
    extras: dict[str, list[str]] = {}
    impersonating_clusternet = any(name.lower() == "impersonate-user" and value.lower() == "clusternet"
                                   for name, value in items)
    for name, value in items:
        lower = name.lower()
        if lower in REQUEST_DROPPED:
            continue
        if lower.startswith("x-remote-"):
            if via_front_proxy and lower.startswith(EXTRA_PREFIX_FRONT):
                extras.setdefault(unquote(lower[len(EXTRA_PREFIX_FRONT):]), []).append(value)
            continue  # never trust identity headers that did not come from the front proxy
        if lower.startswith(EXTRA_PREFIX_DIRECT) and impersonating_clusternet:
            extras.setdefault(unquote(lower[len(EXTRA_PREFIX_DIRECT):]), []).append(value)
            continue
        if lower == "impersonate-user" and impersonating_clusternet:
            continue
        if lower == "authorization" and (via_front_proxy or impersonating_clusternet):
            continue  # that identity is for the parent, not the child
        out.append((name, value))
    for key, values in extras.items():
        if key == "token":
            out = [(k, v) for k, v in out if k.lower() != "authorization"]
            out.append(("Authorization", f"Bearer {values[-1]}"))
        elif key in ("certificate", "privatekey"):
            raise ProxyError(400, "client-certificate credentials (Clusternet-Certificate) are not supported "
                                  "by this hub; pass a child token as Clusternet-Token")
        else:
            out.extend(("-".join(p.capitalize() for p in key.split("-")), value) for value in values)
    if not any(k.lower() == "authorization" for k, _ in out):
        raise ProxyError(401, "no child-cluster credentials: send the child's token as a bearer token, or "
                              "impersonate user 'clusternet' with extra 'clusternet-token'")
    return out


CHILD_REJECTED_WARNING = ('299 - "the child cluster\'s API server rejected the child credentials sent through '
                          'the proxy (the clusternet-token extra or the bearer token), not the parent"')


def response_headers(headers: Iterable[tuple[str, str]], status: int = 200) -> CIMultiDict[str]:
    """The child's response headers minus hop-by-hop ones; repeated headers (Warning, ...) all kept.

    A 401 is relayed as the child wrote it (clients parse its Status), with a Warning header added (kubectl and
    client-go print them): a bare "Unauthorized" through the parent did not say whose credentials failed."""
    out = CIMultiDict((k, v) for k, v in headers if k.lower() not in HOP_BY_HOP)
    if status == 401:
        out.add("Warning", CHILD_REJECTED_WARNING)
    return out


async def upgrade(request: web.Request, http: StreamHttp, address: str, target: str,
                  headers: Iterable[tuple[str, str]]) -> Upgraded | Response:
    """Ask the child for the client's protocol switch (exec/attach/port-forward over SPDY or websocket,
    websocket watches) on a new tunnel stream; a refusal comes back as an ordinary response."""
    head = [("Host", request.host), ("Connection", "Upgrade"), ("Upgrade", request.headers["Upgrade"]),
            *headers]
    try:
        async with asyncio.timeout(UPGRADE_TIMEOUT):
            return await http.upgrade(address, request.method, target, head)
    except TimeoutError as e:
        raise ProxyError(503, f"the child did not answer the upgrade within {UPGRADE_TIMEOUT:g}s") from e


async def relay_upgraded(request: web.Request, upgraded: Upgraded) -> web.StreamResponse:
    """Answer 101 and pipe both directions unchanged, so the protocol spoken after the upgrade does not
    matter to the hub. The client's connection closes when the child's side ends (TLS cannot half-close),
    and is aborted when the stream is cut (see pipe)."""
    reader, writer, response = await answer_switching(request, upgraded.stream, upgraded.headers)
    metrics.proxy_requests.labels("101").inc()
    writer.write(upgraded.leftover)
    await pipe(upgraded.stream, reader, writer, close_at_eof=True)
    return response


def abort_response(request: web.Request) -> None:
    """Close the client's connection so the response can never end normally.

    Data already written is still flushed, but aiohttp then finds the transport gone when it finishes the
    response: the terminating zero-length chunk is never sent (nor the rest of a Content-Length), and the
    connection is not kept alive. Clients report the body as incomplete, as they do when Go's
    httputil.ReverseProxy (under kube-apiserver's aggregator) aborts a response with http.ErrAbortHandler.
    """
    request.protocol.force_close()


async def relay_body(request: web.Request, response: web.StreamResponse, chunks: AsyncIterator[bytes],
                     cluster_id: str) -> None:
    """Copy the child's body to the client, ending it normally only when the child's body ended normally.

    A body cut short (agent gone, tunnel stream reset, child closed early) must not reach the client as
    complete: a watch ending with its terminating chunk looks like a server-side watch timeout, and a list
    or log would pass as whole. Aborted, `curl` and `kubectl get --raw` fail, client-go sees an unexpected
    EOF, and through the aggregation layer a stream error (on which informers re-list).
    """
    sent = 0
    try:
        async for chunk in chunks:
            await response.write(chunk)
            sent += len(chunk)
    except BodyCut as e:
        log.warning("cluster %s: response to %s %s cut after %d body bytes, aborting the client connection: %s",
                    cluster_id, request.method, request.match_info.get("tail", ""), sent, e)
        abort_response(request)
        return
    except ConnectionError as e:  # the client went away: nobody is left to tell
        log.info("cluster %s: client of %s %s left: %s", cluster_id, request.method,
                 request.match_info.get("tail", ""), e)
        return
    await response.write_eof()


def raw_tail(request: web.Request, cluster_id: str, scheme: str) -> str:
    """The child's path as the client encoded it (the query likewise comes from `raw_query_string`).

    aiohttp's match_info and query_string are decoded: `labelSelector=app+in+(a%2Cb)`, as client-go encodes
    `app in (a,b)`, would reach the child with spaces, which no request line may hold (the request failed), and
    an encoded `/`, `?` or `#` would change what the child is asked for. Clusternet's reverse proxy passes the
    raw path through; so do we."""
    raw = request.rel_url.raw_path
    marker = f"/{cluster_id}/proxy/{scheme}"
    at = raw.find(marker)
    return raw[at + len(marker):] if at >= 0 else request.match_info.get("tail", "")


class Proxy:
    """Streams requests and responses (watch included) through a cluster's tunnel."""

    def __init__(self, registry: SocketRegistry, known_cluster: Any) -> None:
        self.registry = registry
        self.known_cluster = known_cluster  # callable: cluster_id -> bool (a ManagedCluster exists)

    async def close(self) -> None:
        """Nothing of its own to release: the streams belong to the tunnels."""

    async def handle(self, request: web.Request, via_front_proxy: bool) -> web.StreamResponse:
        try:
            return await self._handle(request, via_front_proxy)
        except ProxyError as e:
            metrics.proxy_requests.labels(str(e.status)).inc()
            return web.json_response(status_body(e.status, str(e)), status=e.status)

    async def _handle(self, request: web.Request, via_front_proxy: bool) -> web.StreamResponse:
        cluster_id = request.match_info["cluster_id"]
        scheme = request.match_info["scheme"]
        tail = raw_tail(request, cluster_id, scheme)
        if scheme == "direct":
            address = APISERVER_ADDRESS
        elif scheme == "https":
            address, _, rest = tail.lstrip("/").partition("/")
            tail = "/" + rest
            if ":" not in address:
                address += ":443"
        else:
            raise ProxyError(400, f"unsupported proxy scheme {scheme!r}: use 'direct' or 'https'")
        headers = upstream_headers(request.headers.items(), via_front_proxy)
        http = await self.registry.http_for(cluster_id)  # our tunnel, or another hub replica's
        if http is None:
            if not self.known_cluster(cluster_id) and not await self.registry.cluster_exists(cluster_id):
                raise ProxyError(404, f"no managed cluster with ID {cluster_id}")
            raise ProxyError(503, f"the agent of cluster {cluster_id} is disconnected; its tunnel is down")
        query = request.rel_url.raw_query_string
        target = (tail or "/") + (f"?{query}" if query else "")
        try:
            if request.headers.get("Upgrade"):
                upstream = await upgrade(request, http, address, target, headers)
            else:
                body = await request.read() if request.can_read_body else None
                host = address if scheme == "https" else request.host
                upstream = await http.request(address, request.method, target,
                                                     [("Host", host), *headers], body)
        except (StreamOpenError, UpstreamError, ConnectionError) as e:
            raise ProxyError(503, f"the agent of cluster {cluster_id} could not reach {address}: {e}") from e
        if isinstance(upstream, Upgraded):
            return await relay_upgraded(request, upstream)
        return await respond(request, upstream, cluster_id)


async def respond(request: web.Request, upstream: Response, cluster_id: str) -> web.StreamResponse:
    """The child's answer to the client: small ones in one piece, others streamed (watches, logs, big lists)."""
    headers_out = response_headers(upstream.headers, upstream.status)
    length = headers_out.get("Content-Length", "")
    async with contextlib.aclosing(upstream.body) as chunks:
        if length.isdigit() and int(length) <= WHOLE_BODY_LIMIT:  # small answers leave in one write
            try:
                body = b"".join([chunk async for chunk in chunks])
            except BodyCut as e:  # nothing sent yet: the client can still get a proper error
                raise ProxyError(503, f"the agent of cluster {cluster_id} lost the answer: {e}") from e
            metrics.proxy_requests.labels(str(upstream.status)).inc()
            return web.Response(status=upstream.status, body=body, headers=headers_out)
        response = web.StreamResponse(status=upstream.status, headers=headers_out)
        await response.prepare(request)
        await relay_body(request, response, chunks, cluster_id)
    metrics.proxy_requests.labels(str(upstream.status)).inc()
    return response
