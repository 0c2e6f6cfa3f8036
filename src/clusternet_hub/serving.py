"""The hub's serving certificate and its trust of the aggregation layer, with no hand work.

- **Serving certificate.** Unless --tls-cert-file/--tls-private-key-file are given, the hub keeps a CA and a
  certificate for its Service (`clusternet-hub.clusternet-system.svc`, the name the parent's aggregator verifies,
  plus `.svc.cluster.local` and the short forms) in Secret clusternet-system/clusternet-hub-serving, so restarts
  and replicas serve the same one. It creates the Secret when absent; a replica that loses that race (409) reads
  the winner's. The certificate (one year) is re-issued from the same CA 30 days before it expires, so the
  caBundle stays; the CA (ten years) is replaced 60 days before its own end, or when the Secret is unreadable,
  and the caBundle follows. A renewal is a patch carrying the resourceVersion that was read, so of two replicas
  renewing at once one wins and the other takes its result. Every replica re-reads the Secret every 30 s.
- **caBundle.** The hub keeps `spec.caBundle` of APIServices v1alpha1.proxies.clusternet.io and v1alpha1.shadow (the
  shadow API, served by the same server) equal to that CA:
  checked at start and every 30 s, changed by a merge patch (server-side apply of an APIService makes
  kube-apiserver 1.20 panic: "FieldManager must be installed to run apply"), which also turns off an
  insecureSkipTLSVerify it finds. An absent APIService is reported, never created: deploy/hub owns it.
- **Front-proxy CA.** Unless --requestheader-client-ca-file is given, the CA whose client certificates mark
  requests from the aggregation layer, and the common names allowed, come from ConfigMap
  kube-system/extension-apiserver-authentication (kube-apiserver writes it; aggregated API servers read it), re-read
  every 30 s since it can rotate. A given file is re-read as often.

Changes apply to new connections without a restart (DynamicTLS). With certificate files given, the hub re-reads
them too (cert-manager renews them in place) and leaves the caBundle alone: it does not know their CA.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import base64
import datetime
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from clusternet_api import known
from clusternet_api.kube import ApiException, Kube, Obj
from clusternet_api.pki import issue_cert, load_ca, make_ca
from clusternet_api.tlsfiles import load_cert_chain_pem
from clusternet_hub.peercerts import PeerCertificates, peer_name

log = logging.getLogger(__name__)

# asyncio (3.11+) gives every TLS connection a read buffer of SSLProtocol.max_size, 256 KiB, zero-filled and so
# resident. The hub holds one TLS connection per agent tunnel: at 100 clusters those buffers were 31.5 MB, 41 %
# of all the memory Python allocated in the hub (bench/scale.py --trace-hub-memory), ~250 MB at 1,000. A TLS
# record is at most 16 KiB: 32 KiB still takes in two records per read (large proxied LISTs stay fast).
TLS_READ_BUFFER = 32 * 1024
if getattr(asyncio.sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER

SERVICE = "clusternet-hub"
SERVING_SECRET = "clusternet-hub-serving"
APISERVICE = f"{known.PROXIES_VERSION}.{known.PROXIES_GROUP}"
SHADOW_APISERVICE = f"{known.SHADOW_VERSION}.{known.SHADOW_GROUP}"
APISERVICES = (APISERVICE, SHADOW_APISERVICE)  # both served by this one server, so both trust its CA
APIREGISTRATION = "apiregistration.k8s.io/v1"
AUTH_NAMESPACE = "kube-system"
AUTH_CONFIGMAP = "extension-apiserver-authentication"
CLIENT_CA_KEY = "requestheader-client-ca-file"
ALLOWED_NAMES_KEY = "requestheader-allowed-names"
CA_DAYS = 3650
CERT_DAYS = 365
RENEW_CERT_BEFORE = datetime.timedelta(days=30)
RENEW_CA_BEFORE = datetime.timedelta(days=60)
REFRESH_SECONDS = 30.0
DEFAULT_ALLOWED_NAMES = ("front-proxy-client",)


def service_names(service: str = SERVICE, namespace: str = known.SYSTEM_NAMESPACE) -> list[str]:
    """The DNS names of the hub's Service; the aggregator verifies `<service>.<namespace>.svc`."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


