"""The certificate a hub replica shows the other replicas on its peer port, and the leaves it trusts from them.

Peers pin the certificate the replicas share (serving.Serving.peer_trust): the managed CA, or the leaf of the mounted
--tls-cert-file, never its intermediates (audit s36, HA F11). Replicas load a renewed file up to a minute or two apart:
kubelet syncs each pod's mounted Secret on its own, then each replica reads it within serving.REFRESH_SECONDS. With
the leaf alone pinned, a request forwarded between a replica that had loaded it and one that had not failed with 503
until both had (left undone in s37's note; cert-manager renews a certificate at two thirds of its life).

So after a renewal a replica keeps showing peers the certificate it replaced for PREVIOUS_SHOWN, and trusts it for
PREVIOUS_TRUSTED, twice as long. With A loading the renewed file at tA and B at tB, tA <= tB < tA + PREVIOUS_SHOWN:
- until tB, B shows and trusts only the old one, and A shows the old one (until tA + SHOWN > tB) and trusts both;
- A shows the new one from tA + SHOWN on, after tB, when B trusts both;
- B shows the old one until tB + SHOWN < tA + 2 SHOWN = tA + TRUSTED, while A still trusts it.
Both directions verify throughout. Only for a --tls-cert-file: the managed certificate's CA is trusted, and a
certificate about to expire is not shown again. The cost is the old certificate's 5 more minutes on the peer port,
which only replicas holding the peer token dial. Clusternet's hubs do not pin each other's certificates.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from clusternet_api.pki import leaf_pem

PREVIOUS_SHOWN = 300.0  # seconds: above the skew of two pods' kubelet syncs (about a minute) plus REFRESH_SECONDS
PREVIOUS_TRUSTED = 2 * PREVIOUS_SHOWN  # longer than shown, so the replica that loads last is trusted throughout


class ServerTLS(Protocol):
    """serving.DynamicTLS: what new handshakes are served."""

    def update(self, cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None) -> bool: ...


@dataclass(frozen=True)
class Replaced:
    cert_pem: bytes
    key_pem: bytes
    at: float  # clock time it was replaced


class PeerCertificates:
    """What the peer port serves (`tls`) and which replaced leaf peers still verify against (`trusted_leaves`)."""

    def __init__(self, tls: ServerTLS, clock: Callable[[], float] = time.monotonic) -> None:
        self.tls, self.clock = tls, clock
        self.replaced: Replaced | None = None

    def loaded(self, cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None,
               before: tuple[bytes, bytes] | None) -> None:
        """After each check of the serving certificate: `before` is the file's certificate and key it replaced
        just now (None when nothing was replaced, or for the managed certificate)."""
        now = self.clock()
        if before is not None and before[0] != cert_pem and _valid_for(before[0], PREVIOUS_SHOWN):
            self.replaced = Replaced(before[0], before[1], now)
        shown = self.replaced if self.replaced and now - self.replaced.at < PREVIOUS_SHOWN else None
        self.tls.update(shown.cert_pem if shown else cert_pem, shown.key_pem if shown else key_pem, client_ca_pem)

    def trusted_leaves(self, served_pem: bytes) -> bytes:
        """The leaf of the served certificate, and of the one it replaced while that is still trusted."""
        leaves = leaf_pem(served_pem)
        if self.replaced is not None and self.clock() - self.replaced.at < PREVIOUS_TRUSTED:
            leaves += leaf_pem(self.replaced.cert_pem)
        return leaves


def _valid_for(cert_pem: bytes, seconds: float) -> bool:
    """Whether the certificate is still valid `seconds` from now (an expired one replaced is never shown)."""
    try:
        cert = x509.load_pem_x509_certificate(leaf_pem(cert_pem))
    except ValueError:
        return False
    return cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
