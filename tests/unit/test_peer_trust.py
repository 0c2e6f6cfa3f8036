"""What a hub replica trusts as another replica's certificate (serving.Serving.peer_trust): the managed CA, and the
leaf it serves itself; never an intermediate of a full-chain --tls-cert-file (audit s36, HA F11); and across a
renewal of that file, the leaf it replaced, for a while (peercerts.py)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clusternet_api.pki import KeyPair, issue_cert, leaf_pem, make_ca, new_key
from clusternet_api.tlsfiles import load_cert_chain_pem
from clusternet_api.tunnel import StreamOpenError
from clusternet_hub.peercerts import PeerCertificates, peer_name
from clusternet_hub.peerstreams import client_context, dial
from clusternet_hub.serving import Serving, ServingSettings
from clusternet_hub.sockets import Tunnel
from tests.unit.test_hub_peers import CLUSTER, TOKEN, replica_a
from tests.unit.test_tunnel_mux import echo, session_pair, tcp_server


def intermediate() -> tuple[bytes, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """An intermediate CA issued by a root of its own: (its PEM, its key, its certificate)."""
    _, root_key, root = make_ca("root")
    key = new_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intermediate")]))
            .issuer_name(root.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key, cert


def serving_chain(pair: KeyPair, chain: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_cert_chain_pem(ctx, pair.cert_pem + chain, pair.key_pem)
    return ctx


async def test_a_certificate_from_the_served_chains_intermediate_is_not_a_peer() -> None:
    chain, key, cert = intermediate()
    served = issue_cert(key, cert, "clusternet-hub", dns_names=["hub.example"], server=True)
    rogue = issue_cert(key, cert, "anyone", dns_names=["elsewhere.example"], server=True)
    serving = Serving(None, ServingSettings(tls_cert_file="tls.crt", tls_key_file="tls.key"))  # type: ignore[arg-type]
    serving.tls.update(served.cert_pem + chain, served.key_pem, None)  # a full-chain --tls-cert-file
    trust = serving.peer_trust()
    assert trust == served.cert_pem
    async with tcp_server(echo) as target, session_pair() as (hub_session, _):
        tunnels = {CLUSTER: Tunnel(CLUSTER, hub_session, "ns", "mc")}
        async with replica_a(tunnels, tls=(serving_chain(served, chain), trust)) as (peer, _):
            stream = await dial(peer, CLUSTER, target, TOKEN, client_context(trust))  # the other replica
            stream.close()
        async with replica_a(tunnels, tls=(serving_chain(rogue, chain), trust)) as (peer, _):
            with pytest.raises(StreamOpenError, match="unreachable"):  # refused before the token is sent
                await dial(peer, CLUSTER, target, TOKEN, client_context(trust))


def test_the_leaf_of_a_chain() -> None:
    ca, key, cert = make_ca("ca")
    pair = issue_cert(key, cert, "leaf", server=True)
    assert leaf_pem(pair.cert_pem + ca.cert_pem) == pair.cert_pem
    assert leaf_pem(b"") == b""


async def handshake(server: ssl.SSLContext, trust: bytes, server_name: str | None = None) -> bool:
    """Whether a peer trusting `trust`, asking for `server_name`, completes a TLS handshake with a server using
    `server`."""
    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=server)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1],
                                                  ssl=client_context(trust), server_hostname=server_name)
        writer.close()
        return True
    except ssl.SSLCertVerificationError:
        return False
    finally:
        listener.close()
        await listener.wait_closed()


async def dials(dialler: Serving, dialled: Serving) -> bool:
    """Whether `dialler` verifies `dialled`'s peer port, as clusternet_hub.peers dials it."""
    return await handshake(dialled.tls.context, dialler.peer_trust(), dialler.peer_server_name())


def replica(directory: Path, pair: KeyPair, front_proxy: Path, now: list[float]) -> Serving:
    """A replica serving the --tls-cert-file in `directory` (written with `pair`), on the clock `now`."""
    directory.mkdir()
    write(directory, pair)
    serving = Serving(None, ServingSettings(  # type: ignore[arg-type]  # files only: no parent asked
        tls_cert_file=str(directory / "tls.crt"), tls_key_file=str(directory / "tls.key"),
        client_ca_file=str(front_proxy)))
    serving.peer.clock = lambda: now[0]
    return serving


def write(directory: Path, pair: KeyPair) -> None:
    (directory / "tls.crt").write_bytes(pair.cert_pem)
    (directory / "tls.key").write_bytes(pair.key_pem)


async def test_replicas_loading_a_renewed_certificate_minutes_apart_still_verify_each_other(tmp_path: Path) -> None:
    """kubelet updates each pod's mounted Secret on its own: A loads the renewed file at 0 s, B at 100 s, and C starts
    with it at 50 s (a rollout, or a restart on the Secret's change). Every forwarded request between A and B verifies,
    both ways, throughout, and C verifies A (review s38, M1: A showed everyone the old certificate for a while, and C
    refused it); after the grace only the new leaf is trusted. Before, B (old) refused A (new) until B had loaded it
    too: forwarding failed with 503 meanwhile."""
    _, key, cert = make_ca("issuer")
    old, new = (issue_cert(key, cert, "hub", dns_names=["hub.example"], server=True) for _ in range(2))
    fp, _, _ = make_ca("front-proxy")
    (tmp_path / "fp.crt").write_bytes(fp.cert_pem)
    now = [0.0]
    a, b = (replica(tmp_path / name, old, tmp_path / "fp.crt", now) for name in ("a", "b"))
    await a.refresh()
    await b.refresh()
    write(tmp_path / "a", new)
    await a.refresh()
    assert await handshake(a.tls.context, new.cert_pem)  # clients of the hub get the renewed one at once
    assert await dials(a, b) and await dials(b, a)
    now[0] = 50.0
    c = replica(tmp_path / "c", new, tmp_path / "fp.crt", now)
    await c.refresh()
    assert await dials(c, a) and await dials(a, c)
    assert not await dials(b, c)  # what stays: C never had the old certificate B still asks for
    for at, renewed in ((100.0, b), (350.0, None), (590.0, None), (700.0, None)):
        now[0] = at
        if renewed is not None:
            write(tmp_path / "b", new)
        for replica_ in (a, b, c):
            await replica_.refresh()
        assert all([await dials(x, y) for x in (a, b, c) for y in (a, b, c) if x is not y]), at
    assert a.peer_trust() == b.peer_trust() == c.peer_trust() == new.cert_pem  # the old leaf no longer trusted
    assert not await handshake(a.tls.context, old.cert_pem, peer_name(old.cert_pem))  # nor shown


def test_a_replaced_certificate_about_to_expire_is_not_kept() -> None:
    class Shown:
        cert_pem = b""
        choose = None
        current = None

        def update(self, cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None) -> bool:
            self.cert_pem = cert_pem
            return True

    _, key, cert = make_ca("issuer")
    expiring, renewed = issue_cert(key, cert, "hub", server=True, days=0), issue_cert(key, cert, "hub", server=True)
    served, kept = Shown(), Shown()
    certs = PeerCertificates(served, kept)
    certs.loaded(renewed.cert_pem, None, (expiring.cert_pem, expiring.key_pem))
    assert certs._choose(peer_name(expiring.cert_pem)) is None and kept.cert_pem == b""  # never shown
    assert certs.trusted_leaves(renewed.cert_pem) == renewed.cert_pem
