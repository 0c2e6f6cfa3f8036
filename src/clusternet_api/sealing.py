"""Sealing registration tokens to the agent that asked for them.

Clusternet writes the child's parent-side token in plain text into the ClusterRegistrationRequest status,
where any holder of the shared bootstrap token (which may `get` every CRR) can read it and impersonate any
cluster. Here the agent sends an RSA public key with its request; the hub seals the token to that key
(RSA-OAEP wrapping a Fernet key), so only the agent that holds the private key can use it.
"""

from __future__ import annotations

import base64
import functools
import json

from cryptography.exceptions import UnsupportedAlgorithm
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


@functools.lru_cache(maxsize=64)
def _private_key(private_pem: bytes) -> rsa.RSAPrivateKey:
    """The agent's own key, parsed once per process.

    The expensive RSA consistency check (~60 ms a load) is skipped: it guards against keys crafted by
    someone else, and this key is one the agent generated itself and keeps in a Secret only a child
    cluster admin can change (who could replace the agent as well).
    """
    try:
        key = serialization.load_pem_private_key(private_pem, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError) as e:
        raise SealingError(f"the agent's private key cannot be read: {e}") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealingError("the agent's private key is not an RSA key")
    return key


def public_key_of(private_pem: bytes) -> str:
    """The PEM public key matching a private key, as text (fits an annotation)."""
    return _private_key(private_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_key(public_pem: str) -> rsa.RSAPublicKey:
    """An agent's public key, checked as sealing needs it; SealingError says what is wrong with it. Cheap
    (tens of microseconds), so the hub checks the key of every request it validates, not only when sealing."""
    try:
        public = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:  # the last: an EC key on a curve not supported
        raise SealingError(f"the agent public key is not a valid PEM public key: {e}") from e
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
        raise SealingError("the agent public key must be an RSA key of at least 2048 bits")
    return public


def seal(token: str, public_pem: str) -> bytes:
    """Encrypt `token` so only the holder of the private key can read it."""
    public = public_key(public_pem)
    data_key = Fernet.generate_key()
    wrapped = public.encrypt(data_key, _OAEP)
    sealed = {"scheme": SCHEME, "key": base64.b64encode(wrapped).decode(),
              "data": Fernet(data_key).encrypt(token.encode()).decode()}
    return json.dumps(sealed, separators=(",", ":")).encode()


def is_sealed(blob: bytes) -> bool:
    """Whether a CRR token is sealed (a JSON envelope) rather than a bare token (a JWT never starts so)."""
    return blob.lstrip().startswith(b"{")


def unseal(blob: bytes, private_pem: bytes) -> str:
    """Decrypt a sealed token with the agent's private key."""
    try:
        sealed = json.loads(blob)
        if sealed.get("scheme") != SCHEME:
            raise SealingError(f"unknown sealing scheme {sealed.get('scheme')!r}")
        data_key = _private_key(private_pem).decrypt(base64.b64decode(sealed["key"]), _OAEP)
        return Fernet(data_key).decrypt(sealed["data"].encode()).decode()
    except SealingError:
        raise
    except (ValueError, KeyError, InvalidToken, TypeError) as e:
        raise SealingError(
            "the registration token was sealed to a different key; another agent registered this "
            "cluster ID, or this agent's key was replaced") from e
