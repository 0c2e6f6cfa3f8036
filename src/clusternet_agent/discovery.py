"""The parent's CA from a bootstrap token, as `kubeadm join` learns it (token discovery without CA pinning).

A parent publishes ConfigMap kube-public/cluster-info: a kubeconfig naming its API server and CA, readable by
anyone (kubeadm binds it to system:anonymous). The parent's bootstrapsigner controller (kube-controller-manager)
adds `jws-kubeconfig-<token-id>` to it for every bootstrap token with `usage-bootstrap-signing: "true"`: a detached
JWS, HS256 with the token's secret as the key, over that kubeconfig text.

The agent reads the ConfigMap anonymously over TLS it cannot verify yet (it has no CA to verify with) and
believes the CA in it only if the signature verifies: only the parent and holders of the token can make one, and
a holder of the token could register anyway. The token never travels on that connection; from then on every
connection to the parent verifies its certificate with that CA. Nothing here ever falls back to not verifying:
whatever goes wrong, the answer is an error saying what to fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import ssl
from typing import Any
from urllib.parse import urlparse

import aiohttp
import yaml
from cryptography import x509

from clusternet_api import known
from clusternet_api.logs import error_text

log = logging.getLogger(__name__)

BOOTSTRAP_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
CLUSTER_INFO = "kube-public/cluster-info"
CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
KUBECONFIG_KEY = "kubeconfig"
SIGNATURE_PREFIX = "jws-kubeconfig-"
TIMEOUT = 15.0
_FIX_CA = (f"give the parent's CA with --parent-ca-file or as parentCA in the {known.SYSTEM_NAMESPACE}/"
           f"{known.AGENT_BOOTSTRAP_SECRET} Secret")


class DiscoveryError(RuntimeError):
    """The parent's CA could not be learnt; the message says why and what to do. `retry`: trying again later can
    help by itself (the parent is unreachable, or has not signed a new token yet)."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


def split_token(token: str | None) -> tuple[str, str] | None:
    """(token-id, token-secret) of a bootstrap token `abcdef.0123456789abcdef`; None for anything else (JWTs)."""
    match = BOOTSTRAP_TOKEN.match(token or "")
    return (match.group(1), match.group(2)) if match else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_detached(payload: bytes, token_id: str, token_secret: str) -> str:
    """The detached JWS the bootstrapsigner writes: `<header>..<signature>`, header {"alg":"HS256","kid":<id>}."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64url(payload)}".encode("ascii")
    return f"{header}..{_b64url(hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest())}"


def verify_detached(detached: str, payload: bytes, token_id: str, token_secret: str) -> bool:
    """True when `detached` is an HS256 JWS over `payload`, keyed with the token's secret and naming its ID."""
    parts = detached.strip().split(".")
    if len(parts) != 3 or parts[1]:
        return False
    header_b64, _, signature_b64 = parts
    try:
        header = json.loads(_b64url_decode(header_b64))
        signature = _b64url_decode(signature_b64)
    except (ValueError, binascii.Error):
        return False
    if not isinstance(header, dict) or header.get("alg") != "HS256" or header.get("kid") != token_id:
        return False
    signing_input = f"{header_b64}.{_b64url(payload)}".encode("ascii")
    expected = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return hmac.compare_digest(expected, signature)


