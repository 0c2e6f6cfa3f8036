"""`kubectl clusternet --cluster-id ID --child-kubeconfig FILE <any kubectl command>`: one child, through the hub.

As in Clusternet's plugin, the command goes to the child's API server through the hub's proxy,
`<parent>/apis/proxies.clusternet.io/v1alpha1/sockets/<cluster id>/proxy/direct`, as the parent user
impersonating `clusternet` with the child's token as the user extra `clusternet-token` (the hub turns it into
the child request's bearer token, so the child's own RBAC decides). `--clusternet-as`, `--clusternet-as-group`
and `--clusternet-as-uid` travel as the extras `clusternet-impersonate-user/-group/-uid`, which the hub turns
into Impersonate-* headers towards the child.

Clusternet's plugin is kubectl's own commands compiled in; ours runs the real `kubectl` with a kubeconfig made
for the occasion, so every verb and flag of the installed kubectl works (get -w, -o jsonpath, exec -it, edit,
port-forward, apply -k...) with kubectl's output, stdin/stdout/stderr and exit code. What is ours:

- the routing: the cluster may be named by cluster id, ManagedCluster name or namespace/name (`clusters`);
- the credentials: the generated kubeconfig holds the parent's cluster and user entries as they are (an `exec`
  plugin stays an `exec` stanza that kubectl runs itself; relative paths made absolute) plus the
  impersonation, the child token and the child context's namespace. It is a 0600 temporary file, removed
  when kubectl ends;
- one-line errors, before kubectl starts, for what kubectl would report in several lines or not at all: no
  child credentials, a child kubeconfig with a client certificate (the hub carries only a token, and so
  refuses Clusternet-Certificate), an unknown cluster, flags that would undo the routing (`--server`,
  `--token`, `--as`...), and a probe of `/version` through the proxy (tunnel down, child token rejected,
  impersonation refused, proxy API not registered).

Without `--child-kubeconfig` the command is refused, as Clusternet's plugin refuses it: the hub has no
credentials of its own for children, and the parent's credentials are never sent to a child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from clusternet_api import __version__
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.kubeconfig import KubeconfigError, kubeconfig_files, merge, no_kubeconfig, resolve
from clusternet_api.redaction import redact
from clusternet_kubectl.errors import PluginError, error_line, server_message
from clusternet_kubectl.routing import ChildArgs, RoutingError, split_args, validate

PROXY_USER = "clusternet"
# the RBAC that lets authenticated users impersonate PROXY_USER with the extras below (deploy/hub/)
SOCKETSPROXY_RBAC = "04-socketsproxy_rbac.yaml"
REDACTED = "[REDACTED]"  # what the redacting log filter writes for a token too
EXTRA_TOKEN = "clusternet-token"
EXTRA_AS_USER = "clusternet-impersonate-user"
EXTRA_AS_GROUP = "clusternet-impersonate-group"
EXTRA_AS_UID = "clusternet-impersonate-uid"
PROXY_PATH = "/apis/proxies.clusternet.io/v1alpha1/sockets/{}/proxy/direct"
IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IMPERSONATION_KEYS = ("as", "as-uid", "as-groups", "as-user-extra")
UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

# --- credentials ---------------------------------------------------------------------------------------------

@dataclass
class ChildCredentials:
    token: str = field(repr=False)
    namespace: str | None = None


async def child_credentials(path: str) -> ChildCredentials:
    """The bearer token (and the context's namespace) of the child kubeconfig's current context; an exec
    plugin there is run once, here."""
    try:
        resolved = resolve(kubeconfig_files(path))
    except KubeconfigError as exc:
        raise PluginError(f"--child-kubeconfig: {exc}") from exc
    where = f"the child kubeconfig {path} (context {resolved.context})"
    cert_hint = (f"{where} authenticates with a client certificate, but the hub's proxy carries only a bearer "
                 "token (clusternet-token): use a token, e.g. of a ServiceAccount (kubectl create token NAME "
                 "-n NAMESPACE, against the child)")
    token = resolved.token
    if resolved.exec_plugin is not None:
        credential = await resolved.exec_plugin.credential()
        if not credential.token:
            raise PluginError(cert_hint)
        token = credential.token
    if not token:
        if resolved.cert_pem is not None:
            raise PluginError(cert_hint)
        if resolved.username:
            raise PluginError(f"{where} uses a username and password, but the hub's proxy carries only a bearer "
                              "token (clusternet-token): use a token")
        raise PluginError(f"{where} holds no token: the hub's proxy needs the child's bearer token")
    return ChildCredentials(token, resolved.namespace)


@dataclass
class ParentAccess:
    """The parent's kubeconfig entries as kubectl would use them: cluster and user stanzas, paths absolute."""

    cluster: Obj
    user: Obj

    @property
    def server(self) -> str:
        return str(self.cluster["server"])


def parent_access(kubeconfig: str | None, context: str | None) -> ParentAccess:
    """The entries of the parent's context (--kubeconfig, else $KUBECONFIG merged, else ~/.kube/config, else
    the pod's ServiceAccount); KubeconfigError when they cannot be used."""
    files = kubeconfig_files(kubeconfig)
    if not files:
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise no_kubeconfig()
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return ParentAccess({"server": f"https://{host}:{port}", "certificate-authority": str(IN_CLUSTER / "ca.crt")},
                            {"tokenFile": str(IN_CLUSTER / "token")})
    resolved = resolve(files, context)  # checks the context as the other commands do
    cfg = merge(files)
    ctx = cfg["contexts"][resolved.context]
    user_name = str(ctx.get("user") or "")
    return ParentAccess(dict(cfg["clusters"][str(ctx.get("cluster"))]),
                        dict(cfg["users"].get(user_name) or {}) if user_name else {})


def proxy_server(parent_server: str, cluster_id: str) -> str:
    return parent_server.rstrip("/") + PROXY_PATH.format(quote(cluster_id, safe=""))


def impersonation_extras(token: str, as_user: str | None = None, as_groups: Sequence[str] = (),
                         as_uid: str | None = None) -> dict[str, list[str]]:
    extras = {EXTRA_TOKEN: [token]}
    if as_user:
        extras[EXTRA_AS_USER] = [as_user]
    if as_groups:
        extras[EXTRA_AS_GROUP] = list(as_groups)
    if as_uid:
        extras[EXTRA_AS_UID] = [as_uid]
    return extras


def proxy_kubeconfig(parent: ParentAccess, cluster_id: str, extras: Mapping[str, list[str]],
                     namespace: str | None = None) -> Obj:
    """A kubeconfig that reaches the child through the parent's proxy: the parent's cluster with the proxy's
    server, the parent's user (its own impersonation replaced) as `clusternet` with the extras."""
    name = f"clusternet-{cluster_id}"
    cluster = {**parent.cluster, "server": proxy_server(parent.server, cluster_id)}
    user = {k: v for k, v in parent.user.items() if k not in IMPERSONATION_KEYS}
    user.update({"as": PROXY_USER, "as-user-extra": {k: list(v) for k, v in extras.items()}})
    context: Obj = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": name,
            "clusters": [{"name": name, "cluster": cluster}], "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": context}]}


