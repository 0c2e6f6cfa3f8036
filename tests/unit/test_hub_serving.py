"""The hub's own serving certificate (Secret), its APIService's caBundle and the front-proxy CA, without hand work."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509

from clusternet_api import known
from clusternet_api.kube import ApiException, Kube
from clusternet_api.pki import issue_cert, make_ca
from clusternet_api.tlsfiles import load_cert_chain_pem
from clusternet_hub import serving
from clusternet_hub.operator import HubOptions
from clusternet_hub.serving import (
    APISERVICE,
    SERVING_SECRET,
    DynamicTLS,
    Serving,
    ServingMaterial,
    ServingSettings,
    ensure_ca_bundle,
    ensure_serving_material,
    service_names,
)
from tests.unit.fakekube import FakeKube

NS = known.SYSTEM_NAMESPACE
NAMES = service_names()
NOW = datetime.datetime.now(datetime.UTC)


class Kubeish(FakeKube):
    """FakeKube whose patches honour a resourceVersion precondition, as the apiserver does."""

    async def patch(self, api_version: str, kind: str, name: str, body: Any, namespace: str | None = None,
                    *, subresource: str | None = None,
                    content_type: str = "application/merge-patch+json") -> dict[str, Any]:
        assert content_type == "application/merge-patch+json"  # never server-side apply (1.20 panics on APIService)
        old = self.find(kind, namespace, name)
        wanted = ((body.get("metadata") or {}).get("resourceVersion"))
        if old is not None and wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiException(409, "Conflict")
        return await super().patch(api_version, kind, name, body, namespace, subresource=subresource,
                                   content_type=content_type)


def kube(fake: FakeKube) -> Kube:
    return cast(Kube, fake)


def stored(fake: FakeKube) -> ServingMaterial:
    secret = fake.find("Secret", NS, SERVING_SECRET)
    assert secret is not None
    return ServingMaterial.from_secret(secret)


def later(days: int) -> Any:
    return lambda: NOW + datetime.timedelta(days=days)


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


# --- the Secret ----------------------------------------------------------------------------------------------


async def test_created_when_absent_then_reused() -> None:
    fake = Kubeish()
    first = await ensure_serving_material(kube(fake), NAMES)
    assert fake.writes == [("create", "Secret", f"{NS}/{SERVING_SECRET}")]
    secret = fake.find("Secret", NS, SERVING_SECRET)
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    leaf = cert(first.cert_pem)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["clusternet-hub", "clusternet-hub.clusternet-system", "clusternet-hub.clusternet-system.svc",
                          "clusternet-hub.clusternet-system.svc.cluster.local"]
    leaf.verify_directly_issued_by(cert(first.ca_pem))
    assert serving.verdict(first, NAMES, NOW) is None
    # a restart (or another replica) finds it and changes nothing
    assert await ensure_serving_material(kube(fake), NAMES) == first
    assert len(fake.writes) == 1


async def test_a_replica_that_loses_the_creation_race_uses_the_winners() -> None:
    fake = Kubeish()
    winner = serving.new_material(NAMES)

    class Racing(Kubeish):
        async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
            found = await super().get(api_version, kind, name, namespace)
            if found is None and kind == "Secret" and not self.objects:
                self.objects[("Secret", NS, SERVING_SECRET)] = self._stored(winner.secret(NS), None)
            return found  # still None: this replica goes on to create, and gets 409

    fake = Racing()
    assert await ensure_serving_material(kube(fake), NAMES) == winner


async def test_the_certificate_is_renewed_from_the_same_ca_before_it_expires() -> None:
    fake = Kubeish()
    first = await ensure_serving_material(kube(fake), NAMES)
    assert await ensure_serving_material(kube(fake), NAMES, now=later(300)) == first  # 65 days left: kept
    renewed = await ensure_serving_material(kube(fake), NAMES, now=later(340))  # 25 days left
    assert renewed.ca_pem == first.ca_pem and renewed.ca_key_pem == first.ca_key_pem  # caBundle unchanged
    assert renewed.cert_pem != first.cert_pem
    assert stored(fake) == renewed
    assert fake.writes[-1] == ("patch", "Secret", f"{NS}/{SERVING_SECRET}")


async def test_the_ca_is_replaced_before_it_expires_or_when_unreadable() -> None:
    fake = Kubeish()
    first = await ensure_serving_material(kube(fake), NAMES)
    renewed = await ensure_serving_material(kube(fake), NAMES, now=later(3600))
    assert renewed.ca_pem != first.ca_pem
    fake.objects[("Secret", NS, SERVING_SECRET)]["data"]["ca.key"] = base64.b64encode(b"garbage").decode()
    again = await ensure_serving_material(kube(fake), NAMES)
    assert again.ca_pem not in (first.ca_pem, renewed.ca_pem)
    del fake.objects[("Secret", NS, SERVING_SECRET)]["data"]["tls.key"]
    assert serving.verdict(await ensure_serving_material(kube(fake), NAMES), NAMES, NOW) is None


async def test_a_certificate_for_other_names_is_reissued() -> None:
    fake = Kubeish()
    first = await ensure_serving_material(kube(fake), ["clusternet-hub"])
    wider = await ensure_serving_material(kube(fake), NAMES)
    assert wider.ca_pem == first.ca_pem and wider.cert_pem != first.cert_pem
    assert serving.verdict(first, NAMES, NOW) == ("cert", "the certificate does not name "
                                                  + ", ".join(sorted(NAMES[1:])))


def expiring(days: int) -> ServingMaterial:
    """A material whose certificate ends in `days` days."""
    fresh = serving.new_material(NAMES)
    ca_key, ca_cert = serving.load_ca(fresh.ca_pem, fresh.ca_key_pem)
    pair = issue_cert(ca_key, ca_cert, NAMES[0], dns_names=NAMES, server=True, days=days)
    return ServingMaterial(fresh.ca_pem, fresh.ca_key_pem, pair.cert_pem, pair.key_pem)


async def test_of_two_replicas_renewing_at_once_one_wins_and_the_other_takes_its_result() -> None:
    theirs: list[ServingMaterial] = []

    class Racing(Kubeish):
        async def patch(self, *args: Any, **kwargs: Any) -> Any:
            if not theirs:  # the other replica renews between our read and our write
                current = stored(self)
                theirs.append(serving.renew_cert(current, NAMES))
                key = ("Secret", NS, SERVING_SECRET)
                self.objects[key] = self._stored(theirs[0].secret(NS), self.objects[key])
            return await super().patch(*args, **kwargs)

    racing = Racing(expiring(10).secret(NS))
    ours = await ensure_serving_material(kube(racing), NAMES)
    assert ours == theirs[0]
    assert stored(racing) == theirs[0] and racing.writes == []  # our patch was refused (409), nothing else written


# --- the APIService ------------------------------------------------------------------------------------------


def apiservice(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
            "spec": {"group": known.PROXIES_GROUP, "version": known.PROXIES_VERSION, **spec}}


def shadow_apiservice(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": serving.SHADOW_APISERVICE},
            "spec": {"group": known.SHADOW_GROUP, "version": known.SHADOW_VERSION, **spec}}


async def test_the_ca_bundle_is_merge_patched_when_it_differs() -> None:
    ca = b"-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"
    fake = Kubeish(apiservice())
    assert await ensure_ca_bundle(kube(fake), ca) == "patched"
    assert fake.bodies[-1] == {"spec": {"caBundle": base64.b64encode(ca).decode()}}
    assert await ensure_ca_bundle(kube(fake), ca) == "unchanged"
    assert len(fake.writes) == 1
    insecure = Kubeish(apiservice(insecureSkipTLSVerify=True))
    assert await ensure_ca_bundle(kube(insecure), ca) == "patched"
    assert insecure.bodies[-1] == {"spec": {"caBundle": base64.b64encode(ca).decode(), "insecureSkipTLSVerify": False}}
    assert await ensure_ca_bundle(kube(Kubeish()), ca) == "missing"


# --- the front proxy -----------------------------------------------------------------------------------------


def auth_configmap(ca: bytes | None, names: list[str] | None = None) -> dict[str, Any]:
    data = {"client-ca-file": "ignored"}
    if ca is not None:
        data[serving.CLIENT_CA_KEY] = ca.decode()
    if names is not None:
        data[serving.ALLOWED_NAMES_KEY] = json.dumps(names)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": serving.AUTH_CONFIGMAP, "namespace": serving.AUTH_NAMESPACE}, "data": data}


async def test_front_proxy_trust_is_read_like_aggregated_api_servers_do() -> None:
    ca, _, _ = make_ca("front-proxy-ca")
    trust = await serving.read_front_proxy_trust(kube(Kubeish(auth_configmap(ca.cert_pem, ["front-proxy-client"]))))
    assert trust.ca_pem == ca.cert_pem and trust.allowed_names == ("front-proxy-client",)
    assert (await serving.read_front_proxy_trust(kube(Kubeish(auth_configmap(ca.cert_pem, []))))).allowed_names == ()
    none = await serving.read_front_proxy_trust(kube(Kubeish()))
    assert none == serving.FrontProxyTrust(None, ())


# --- TLS that follows changes --------------------------------------------------------------------------------


def handshake(server_ctx: ssl.SSLContext, ca_pem: bytes, client: tuple[bytes, bytes] | None = None
              ) -> tuple[str, Any]:
    """(served certificate's subject, the client certificate the server saw or the server's error)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    seen: dict[str, Any] = {}

    def serve() -> None:
        conn, _ = srv.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
                tls.sendall(b"x")
        except (ssl.SSLError, OSError) as e:
            seen["peer"] = f"refused: {e}"

    thread = threading.Thread(target=serve)
    thread.start()
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if client:
        load_cert_chain_pem(ctx, *client)
    subject = ""
    try:
        with ctx.wrap_socket(socket.create_connection(srv.getsockname()),
                             server_hostname="clusternet-hub.clusternet-system.svc") as s:
            subject = cert(ssl.DER_cert_to_PEM_cert(s.getpeercert(True) or b"").encode()).subject.rfc4514_string()
            s.recv(1)
    except (ssl.SSLError, OSError):
        pass
    thread.join()
    srv.close()
    return subject, seen.get("peer")


