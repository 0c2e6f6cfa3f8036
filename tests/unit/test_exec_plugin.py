"""Exec credential plugins run by `Kube` against an in-process API server: caching until expiry, a new credential
and one retry on 401, client certificates, failures as one line; plus the other per-request settings of a
kubeconfig (tls-server-name, proxy-url, basic auth)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from clusternet_api.credentials import Credentials
from clusternet_api.execplugin import ExecPlugin, ExecPluginError, parse_exec_credential
from clusternet_api.kube import ApiException, Kube
from clusternet_api.pki import KeyPair, issue_cert, make_ca

V1, V1BETA1 = "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"

PLUGIN = """\
#!{python}
# A stand-in credential plugin: token tok-N on its N-th run (counted in the file `runs` beside it).
import json, os, sys
from pathlib import Path
here = Path(__file__).parent
runs = here / "runs"
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
(here / "exec_info.json").write_text(os.environ.get("KUBERNETES_EXEC_INFO", ""))
(here / "args.json").write_text(json.dumps(sys.argv[1:]))
mode = os.environ.get("FAKE_MODE", "token")
if mode == "fail":
    print("reading the cache", file=sys.stderr)
    print("error: token expired, run `fake login`", file=sys.stderr)
    sys.exit(3)
if mode == "garbage":
    print("please log in at https://example.com")
    sys.exit(0)
status = {{"token": f"tok-{{n}}"}}
if mode == "cert":
    status = {{"clientCertificateData": Path(os.environ["FAKE_CERT"]).read_text(),
              "clientKeyData": Path(os.environ["FAKE_KEY"]).read_text()}}
if os.environ.get("FAKE_EXPIRY"):
    status["expirationTimestamp"] = os.environ["FAKE_EXPIRY"]
print(json.dumps({{"apiVersion": os.environ.get("FAKE_API_VERSION", "{v1}"), "kind": "ExecCredential",
                  "status": status}}))
