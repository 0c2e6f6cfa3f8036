"""The hub's one aiohttp server: health, /metrics, the agents' tunnel endpoint and the proxy API.

One HTTPS listener keeps deployment simple (one Service, one certificate) and lets the same port be
registered as the aggregated `proxies.clusternet.io` API behind the parent's kube-apiserver.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clusternet_hub import metrics

CTX_KEY: web.AppKey[object] = web.AppKey("hub", object)


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def metrics_handler(_: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(ctx: object) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CTX_KEY] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app


def server_ssl_context(cert_file: str | None, key_file: str | None,
                       client_ca_file: str | None = None) -> ssl.SSLContext:
    """TLS for the hub port; a self-signed certificate when none is configured (development only)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if not (cert_file and key_file):
        from clusternet_api.controlplane import issue_cert, make_ca

        _, ca_key, ca_cert = make_ca("clusternet-hub-self-signed-ca")
        pair = issue_cert(ca_key, ca_cert, "clusternet-hub", dns_names=["localhost"],
                          ips=["127.0.0.1"], server=True)
        tmp = Path(tempfile.mkdtemp(prefix="clusternet-hub-tls-"))
        (tmp / "tls.crt").write_bytes(pair.cert_pem)
        (tmp / "tls.key").write_bytes(pair.key_pem)
        (tmp / "tls.key").chmod(0o600)
        cert_file, key_file = str(tmp / "tls.crt"), str(tmp / "tls.key")
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        # Front-proxy (aggregated API) requests present a client certificate; others need not.
        ctx.load_verify_locations(client_ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def start(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