def test_dynamic_tls_serves_renewed_certificates_and_rotated_client_cas() -> None:
    one, two = serving.new_material(NAMES), serving.new_material(NAMES)
    fp1, fp1_key, fp1_cert = make_ca("front-proxy-1")
    fp2, fp2_key, fp2_cert = make_ca("front-proxy-2")
    client1 = issue_cert(fp1_key, fp1_cert, "front-proxy-client", client=True)
    client2 = issue_cert(fp2_key, fp2_cert, "front-proxy-client", client=True)
    tls = DynamicTLS(client_auth=True)
    assert tls.update(one.cert_pem, one.key_pem, fp1.cert_pem)
    assert not tls.update(one.cert_pem, one.key_pem, fp1.cert_pem)
    subject, peer = handshake(tls.context, one.ca_pem, (client1.cert_pem, client1.key_pem))
    assert subject == "CN=clusternet-hub" and "front-proxy-client" in str(peer)
    assert handshake(tls.context, one.ca_pem)[1] is None  # no client certificate: fine (agents, probes)
    # renewed certificate and rotated front-proxy CA: new connections get both, without a new server context
    tls.update(two.cert_pem, two.key_pem, fp2.cert_pem)
    assert handshake(tls.context, one.ca_pem)[0] == ""  # the old CA no longer verifies the hub
    assert handshake(tls.context, two.ca_pem, (client2.cert_pem, client2.key_pem))[0] == "CN=clusternet-hub"
    assert "refused" in str(handshake(tls.context, two.ca_pem, (client1.cert_pem, client1.key_pem))[1])