"""


def fake_plugin(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "fake-plugin"
    script.write_text(PLUGIN.format(python=sys.executable, v1=V1))
    script.chmod(0o755)
    return script


def runs(plugin: Path) -> int:
    counter = plugin.parent / "runs"
    return int(counter.read_text()) if counter.exists() else 0


def rfc3339(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def kubeconfig(path: Path, server: str, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user}], "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def exec_user(command: str | Path, api_version: str = V1, **env: str) -> dict[str, Any]:
    return {"exec": {"apiVersion": api_version, "command": str(command), "args": ["get-token", "--cluster=c"],
                     "env": [{"name": k, "value": v} for k, v in env.items()], "interactiveMode": "Never"}}


class FakeServer:
    """Answers every path with {"ok": true} when the bearer token is accepted, else a 401 Status."""

    def __init__(self) -> None:
        self.accept: Callable[[str], bool] = lambda token: True
        self.seen: list[str] = []  # the Authorization headers, in order
        self.peer_cns: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.seen.append(auth)
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            self.peer_cns.append(dict(x[0] for x in peer["subject"])["commonName"])
        if not (self.accept(auth.removeprefix("Bearer ")) or peer):
            return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
        if request.query.get("watch"):
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(json.dumps({"type": "ADDED", "object": {"metadata": {"name": "a"}}}).encode() + b"\n")
            return response
        return web.json_response({"ok": True, "path": request.path})


@asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[FakeServer, str]]:
    server = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    try:
        yield server, f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


# --- running the plugin ---------------------------------------------------------------------------------


async def test_token_is_cached_until_it_expires(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path / "bin")
    async with serving() as (server, url):
        path = kubeconfig(tmp_path / "config", url, exec_user(plugin, FAKE_EXPIRY=rfc3339(timedelta(hours=1))))
        async with Kube(Credentials.from_kubeconfig(path)) as kube:
            assert runs(plugin) == 0  # not at load time: before the first request
            for _ in range(3):
                assert (await kube.raw("GET", "/version"))[0] == 200
        assert server.seen == ["Bearer tok-1"] * 3 and runs(plugin) == 1
    info = json.loads((plugin.parent / "exec_info.json").read_text())
    assert info == {"apiVersion": V1, "kind": "ExecCredential", "spec": {"interactive": False}}
    assert json.loads((plugin.parent / "args.json").read_text()) == ["get-token", "--cluster=c"]


async def test_expired_credentials_run_the_plugin_again_v1beta1(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path / "bin")
    async with serving() as (server, url):
        user = exec_user(plugin, V1BETA1, FAKE_API_VERSION=V1BETA1, FAKE_EXPIRY=rfc3339(-timedelta(minutes=1)))
        async with Kube(Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", url, user))) as kube:
            await kube.raw("GET", "/a")
            await kube.raw("GET", "/b")
            assert kube.creds.token == "tok-2" and "tok-2" not in repr(kube.creds)
        assert server.seen == ["Bearer tok-1", "Bearer tok-2"] and runs(plugin) == 2
    assert json.loads((plugin.parent / "exec_info.json").read_text())["apiVersion"] == V1BETA1


async def test_concurrent_requests_share_one_run(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path / "bin")
    async with serving() as (server, url):
        creds = Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", url, exec_user(plugin)))
        async with Kube(creds) as kube, Kube(creds) as other:  # two clients of one kubeconfig share the plugin
            await asyncio.gather(*(k.raw("GET", f"/{i}") for i in range(5) for k in (kube, other)))
        assert set(server.seen) == {"Bearer tok-1"} and runs(plugin) == 1


async def test_401_runs_the_plugin_again_and_retries_once(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path / "bin")
    async with serving() as (server, url):
        server.accept = lambda token: token == "tok-2"  # the first token was revoked
        creds = Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", url, exec_user(plugin)))
        async with Kube(creds) as kube:
            assert await kube.request("GET", "/api/v1/namespaces") == {"ok": True, "path": "/api/v1/namespaces"}
            assert server.seen == ["Bearer tok-1", "Bearer tok-2"] and runs(plugin) == 2
            await kube.request("GET", "/again")  # the new token is kept
            assert runs(plugin) == 2

            server.accept = lambda token: False  # wrong for good: one new credential, one retry, then the 401
            with pytest.raises(ApiException) as failed:
                await kube.request("GET", "/api/v1/namespaces")
            assert failed.value.status == 401
            assert server.seen[-2:] == ["Bearer tok-2", "Bearer tok-3"] and runs(plugin) == 3

            server.accept = lambda token: token == "tok-4"  # a watch retries the same way
            events = [e async for e in kube.watch("v1", "ConfigMap", "ns", server_timeout=5)]
            assert events == [{"type": "ADDED", "object": {"metadata": {"name": "a"}}}]
            assert server.seen[-2:] == ["Bearer tok-3", "Bearer tok-4"] and runs(plugin) == 4


async def test_static_tokens_are_not_retried(tmp_path: Path) -> None:
    async with serving() as (server, url):
        server.accept = lambda token: False
        async with Kube(Credentials(url, token="static")) as kube:
            assert (await kube.raw("GET", "/x"))[0] == 401
        assert server.seen == ["Bearer static"]


async def test_failing_plugin_is_one_line_with_its_last_stderr_line(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path / "bin")
    creds = Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", "http://127.0.0.1:1",
                                                   exec_user(plugin, FAKE_MODE="fail")))
    async with Kube(creds) as kube:
        with pytest.raises(ExecPluginError) as failed:
            await kube.raw("GET", "/")
    assert str(failed.value) == (f'exec plugin "{plugin}" of user "u" failed (exit code 3): '
                                 "error: token expired, run `fake login`")
    garbage = Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", "http://127.0.0.1:1",
                                                     exec_user(plugin, FAKE_MODE="garbage")))
    async with Kube(garbage) as kube:
        with pytest.raises(ExecPluginError, match=r"printed no ExecCredential JSON .*'please log in"):
            await kube.raw("GET", "/")


async def test_a_plugin_whose_caller_gave_up_is_ended(tmp_path: Path) -> None:
    """A plugin that hangs (a network it cannot reach, a login nobody completes) under a caller's timeout (a
    request, a Lease renewal): ended with the attempt, not left running while every retry starts another."""
    script, pid_file = tmp_path / "hanging-plugin", tmp_path / "pid"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    script.chmod(0o755)
    plugin = ExecPlugin(str(script), api_version=V1, user="u")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):
            await plugin.credential()
    pid = int(pid_file.read_text())
    try:
        for _ in range(100):  # 5 s
            if not running(pid):
                break
            await asyncio.sleep(0.05)
        assert not running(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """The process exists and has not ended (a zombie has: it only waits to be reaped)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read (ESRCH)
        return False


