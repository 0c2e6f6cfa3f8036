"""The parent's CA from a bootstrap token (kubeadm-style discovery), and where it plugs into the agent's start-up.

The signature vector below was written by a real kube-controller-manager 1.20.2 (bootstrapsigner) for token
07401b.f395accd246ae52d over the cluster-info kubeconfig of a test control plane.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from aiohttp import web

from clusternet_agent import agent, discovery, registration
from clusternet_agent.discovery import DiscoveryError, ca_from_cluster_info, sign_detached, verify_detached
from clusternet_agent.options import AgentOptions, OptionsError
from clusternet_agent.registration import RegistrationError
from clusternet_api import known
from clusternet_api.kube import Credentials
from clusternet_api.pki import serving_context
from clusternet_api.sealing import generate_private_key

TOKEN = "07401b.f395accd246ae52d"
TOKEN_ID, TOKEN_SECRET = TOKEN.split(".")
URL = "https://127.0.0.1:47097"
KCM_SIGNATURE = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjA3NDAxYiJ9..NesSzCeZzfrd3EH20lP4d0geK_dwn5amhZGWCa0U-BQ"
KCM_KUBECONFIG = (
    "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJ"
    "SekNCN2FBREFnRUNBaFEwamZTLzQ5Y0wzbXRQMUxhMGpLV0VxL0Y4TFRBS0JnZ3Foa2pPUFFRREFqQVIKTVE4d0RRWURWUVFEREFabGVIQXRZMk"
    "V3SGhjTk1qWXhNakF6TVRFd05qRXpXaGNOTWpjeE1qQXpNVEV4TVRFegpXakFSTVE4d0RRWURWUVFEREFabGVIQXRZMkV3V1RBVEJnY3Foa2pP"
    "UFFJQkJnZ3Foa2pPUFFNQkJ3TkNBQVRuCk91ODZ6M3lrcXZiMk11YmZiWERrTDZtRXR6U1dCbUxMMFNMSmozV2tGVWJmSmFTdkhwYm5MdUNzOH"
    "JKRWdYUFgKV0hSMEg3R0lZVSt4dGVlT0RNT1hveU13SVRBUEJnTlZIUk1CQWY4RUJUQURBUUgvTUE0R0ExVWREd0VCL3dRRQpBd0lCaGpBS0Jn"
    "Z3Foa2pPUFFRREFnTkpBREJHQWlFQTNqZ1ZCU0pvdkZxV3V3MFdqSlI5ZTZQWFZIbEZ0dC9MClA4MU10eVBRMktvQ0lRQ0V3QklmeFhnYnNMUX"
    "BxMkNBRHFKQmtBOHhvcjNwaXJiYklNTnVYMmhQRlE9PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==\n    server: "
    "https://127.0.0.1:47097\n  name: ''\ncontexts: null\ncurrent-context: ''\nkind: Config\npreferences: {}\n"
    "users: null\n")
KCM_CA = base64.b64decode(yaml.safe_load(KCM_KUBECONFIG)["clusters"][0]["cluster"]["certificate-authority-data"])
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


def cluster_info(kubeconfig: str = KCM_KUBECONFIG, **signatures: str) -> dict[str, str]:
    return {"kubeconfig": kubeconfig, **{f"jws-kubeconfig-{k}": v for k, v in signatures.items()}}


# --- the detached JWS ----------------------------------------------------------------------------------------


def test_the_signature_kube_controller_manager_wrote_verifies() -> None:
    assert verify_detached(KCM_SIGNATURE, KCM_KUBECONFIG.encode(), TOKEN_ID, TOKEN_SECRET)
    assert sign_detached(KCM_KUBECONFIG.encode(), TOKEN_ID, TOKEN_SECRET) == KCM_SIGNATURE


@pytest.mark.parametrize(("payload", "token_id", "secret"), [
    (KCM_KUBECONFIG + " ", TOKEN_ID, TOKEN_SECRET),  # the kubeconfig changed
    (KCM_KUBECONFIG, TOKEN_ID, "f395accd246ae52e"),  # another token's secret
    (KCM_KUBECONFIG, "07401c", TOKEN_SECRET),  # the signature names another token ID
])
def test_a_changed_payload_or_wrong_token_does_not_verify(payload: str, token_id: str, secret: str) -> None:
    assert not verify_detached(KCM_SIGNATURE, payload.encode(), token_id, secret)


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("detached", [
    "",
    "garbage",
    KCM_SIGNATURE.replace("..", ".eyJ4Ijp9."),  # attached, not detached
    KCM_SIGNATURE + ".x",
    KCM_SIGNATURE[:-2],  # truncated signature
    "!!!.." + KCM_SIGNATURE.split("..")[1],  # header not base64url
    _b64({"alg": "none", "kid": TOKEN_ID}) + "..",  # no algorithm: never accepted
    _b64({"alg": "HS256"}) + ".." + KCM_SIGNATURE.split("..")[1],  # no key ID
    _b64(["HS256"]) + ".." + KCM_SIGNATURE.split("..")[1],
])
def test_malformed_signatures_do_not_verify(detached: str) -> None:
    assert not verify_detached(detached, KCM_KUBECONFIG.encode(), TOKEN_ID, TOKEN_SECRET)


# --- cluster-info to CA --------------------------------------------------------------------------------------


def test_the_ca_of_a_signed_cluster_info_is_taken() -> None:
    assert ca_from_cluster_info(cluster_info(**{TOKEN_ID: KCM_SIGNATURE}), TOKEN, URL) == KCM_CA
    # other tokens' signatures are ignored, the server named there need not be the URL used
    data = cluster_info(abcdef="x..y", **{TOKEN_ID: KCM_SIGNATURE})
    assert ca_from_cluster_info(data, TOKEN, "https://parent.example.com") == KCM_CA


def test_a_missing_signature_says_how_to_fix_and_may_come_later() -> None:
    with pytest.raises(DiscoveryError) as e:
        ca_from_cluster_info(cluster_info(abcdef=KCM_SIGNATURE), TOKEN, URL)
    assert e.value.retry  # the bootstrapsigner signs a new token a moment after it is created
    text = str(e.value)
    assert "no signature for bootstrap token 07401b" in text and "usage-bootstrap-signing" in text
    assert "--parent-ca-file" in text and "\n" not in text


def test_a_wrong_signature_is_an_error_never_a_fallback() -> None:
    other = sign_detached(KCM_KUBECONFIG.encode(), TOKEN_ID, "0000000000000000")
    with pytest.raises(DiscoveryError, match="does not verify with this bootstrap token") as e:
        ca_from_cluster_info(cluster_info(**{TOKEN_ID: other}), TOKEN, URL)
    assert not e.value.retry
    # a kubeconfig swapped under a valid signature of another one does not verify either
    forged = KCM_KUBECONFIG.replace("47097", "47098")
    with pytest.raises(DiscoveryError, match="does not verify"):
        ca_from_cluster_info(cluster_info(forged, **{TOKEN_ID: KCM_SIGNATURE}), TOKEN, URL)


def test_the_wrong_token_does_not_verify() -> None:
    with pytest.raises(DiscoveryError, match="does not verify"):
        ca_from_cluster_info(cluster_info(**{TOKEN_ID: KCM_SIGNATURE}), "07401b.0000000000000000", URL)
    with pytest.raises(DiscoveryError, match="not a bootstrap token"):
        ca_from_cluster_info(cluster_info(**{TOKEN_ID: KCM_SIGNATURE}), JWT, URL)


def test_a_signed_kubeconfig_without_a_ca_is_an_error() -> None:
    bare = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://x\n  name: ''\nkind: Config\n"
    with pytest.raises(DiscoveryError, match="no usable certificate-authority-data"):
        ca_from_cluster_info(cluster_info(bare, **{TOKEN_ID: sign_detached(bare.encode(), TOKEN_ID, TOKEN_SECRET)}),
                             TOKEN, URL)
    with pytest.raises(DiscoveryError, match="has no kubeconfig"):
        ca_from_cluster_info({}, TOKEN, URL)


# --- reading cluster-info from a parent ----------------------------------------------------------------------


class FakeParent:
    """An HTTPS server with a certificate the agent cannot verify, answering cluster-info."""

    def __init__(self, status: int = 200, data: dict[str, str] | None = None) -> None:
        self.status, self.data = status, data
        self.headers: list[dict[str, str]] = []
        self.url = ""

    async def handler(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.status != 200:
            return web.json_response({"kind": "Status", "code": self.status}, status=self.status)
        return web.json_response({"kind": "ConfigMap", "apiVersion": "v1", "data": self.data,
                                  "metadata": {"name": "cluster-info", "namespace": "kube-public"}})


@pytest.fixture
async def fake_parent(request: pytest.FixtureRequest) -> AsyncIterator[FakeParent]:
    parent: FakeParent = request.param
    app = web.Application()
    app.router.add_get(discovery.CLUSTER_INFO_PATH, parent.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=serving_context(None, None, "fake-parent"))
    await site.start()
    port = runner.addresses[0][1]
    parent.url = f"https://127.0.0.1:{port}"
    yield parent
    await runner.cleanup()


SIGNED = FakeParent(data=cluster_info(**{TOKEN_ID: KCM_SIGNATURE}))


@pytest.mark.parametrize("fake_parent", [SIGNED], indirect=True)
async def test_cluster_info_is_read_anonymously_over_unverified_tls(fake_parent: FakeParent) -> None:
    assert await discovery.discover_parent_ca(fake_parent.url, TOKEN) == KCM_CA
    (headers,) = fake_parent.headers
    assert "Authorization" not in headers  # the token never travels on the unverified connection


@pytest.mark.parametrize(("fake_parent", "message", "retry"), [
    (FakeParent(404), "does not exist on the parent", False),
    (FakeParent(403), "does not let anonymous users read", False),
    (FakeParent(401), "does not let anonymous users read", False),
    (FakeParent(503), "answered HTTP 503", True),
    (FakeParent(data=cluster_info()), "no signature for bootstrap token 07401b", True),
], indirect=["fake_parent"])
async def test_cluster_info_problems_are_one_line_errors(fake_parent: FakeParent, message: str, retry: bool) -> None:
    with pytest.raises(DiscoveryError, match=message) as e:
        await discovery.discover_parent_ca(fake_parent.url, TOKEN)
    assert e.value.retry is retry
    assert "\n" not in str(e.value)


async def test_an_unreachable_parent_is_retried() -> None:
    from clusternet_testing.controlplane import free_port

    with pytest.raises(DiscoveryError, match="unreachable") as e:
        await discovery.discover_parent_ca(f"https://127.0.0.1:{free_port()}", TOKEN)
    assert e.value.retry


# --- where it plugs in ---------------------------------------------------------------------------------------


async def test_registration_discovers_the_ca_only_for_a_bootstrap_token_without_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    async def discover(url: str, token: str) -> bytes:
        calls.append((url, token))
        return KCM_CA

    monkeypatch.setattr(discovery, "discover_parent_ca", discover)
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN)
    await registration.ensure_bootstrap_ca(opts)
    assert calls == [(URL, TOKEN)]
    assert registration.bootstrap_credentials(opts).ca_pem == KCM_CA
    await registration.ensure_bootstrap_ca(opts)  # learnt once
    for given in (AgentOptions(parent_url=URL, reg_token=TOKEN, parent_ca_pem=b"pem"),
                  AgentOptions(parent_url=URL, reg_token=TOKEN, parent_ca_file="/ca.crt"),
                  AgentOptions(parent_url=URL, reg_token=TOKEN, parent_insecure_skip_tls_verify=True)):
        await registration.ensure_bootstrap_ca(given)
    assert len(calls) == 1


@pytest.mark.parametrize("retry", [True, False])
async def test_discovery_failures_fail_registration_with_their_message(
        monkeypatch: pytest.MonkeyPatch, retry: bool) -> None:
    async def discover(url: str, token: str) -> bytes:
        raise DiscoveryError("ConfigMap kube-public/cluster-info does not exist", retry=retry)

    monkeypatch.setattr(discovery, "discover_parent_ca", discover)
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN)
    with pytest.raises(RegistrationError, match="cluster-info does not exist") as e:
        await registration.register(opts, "d87c46a2-592b-4f65-b04e-7102ee79eaf1", generate_private_key())
    assert e.value.retry is retry
    assert opts.parent_ca_pem is None  # nothing learnt, nothing insecure


async def test_register_talks_to_the_parent_with_the_discovered_ca(monkeypatch: pytest.MonkeyPatch) -> None:

    async def discover(url: str, token: str) -> bytes:
        return KCM_CA

    used: list[Credentials] = []

    class Parent:
        def __init__(self, creds: Credentials, **_: Any) -> None:
            used.append(creds)

        async def __aenter__(self) -> Parent:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def create_or_get(self, crr: dict[str, Any]) -> tuple[dict[str, Any], bool]:
            return {**crr, "status": {"result": "Approved", "token": base64.b64encode(b"t").decode(),
                                      "dedicatedNamespace": "clusternet-abcde"}}, True

    monkeypatch.setattr(discovery, "discover_parent_ca", discover)
    monkeypatch.setattr(registration, "Kube", Parent)
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN)
    access = await registration.register(opts, "d87c46a2-592b-4f65-b04e-7102ee79eaf1", generate_private_key())
    assert [c.ca_pem for c in used] == [KCM_CA]
    assert not used[0].insecure
    assert access.creds.ca_pem == KCM_CA  # the hub returned no CA: the discovered one stays pinned


class FakeChild:
    """The child's API as run_agent's start-up sees it: the registration Secret, and nothing else allowed."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    async def __aenter__(self) -> FakeChild:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        assert (kind, name) == ("Secret", known.AGENT_BOOTSTRAP_SECRET)
        return {"data": {"parentURL": base64.b64encode(URL.encode()).decode(),
                         "regToken": base64.b64encode(JWT.encode()).decode()}}


def test_a_serviceaccount_token_without_a_ca_stops_the_agent_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "Kube", FakeChild)
    with pytest.raises(OptionsError) as e:
        asyncio.run(agent.run_agent(AgentOptions(), child_creds=Credentials("https://child")))
    text = str(e.value)
    assert "\n" not in text
    assert "ServiceAccount token cannot discover it" in text
    assert "--parent-ca-file" in text and "parentCA" in text and "bootstrap token" in text
