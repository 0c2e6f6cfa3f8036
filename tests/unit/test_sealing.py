"""Sealing registration tokens to the agent's key: both schemes, keys that cannot seal, and tokens moved between
envelopes (clusternet_api.sealing)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from clusternet_api import known
from clusternet_api.kube import Kube
from clusternet_api.sealing import (
    SCHEME_RSA,
    SCHEME_X25519,
    SealingError,
    generate_private_key,
    public_key,
    public_key_of,
    seal,
    sealed_with,
    unseal,
)
from clusternet_hub import registration

from .fakekube import ApprovingParent, Obj

CID = "5f6a0f2b-43ea-4a2b-9d8c-0a7d1e2c3b4a"
NAME = f"clusternet-{CID}"


def _rsa_pem(bits: int = 2048) -> bytes:
    """An RSA private key as agents made them before X25519 (their Secret keeps it, and they reuse it)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _public_pem(key: x25519.X25519PublicKey | ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(("make", "scheme_"), [(generate_private_key, SCHEME_X25519), (_rsa_pem, SCHEME_RSA)])
def test_sealed_token_opens_only_with_its_key(make: Callable[[], bytes], scheme_: str) -> None:
    mine, theirs = make(), make()
    blob = seal("secret-token", public_key_of(mine))
    assert b"secret-token" not in blob
    assert json.loads(blob)["scheme"] == sealed_with(blob) == scheme_
    assert unseal(blob, mine) == "secret-token"
    with pytest.raises(SealingError, match="different key"):
        unseal(blob, theirs)


def test_a_token_sealed_to_one_kind_of_key_does_not_open_with_the_other() -> None:
    new, old = generate_private_key(), _rsa_pem()
    with pytest.raises(SealingError, match="different key"):
        unseal(seal("t", public_key_of(new)), old)
    with pytest.raises(SealingError, match="different key"):
        unseal(seal("t", public_key_of(old)), new)


def test_a_sealed_token_is_bound_to_its_ephemeral_key() -> None:
    """Another ephemeral key put in the envelope derives another data key: nothing opens."""
    mine = generate_private_key()
    sealed = json.loads(seal("t", public_key_of(mine)))
    sealed["key"] = base64.b64encode(x25519.X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    with pytest.raises(SealingError, match="different key"):
        unseal(json.dumps(sealed).encode(), mine)


@pytest.mark.parametrize(("public_pem", "message"), [
    (public_key_of(_rsa_pem(1024)), "X25519 key or an RSA key of at least 2048 bits"),
    (_public_pem(ec.generate_private_key(ec.SECP256R1()).public_key()), "X25519 key or an RSA key"),
    ("not a key", "not a valid PEM public key"),
])
def test_keys_that_cannot_seal_are_explained(public_pem: str, message: str) -> None:
    with pytest.raises(SealingError, match=message):
        public_key(public_pem)
    with pytest.raises(SealingError, match=message):
        seal("t", public_pem)


def test_a_low_order_x25519_key_is_refused_when_sealing() -> None:
    """It parses, but agrees on no secret: the hub denies the request with this message instead of failing."""
    zero = _public_pem(x25519.X25519PublicKey.from_public_bytes(bytes(32)))
    with pytest.raises(SealingError, match="cannot seal"):
        seal("t", zero)


@pytest.mark.parametrize(("make", "scheme_"), [(generate_private_key, SCHEME_X25519), (_rsa_pem, SCHEME_RSA)])
async def test_the_hub_seals_to_whichever_key_the_agent_sent(make: Callable[[], bytes], scheme_: str) -> None:
    """An agent that registered before X25519 keeps its RSA key (its Secret), so a hub of this version approves
    its request too, says which scheme it sealed with, and the agent's own key opens the token."""
    private = make()
    request: Obj = {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ClusterRegistrationRequest",
                    "metadata": {"name": NAME, "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: public_key_of(
                        private)}}, "spec": {"clusterId": CID, "clusterName": "child1"}}
    parent = ApprovingParent(request)
    await registration.approve(cast(Kube, parent), request, registration.ApprovalSettings())
    crr = parent.find("ClusterRegistrationRequest", None, NAME)
    assert crr is not None and crr["status"]["result"] == "Approved"
    assert crr["metadata"]["annotations"][known.ANNOTATION_TOKEN_SEALING] == scheme_
    assert unseal(base64.b64decode(crr["status"]["token"]), private).startswith("t")
