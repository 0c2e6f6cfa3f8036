"""client-go credential plugins (a kubeconfig user's `exec:`), as kubectl runs them.

The command runs with its args, the kubeconfig's env on top of ours and `KUBERNETES_EXEC_INFO` (the
ExecCredential request: apiVersion, `spec.interactive: false`, `spec.cluster` when `provideClusterInfo`). Its
stdout is an ExecCredential (`client.authentication.k8s.io/v1` or `v1beta1`) with a bearer token or a client
certificate and key; it is cached until `status.expirationTimestamp` (for the life of the process when there is
none) and asked for again after that, or when the server rejected it (the client's business: `Kube` retries a
401 once with a fresh one). Concurrent callers on one event loop share one run. The command runs as an asyncio
subprocess, so the event loop never blocks on it (`gke-gcloud-auth-plugin` or `aws eks get-token` take about a
second).

Never interactive: stdin is /dev/null and `spec.interactive` is false (kubectl would pass its terminal to
`interactiveMode: IfAvailable/Always` plugins; a plugin that needs a prompt should be run by hand once, most
cache their login). Its stderr shows on ours when that is a terminal (as with kubectl: a device-code login prints
its URL there); the last line of it is in the error when the command fails. Tokens and keys are never in a repr or
a log line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from clusternet_api.sharedrun import SharedRuns

API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXPIRY_SKEW = 5.0  # seconds: a credential this close to its expiry is asked for again rather than sent


class CredentialsError(Exception):
    """A kubeconfig or credential-plugin problem, in one line a person can act on."""


class ExecPluginError(CredentialsError):
    """An exec credential plugin could not be run, failed, or printed no usable ExecCredential."""


@dataclass(frozen=True)
class ExecCredential:
    """What one run of a plugin gave: a bearer token, or a client certificate and key (PEM); `expires` is a
    time.time() instant or None (valid until the server rejects it)."""

    token: str | None = field(default=None, repr=False)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    expires: float | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires - EXPIRY_SKEW


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _last_line(raw: bytes) -> str:
    lines = [line.strip() for line in raw.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


async def _relay(stream: asyncio.StreamReader, kept: list[bytes]) -> None:
    """Keep a plugin's last stderr lines (for the error), and show them as they come when a person watches our
    stderr (a terminal), as kubectl does: device-code logins print their URL there."""
    show = sys.stderr.isatty()
    async for line in stream:
        kept.append(line)
        del kept[:-5]
        if show:
            sys.stderr.write(line.decode(errors="replace"))
            sys.stderr.flush()


def parse_exec_credential(raw: bytes, api_version: str, command: str) -> ExecCredential:
    """The credential in a plugin's stdout; ExecPluginError naming the command when there is none."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ExecPluginError(f'exec plugin "{command}" printed no ExecCredential JSON '
                              f'(stdout began with {raw[:40].decode(errors="replace")!r})') from None
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise ExecPluginError(f'exec plugin "{command}" printed no ExecCredential (kind must be ExecCredential)')
    if doc.get("apiVersion") != api_version:
        raise ExecPluginError(f'exec plugin "{command}" returned apiVersion {doc.get("apiVersion")!r}, '
                              f'the kubeconfig asks for {api_version}')
    status = doc.get("status") or {}
    if not isinstance(status, dict):  # a traceback (AttributeError) until 2026-12-06 (audit s35)
        raise ExecPluginError(f'exec plugin "{command}" returned an ExecCredential whose status is not an object')
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData") or None, status.get("clientKeyData") or None
    if bool(cert) != bool(key):
        raise ExecPluginError(f'exec plugin "{command}" returned a client certificate without its key '
                              "or a key without its certificate")
    if not token and not cert:
        raise ExecPluginError(f'exec plugin "{command}" returned neither a token nor a client certificate')
    expires: float | None = None
    if status.get("expirationTimestamp"):
        try:
            expires = datetime.fromisoformat(str(status["expirationTimestamp"])).timestamp()
        except ValueError:
            raise ExecPluginError(f'exec plugin "{command}" returned an invalid expirationTimestamp '
                                  f'{status["expirationTimestamp"]!r}') from None
    return ExecCredential(token=str(token) if token else None, cert_pem=str(cert).encode() if cert else None,
                          key_pem=str(key).encode() if key else None, expires=expires)


