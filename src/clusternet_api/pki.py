"""Certificates made here: the sandbox's and tests' cluster PKI, and the hub's self-signed serving certificate.

EC P-256 keys (fast to make, accepted by every Kubernetes client), one year of validity unless asked otherwise,
five minutes of back-dating so a certificate made now is valid on a peer whose clock is a little behind.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusternet_api.tlsfiles import load_cert_chain_pem

__all__ = ["KeyPair", "issue_cert", "key_pem", "load_ca", "make_ca", "new_key", "serving_context"]


@dataclass
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_ca(cert_pem: bytes, key_pem_bytes: bytes) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA made by make_ca, back from PEM (to issue more certificates); ValueError when it is not one."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem_bytes, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError("the CA key does not belong to the CA certificate")
    return key, cert


def make_ca(common_name: str, days: int = 365) -> tuple[KeyPair, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key)), key, cert


def issue_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 365,
) -> KeyPair:
    """Issue a leaf certificate signed by the given CA (serving and/or client usage)."""
    key = new_key()
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    now = datetime.datetime.now(datetime.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def serving_context(cert_file: str | None, key_file: str | None, name: str) -> ssl.SSLContext:
    """Server TLS from the given files, or from a certificate for `name` (localhost, 127.0.0.1) signed by a
    CA made here, when none is given: development installs, and endpoints whose clients do not verify
    (kubelet probes)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
        return ctx
    _, ca_key, ca_cert = make_ca(f"{name}-self-signed-ca")
    pair = issue_cert(ca_key, ca_cert, name, dns_names=["localhost"], ips=["127.0.0.1"], server=True)
    load_cert_chain_pem(ctx, pair.cert_pem, pair.key_pem)
    return ctx


@functools.lru_cache(maxsize=4)
def leaf_pem(chain_pem: bytes) -> bytes:
    """The first certificate of a PEM chain, as PEM; b"" when there is none. Cached: a hub asks it of the same
    served file at every peer connection."""
    if b"-----BEGIN CERTIFICATE-----" not in chain_pem:
        return b""
    return x509.load_pem_x509_certificates(chain_pem)[0].public_bytes(serialization.Encoding.PEM)
