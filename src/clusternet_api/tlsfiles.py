"""Loading PEM bytes into an SSLContext: Python's ssl module takes files only, so they pass through a private
temporary directory that is gone once the context holds them."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path


def load_cert_chain_pem(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="clusternet-tls-") as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        ctx.load_cert_chain(cert, key)