class ExecPlugin:
    """One kubeconfig user's `exec` section and the credential it last gave (shared by every copy of the
    Credentials that carry it, so several clients of one cluster run the plugin once)."""

    def __init__(self, command: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None, *,
                 api_version: str = API_VERSIONS[0], install_hint: str | None = None,
                 cluster: Mapping[str, Any] | None = None, user: str = "") -> None:
        """`cluster`: the ExecCredential's spec.cluster (provideClusterInfo), None to leave it out."""
        if api_version not in API_VERSIONS:
            raise ExecPluginError(f'exec plugin "{command}" of user "{user}" uses apiVersion {api_version!r}; '
                                  f"supported: {', '.join(API_VERSIONS)}")
        self.command, self.args, self.env = command, list(args), dict(env or {})
        self.api_version, self.install_hint, self.cluster, self.user = api_version, install_hint, cluster, user
        self.runs = 0  # how often the command ran (tests, and a hint in debugging)
        self._cached: ExecCredential | None = None
        # the run in flight on each event loop: its callers share it, and one cancelled leaves it to the others
        self._running: SharedRuns[asyncio.AbstractEventLoop, ExecCredential] = SharedRuns()

    def __repr__(self) -> str:
        return f"ExecPlugin(command={self.command!r}, user={self.user!r})"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], user: str, cluster: Mapping[str, Any] | None = None,
                    base_dir: Path | None = None) -> ExecPlugin:
        """From a kubeconfig user's `exec` mapping; a relative command with a slash is relative to
        `base_dir` (the kubeconfig's directory), one without is looked up in PATH (client-go's rule)."""
        command = str(cfg.get("command") or "")
        if not command:
            raise ExecPluginError(f'the exec section of user "{user}" names no command')
        if base_dir is not None and "/" in command and not os.path.isabs(command):
            command = str(base_dir / command)
        if not cfg.get("apiVersion"):
            raise ExecPluginError(f'the exec section of user "{user}" has no apiVersion '
                                  f"(one of {', '.join(API_VERSIONS)})")
        entries = cfg.get("env") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ExecPluginError(f'the exec section of user "{user}" has an env that is not a list of '
                                  "{name, value} entries")
        env = {str(e.get("name")): str(e.get("value") or "") for e in entries if e.get("name")}
        spec_cluster = None
        if cfg.get("provideClusterInfo") and cluster is not None:
            spec_cluster = dict(cluster)
        return cls(command, [str(a) for a in cfg.get("args") or []], env,
                   api_version=str(cfg.get("apiVersion") or ""), install_hint=cfg.get("installHint"),
                   cluster=spec_cluster, user=user)

    def cached(self) -> ExecCredential | None:
        """The last credential while it has not expired."""
        c = self._cached
        return c if c is not None and not c.expired() else None

    async def credential(self, *, rejected: ExecCredential | None = None) -> ExecCredential:
        """The cached credential while it is valid and is not `rejected` (the one a server answered 401 to),
        else a new one from the command; concurrent callers on one event loop share one run."""
        cached = self.cached()
        if cached is not None and cached is not rejected:
            return cached
        loop = asyncio.get_running_loop()
        return await self._running.run(loop, self._refresh, f"exec plugin {self.command}")

    async def _refresh(self) -> ExecCredential:
        fresh = await self.run()
        self._cached = fresh
        return fresh

    def exec_info(self) -> str:
        """KUBERNETES_EXEC_INFO: the ExecCredential request the plugin may read."""
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = self.cluster
        return json.dumps({"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec})

    async def run(self) -> ExecCredential:
        """Run the command once (no cache)."""
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": self.exec_info()}
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                self.command, *self.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            hint = f": {_one_line(self.install_hint)}" if self.install_hint else \
                " (install it, or fix the command in the kubeconfig)"
            raise ExecPluginError(f'exec plugin "{self.command}" of user "{self.user}" not found{hint}') from None
        except PermissionError:
            raise ExecPluginError(f'exec plugin "{self.command}" of user "{self.user}" is not executable') from None
        assert proc.stdout is not None and proc.stderr is not None
        err: list[bytes] = []
        try:
            out, _, _ = await asyncio.gather(proc.stdout.read(), _relay(proc.stderr, err), proc.wait())
        except BaseException:
            _kill(proc)
            raise
        if proc.returncode != 0:
            said = _last_line(b"".join(err)) or "nothing on stderr"
            raise ExecPluginError(f'exec plugin "{self.command}" of user "{self.user}" failed '
                                  f"(exit code {proc.returncode}): {said}")
        return parse_exec_credential(out, self.api_version, self.command)


def _kill(proc: asyncio.subprocess.Process) -> None:
    """End a plugin whose caller gave up (a request's or a Lease renewal's timeout, a task cancelled): left to
    run, a plugin that hangs (a network it cannot reach, a login nobody completes) stayed, and every later
    attempt started one more."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def cluster_info(cluster: Mapping[str, Any], ca_pem: bytes | None) -> dict[str, Any]:
    """spec.cluster of KUBERNETES_EXEC_INFO for a kubeconfig cluster (provideClusterInfo)."""
    info: dict[str, Any] = {"server": cluster.get("server")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url"):
        if cluster.get(key):
            info[key] = cluster[key]
    if ca_pem:
        info["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    for ext in cluster.get("extensions") or []:
        if ext.get("name") == "client.authentication.k8s.io/exec":
            info["config"] = ext.get("extension")
    return info


__all__ = ["API_VERSIONS", "CredentialsError", "ExecCredential", "ExecPlugin", "ExecPluginError", "cluster_info",
           "parse_exec_credential"]
