"""A thin async Kubernetes client on aiohttp, shared by hub, agent and CLI.

Why our own and not kubernetes_asyncio: both operators only need plain-dict REST against several clusters
(the parent, a child, a child through the tunnel) with server-side apply and "absent is fine" semantics.
kubernetes_asyncio's generated client cost 0.45 s of import per process and several hundred microseconds
of CPU per request on top of aiohttp, which showed in every benchmark; what we use of it (a REST call and
kind -> resource discovery) is a page of code here. Conventions: dicts in, dicts out, an object's 404 as None
(not a path's: Kube.get), one connection pool per cluster, discovery per group-version on first use
(apidiscovery.py, Kube's base).

A `Kube` built with an `opener` (a callable giving a new tunnel stream to the cluster's API server) speaks
HTTP/1.1 over those streams with clusternet_api.tunnel.http instead of using aiohttp: that is how the hub
pushes to a child through its agent's tunnel, with the same client code as for every other cluster.

Credentials (clusternet_api.credentials) come from kubeconfigs (clusternet_api.kubeconfig) as kubectl reads them;
with an exec credential plugin, a `Kube` runs it before the first request and whenever its credential expires,
and once more when the server answers 401 (then retries that request once).

Respecting the API server, as client-go does (clusternet_api.ratelimit): a `Kube` built with `qps` > 0 takes a
token from its own bucket before each non-watch request; a 429, or a 503 with Retry-After, is retried after the
seconds the server asks for. Like Clusternet's binaries, which build a Kubernetes clientset and a Clusternet
clientset from one rest.Config (each with its own client-go limiter), requests to the `*.clusternet.io` API
groups take their tokens from a second bucket of the same size: the flags mean what they mean in Clusternet,
and the hub's writes of Clusternet objects do not queue behind its Namespace, RBAC and token requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from multidict import CIMultiDict

from clusternet_api import fence
from clusternet_api.apidiscovery import ApiDiscovery
from clusternet_api.apierrors import ApiException, ResourceNotFound, is_object_answer, is_status, status_error
from clusternet_api.credentials import Credentials, ssl_context
from clusternet_api.eventlines import json_events
from clusternet_api.execplugin import CredentialsError, ExecCredential
from clusternet_api.httpsession import client_session
from clusternet_api.kubeconfig import kubeconfig_namespace, kubeconfig_path
from clusternet_api.ratelimit import MAX_RETRIES, TokenBucket, retry_after
from clusternet_api.reachability import Reachability
from clusternet_api.tunnel import http as tunnel_http
from clusternet_api.tunnel.http import StreamHttp, StreamOpener, lines, read_body

Obj = dict[str, Any]
Headers = Sequence[tuple[str, str]]
log = logging.getLogger(__name__)

STREAM_ADDRESS = "api-server"  # pool key of a Kube's streams: they all go to the one API server it talks to
TOKEN_FILE_REREAD = 60.0  # seconds; kubelet rotates projected ServiceAccount tokens well before expiry
DEFAULT_TIMEOUT = 120.0  # seconds for one non-watch request (a LIST of thousands of objects fits)
# sessions of an exec plugin's earlier client certificates kept open for their requests under way (unbounded, one
# more per rotation for a process's life); an older one is closed, cutting a watch that then resumes
RETIRED_SESSIONS_KEPT = 2


ANY_JSON = "application/json, */*"  # what every request but list_metadata's accepts
# a PartialObjectMetadataList (meta.k8s.io/v1, served for every resource since Kubernetes 1.15), else plain JSON
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io, application/json"
# Read from the API server's watch cache instead of etcd: no storage read and no decode of every stored object (a
# LIST by label of all ManagedClusters decoded each of them from etcd, once per approval: at 1,000 registrations
# that was the parent's costliest work, `bench/scale.py --profile-parent`). It may trail etcd by a moment.
CACHED: Mapping[str, str] = {"resourceVersion": "0"}
_CLUSTERNET_GROUP = re.compile(r"^/apis/[^/]+\.clusternet\.io(/|$)")
"""Paths of the API groups a Clusternet clientset serves (clusters., apps., proxies.clusternet.io ...)."""


class Kube(ApiDiscovery):
    """One API server, dict-based. `async with Kube(creds) as kube:` or call `close()`."""

    def __init__(self, creds: Credentials, *, user_agent: str = "clusternet-py", connections: int = 100,
                 opener: StreamOpener | None = None, qps: float = 0.0, burst: int = 0,
                 connect_timeout: float | None = None, read_timeout: float | None = None,
                 fail_fast: bool = False) -> None:
        """`opener`: reach the server over streams it opens (a tunnel) instead of aiohttp connections; the
        server URL then only names the Host, TLS is the stream's business (the agent's, for a tunnel).
        `qps` > 0: at most that many non-watch requests a second on average, `burst` at once (no limit else).
        `connect_timeout`: for a new connection, TLS included; `read_timeout`: for each read of an answer;
        `fail_fast`: not asking again for a while a server no connection could be made to (reachability.py). All
        three for connections, not a tunnel's streams."""
        self.creds = creds
        self.limiter = TokenBucket(qps, burst or max(1, int(qps))) if qps > 0 else None
        self.clusternet_limiter = TokenBucket(qps, burst or max(1, int(qps))) if qps > 0 else None
        self.user_agent = user_agent
        self.connections = connections  # at most this many open at once; more requests wait for one
        self._ssl = ssl_context(creds) if opener is None else None
        self._timeout = aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT, sock_connect=connect_timeout,
                                              sock_read=read_timeout)
        self._reach = Reachability(creds.server) if fail_fast and opener is None else None
        self._session: aiohttp.ClientSession | None = None
        self._streams = StreamHttp(lambda _: opener()) if opener is not None else None
        self._stream_slots = asyncio.Semaphore(connections)  # the stream path's counterpart of the pool limit
        self._token_read = time.monotonic()
        self._exec_cred: ExecCredential | None = None  # what the exec plugin gave that creds now hold
        self._retired: list[aiohttp.ClientSession] = []  # sessions with an exec plugin's previous certificate
        super().__init__()  # the discovery's caches

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._streams is not None:
            self._streams.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        while self._retired:
            await self._retired.pop().close()

    def set_token(self, token: str) -> None:
        """Use a refreshed bearer token for subsequent requests."""
        self.creds = self.creds.with_token(token)

    async def credentials(self, fresh: bool = False) -> Credentials:
        """The credentials the next request uses, with a current token (an exec plugin runs when due, or now
        when `fresh`): for clients that are not this one (kopf's login, Helm)."""
        await self._authenticate(rejected=self._exec_cred if fresh else None)
        return self.creds

    @property
    def credentials_expire(self) -> float | None:
        """When the exec plugin's current credential expires (a time.time() instant); None when nothing does."""
        return self._exec_cred.expires if self._exec_cred is not None else None

    async def _authenticate(self, rejected: ExecCredential | None = None) -> ExecCredential | None:
        """With an exec plugin: make sure creds hold its current credential (a new one when the cached one
        expired or is `rejected`) and return it; None without a plugin. Cheap while the credential is cached."""
        plugin = self.creds.exec_plugin
        if plugin is None:
            return None
        cred = await plugin.credential(rejected=rejected)
        if cred is not self._exec_cred:
            old = self.creds
            self.creds = dataclasses.replace(old, token=cred.token, cert_pem=cred.cert_pem or old.cert_pem,
                                             key_pem=cred.key_pem or old.key_pem)
            self._exec_cred = cred
            if cred.cert_pem and (cred.cert_pem, cred.key_pem) != (old.cert_pem, old.key_pem) and \
                    self._streams is None:
                # a new client certificate needs a new TLS context, hence new connections; requests under way
                # finish on the old session, closed when RETIRED_SESSIONS_KEPT newer ones are retired or
                # with this client
                self._ssl = ssl_context(self.creds)
                if self._session is not None:
                    self._retired.append(self._session)
                    self._session = None
                while len(self._retired) > RETIRED_SESSIONS_KEPT:
                    await self._retired.pop(0).close()
        return cred

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        if self.creds.token_file and time.monotonic() - self._token_read > TOKEN_FILE_REREAD:
            self._token_read = time.monotonic()
            with contextlib.suppress(OSError):  # else keep the last token; the next request tries again later
                self.creds = dataclasses.replace(self.creds, token=Path(self.creds.token_file).read_text().strip())
        headers = {"User-Agent": self.user_agent, **extra}
        if self.creds.token:
            headers["Authorization"] = f"Bearer {self.creds.token}"
        elif self.creds.username:
            basic = base64.b64encode(f"{self.creds.username}:{self.creds.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return headers

    def _all_headers(self, headers: dict[str, str], extra: Headers) -> CIMultiDict[str]:
        out = CIMultiDict(self._headers(headers))
        for name, value in extra:
            out.add(name, value)
        return out

    async def watch_path(self, path: str, query: Mapping[str, str], server_timeout: int,
                         extra_headers: Headers = (),
                         on_open: Callable[[], Awaitable[object]] | None = None) -> AsyncGenerator[Obj]:
        """Watch events of any path (query holds watch=1 and the rest) until the server closes the stream;
        a refusal raises ApiException, `on_open` runs once the server accepted the watch. Over aiohttp only (not
        for clients built with an opener)."""
        async with self.session().get(
                self.creds.server.rstrip("/") + path, params=query,
                headers=self._all_headers({"Accept": "application/json"}, extra_headers),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=server_timeout + 30),
                proxy=self.creds.proxy_url, server_hostname=self.creds.tls_server_name) as resp:
            if resp.status != 200:
                raise status_error(resp.status, _parsed(await resp.read()))
            if on_open is not None:
                await on_open()
            async for event in json_events(resp.content.iter_any()):
                yield event

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = client_session(self._ssl, self.connections)
        return self._session

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json",
                      query: Mapping[str, str] | None = None, extra_headers: Headers = (),
                      accept: str = ANY_JSON) -> Obj:
        """One request; JSON result as a dict. Non-2xx answers raise ApiException (status, reason, body)."""
        status, result = await self.raw(method, path, body, content_type=content_type, query=query,
                                        extra_headers=extra_headers, accept=accept)
        if not 200 <= status < 300:
            raise status_error(status, result)
        return result if isinstance(result, dict) else {}

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                  cached: bool = False) -> Obj | None:
        """The object, or None when the server says it does not exist: a 404 with a JSON (Status) body.

        A 404 without one ("404 page not found", text) says the path is not served, not that the object is
        gone: a kube-apiserver that has just started answers so for custom resources until its CRD handler
        catches up, as it does once a CRD is deleted. That raises, so no caller takes it for "gone" and
        deletes or re-creates on it (the first-rule review s31: a Subscription or Base read as gone).

        `cached`: read from the API server's watch cache (resourceVersion=0, CACHED), for a poll that may see the
        object a moment old; a "not found" from there is asked again of storage, which the cache may trail."""
        path = await self.path(api_version, kind, name, namespace)
        if cached and (found := await self._get(path, api_version, kind, name, CACHED)) is not None:
            return found
        return await self._get(path, api_version, kind, name)

    async def _get(self, path: str, api_version: str, kind: str, name: str,
                   query: Mapping[str, str] | None = None) -> Obj | None:
        try:
            return await self.request("GET", path, query=query)
        except ApiException as e:
            if e.status != 404:
                raise
            if is_object_answer(e.body):
                return None
            raise ApiException(404, f"{kind} ({api_version}) is not served by the API server now, so whether "
                                    f"{name} exists cannot be told (it answered {e.reason!r})", e.body) from e

    async def list_metadata(self, api_version: str, kind: str, namespace: str | None = None,
                            label_selector: str | None = None) -> list[Obj]:
        """The objects' metadata only, as client-go's metadata informers read them: for a question their names and
        labels answer, without each object's spec and status (a ManagedCluster's status lists its nodes and
        capacity). A server that cannot answer so sends whole objects (the Accept header's fallback)."""
        return await self.list(api_version, kind, namespace, label_selector, accept=METADATA_LIST)

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None, *, accept: str = ANY_JSON, cached: bool = False) -> list[Obj]:
        """The objects; `cached`: from the API server's watch cache (CACHED), which may trail storage a moment."""
        query = {**({"labelSelector": label_selector} if label_selector else {}), **(CACHED if cached else {})}
        result = await self.request("GET", await self.path(api_version, kind, namespace=namespace),
                                    query=query or None, accept=accept)
        items: list[Obj] = result.get("items", [])
        return items

    async def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", await self.path(obj["apiVersion"], obj["kind"], namespace=ns), obj)

    async def create_or_get(self, obj: Obj) -> tuple[Obj, bool]:
        """Create, or return the existing object when it is already there (idempotent retries)."""
        meta = obj["metadata"]
        try:
            return await self.create(obj), True
        except ApiException as e:
            if e.status != 409 or "name" not in meta:
                raise
        existing = await self.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if existing is None:  # deleted in between: try once more
            return await self.create(obj), True
        return existing, False

    async def apply(self, obj: Obj, field_manager: str, force: bool = True) -> Obj:
        """Server-side apply."""
        return (await self.apply_created(obj, field_manager, force))[0]

    async def apply_created(self, obj: Obj, field_manager: str, force: bool = True) -> tuple[Obj, bool]:
        """Server-side apply, and whether it created the object: the API server answers 201 Created then, 200 when
        the object was there."""
        meta = obj["metadata"]
        path = await self.path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        query = {"fieldManager": field_manager, "force": "true" if force else "false"}
        status, result = await self.raw("PATCH", path, obj, content_type="application/apply-patch+yaml", query=query)
        if not 200 <= status < 300:
            raise status_error(status, result)
        return (result if isinstance(result, dict) else {}), status == 201

    async def patch(self, api_version: str, kind: str, name: str, body: Any, namespace: str | None = None,
                    *, subresource: str | None = None,
                    content_type: str = "application/merge-patch+json") -> Obj:
        path = await self.path(api_version, kind, name, namespace, subresource)
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background", *, preconditions: Mapping[str, str] | None = None) -> bool:
        """Delete; False when it was already gone.

        `preconditions` (`uid`, `resourceVersion`): delete only the object as it was read, for a caller that
        checked something on it first; the API server answers 409 Conflict (raised) when it no longer matches."""
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if preconditions:
            body["preconditions"] = dict(preconditions)
        try:
            await self.request("DELETE", await self.path(api_version, kind, name, namespace), body)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    async def raw(self, method: str, path: str, body: Any = None, *, content_type: str | None = None,
                  query: Mapping[str, str] | None = None, accept: str = ANY_JSON,
                  extra_headers: Headers = ()) -> tuple[int, Any]:
        """An arbitrary request (health endpoints, /version); returns (status, parsed body or text).
        `extra_headers` may repeat a name (Impersonate-Group: one header per group)."""
        headers = {"Accept": accept}
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else \
                json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type or "application/json"
        used = await self._authenticate() if self.creds.exec_plugin is not None else None
        limiter = self.clusternet_limiter if _CLUSTERNET_GROUP.match(path) else self.limiter
        for attempt in range(MAX_RETRIES + 1):
            if limiter is not None:
                await limiter.wait()
            status, result, wait = await self._raw_once(method, path, query, headers, data, extra_headers)
            if status == 401 and used is not None:  # the plugin's credential was revoked or expired early
                await self._authenticate(rejected=used)
                used = None  # once per request
                status, result, wait = await self._raw_once(method, path, query, headers, data, extra_headers)
            if wait is None or attempt == MAX_RETRIES:
                break
            log.info("%s %s: HTTP %s, retrying in %.1fs as the server asks", method, path, status, wait)
            await asyncio.sleep(wait)
        return status, result

    async def _raw_once(self, method: str, path: str, query: Mapping[str, str] | None, headers: dict[str, str],
                        data: bytes | None, extra_headers: Headers = ()) -> tuple[int, Any, float | None]:
        """One attempt: (status, parsed body, seconds to wait before a retry or None when final). A write by
        leader work that lost its Lease is refused here, at the last moment before it is sent (fence)."""
        fence.check(method)  # and again once a connection or stream is had (_fence_on_connection, StreamHttp)
        if self._streams is not None:
            async with asyncio.timeout(DEFAULT_TIMEOUT), self._stream_slots:
                response = await self._stream_request(method, path, query, headers, data, extra_headers)
                body = _parsed(await read_body(response))
                return response.status, body, retry_after(response.status, CIMultiDict(response.headers))
        async with self._reach.attempt() if self._reach is not None else contextlib.nullcontext():
            fence.check(method)  # again: it may have waited for another request's probe
            async with self.session().request(
                    method, self.creds.server.rstrip("/") + path, data=data, params=query,
                    headers=self._all_headers(headers, extra_headers), timeout=self._timeout,
                    proxy=self.creds.proxy_url, server_hostname=self.creds.tls_server_name,
                    trace_request_ctx={"method": method}) as resp:
                return resp.status, _parsed(await resp.read()), retry_after(resp.status, resp.headers)

    async def watch(self, api_version: str, kind: str, namespace: str | None = None,
                    server_timeout: int = 60, resource_version: str | None = None) -> AsyncIterator[Obj]:
        """Watch events as dicts {type, object} until the server closes the stream."""
        query = {"watch": "1", "timeoutSeconds": str(server_timeout), "allowWatchBookmarks": "true"}
        if resource_version:
            query["resourceVersion"] = resource_version
        path = await self.path(api_version, kind, namespace=namespace)
        if self._streams is not None:
            async for streamed in self._watch_streamed(path, query, server_timeout):
                yield streamed
            return
        for attempt in range(2):
            used = await self._authenticate() if self.creds.exec_plugin is not None else None
            async with self.session().get(
                    self.creds.server.rstrip("/") + path, params=query,
                    headers=self._headers({"Accept": "application/json"}),
                    timeout=aiohttp.ClientTimeout(total=server_timeout + 10),
                    proxy=self.creds.proxy_url, server_hostname=self.creds.tls_server_name) as resp:
                if resp.status == 401 and used is not None and not attempt:
                    await self._authenticate(rejected=used)
                    continue
                if resp.status != 200:
                    raise status_error(resp.status, _parsed(await resp.read()))
                async for event in json_events(resp.content.iter_any()):
                    yield event
                return

    async def _stream_request(self, method: str, path: str, query: Mapping[str, str] | None,
                              headers: dict[str, str], data: bytes | None,
                              extra_headers: Headers = ()) -> tunnel_http.Response:
        """One request over a stream from the opener (a pooled one when idle); the caller reads the body."""
        assert self._streams is not None
        base = urlsplit(self.creds.server)
        target = base.path.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        all_headers = [("Host", base.netloc), *self._headers(headers).items(), *extra_headers]
        return await self._streams.request(STREAM_ADDRESS, method, target, all_headers, data)

    async def _watch_streamed(self, path: str, query: Mapping[str, str],
                              server_timeout: int) -> AsyncIterator[Obj]:
        """`watch` over a stream: the same events, the same time limit and errors as over aiohttp."""
        # A deadline per step, not one timeout around the yields: it must fire in this generator, never in
        # the consumer's code between two events.
        deadline = asyncio.get_running_loop().time() + server_timeout + 10
        async with self._stream_slots:
            async with asyncio.timeout_at(deadline):
                response = await self._stream_request("GET", path, query, {"Accept": "application/json"}, None)
                if response.status != 200:
                    raise status_error(response.status, _parsed(await read_body(response)))
            async with contextlib.aclosing(lines(response)) as events:
                while True:
                    async with asyncio.timeout_at(deadline):
                        line = await anext(events, None)
                    if line is None:
                        return
                    if line.strip():
                        event: Obj = json.loads(line)
                        yield event


def _parsed(raw: bytes) -> Any:
    """A response body as JSON when it is JSON, else as text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


__all__ = [
    "ApiException",
    "Credentials",
    "CredentialsError",
    "Kube",
    "Obj",
    "ResourceNotFound",
    "is_status",
    "kubeconfig_namespace",
    "kubeconfig_path",
    "ssl_context",
    "status_error",
]
