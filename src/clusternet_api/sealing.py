"""Sealing registration tokens to the agent that asked for them.

Clusternet writes the child's parent-side token in plain text into the ClusterRegistrationRequest status,
where any holder of the shared bootstrap token (which may `get` every CRR) can read it and impersonate any
cluster. Here the agent sends a public key with its request, and the hub seals the token to that key, so only
the agent that holds the private key can use it. Two schemes, chosen by the key's type:

- `x25519-hkdf-fernet`, for keys agents make now: an ephemeral X25519 key agreement, HKDF-SHA256 over the
  shared secret and both public keys, Fernet with the derived key. Making an X25519 key takes 0.1 ms, against
  45 ms (P50) to 121 ms (max) of 60 RSA-2048 generations on the bench machine, on a first install's path from
  the agent's start to its request, and two to three times that on a machine as busy as bench/registration.py's.
- `rsa-oaep-fernet`, for RSA keys (at least 2048 bits) of agents that registered before, whose private key is
  kept in the child and reused: RSA-OAEP wrapping a Fernet key.
"""

from __future__ import annotations

import base64
import functools
import json

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEME_X25519 = "x25519-hkdf-fernet"
SCHEME_RSA = "rsa-oaep-fernet"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_HKDF_INFO = b"clusternet registration token"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw

PrivateKey = x25519.X25519PrivateKey | rsa.RSAPrivateKey
PublicKey = x25519.X25519PublicKey | rsa.RSAPublicKey


class SealingError(ValueError):
    """A sealed token or key could not be used; the message says why."""


def generate_private_key() -> bytes:
    """A new PEM-encoded (PKCS#8) X25519 private key for an agent."""
    return x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@functools.lru_cache(maxsize=64)
def _private_key(private_pem: bytes) -> PrivateKey:
    """The agent's own key, parsed once per process.

    For an RSA key the expensive consistency check (~60 ms a load) is skipped: it guards against keys crafted
    by someone else, and this key is one the agent generated itself and keeps in a Secret only a child cluster
    admin can change (who could replace the agent as well).
    """
    try:
        key = serialization.load_pem_private_key(private_pem, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise SealingError(f"the agent's private key cannot be read: {e}") from e
    if not isinstance(key, (x25519.X25519PrivateKey, rsa.RSAPrivateKey)):
        raise SealingError("the agent's private key is neither an X25519 nor an RSA key")
    return key


def public_key_of(private_pem: bytes) -> str:
    """The PEM public key matching a private key, as text (fits an annotation)."""
    return _private_key(private_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_key(public_pem: str) -> PublicKey:
    """An agent's public key, checked as sealing needs it; SealingError says what is wrong with it. Cheap
    (tens of microseconds), so the hub checks the key of every request it validates, not only when sealing."""
    try:
        public = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:  # the last: an EC key on a curve not supported
        raise SealingError(f"the agent public key is not a valid PEM public key: {e}") from e
    if isinstance(public, x25519.X25519PublicKey):
        return public
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
        raise SealingError("the agent public key must be an X25519 key or an RSA key of at least 2048 bits")
    return public


def sealed_with(blob: bytes) -> str:
    """The scheme a token `seal` returned was sealed with (the request's token-sealing annotation), read from the
    envelope rather than from the key parsed a second time."""
    return str(json.loads(blob)["scheme"])


def _derived_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    """The Fernet key for one sealing: bound to both public keys, so a sealed token moved to another
    request's ephemeral or recipient key opens to nothing."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(shared))


def seal(token: str, public_pem: str) -> bytes:
    """Encrypt `token` so only the holder of the private key can read it."""
    public = public_key(public_pem)
    if isinstance(public, x25519.X25519PublicKey):
        ephemeral = x25519.X25519PrivateKey.generate()
        ephemeral_raw = ephemeral.public_key().public_bytes(*_RAW)
        try:
            shared = ephemeral.exchange(public)
        except ValueError as e:  # a low-order point: no secret to share
            raise SealingError(f"the agent public key cannot seal a token: {e}") from e
        data_key = _derived_key(shared, ephemeral_raw, public.public_bytes(*_RAW))
        sealed = {"scheme": SCHEME_X25519, "key": base64.b64encode(ephemeral_raw).decode(),
                  "data": Fernet(data_key).encrypt(token.encode()).decode()}
    else:
        data_key = Fernet.generate_key()
        sealed = {"scheme": SCHEME_RSA, "key": base64.b64encode(public.encrypt(data_key, _OAEP)).decode(),
                  "data": Fernet(data_key).encrypt(token.encode()).decode()}
    return json.dumps(sealed, separators=(",", ":")).encode()


def is_sealed(blob: bytes) -> bool:
    """Whether a CRR token is sealed (a JSON envelope) rather than a bare token (a JWT never starts so)."""
    return blob.lstrip().startswith(b"{")


def unseal(blob: bytes, private_pem: bytes) -> str:
    """Decrypt a sealed token with the agent's private key."""
    try:
        sealed = json.loads(blob)
        kind = sealed.get("scheme")
        if kind not in (SCHEME_X25519, SCHEME_RSA):
            raise SealingError(f"unknown sealing scheme {kind!r}")
        return Fernet(_data_key(kind, base64.b64decode(sealed["key"]), _private_key(private_pem))).decrypt(
            sealed["data"].encode()).decode()
    except SealingError:
        raise
    except (ValueError, KeyError, InvalidToken, TypeError) as e:
        raise SealingError(
            "the registration token was sealed to a different key; another agent registered this "
            "cluster ID, or this agent's key was replaced") from e


def _data_key(kind: str, key: bytes, private: PrivateKey) -> bytes:
    """The Fernet key of a sealed token; TypeError when the token was sealed for the other kind of key."""
    if kind == SCHEME_X25519:
        if not isinstance(private, x25519.X25519PrivateKey):
            raise TypeError("sealed to an X25519 key")
        recipient = private.public_key().public_bytes(*_RAW)
        return _derived_key(private.exchange(x25519.X25519PublicKey.from_public_bytes(key)), key, recipient)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise TypeError("sealed to an RSA key")
    return private.decrypt(key, _OAEP)
