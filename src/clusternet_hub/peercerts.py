"""The certificate a hub replica shows another replica on its peer port, and the leaves it trusts from them.

Peers pin the certificate the replicas share (serving.Serving.peer_trust): the managed CA, or the leaf of the mounted
--tls-cert-file, never its intermediates (audit s36, HA F11). Replicas load a renewed file up to a minute or two apart:
kubelet syncs each pod's mounted Secret on its own, then each replica reads it within serving.REFRESH_SECONDS. With
the leaf alone pinned, a request forwarded between a replica that had loaded it and one that had not failed with 503
until both had (left undone in s37's note; cert-manager renews a certificate at two thirds of its life).

So a replica keeps the certificate a renewal replaced for PREVIOUS_TRUSTED: it still trusts that leaf, and shows
that certificate to a peer that asks for it by name. A dialler names, in the TLS server name (SNI; peers check no
host name, so the name only chooses), the leaf it serves itself (peer_name): a replica that has not loaded the renewed
file yet asks for the old one, which one that has loaded it still has; one that has asks for the new one, which one
that has not does not have, so it gets the old one, which the asker still trusts. Every other dialler gets the
current certificate: a replica started with the renewed file verifies every replica that has loaded it (review s38,
M1: showing the old certificate to everyone for a while failed those). What stays: a replica started with the
renewed file, dialled by one that has not loaded it yet, fails until that one has (it never had the old one).

A replaced certificate that would expire within PREVIOUS_TRUSTED is not kept. After a renewal for a leaked key,
restart every replica: a fresh process keeps nothing. Clusternet's hubs do not pin each other's certificates.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from clusternet_api.pki import leaf_pem

PREVIOUS_TRUSTED = 600.0  # seconds: well above the skew of two pods' kubelet syncs (about a minute) + REFRESH_SECONDS


class ServerTLS(Protocol):
    """serving.DynamicTLS: what new handshakes are served, and a hook that may choose another by server name."""

    choose: Callable[[str | None], ssl.SSLContext | None] | None

    @property
    def current(self) -> ssl.SSLContext | None: ...

    def update(self, cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None) -> bool: ...


def peer_name(cert_pem: bytes) -> str:
    """The server name a dialler sends to ask for the certificate whose leaf this is."""
    return hashlib.sha256(leaf_pem(cert_pem)).hexdigest()[:32] + ".peer.invalid"


@dataclass(frozen=True)
class Replaced:
    cert_pem: bytes
    key_pem: bytes
    at: float  # clock time it was replaced
    name: str  # peer_name of its leaf


class PeerCertificates:
    """Which certificate `served` shows a dialler (the replaced one, kept in `kept`, to one that names it; the
    current one, which serving.Serving loads into `served`, to every other) and which replaced leaf peers still
    verify against (`trusted_leaves`)."""

    def __init__(self, served: ServerTLS, kept: ServerTLS, clock: Callable[[], float] = time.monotonic) -> None:
        self.kept, self.clock = kept, clock
        self.replaced: Replaced | None = None
        served.choose = self._choose

    def loaded(self, cert_pem: bytes, client_ca_pem: bytes | None, before: tuple[bytes, bytes] | None) -> None:
        """After each check of the serving certificate (`cert_pem` served now): `before` is the file's certificate
        and key it replaced just now (None when nothing was replaced, or for the managed certificate)."""
        if before is not None and before[0] != cert_pem and _valid_for(before[0], PREVIOUS_TRUSTED):
            self.replaced = Replaced(before[0], before[1], self.clock(), peer_name(before[0]))
        if self._kept() is not None:
            assert self.replaced is not None
            self.kept.update(self.replaced.cert_pem, self.replaced.key_pem, client_ca_pem)

    def trusted_leaves(self, served_pem: bytes) -> bytes:
        """The leaf of the served certificate, and of the one it replaced while that is kept."""
        kept = self._kept()
        return leaf_pem(served_pem) + (leaf_pem(kept.cert_pem) if kept else b"")

    def _kept(self) -> Replaced | None:
        replaced = self.replaced
        return replaced if replaced is not None and self.clock() - replaced.at < PREVIOUS_TRUSTED else None

    def _choose(self, server_name: str | None) -> ssl.SSLContext | None:
        """At each handshake: the replaced certificate for a dialler that names it, else None (the current one)."""
        kept = self._kept()
        return self.kept.current if kept is not None and server_name == kept.name else None


def _valid_for(cert_pem: bytes, seconds: float) -> bool:
    """Whether the certificate is still valid `seconds` from now (one about to expire is not kept)."""
    try:
        cert = x509.load_pem_x509_certificate(leaf_pem(cert_pem))
    except ValueError:
        return False
    return cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
