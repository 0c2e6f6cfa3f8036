"""Where and how to reach one API server: `Credentials`, from a kubeconfig (clusternet_api.kubeconfig), the pod's
ServiceAccount or a token, and the TLS context they make. `clusternet_api.kube` re-exports both."""

from __future__ import annotations

import base64
import dataclasses
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusternet_api.execplugin import ExecPlugin
from clusternet_api.kubeconfig import Resolved, files_for, resolve
from clusternet_api.redaction import redact_url
from clusternet_api.tlsfiles import load_cert_chain_pem

Obj = dict[str, Any]


@dataclass(frozen=True)
class Credentials:
    """Where and how to reach one API server. Tokens, passwords and keys are never part of repr() or logs.

    `token_file`, when set, is re-read every minute (in-cluster ServiceAccount tokens are rotated);
    `exec_plugin`, when set, gives the token or client certificate (run before the first request, again when its
    credential expires or the server answers 401: see `Kube`). Kubeconfigs are read by clusternet_api.kubeconfig.
    """

    server: str
    ca_pem: bytes | None = None
    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    insecure: bool = False
    token_file: str | None = None
    tls_server_name: str | None = None
    proxy_url: str | None = None
    username: str | None = None
    password: str | None = None
    exec_plugin: ExecPlugin | None = dataclasses.field(default=None, compare=False)

    def __repr__(self) -> str:
        auth = " exec" if self.exec_plugin else ""
        return f"Credentials(server={redact_url(self.server)!r}, token={'***' if self.token else None}{auth})"

    @classmethod
    def from_kubeconfig(cls, path: str | Path | None = None, context: str | None = None) -> Credentials:
        """The named (else the current) context of a kubeconfig, read as kubectl reads it: `path`, a
        $KUBECONFIG-style list of paths, or None for kubectl's lookup ($KUBECONFIG merged, ~/.kube/config).
        KubeconfigError (one line for a person) when it cannot be used."""
        return cls.from_resolved(resolve(files_for(path), context))

    @classmethod
    def from_resolved(cls, r: Resolved) -> Credentials:
        return cls(server=r.server, ca_pem=r.ca_pem, token=r.token, cert_pem=r.cert_pem, key_pem=r.key_pem,
                   insecure=r.insecure, token_file=r.token_file, tls_server_name=r.tls_server_name,
                   proxy_url=r.proxy_url, username=r.username, password=r.password, exec_plugin=r.exec_plugin)

    @classmethod
    def in_cluster(cls) -> Credentials:
        """The pod's own ServiceAccount credentials."""
        sa = Path("/var/run/secrets/kubernetes.io/serviceaccount")
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        if ":" in host:
            host = f"[{host}]"
        return cls(server=f"https://{host}:{port}", ca_pem=(sa / "ca.crt").read_bytes(),
                   token=(sa / "token").read_text().strip(), token_file=str(sa / "token"))

    @classmethod
    def load(cls, kubeconfig: str | Path | None) -> Credentials:
        """A kubeconfig when given (a path or a $KUBECONFIG-style list), else in-cluster config, else kubectl's
        lookup ($KUBECONFIG, ~/.kube/config). Operators prefer their in-cluster ServiceAccount to a $KUBECONFIG."""
        if kubeconfig:
            return cls.from_kubeconfig(kubeconfig)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster()
        return cls.from_kubeconfig(None)

    def with_token(self, token: str) -> Credentials:
        """The same server and TLS settings with another identity: this bearer token."""
        return Credentials(self.server, self.ca_pem, token, None, None, self.insecure,
                           tls_server_name=self.tls_server_name, proxy_url=self.proxy_url)

    def kubeconfig_dict(self, name: str = "cluster", namespace: str | None = None) -> Obj:
        """A kubeconfig of these credentials (an exec plugin's current token, not the plugin)."""
        user: Obj = {}
        if self.token:
            user["token"] = self.token
        if self.cert_pem and self.key_pem:
            user["client-certificate-data"] = base64.b64encode(self.cert_pem).decode()
            user["client-key-data"] = base64.b64encode(self.key_pem).decode()
        if self.username and not self.token:
            user["username"], user["password"] = self.username, self.password or ""
        cluster: Obj = {"server": self.server}
        if self.ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        if self.insecure:
            cluster["insecure-skip-tls-verify"] = True
        if self.tls_server_name:
            cluster["tls-server-name"] = self.tls_server_name
        if self.proxy_url:
            cluster["proxy-url"] = self.proxy_url
        ctx: Obj = {"cluster": name, "user": name}
        if namespace:
            ctx["namespace"] = namespace
        return {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": name, "cluster": cluster}],
                "users": [{"name": name, "user": user}], "contexts": [{"name": name, "context": ctx}],
                "current-context": name}


def ssl_context(creds: Credentials) -> ssl.SSLContext | None:
    """TLS settings for one server: its CA pinned (system CAs when none is given), client cert if any."""
    if not creds.server.startswith("https:"):
        return None
    ctx = ssl.create_default_context(cadata=creds.ca_pem.decode() if creds.ca_pem else None)
    if creds.cert_pem and creds.key_pem:
        load_cert_chain_pem(ctx, creds.cert_pem, creds.key_pem)
    if creds.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


__all__ = ["Credentials", "ssl_context"]