async def test_missing_plugin_shows_the_install_hint(tmp_path: Path) -> None:
    user = exec_user("no-such-credential-plugin")
    user["exec"]["installHint"] = "Install it with:\n\n  gcloud components install no-such-credential-plugin\n"
    creds = Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", "http://127.0.0.1:1", user))
    async with Kube(creds) as kube:
        with pytest.raises(ExecPluginError) as failed:
            await kube.raw("GET", "/")
    assert str(failed.value) == ('exec plugin "no-such-credential-plugin" of user "u" not found: Install it with: '
                                 "gcloud components install no-such-credential-plugin")
    del user["exec"]["installHint"]
    plain = ExecPlugin.from_config(user["exec"], "u")
    with pytest.raises(ExecPluginError, match=r"not found \(install it, or fix the command in the kubeconfig\)$"):
        await plain.credential()


def test_exec_credential_parsing() -> None:
    def doc(status: dict[str, Any], api_version: str = V1) -> bytes:
        return json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status}).encode()

    cred = parse_exec_credential(doc({"token": "t", "expirationTimestamp": "2030-01-01T00:00:00.5+00:00"}), V1, "p")
    assert cred.token == "t" and cred.expires == datetime(2030, 1, 1, 0, 0, 0, 500000, UTC).timestamp()
    assert "'t'" not in repr(cred) and not cred.expired()
    assert parse_exec_credential(doc({"token": "t"}), V1, "p").expires is None  # valid until a 401
    with pytest.raises(ExecPluginError, match=r"returned apiVersion 'client\.authentication\.k8s\.io/v1beta1', the "
                                              r"kubeconfig asks for client\.authentication\.k8s\.io/v1"):
        parse_exec_credential(doc({"token": "t"}, V1BETA1), V1, "p")
    with pytest.raises(ExecPluginError, match="neither a token nor a client certificate"):
        parse_exec_credential(doc({}), V1, "p")
    with pytest.raises(ExecPluginError, match="certificate without its key"):
        parse_exec_credential(doc({"clientCertificateData": "PEM"}), V1, "p")
    with pytest.raises(ExecPluginError, match="invalid expirationTimestamp"):
        parse_exec_credential(doc({"token": "t", "expirationTimestamp": "soon"}), V1, "p")
    with pytest.raises(ExecPluginError, match=r"printed no ExecCredential \(kind"):
        parse_exec_credential(b'{"kind": "Status"}', V1, "p")
    # shapes that were tracebacks (AttributeError) until 2026-12-06 (audit s35)
    with pytest.raises(ExecPluginError, match="whose status is not an object"):
        parse_exec_credential(json.dumps({"apiVersion": V1, "kind": "ExecCredential", "status": "ok"}).encode(), V1,
                              "p")
    with pytest.raises(ExecPluginError, match="has an env that is not a list of"):
        ExecPlugin.from_config({"command": "aws", "apiVersion": V1, "env": ["FOO=bar"]}, "u")


# --- TLS, proxies, basic auth ---------------------------------------------------------------------------


