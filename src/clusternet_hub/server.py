"""The hub's one aiohttp server: health, /metrics, the agents' tunnel endpoint and the proxy API.

One HTTPS listener keeps deployment simple (one Service, one certificate) and lets the same port be
registered as the aggregated `proxies.clusternet.io` API behind the parent's kube-apiserver.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clusternet_api import known
from clusternet_api.pki import issue_cert, make_ca
from clusternet_hub import metrics, shadowmapping
from clusternet_hub.proxy import Proxy
from clusternet_hub.shadow import ShadowAPI
from clusternet_hub.sockets import SocketRegistry, tunnel_endpoint

SOCKETS = f"/apis/{known.PROXIES_GROUP}/{known.PROXIES_VERSION}/sockets"
GROUP_VERSION = f"{known.PROXIES_GROUP}/{known.PROXIES_VERSION}"


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def metrics_handler(registry: SocketRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        if registry is not None:  # None in tests that serve only the proxy
            registry.count_bytes()  # tunnel bytes are counted per session, brought up to date when scraped
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handler


def front_proxy_identity(request: web.Request, allowed_names: tuple[str, ...]) -> tuple[str, list[str]] | None:
    """The user and groups the parent's aggregation layer vouches for, when the request came through it.

    Only a TLS client certificate verified against the requestheader CA, with an allowed common name,
    makes X-Remote-User and X-Remote-Group trustworthy; anyone else's X-Remote-* headers are ignored.
    """
    if request.transport is None:
        return None
    cert = request.transport.get_extra_info("peercert")
    if not cert:
        return None
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    if allowed_names and not any(n in allowed_names for n in names):
        return None
    user = request.headers.get("X-Remote-User")
    if not user:
        return None
    return user, list(request.headers.getall("X-Remote-Group", []))


def front_proxy_user(request: web.Request, allowed_names: tuple[str, ...]) -> str | None:
    """The user of front_proxy_identity."""
    identity = front_proxy_identity(request, allowed_names)
    return identity[0] if identity else None


def discovery_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "sockets", "singularName": "socket", "namespaced": False, "kind": "Socket",
         "shortNames": ["ss"], "categories": [known.CATEGORY], "verbs": []},
        {"name": "sockets/proxy", "singularName": "", "namespaced": False, "kind": "Socket",
         "verbs": ["create", "delete", "get", "patch", "update"]},
    ]}


def discovery_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": known.PROXIES_VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": known.PROXIES_GROUP, "versions": [version],
            "preferredVersion": version}


def build_app(registry: SocketRegistry, proxy: Proxy,
              allowed_names: tuple[str, ...] | Callable[[], tuple[str, ...]] = (),
              shadow_api: ShadowAPI | None = None) -> web.Application:
    """`allowed_names`: the front proxy's allowed common names, or a function returning the current ones (they
    come from a ConfigMap that can change, serving.py). `shadow_api`: serve shadow/v1alpha1 too."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    names: Callable[[], tuple[str, ...]] = allowed_names if callable(allowed_names) else lambda: allowed_names

    async def tunnel(request: web.Request) -> web.StreamResponse:
        result: web.StreamResponse = await tunnel_endpoint(request, registry, front_proxy_user(request, names()))
        return result

    async def proxied(request: web.Request) -> web.StreamResponse:
        via_front_proxy = front_proxy_user(request, names()) is not None
        return await proxy.handle(request, via_front_proxy)

    async def group(_: web.Request) -> web.Response:
        return web.json_response(discovery_group())

    async def resources(_: web.Request) -> web.Response:
        return web.json_response(discovery_resources())

    async def groups(_: web.Request) -> web.Response:
        served = [discovery_group()] + ([shadowmapping.discovery_group()] if shadow_api is not None else [])
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": served})

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response({"swagger": "2.0", "info": {"title": "clusternet-hub", "version": "v1alpha1"},
                                  "paths": {}})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/apis", groups)
    app.router.add_get(f"/apis/{known.PROXIES_GROUP}", group)
    app.router.add_get(f"/apis/{GROUP_VERSION}", resources)
    app.router.add_get("/openapi/v2", openapi)
    app.router.add_get(SOCKETS + "/{cluster_id}", tunnel)
    app.router.add_route("*", SOCKETS + "/{cluster_id}/proxy/{scheme}{tail:(/.*)?}", proxied)
    if shadow_api is not None:
        api = shadow_api

        async def shadow_group(_: web.Request) -> web.Response:
            return web.json_response(shadowmapping.discovery_group())

        async def shadowed(request: web.Request) -> web.StreamResponse:
            return await api.handle(request, front_proxy_identity(request, names()))

        app.router.add_get(f"/apis/{known.SHADOW_GROUP}", shadow_group)
        app.router.add_get(shadowmapping.PREFIX, api.discovery)
        app.router.add_route("*", shadowmapping.PREFIX + "/{tail:.+}", shadowed)
    return app


def server_ssl_context(cert_file: str | None, key_file: str | None,
                       client_ca_file: str | None = None) -> ssl.SSLContext:
    """Fixed TLS for a hub port in tests: the given files, else a certificate for localhost made here. The hub
    itself serves through serving.DynamicTLS."""
    from clusternet_hub.serving import DynamicTLS

    if cert_file and key_file:
        with open(cert_file, "rb") as c, open(key_file, "rb") as k:
            cert, key = c.read(), k.read()
    else:
        _, ca_key, ca_cert = make_ca("clusternet-hub-test-ca")
        pair = issue_cert(ca_key, ca_cert, "clusternet-hub", dns_names=["localhost"], ips=["127.0.0.1"], server=True)
        cert, key = pair.cert_pem, pair.key_pem
    client_ca = None
    if client_ca_file:
        with open(client_ca_file, "rb") as f:
            client_ca = f.read()
    tls = DynamicTLS(client_auth=client_ca is not None)
    tls.update(cert, key, client_ca)
    return tls.context


HANDLERS_GRACE_SECONDS = 1.0
"""How long a stopping hub waits for requests under way before cancelling them, then again for them to end
(aiohttp's shutdown_timeout, used twice: 2-3 s in all, measured in test_socket_marks). Watches (the parent's garbage
collector and namespace controller hold dozens through the shadow API), `logs -f` and `exec` never end by
themselves: aiohttp's default of 60 s kept a SIGTERM'd hub up 40-130 s (the third audit), past the kubelet's
30-s grace. Their clients see the connection end and watch again, through another replica."""


async def start(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None) -> web.AppRunner:
    # Cancel a handler when its client goes away, so an abandoned proxied watch releases its tunnel
    # stream and the child's watch at once instead of when the next event fails to write.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=HANDLERS_GRACE_SECONDS)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