# --- the serving certificate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingMaterial:
    """The hub's CA and serving certificate, PEM."""

    ca_pem: bytes
    ca_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_secret(cls, secret: Obj) -> ServingMaterial:
        """KeyError when a key is missing, ValueError when one is not base64."""
        data = secret.get("data") or {}
        return cls(*(base64.b64decode(data[k], validate=True) for k in ("ca.crt", "ca.key", "tls.crt", "tls.key")))

    def secret(self, namespace: str) -> Obj:
        values = {"ca.crt": self.ca_pem, "ca.key": self.ca_key_pem, "tls.crt": self.cert_pem, "tls.key": self.key_pem}
        return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": SERVING_SECRET, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "clusternet-hub"}},
                "data": {k: base64.b64encode(v).decode() for k, v in values.items()}}


def new_material(names: list[str]) -> ServingMaterial:
    """A new CA and a certificate for `names` signed by it."""
    ca, ca_key, ca_cert = make_ca("clusternet-hub-serving-ca", days=CA_DAYS)
    pair = issue_cert(ca_key, ca_cert, names[0], dns_names=names, server=True, days=CERT_DAYS)
    return ServingMaterial(ca.cert_pem, ca.key_pem, pair.cert_pem, pair.key_pem)


def renew_cert(material: ServingMaterial, names: list[str]) -> ServingMaterial:
    """A new certificate for `names` from the same CA (the caBundle does not change)."""
    ca_key, ca_cert = load_ca(material.ca_pem, material.ca_key_pem)
    pair = issue_cert(ca_key, ca_cert, names[0], dns_names=names, server=True, days=CERT_DAYS)
    return ServingMaterial(material.ca_pem, material.ca_key_pem, pair.cert_pem, pair.key_pem)


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    return cert.not_valid_after_utc


def verdict(material: ServingMaterial, names: list[str], now: datetime.datetime) -> tuple[str, str] | None:
    """None when the material serves `names` as it is; else ("ca" | "cert", why) saying what to replace."""
    try:
        _, ca_cert = load_ca(material.ca_pem, material.ca_key_pem)
        cert = x509.load_pem_x509_certificate(material.cert_pem)
        key = serialization.load_pem_private_key(material.key_pem, password=None)
    except ValueError as e:
        return "ca", f"unreadable ({e})"
    if _not_after(ca_cert) - now < RENEW_CA_BEFORE:
        return "ca", f"the CA expires {_not_after(ca_cert):%Y-%m-%d}"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError) as e:
        return "cert", f"the certificate is not signed by the CA ({type(e).__name__})"
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return "cert", "the key does not belong to the certificate"
    if _not_after(cert) - now < RENEW_CERT_BEFORE:
        return "cert", f"the certificate expires {_not_after(cert):%Y-%m-%d}"
    try:
        sans = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName))
    except x509.ExtensionNotFound:
        sans = set()
    if not set(names) <= sans:
        return "cert", f"the certificate does not name {', '.join(sorted(set(names) - sans))}"
    return None


async def ensure_serving_material(kube: Kube, names: list[str], namespace: str = known.SYSTEM_NAMESPACE,
                                  now: Callable[[], datetime.datetime] | None = None) -> ServingMaterial:
    """The material of the serving Secret: created when absent, renewed when due; whoever writes first wins."""
    clock = now or (lambda: datetime.datetime.now(datetime.UTC))
    for _ in range(5):
        secret = await kube.get("v1", "Secret", SERVING_SECRET, namespace)
        if secret is None:
            material = new_material(names)
            try:
                await kube.create(material.secret(namespace))
            except ApiException as e:
                if e.status == 409:
                    continue  # another replica created it first: use theirs
                raise
            log.info("created the serving certificate and its CA in Secret %s/%s", namespace, SERVING_SECRET)
            return material
        try:
            material = ServingMaterial.from_secret(secret)
            problem = verdict(material, names, clock())
        except (KeyError, ValueError) as e:
            problem = ("ca", f"incomplete ({type(e).__name__}: {e})")
        if problem is None:
            return material
        what, why = problem
        renewed = new_material(names) if what == "ca" else renew_cert(material, names)
        body = renewed.secret(namespace)
        body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]  # optimistic: one replica wins
        try:
            await kube.patch("v1", "Secret", SERVING_SECRET, {"metadata": body["metadata"], "data": body["data"]},
                             namespace)
        except ApiException as e:
            if e.status == 409:
                continue  # another replica renewed it meanwhile: read theirs
            raise
        log.info("renewed the %s in Secret %s/%s: %s", "CA and certificate" if what == "ca" else "certificate",
                 namespace, SERVING_SECRET, why)
        return renewed
    raise RuntimeError(f"Secret {namespace}/{SERVING_SECRET} kept changing while the hub read it")


