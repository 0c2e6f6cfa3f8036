"""Sealing registration tokens to the agent that asked for them.

Clusternet writes the child's parent-side token in plain text into the ClusterRegistrationRequest status,
where any holder of the shared bootstrap token (which may `get` every CRR) can read it and impersonate any
cluster. Here the agent sends an RSA public key with its request; the hub seals the token to that key
(RSA-OAEP wrapping a Fernet key), so only the agent that holds the private key can use it.
"""

from __future__ import annotations

import base64
import json

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCHEME = "rsa-oaep-fernet"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class SealingError(ValueError):
    """A sealed token or key could not be used; the message says why."""


def generate_private_key() -> bytes:
    """A new PEM-encoded RSA private key for an agent."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_of(private_pem: bytes) -> str:
    """The PEM public key matching a private key, as text (fits an annotation)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def seal(token: str, public_pem: str) -> bytes:
    """Encrypt `token` so only the holder of the private key can read it."""
    try:
        public = serialization.load_pem_public_key(public_pem.encode())
    except ValueError as e:
        raise SealingError(f"the agent public key is not a valid PEM public key: {e}") from e
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
        raise SealingError("the agent public key must be an RSA key of at least 2048 bits")
    data_key = Fernet.generate_key()
    wrapped = public.encrypt(data_key, _OAEP)
    sealed = {"scheme": SCHEME, "key": base64.b64encode(wrapped).decode(),
              "data": Fernet(data_key).encrypt(token.encode()).decode()}
    return json.dumps(sealed, separators=(",", ":")).encode()


def unseal(blob: bytes, private_pem: bytes) -> str:
    """Decrypt a sealed token with the agent's private key."""
    try:
        sealed = json.loads(blob)
        if sealed.get("scheme") != SCHEME:
            raise SealingError(f"unknown sealing scheme {sealed.get('scheme')!r}")
        key = serialization.load_pem_private_key(private_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        data_key = key.decrypt(base64.b64decode(sealed["key"]), _OAEP)
        return Fernet(data_key).decrypt(sealed["data"].encode()).decode()
    except (ValueError, KeyError, InvalidToken, TypeError) as e:
        raise SealingError(
            "the registration token was sealed to a different key; another agent registered this "
            "cluster ID, or this agent's key was replaced") from e