def test_no_system_ca_is_trusted_for_client_certificates() -> None:
    material = serving.new_material(NAMES)
    fp, _, _ = make_ca("front-proxy")
    tls = DynamicTLS(client_auth=True)
    tls.update(material.cert_pem, material.key_pem, fp.cert_pem)
    assert tls._current is not None
    assert [c["subject"] for c in tls._current.get_ca_certs()] == [((("commonName", "front-proxy"),),)]


# --- all of it -----------------------------------------------------------------------------------------------


async def test_serving_keeps_secret_ca_bundle_and_front_proxy_in_line() -> None:
    fp, _, _ = make_ca("front-proxy")
    fake = Kubeish(apiservice(caBundle=""), shadow_apiservice(insecureSkipTLSVerify=True),
                   auth_configmap(fp.cert_pem, ["front-proxy-client", "aggregator"]))
    hub = Serving(kube(fake), ServingSettings())
    await hub.start()
    material = stored(fake)
    assert hub.ca_pem == material.ca_pem
    for name in (APISERVICE, serving.SHADOW_APISERVICE):  # the shadow API is served by the same server
        service = fake.find("APIService", None, name)
        assert service is not None and base64.b64decode(service["spec"]["caBundle"]) == material.ca_pem
        assert not service["spec"].get("insecureSkipTLSVerify")
    assert hub.allowed_names() == ("front-proxy-client", "aggregator")
    assert handshake(hub.tls.context, material.ca_pem)[0] == "CN=clusternet-hub"
    writes = len(fake.writes)
    await hub.refresh()
    assert len(fake.writes) == writes  # nothing changed, nothing written
    # someone resets the caBundle (e.g. re-applying an old apiservice.yaml): the next check puts it back
    await fake.patch("apiregistration.k8s.io/v1", "APIService", APISERVICE, {"spec": {"caBundle": None}})
    await hub.refresh()
    service = fake.find("APIService", None, APISERVICE)
    assert service is not None and base64.b64decode(service["spec"]["caBundle"]) == material.ca_pem
    # the front proxy's names rotate with the ConfigMap; explicit names win
    cm = fake.objects[("ConfigMap", "kube-system", serving.AUTH_CONFIGMAP)]
    cm["data"][serving.ALLOWED_NAMES_KEY] = '["other"]'
    await hub.refresh()
    assert hub.allowed_names() == ("other",)
    fixed = Serving(kube(fake), ServingSettings(allowed_names=("mine",)))
    await fixed.start()
    assert fixed.allowed_names() == ("mine",)