async def ensure_ca_bundle(kube: Kube, ca_pem: bytes, name: str = APISERVICE) -> str:
    """Make the APIService `name` trust `ca_pem`: "unchanged", "patched" or "missing"."""
    service = await kube.get(APIREGISTRATION, "APIService", name)
    if service is None:
        return "missing"
    want = base64.b64encode(ca_pem).decode()
    spec = service.get("spec") or {}
    if spec.get("caBundle") == want and not spec.get("insecureSkipTLSVerify"):
        return "unchanged"
    patch: dict[str, Any] = {"caBundle": want}
    if spec.get("insecureSkipTLSVerify"):
        patch["insecureSkipTLSVerify"] = False  # the apiserver sends users' identities here: always verify
    await kube.patch(APIREGISTRATION, "APIService", name, {"spec": patch})
    return "patched"


# --- the front proxy -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontProxyTrust:
    """Which client certificates mark requests from the parent's aggregation layer."""

    ca_pem: bytes | None
    allowed_names: tuple[str, ...]


async def read_front_proxy_trust(kube: Kube) -> FrontProxyTrust:
    """What kube-apiserver publishes in kube-system/extension-apiserver-authentication (empty when it has no
    front proxy configured)."""
    cm = await kube.get("v1", "ConfigMap", AUTH_CONFIGMAP, AUTH_NAMESPACE)
    data = (cm or {}).get("data") or {}
    ca = str(data.get(CLIENT_CA_KEY) or "").strip()
    try:
        names = json.loads(data.get(ALLOWED_NAMES_KEY) or "[]")
    except ValueError:
        names = []
    return FrontProxyTrust(ca.encode() + b"\n" if ca else None, tuple(str(n) for n in names or []))


# --- TLS that follows changes --------------------------------------------------------------------------------


