"""What the agent's TLS trusts at both ends of the tunnel (tunnel.trusting): the tunnel carries the agent's parent
token, and the streams the hub opens carry callers' child tokens, so by default only the pinned CA may vouch for
the other end, as for the agent's own requests to the parent and the child.

The system's CAs are stood in for by a CA of the test's own: OpenSSL reads SSL_CERT_FILE whenever a context
loads the default CAs."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from clusternet_agent.tunnel import StreamDialer, trusting
from clusternet_api.known import TUNNEL_APISERVER_ADDRESS as APISERVER
from clusternet_api.pki import issue_cert, make_ca
from clusternet_api.tlsfiles import load_cert_chain_pem


def server_for(issuer: str) -> tuple[bytes, ssl.SSLContext]:
    """(the CA's PEM, a server context whose certificate for 127.0.0.1 that CA issued)."""
    pair, key, cert = make_ca(issuer)
    leaf = issue_cert(key, cert, "hub", ips=["127.0.0.1"], server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_cert_chain_pem(ctx, leaf.cert_pem, leaf.key_pem)
    return pair.cert_pem, ctx


async def serving(server: ssl.SSLContext) -> tuple[asyncio.Server, str]:
    """A TLS server on 127.0.0.1 showing `server`'s certificate, and its host:port."""
    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    return srv, f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"


async def accepted(client: ssl.SSLContext, server: ssl.SSLContext) -> bool:
    """Whether a TLS handshake from `client` to a server showing `server`'s certificate succeeds."""
    srv, address = await serving(server)
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port), ssl=client, server_hostname=host)
    except ssl.SSLCertVerificationError:
        return False
    finally:
        srv.close()
    writer.close()
    return True


@pytest.fixture
def public_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server certificate from a CA the system trusts (SSL_CERT_FILE), not the pinned one."""
    ca_pem, server = server_for("a public CA")
    (tmp_path / "system.pem").write_bytes(ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    return server


async def test_by_default_only_the_pinned_ca_vouches_for_the_hub(public_ca: ssl.SSLContext) -> None:
    pinned, hub = server_for("the parent's CA")
    assert await accepted(trusting(pinned, system_cas=False), hub)
    assert not await accepted(trusting(pinned, system_cas=False), public_ca)  # shown no token


async def test_a_tunnel_url_without_its_own_ca_file_trusts_the_system_cas_too(public_ca: ssl.SSLContext) -> None:
    pinned, hub = server_for("the parent's CA")
    assert await accepted(trusting(pinned, system_cas=True), public_ca)  # an ingress with a public certificate
    assert await accepted(trusting(pinned, system_cas=True), hub)
    assert await accepted(trusting(None, system_cas=False), public_ca)  # no CA known: the system's


async def dials(dialer: StreamDialer, address: str) -> bool:
    """Whether the dialer's TLS connection to `address` (the API server's marker or host:port) is accepted."""
    try:
        _, writer = await dialer.dial(address)
    except ssl.SSLCertVerificationError:
        return False
    writer.close()
    return True


async def test_the_api_server_is_verified_with_the_cluster_ca_alone_services_with_the_system_cas_too(
        public_ca: ssl.SSLContext) -> None:
    """The hub's proxied requests carry the caller's child token to the API server: only a certificate the
    cluster's CA issued gets it, as for the agent's own requests (unless --apiserver-url names an endpoint of
    another kind). An allow-listed service may have a certificate from either."""
    cluster_ca, apiserver = server_for("the child's CA")
    for server, pinned_ok in ((apiserver, True), (public_ca, False)):
        srv, address = await serving(server)
        try:
            assert await dials(StreamDialer(f"https://{address}", cluster_ca), APISERVER) is pinned_ok
            assert await dials(StreamDialer(f"https://{address}", cluster_ca, apiserver_system_cas=True), APISERVER)
            assert await dials(StreamDialer("https://127.0.0.1:1", cluster_ca, (address,)), address)
        finally:
            srv.close()
