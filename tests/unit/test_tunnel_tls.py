"""What the agent's tunnel trusts (tunnel.tunnel_tls): the tunnel carries the agent's parent token, so by default
only the pinned CA may vouch for the other end, as for the agent's other requests to the parent.

The system's CAs are stood in for by a CA of the test's own: OpenSSL reads SSL_CERT_FILE whenever a context
loads the default CAs."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from clusternet_agent.tunnel import tunnel_tls
from clusternet_api.pki import issue_cert, make_ca
from clusternet_api.tlsfiles import load_cert_chain_pem


def server_for(issuer: str) -> tuple[bytes, ssl.SSLContext]:
    """(the CA's PEM, a server context whose certificate for 127.0.0.1 that CA issued)."""
    pair, key, cert = make_ca(issuer)
    leaf = issue_cert(key, cert, "hub", ips=["127.0.0.1"], server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_cert_chain_pem(ctx, leaf.cert_pem, leaf.key_pem)
    return pair.cert_pem, ctx


async def accepted(client: ssl.SSLContext, server: ssl.SSLContext) -> bool:
    """Whether a TLS handshake from `client` to a server showing `server`'s certificate succeeds."""
    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    port = srv.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
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
    assert await accepted(tunnel_tls(pinned, system_cas=False), hub)
    assert not await accepted(tunnel_tls(pinned, system_cas=False), public_ca)  # shown no token


async def test_a_tunnel_url_without_its_own_ca_file_trusts_the_system_cas_too(public_ca: ssl.SSLContext) -> None:
    pinned, hub = server_for("the parent's CA")
    assert await accepted(tunnel_tls(pinned, system_cas=True), public_ca)  # an ingress with a public certificate
    assert await accepted(tunnel_tls(pinned, system_cas=True), hub)
    assert await accepted(tunnel_tls(None, system_cas=False), public_ca)  # no CA known: the system's