# --- the cluster and the probe -------------------------------------------------------------------------------

async def find_child(kube: Kube, ref: str) -> tuple[str, str]:
    """(cluster id, how to name the cluster in messages) for what the user typed."""
    from clusternet_kubectl.clusters import cluster_id_of, find_cluster
    from clusternet_kubectl.resources import namespaced_name
    from clusternet_kubectl.session import Session

    try:
        cluster = await find_cluster(Session(kube, "default"), ref)
    except ApiException as exc:
        if exc.status == 403 and UUID.match(ref):  # may not list ManagedClusters: the hub knows the id or not
            return ref, f"cluster {ref}"
        raise
    cluster_id = cluster_id_of(cluster)
    return cluster_id, f"cluster {namespaced_name(cluster)} ({cluster_id})"


def probe_headers(extras: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    """Impersonation headers for one probe request (one value per extra: the probe does not need them all)."""
    return [("Impersonate-User", PROXY_USER),
            *((f"Impersonate-Extra-{key}", values[0]) for key, values in extras.items())]


def without_tokens(message: str, extras: Mapping[str, list[str]]) -> str:
    """An answer of the parent fit to print: kube-apiserver's 403 for a refused extra names the extra's value,
    `userextras.authentication.k8s.io "<the child token>" is forbidden`. The token is replaced by its exact value
    (a static token looks like no token), then anything else that looks like one."""
    for token in extras.get(EXTRA_TOKEN, []):
        if token:
            message = message.replace(token, REDACTED)
    return redact(message)


async def probe(kube: Kube, cluster_id: str, extras: Mapping[str, list[str]], what: str, child_path: str) -> None:
    """GET /version of the child through the proxy; PluginError naming the problem when that fails."""
    status, body = await kube.raw("GET", PROXY_PATH.format(quote(cluster_id, safe="")) + "/version",
                                  extra_headers=probe_headers(extras))
    if 200 <= status < 300:
        return
    message = without_tokens(" ".join(server_message(body).split()), extras)
    if status == 401:
        raise PluginError(f"{what} rejected the token of --child-kubeconfig {child_path} (401 Unauthorized)")
    if status == 404 and "no managed cluster" not in message:
        raise PluginError(f"the parent does not serve proxies.clusternet.io (404 {message}): register the hub's "
                          f"APIService (deploy/hub/apiservice.yaml) to reach {what}")
    if status == 403 and (f'users "{PROXY_USER}" is forbidden' in message or '"userextras/clusternet-' in message):
        raise PluginError(f"the parent refused the proxy's impersonation (apply deploy/hub/{SOCKETSPROXY_RBAC} "
                          f"there): {message}")
    if status >= 500:
        raise PluginError(f"{what} cannot be reached through the hub ({status}): {message}")
    raise PluginError(f"{what} answered {status}: {message}")


async def prepare(args: ChildArgs, used: list[Credentials]) -> Obj:
    """The kubeconfig kubectl gets, after checking everything that can be checked first."""
    from clusternet_kubectl.session import connect

    assert args.cluster_id and args.child_kubeconfig
    child = await child_credentials(args.child_kubeconfig)
    parent = parent_access(args.kubeconfig, args.context)
    creds, _ = connect(args.kubeconfig, args.context, None)
    used.append(creds)
    extras = impersonation_extras(child.token, args.as_user, args.as_groups, args.as_uid)
    async with Kube(creds, user_agent=f"kubectl-clusternet/{__version__}") as kube:
        cluster_id, what = await find_child(kube, args.cluster_id)
        await probe(kube, cluster_id, extras, what, args.child_kubeconfig)
    return proxy_kubeconfig(parent, cluster_id, extras, child.namespace)


# --- running kubectl -----------------------------------------------------------------------------------------

def run_inherited(command: Sequence[str]) -> int:
    """Run a command on our stdin, stdout and stderr (a terminal stays a terminal: exec -it, edit); return its
    exit code (128+N when signal N ended it). Ctrl-C and Ctrl-\\ reach it from the terminal (we ignore them
    meanwhile), SIGTERM and SIGHUP sent to us are passed on."""
    proc = subprocess.Popen(list(command))
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def forward(signum: int, _frame: object) -> None:
            proc.send_signal(signum)

        for ignored in (signal.SIGINT, signal.SIGQUIT):
            previous[ignored] = signal.signal(ignored, signal.SIG_IGN)
        for passed in (signal.SIGTERM, signal.SIGHUP):
            previous[passed] = signal.signal(passed, forward)
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def run_kubectl(config: Obj, kubectl_args: Sequence[str], debug: bool = False) -> int:
    """Run the real kubectl with `config` in a 0600 temporary kubeconfig, removed afterwards."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise PluginError("kubectl not found on PATH: --cluster-id runs the real kubectl against the child")
    fd, path = tempfile.mkstemp(prefix="kubectl-clusternet-", suffix=".kubeconfig")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(config, f)
        command = [kubectl, f"--kubeconfig={path}", *kubectl_args]
        if debug:
            click.echo(f"running: {' '.join(command)}", err=True)
        return run_inherited(command)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def main(argv: Sequence[str]) -> int:
    """Run a `--cluster-id` command line; the exit code (kubectl's, or 1 with one line on stderr)."""
    try:
        args = split_args(argv)
        validate(args)
    except RoutingError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    used: list[Credentials] = []
    try:
        config = asyncio.run(prepare(args, used))
        return run_kubectl(config, args.kubectl_args, args.debug)
    except KeyboardInterrupt:
        if args.debug:
            raise
        return 130
    except Exception as exc:
        if args.debug:
            raise
        server, proxy = (used[0].server, used[0].proxy_url) if used else ("", None)
        click.echo(error_line(exc, server, proxy), err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