def tls_pair(tmp_path: Path) -> tuple[KeyPair, ssl.SSLContext, KeyPair]:
    """(CA, a server context for the name kube.example only that requires client certificates, a client pair)."""
    ca, ca_key, ca_cert = make_ca("test-ca")
    serving_pair = issue_cert(ca_key, ca_cert, "kube.example", dns_names=["kube.example"], server=True)
    (tmp_path / "srv.crt").write_bytes(serving_pair.cert_pem)
    (tmp_path / "srv.key").write_bytes(serving_pair.key_pem)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.crt"))
    ctx.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ca, ctx, issue_cert(ca_key, ca_cert, "exec-user", client=True)


async def test_client_certificate_from_the_plugin_and_tls_server_name(tmp_path: Path) -> None:
    ca, server_tls, client = tls_pair(tmp_path)
    (tmp_path / "client.crt").write_bytes(client.cert_pem)
    (tmp_path / "client.key").write_bytes(client.key_pem)
    plugin = fake_plugin(tmp_path / "bin")
    user = exec_user(plugin, FAKE_MODE="cert", FAKE_CERT=str(tmp_path / "client.crt"),
                     FAKE_KEY=str(tmp_path / "client.key"))
    cluster = {"certificate-authority-data": base64.b64encode(ca.cert_pem).decode(), "tls-server-name": "kube.example"}
    async with serving(server_tls) as (server, url):
        server.accept = lambda token: False  # only the client certificate gets in
        async with Kube(Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", url, user, cluster))) as kube:
            assert (await kube.raw("GET", "/version"))[0] == 200
            assert (await kube.credentials()).cert_pem == client.cert_pem
        assert server.peer_cns == ["exec-user"] and server.seen == [""]
        del cluster["tls-server-name"]  # the certificate is for kube.example, not 127.0.0.1
        async with Kube(Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", url, user, cluster))) as kube:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await kube.raw("GET", "/version")


async def test_proxy_url_and_basic_auth(tmp_path: Path) -> None:
    async with serving() as (proxy, proxy_url):
        user = {"username": "admin", "password": "s3cret"}
        creds = Credentials.from_kubeconfig(kubeconfig(tmp_path / "config", "http://kube.invalid:6443", user,
                                                       {"proxy-url": proxy_url}))
        async with Kube(creds) as kube:
            status, body = await kube.raw("GET", "/api/v1/namespaces")
        assert status == 200 and body["path"] == "/api/v1/namespaces"  # the proxy got the request for kube.invalid
        assert proxy.seen == ["Basic " + base64.b64encode(b"admin:s3cret").decode()]


async def test_plugin_stderr_shows_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As with kubectl, a person sees what the plugin prints on stderr (a device-code login's URL)."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    plugin = fake_plugin(tmp_path / "bin")
    with pytest.raises(ExecPluginError, match="token expired"):
        await ExecPlugin(str(plugin), env={"FAKE_MODE": "fail"}, user="u").credential()
    assert terminal.getvalue() == "reading the cache\nerror: token expired, run `fake login`\n"


async def test_sessions_of_rotated_client_certificates_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each new certificate retired the session of the last one until the client closed: one more open
    session per rotation for the life of a hub or agent."""
    from clusternet_api import kube as kube_module
    from clusternet_api.execplugin import ExecCredential

    class Rotating:
        def __init__(self) -> None:
            self.n = 0

        async def credential(self, rejected: ExecCredential | None = None) -> ExecCredential:
            self.n += 1
            return ExecCredential(cert_pem=f"CERT {self.n}".encode(), key_pem=b"KEY")

    class Session:
        closed = False

        async def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(kube_module, "ssl_context", lambda _creds: None)
    kube = Kube(Credentials("https://kube.example", exec_plugin=Rotating()))  # type: ignore[arg-type]
    sessions = [Session() for _ in range(5)]
    for session in sessions:
        kube._session = session  # type: ignore[assignment]
        await kube._authenticate()
    assert [s.closed for s in sessions] == [True, True, True, False, False]  # the two newest kept
    await kube.close()
    assert all(s.closed for s in sessions)
