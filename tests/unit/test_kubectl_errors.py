"""`kubectl clusternet` failures are one line and exit code 1, without a traceback unless --debug: the real plugin
process against no server, a missing kubeconfig, an unknown context, a failing exec plugin, and an in-process
API server answering 401 and 403 (tests/integration/test_kubeconfigs.py does the same against a real one)."""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from clusternet_api.kube import ApiException, ResourceNotFound
from clusternet_api.kubeconfig import KubeconfigError
from clusternet_kubectl.errors import PluginError, error_line
from clusternet_testing.controlplane import free_port
from clusternet_testing.helpers import PLUGIN
from tests.unit.test_kube_limits import serving

SERVER = "https://kube.example:6443"


def kubeconfig(path: Path, server: str, user: Mapping[str, object] | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "dev", "cluster": {"server": server}}],
        "users": [{"name": "dev", "user": dict(user or {"token": "t0ken"})}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "dev"}}]}))
    return path


def plugin_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(home)
    return env


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PLUGIN, *args], capture_output=True, text=True, timeout=60, check=False,
                          env=plugin_env(home))


async def run_async(home: Path, *args: str) -> tuple[int, str]:
    """The plugin process while this event loop serves the fake API server."""
    proc = await asyncio.create_subprocess_exec(*PLUGIN, *args, env=plugin_env(home), stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode()


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr.strip()


def test_unreachable_server(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    cfg = kubeconfig(tmp_path / "config", url)
    assert one_line(run(tmp_path, f"--kubeconfig={cfg}", "get", "mcls", "-A")) == \
        f"error: cannot reach {url}: connection refused"
    debug = run(tmp_path, f"--kubeconfig={cfg}", "get", "mcls", "-A", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ClientConnectorError" in debug.stderr


def test_missing_kubeconfig_and_context(tmp_path: Path) -> None:
    missing = tmp_path / "nope.kubeconfig"
    assert one_line(run(tmp_path, f"--kubeconfig={missing}", "get", "subs")) == f"error: kubeconfig {missing} not found"
    assert one_line(run(tmp_path, "get", "subs")) == \
        f"error: no kubeconfig: pass --kubeconfig, set $KUBECONFIG or create {tmp_path / '.kube' / 'config'}"
    cfg = kubeconfig(tmp_path / "config", "https://127.0.0.1:1")
    assert one_line(run(tmp_path, f"--kubeconfig={cfg}", "--context", "x", "get", "subs")) == \
        f'error: context "x" not found in kubeconfig ({cfg})'


def test_exec_plugin_failure(tmp_path: Path) -> None:
    script = tmp_path / "login"
    script.write_text("#!/bin/sh\necho 'step 1' >&2\necho 'the SSO session expired: run aws sso login' >&2\nexit 2\n")
    script.chmod(0o755)
    cfg = kubeconfig(tmp_path / "config", "https://127.0.0.1:1", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "./login"}})
    assert one_line(run(tmp_path, f"--kubeconfig={cfg}", "get", "subs")) == \
        f'error: exec plugin "{script}" of user "dev" failed (exit code 2): the SSO session expired: run aws sso login'


@asynccontextmanager
async def api_server(status: int, message: str) -> AsyncIterator[str]:
    async def refuse(request: web.Request) -> web.Response:
        reason = {401: "Unauthorized", 403: "Forbidden"}[status]
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                  "reason": reason, "code": status}, status=status)

    async with serving(refuse) as url:
        yield url


async def test_401_and_403(tmp_path: Path) -> None:
    async with api_server(401, "Unauthorized") as url:
        code, err = await run_async(tmp_path, f"--kubeconfig={kubeconfig(tmp_path / 'config', url)}", "get", "subs")
        assert (code, err) == (1, f"error: the server at {url} rejected the credentials (401 Unauthorized)\n")
    forbidden = ('subscriptions.apps.clusternet.io is forbidden: User "system:serviceaccount:default:nobody" cannot '
                 'list resource "subscriptions" in API group "apps.clusternet.io" in the namespace "default"')
    async with api_server(403, forbidden) as url:
        code, err = await run_async(tmp_path, f"--kubeconfig={kubeconfig(tmp_path / 'config', url)}", "get", "subs")
        assert (code, err) == (1, f"Error from server (Forbidden): {forbidden}\n")


