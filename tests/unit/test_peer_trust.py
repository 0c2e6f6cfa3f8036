"""What a hub replica trusts as another replica's certificate (serving.Serving.peer_trust): the managed CA, and the
leaf it serves itself; never an intermediate of a full-chain --tls-cert-file (audit s36, HA F11)."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clusternet_api.pki import KeyPair, issue_cert, leaf_pem, make_ca, new_key
from clusternet_api.tlsfiles import load_cert_chain_pem
from clusternet_api.tunnel import StreamOpenError
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