def _server_context() -> ssl.SSLContext:
    """A server context that trusts nothing by default (create_default_context would load the system CAs as
    client CAs, and a publicly issued client certificate would then pass as the front proxy)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class DynamicTLS:
    """The SSLContext the server starts with; each handshake switches to a context holding the current certificate
    and client CA (OpenSSL's servername callback runs for every ClientHello, with or without SNI), so a renewed
    certificate or rotated front-proxy CA serves new connections at once.

    Whether client certificates are requested is fixed at start (`client_auth`): OpenSSL keeps the first context's
    verify mode. They are optional: agents and probes present none; a presented one must verify."""

    def __init__(self, client_auth: bool) -> None:
        self.context = _server_context()
        self.client_auth = client_auth
        if client_auth:
            self.context.verify_mode = ssl.CERT_OPTIONAL
        self.context.sni_callback = self._select
        self._current: ssl.SSLContext | None = None
        self._loaded: tuple[bytes, bytes, bytes | None] | None = None
        self.allowed_names: tuple[str, ...] = ()
        self.choose: Callable[[str | None], ssl.SSLContext | None] | None = None  # by server name: peercerts.py

    @property
    def current(self) -> ssl.SSLContext | None:
        return self._current

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        chosen = (self.choose(server_name) if self.choose is not None else None) or self._current
        if chosen is not None:
            sslobj.context = chosen

    def update(self, cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None) -> bool:
        """Serve this certificate and trust this client CA from the next handshake on; True when anything changed.
        Raises ssl.SSLError/ValueError for unusable PEM, keeping what was served."""
        wanted = (cert_pem, key_pem, client_ca_pem)
        if wanted == self._loaded:
            return False
        ctx = _server_context()
        load_cert_chain_pem(ctx, cert_pem, key_pem)
        if client_ca_pem:
            ctx.load_verify_locations(cadata=client_ca_pem.decode())
            ctx.verify_mode = ssl.CERT_OPTIONAL
        if self._loaded is None:
            load_cert_chain_pem(self.context, cert_pem, key_pem)  # the fallback, never used with the callback
        self._current, self._loaded = ctx, wanted
        return True


# --- putting it together -------------------------------------------------------------------------------------


def _read(path: str) -> bytes:
    """A small PEM file (certificate, key or CA), read whole: too quick to be worth a thread."""
    return Path(path).read_bytes()


@dataclass
class ServingSettings:
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    client_ca_file: str | None = None
    allowed_names: tuple[str, ...] | None = None  # None: from the ConfigMap, or the default with a CA file
    namespace: str = known.SYSTEM_NAMESPACE
    service: str = SERVICE


class Serving:
    """Keeps the hub's DynamicTLS, the serving Secret and the APIService's caBundle in line; `start()` once before
    serving, then `run()` in the background."""

    def __init__(self, kube: Kube, settings: ServingSettings, interval: float = REFRESH_SECONDS) -> None:
        self.kube = kube
        self.settings = settings
        self.interval = interval
        self.tls = DynamicTLS(client_auth=True)
        self.peer = PeerCertificates(self.tls, DynamicTLS(client_auth=True))  # what peers are shown: peercerts.py
        self.ca_pem: bytes | None = None  # of the managed serving certificate, once it is kept in the Secret
        self._loaded_cert: bytes | None = None
        self._reported: dict[str, str] = {}

    @property
    def manages_certificate(self) -> bool:
        return not (self.settings.tls_cert_file and self.settings.tls_key_file)

    def allowed_names(self) -> tuple[str, ...]:
        return self.tls.allowed_names

    def _once(self, topic: str, state: str, level: int, message: str, *args: object) -> None:
        """Log a condition when it starts (or changes), not on every check."""
        if self._reported.get(topic) != state:
            self._reported[topic] = state
            log.log(level, message, *args)

    async def _certificate(self) -> tuple[bytes, bytes]:
        s = self.settings
        if not self.manages_certificate:
            assert s.tls_cert_file and s.tls_key_file
            return _read(s.tls_cert_file), _read(s.tls_key_file)
        names = service_names(s.service, s.namespace)
        try:
            material = await ensure_serving_material(self.kube, names, s.namespace)
        except ApiException as e:
            if self._loaded_cert is not None:
                raise  # keep serving what we have; run() reports it
            # Serve at all (agents dialling the hub directly, probes), but with a certificate nobody is told to
            # trust, and leave the caBundle alone; every check tries the Secret again.
            log.warning("cannot keep the serving certificate in Secret %s/%s (HTTP %s: %s); serving a temporary "
                        "one until it can, the aggregated API stays unavailable meanwhile (deploy/hub creates the "
                        "namespace and grants the hub this Secret)", s.namespace, SERVING_SECRET, e.status, e.reason)
            temporary = new_material(names)
            self._loaded_cert = temporary.cert_pem
            return temporary.cert_pem, temporary.key_pem
        self.ca_pem = material.ca_pem
        self._loaded_cert = material.cert_pem
        return material.cert_pem, material.key_pem

    async def _front_proxy(self) -> FrontProxyTrust:
        s = self.settings
        if s.client_ca_file:
            names = s.allowed_names if s.allowed_names is not None else DEFAULT_ALLOWED_NAMES
            return FrontProxyTrust(_read(s.client_ca_file), names)
        trust = await read_front_proxy_trust(self.kube)
        if s.allowed_names is not None:
            trust = FrontProxyTrust(trust.ca_pem, s.allowed_names)
        return trust

    async def refresh(self) -> None:
        """One check of everything: certificate, front-proxy trust, caBundle."""
        cert, key = await self._certificate()
        try:
            trust = await self._front_proxy()
            if trust.ca_pem:
                source = self.settings.client_ca_file or f"{AUTH_NAMESPACE}/{AUTH_CONFIGMAP}"
                self._once("front-proxy", "ok", logging.INFO, "trusting the front-proxy CA of %s", source)
            else:
                self._once("front-proxy", "none", logging.WARNING,
                           "no front-proxy CA in %s/%s (the parent's kube-apiserver runs without "
                           "--requestheader-client-ca-file): requests through the aggregated API cannot be "
                           "authenticated", AUTH_NAMESPACE, AUTH_CONFIGMAP)
        except ApiException as e:
            self._once("front-proxy", f"http-{e.status}", logging.WARNING,
                       "cannot read %s/%s (HTTP %s): requests through the aggregated API cannot be authenticated "
                       "until it can (deploy/hub/02-rbac.yaml grants get on it)", AUTH_NAMESPACE, AUTH_CONFIGMAP,
                       e.status)
            trust = FrontProxyTrust(self._loaded_ca(), self.tls.allowed_names)
        before = self.tls._loaded
        changed = self.tls.update(cert, key, trust.ca_pem)
        self.peer.loaded(cert, trust.ca_pem, before[:2] if changed and before and not self.manages_certificate
                         else None)
        if changed:
            which = ("the certificate of --tls-cert-file" if not self.manages_certificate else
                     f"the certificate of Secret {self.settings.namespace}/{SERVING_SECRET}" if self.ca_pem else
                     "a temporary certificate")
            log.info("serving %s%s", which, ", trusting the front-proxy CA for aggregated requests"
                     if trust.ca_pem else "")
        self.tls.allowed_names = trust.allowed_names
        if self.ca_pem is not None:
            for name in APISERVICES:
                await self._ca_bundle(name, self.ca_pem)

    async def _ca_bundle(self, name: str, ca_pem: bytes) -> None:
        topic = f"apiservice {name}"
        try:
            result = await ensure_ca_bundle(self.kube, ca_pem, name)
        except ApiException as e:
            self._once(topic, f"http-{e.status}", logging.WARNING,
                       "cannot update APIService %s (HTTP %s): the aggregated API stays unavailable until it "
                       "trusts the hub's CA (deploy/hub/02-rbac.yaml grants get and patch on it)", name, e.status)
            return
        if result == "patched":
            log.info("APIService %s now trusts the hub's CA (caBundle updated)", name)
        if result == "missing":
            self._once(topic, result, logging.WARNING, "APIService %s does not exist: the aggregated "
                       "API is off (kubectl apply -f deploy/hub creates it)", name)
        else:
            self._reported[topic] = "ok"

    def peer_trust(self) -> bytes:
        """What another replica's certificate must verify against (clusternet_hub.peers): the managed CA, and the
        certificate served here, which replicas share (one Secret, or the same mounted --tls-cert-file).

        Of the served file, the leaf alone. Peers allow partial chains (a leaf can be the anchor), so every
        intermediate of a full-chain --tls-cert-file was an anchor too: any certificate it issued, for any name,
        verified as a peer and was sent the peer token (audit s36, HA F11). The leaf a renewal replaced is trusted
        a while longer, for replicas that load the renewed file later (peercerts.py)."""
        served = self.tls._loaded[0] if self.tls._loaded else b""
        return (self.ca_pem or b"") + self.peer.trusted_leaves(served)

    def peer_server_name(self) -> str | None:
        """The server name to dial peers with: asks for the certificate served here (peercerts.py)."""
        return peer_name(self.tls._loaded[0]) if self.tls._loaded else None

    def _loaded_ca(self) -> bytes | None:
        loaded = self.tls._loaded
        return loaded[2] if loaded else None

    async def start(self) -> ssl.SSLContext:
        """The first check, before serving; raises when there is no certificate to serve."""
        await self.refresh()
        return self.tls.context

    async def run(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Re-check every interval until cancelled; failures are logged and retried."""
        while True:
            await sleep(self.interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._once("refresh", str(e), logging.WARNING, "serving certificate check failed: %s", e)
            else:
                self._reported.pop("refresh", None)