def test_error_lines() -> None:
    def connector(cls: type[aiohttp.ClientConnectorError], error: OSError) -> aiohttp.ClientConnectorError:
        key = aiohttp.client_reqrep.ConnectionKey("kube.example", 6443, True, True, None, None, None)
        return cls(key, error)

    assert error_line(connector(aiohttp.ClientConnectorError, OSError(errno.EHOSTUNREACH, "x")), SERVER) == \
        f"error: cannot reach {SERVER}: no route to host"
    assert error_line(connector(aiohttp.ClientConnectorDNSError, OSError(-2, "Name or service not known")),
                      SERVER) == f"error: cannot reach {SERVER}: its host name does not resolve"
    cert_error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED]")
    cert_error.verify_message = "self-signed certificate"
    key = aiohttp.client_reqrep.ConnectionKey("kube.example", 6443, True, True, None, None, None)
    assert error_line(aiohttp.ClientConnectorCertificateError(key, cert_error), SERVER) == \
        f"error: cannot verify the certificate of {SERVER}: self-signed certificate (check the kubeconfig's " \
        "certificate-authority)"
    assert error_line(connector(aiohttp.ClientProxyConnectionError, OSError(errno.ECONNREFUSED, "x")), SERVER,
                      "http://proxy:3128") == f"error: cannot reach the proxy http://proxy:3128 for {SERVER}: " \
                                              "connection refused"
    assert error_line(TimeoutError(), SERVER) == f"error: {SERVER} did not answer in time"
    assert error_line(aiohttp.ServerDisconnectedError(), SERVER) == \
        f"error: the connection to {SERVER} failed: Server disconnected"
    assert error_line(KubeconfigError('context "x" not found'), SERVER) == 'error: context "x" not found'
    assert error_line(PluginError("bad"), SERVER) == "error: bad"
    assert error_line(ResourceNotFound('no matches for kind "Widget"'), SERVER) == 'error: no matches for kind "Widget"'
    assert error_line(ApiException(401, "Unauthorized"), SERVER) == \
        f"error: the server at {SERVER} rejected the credentials (401 Unauthorized)"
    assert error_line(ApiException(500, "boom"), SERVER) == "Error from server (500): boom"
    assert error_line(ValueError("odd"), SERVER) == "error: ValueError: odd (run with --debug for the traceback)"


def test_proxy_passwords_are_not_printed() -> None:
    """A kubeconfig's proxy-url may hold `user:password@`: the error line names the proxy as kubectl does,
    `user:xxxxx@`, also where an exception's own text quotes the URL."""
    proxy = "http://alice:s3cr3t@proxy:3128"
    key = aiohttp.client_reqrep.ConnectionKey("proxy", 3128, False, True, None, None, None)
    refused = aiohttp.ClientProxyConnectionError(key, OSError(errno.ECONNREFUSED, "x"))
    assert error_line(refused, SERVER, proxy) == \
        f"error: cannot reach the proxy http://alice:xxxxx@proxy:3128 for {SERVER}: connection refused"
    said = error_line(aiohttp.ClientError(f"407 from {proxy}/"), SERVER, proxy)
    assert "s3cr3t" not in said and "http://alice:xxxxx@proxy:3128/" in said
    assert "s3cr3t" not in error_line(PluginError(f"bad {proxy}"), "https://bob:pw@kube:6443", proxy)


def test_plugin_module_runs() -> None:
    assert subprocess.run([sys.executable, "-m", "clusternet_kubectl", "version"], capture_output=True, text=True,
                          check=True).stdout.startswith("kubectl-clusternet ")