async def test_given_files_leave_secret_and_ca_bundle_alone(tmp_path: Path) -> None:
    material = serving.new_material(NAMES)
    fp, _, _ = make_ca("front-proxy")
    (tmp_path / "tls.crt").write_bytes(material.cert_pem)
    (tmp_path / "tls.key").write_bytes(material.key_pem)
    (tmp_path / "fp.crt").write_bytes(fp.cert_pem)
    fake = Kubeish(apiservice(caBundle="c29tZQ=="))
    hub = Serving(kube(fake), ServingSettings(tls_cert_file=str(tmp_path / "tls.crt"),
                                              tls_key_file=str(tmp_path / "tls.key"),
                                              client_ca_file=str(tmp_path / "fp.crt")))
    await hub.start()
    assert fake.writes == []
    assert hub.allowed_names() == ("front-proxy-client",)
    assert handshake(hub.tls.context, material.ca_pem)[0] == "CN=clusternet-hub"
    # cert-manager renews the files in place: the next check serves the new ones
    renewed = serving.renew_cert(material, NAMES)
    (tmp_path / "tls.crt").write_bytes(renewed.cert_pem)
    (tmp_path / "tls.key").write_bytes(renewed.key_pem)
    await hub.refresh()
    served = handshake(hub.tls.context, material.ca_pem)
    assert served[0] == "CN=clusternet-hub"
    assert hub.tls._loaded is not None and hub.tls._loaded[0] == renewed.cert_pem


async def test_without_access_to_the_secret_a_temporary_certificate_serves_until_it_is_granted() -> None:
    fake = Kubeish(apiservice())
    fake.fail[("create", "Secret")] = ApiException(403, "Forbidden")
    hub = Serving(kube(fake), ServingSettings())
    await hub.start()
    assert hub.ca_pem is None
    service = fake.find("APIService", None, APISERVICE)
    assert service is not None and "caBundle" not in service["spec"]  # nobody is told to trust a temporary CA
    del fake.fail[("create", "Secret")]
    sleeps: list[float] = []

    async def one_tick(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 1:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await hub.run(sleep=one_tick)
    assert hub.ca_pem == stored(fake).ca_pem
    service = fake.find("APIService", None, APISERVICE)
    assert service is not None and base64.b64decode(service["spec"]["caBundle"]) == hub.ca_pem


def test_tls_connections_get_a_small_read_buffer() -> None:
    """One TLS connection per agent tunnel: asyncio's 256 KiB buffer each was the hub's largest allocation."""
    import asyncio.sslproto

    from clusternet_hub import serving

    assert asyncio.sslproto.SSLProtocol.max_size == serving.TLS_READ_BUFFER == 32 * 1024


def test_threadiness_sizes_the_deployment_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clusternet's --threadiness is acted on (the controller's workers), and a count below 1 is a usage error."""
    from click.testing import CliRunner

    from clusternet_hub import cli

    seen: list[HubOptions] = []
    monkeypatch.setattr(cli, "setup_logging", lambda *a, **k: None)
    monkeypatch.setattr(cli, "_run_until_signalled", lambda factory: factory(asyncio.Event()))

    def run_hub(options: HubOptions, stop: asyncio.Event | None = None) -> None:
        seen.append(options)

    monkeypatch.setattr(cli, "run_hub", run_hub)
    runner = CliRunner()
    assert runner.invoke(cli.main, ["--threadiness=3", "--peer-port=0"]).exit_code == 0
    assert runner.invoke(cli.main, ["--peer-port=0"]).exit_code == 0
    assert [o.threadiness for o in seen] == [3, 8]
    refused = runner.invoke(cli.main, ["--threadiness=0", "--peer-port=0"])
    assert refused.exit_code == 2 and "--threadiness" in refused.output