def ca_from_cluster_info(data: dict[str, Any], token: str, parent_url: str) -> bytes:
    """The PEM CA of a cluster-info ConfigMap's data, once the token's signature over its kubeconfig verifies."""
    parts = split_token(token)
    if parts is None:
        raise DiscoveryError(f"the registration token is not a bootstrap token, so the parent's CA cannot be "
                             f"discovered; {_FIX_CA}")
    token_id, token_secret = parts
    kubeconfig = data.get(KUBECONFIG_KEY)
    if not isinstance(kubeconfig, str) or not kubeconfig.strip():
        raise DiscoveryError(f"ConfigMap {CLUSTER_INFO} on the parent {parent_url} has no kubeconfig; recreate it "
                             f"(kubeadm init phase bootstrap-token) or {_FIX_CA}")
    signature = data.get(SIGNATURE_PREFIX + token_id)
    if not isinstance(signature, str) or not signature.strip():
        raise DiscoveryError(
            f"ConfigMap {CLUSTER_INFO} on the parent {parent_url} carries no signature for bootstrap token "
            f"{token_id} ({SIGNATURE_PREFIX}{token_id}): the token needs usage-bootstrap-signing: \"true\" and the "
            "parent's kube-controller-manager the bootstrapsigner controller (a new token is signed within seconds); "
            f"or {_FIX_CA}", retry=True)
    if not verify_detached(signature, kubeconfig.encode("utf-8"), token_id, token_secret):
        raise DiscoveryError(
            f"the signature {SIGNATURE_PREFIX}{token_id} of ConfigMap {CLUSTER_INFO} on the parent {parent_url} does "
            "not verify with this bootstrap token: the token's secret is wrong, or something between here and the "
            f"parent answered instead of it; check the token or {_FIX_CA}")
    try:
        config = yaml.safe_load(kubeconfig)
        cluster = config["clusters"][0]["cluster"]
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        x509.load_pem_x509_certificates(ca_pem)
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError, binascii.Error) as e:
        raise DiscoveryError(f"the kubeconfig of ConfigMap {CLUSTER_INFO} on the parent {parent_url} is signed but "
                             f"holds no usable certificate-authority-data ({type(e).__name__}); {_FIX_CA}") from e
    server = str(cluster.get("server") or "")
    if server and urlparse(server).netloc != urlparse(parent_url).netloc:
        # The CA is what counts: connections to parent_url verify its certificate (and host name) with it.
        log.info("%s names the parent %s; this agent uses %s and verifies it with the CA found there",
                 CLUSTER_INFO, server, parent_url)
    return ca_pem if ca_pem.endswith(b"\n") else ca_pem + b"\n"


def _unverified_tls() -> ssl.SSLContext:
    """TLS without verification, for the one anonymous read of cluster-info whose content is verified instead. Not
    from create_default_context, which loads the system's CA bundle (26-47 ms on this registration's path) only
    for nothing to be verified with it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def fetch_cluster_info(parent_url: str) -> dict[str, Any]:
    """The data of the parent's cluster-info ConfigMap, read anonymously (no credentials are sent)."""
    url = parent_url.rstrip("/") + CLUSTER_INFO_PATH
    try:
        async with aiohttp.ClientSession(trust_env=False) as session, session.get(
                url, ssl=_unverified_tls(), headers={"Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as resp:
            status, body = resp.status, await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise DiscoveryError(f"the parent {parent_url} is unreachable while reading {CLUSTER_INFO} for its CA: "
                             f"{error_text(e)}", retry=True) from e
    if status == 404:
        raise DiscoveryError(f"ConfigMap {CLUSTER_INFO} does not exist on the parent {parent_url}, so its CA "
                             f"cannot be discovered with the bootstrap token; create it as kubeadm does (`kubeadm init "
                             f"phase bootstrap-token`) or {_FIX_CA}")
    if status in (401, 403):
        raise DiscoveryError(f"the parent {parent_url} does not let anonymous users read ConfigMap {CLUSTER_INFO} "
                             f"(HTTP {status}); allow it as kubeadm does (a Role with get on it, bound to "
                             f"system:anonymous, and --anonymous-auth=true) or {_FIX_CA}")
    if status != 200:
        raise DiscoveryError(f"the parent {parent_url} answered HTTP {status} to reading {CLUSTER_INFO}",
                             retry=status >= 500 or status == 429)
    try:
        data = json.loads(body).get("data") or {}
    except (ValueError, AttributeError) as e:
        raise DiscoveryError(f"the parent {parent_url} answered {CLUSTER_INFO} with something that is not a "
                             f"ConfigMap; check --cluster-reg-parent-url or {_FIX_CA}") from e
    if not isinstance(data, dict):
        raise DiscoveryError(f"ConfigMap {CLUSTER_INFO} on the parent {parent_url} has no data; {_FIX_CA}")
    return data


async def discover_parent_ca(parent_url: str, token: str) -> bytes:
    """The parent's CA, read from its cluster-info and trusted because the bootstrap token's signature verifies."""
    return ca_from_cluster_info(await fetch_cluster_info(parent_url), token, parent_url)
