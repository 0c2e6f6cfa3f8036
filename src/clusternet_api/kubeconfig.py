"""Kubeconfigs read as kubectl reads them, for the hub, the agent and `kubectl clusternet`.

Which files: `--kubeconfig` alone (it must exist); else every file of `$KUBECONFIG` that exists, in order, each
once; else `~/.kube/config`; else, for the operators, in-cluster credentials (`kube.Credentials.load`). Several
files merge as kubectl merges them: the first file to name a cluster, user or context wins that name, the first to
set `current-context` sets it, and a relative path (`certificate-authority`, `client-certificate`, `client-key`,
`tokenFile`, an exec `command` with a slash) is relative to the directory of the file it is written in.

What a context may use: CA data or file, `insecure-skip-tls-verify`, `tls-server-name`, `proxy-url` (http:// and
https:// proxies; socks5 is refused with a message), client certificate and key (data or files), `token` or
`tokenFile` (re-read every minute), username/password (basic auth), `exec` credential plugins
(`clusternet_api.execplugin`: v1 and v1beta1, cached until expiry, run again on a 401) and the `oidc`
auth-provider's `id-token` as a bearer token (not refreshed: an expired one is an error saying what to do). The
`gcp` and `azure` auth-providers, gone from kubectl since 1.26, are an error naming the exec plugin that replaced
them. Where a user holds several methods, exec wins, then auth-provider, then token/tokenFile, then basic auth.
Every problem is a KubeconfigError whose message is one line a person can act on.

Why our own loader and not the `kubernetes` package (37.0.2) or kr8s (0.20.15), measured on this 2-core machine
(shared with a benchmark, so best of 15 runs of `python -c "import ..."`, on top of the yaml, aiohttp and click the
plugin loads anyway): `kubernetes.config` adds 0.23 s (it imports the whole generated client and urllib3; 0.18 to
0.26 s by `-X importtime`), kr8s adds 0.20 s (httpx, anyio, its own client), this module with execplugin adds
0.008 s. The imports of `kubectl clusternet get` take 0.32 s in all, so either library would have made every
command start 60 to 70% slower, for a kubectl plugin people type by hand. Nor would either have spared much code:
the kubernetes loader configures a synchronous urllib3 client (certificates through temporary files, exec plugins
run blocking, no re-run on a 401 for our aiohttp client), kr8s is an httpx client of its own. What a kubeconfig
needs is this module and execplugin.py, about 510 lines with docstrings, and their tests.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from clusternet_api.execplugin import CredentialsError, ExecPlugin, cluster_info
from clusternet_api.redaction import redact_url

Obj = dict[str, Any]

# kubeconfig keys that name files, per section: made absolute against the file they are written in
_FILE_KEYS = {"clusters": ("certificate-authority",), "users": ("client-certificate", "client-key", "tokenFile"),
              "contexts": ()}
_SECTIONS = {"clusters": "cluster", "users": "user", "contexts": "context"}
_REMOVED_PROVIDERS = {
    "gcp": "install gke-gcloud-auth-plugin (gcloud components install gke-gcloud-auth-plugin) and run "
           "`gcloud container clusters get-credentials` again, which switches the kubeconfig to it",
    "azure": "convert the kubeconfig to the kubelogin exec plugin (kubelogin convert-kubeconfig)",
}


class KubeconfigError(CredentialsError):
    """A kubeconfig that cannot be used: missing, unreadable, or without the named context, cluster or user."""


def default_path() -> Path:
    return Path.home() / ".kube" / "config"


def _unique(paths: Sequence[Path]) -> list[Path]:
    seen: set[Path] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def split_paths(value: str) -> list[Path]:
    """The files of a $KUBECONFIG-style list (os.pathsep-separated), each once."""
    return _unique([Path(p) for p in value.split(os.pathsep) if p])


def kubeconfig_files(explicit: str | Path | None = None) -> list[Path]:
    """kubectl's files: `explicit` alone (KubeconfigError when it is missing), else the existing files of
    $KUBECONFIG, else ~/.kube/config when it exists; [] when there is none (in-cluster credentials may remain)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise KubeconfigError(f"kubeconfig {path} not found" if not path.exists() else
                                  f"kubeconfig {path} is not a file")
        return [path]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in split_paths(env) if p.is_file()]
    default = default_path()
    return [default] if default.is_file() else []


def no_kubeconfig() -> KubeconfigError:
    """The error for "no kubeconfig anywhere", naming where one was looked for."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return KubeconfigError(f"no kubeconfig: none of the files in $KUBECONFIG exists ({env})")
    return KubeconfigError(f"no kubeconfig: pass --kubeconfig, set $KUBECONFIG or create {default_path()}")


def files_for(value: str | Path | None) -> list[Path]:
    """The files a kubeconfig option stands for: None for kubectl's lookup, a path, or a $KUBECONFIG-style list
    (the hub takes its --kubeconfig from $KUBECONFIG); KubeconfigError when that gives no file."""
    if isinstance(value, str) and os.pathsep in value:
        files = [p for p in split_paths(value) if p.is_file()]
    else:
        files = kubeconfig_files(value or None)
    if not files:
        raise no_kubeconfig()
    return files


def read_file(path: Path) -> Obj:
    """One kubeconfig file, parsed; an empty file is an empty config (kubectl ignores it)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {e.strerror or e}") from None
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") \
            from None
    if not isinstance(cfg, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a kubeconfig (expected a mapping, got {type(cfg).__name__})")
    return cfg


def _absolute(base: Path, value: Any) -> Any:
    return str(base / value) if isinstance(value, str) and value and not os.path.isabs(value) else value


def merge(files: Sequence[Path]) -> Obj:
    """One config from several, kubectl's way: {"clusters": {name: cluster}, "users": ..., "contexts": ...,
    "current-context": name or None}, with every file path absolute."""
    merged: Obj = {section: {} for section in _SECTIONS}
    merged["current-context"] = None
    for path in files:
        cfg = read_file(path)
        base = path.absolute().parent
        if not merged["current-context"] and cfg.get("current-context"):
            merged["current-context"] = str(cfg["current-context"])
        for section, key in _SECTIONS.items():
            for entry in cfg.get(section) or []:
                if not isinstance(entry, dict) or not entry.get("name") or str(entry["name"]) in merged[section]:
                    continue
                if not isinstance(entry.get(key) or {}, dict):  # a traceback (ValueError) until 2026-12-06
                    raise KubeconfigError(f'{path}: the {key} of {section[:-1]} "{entry["name"]}" is not a map')
                body = dict(entry.get(key) or {})
                for file_key in _FILE_KEYS[section]:
                    if body.get(file_key):
                        body[file_key] = _absolute(base, body[file_key])
                exec_cfg = body.get("exec")
                if section == "users" and isinstance(exec_cfg, dict) and "/" in str(exec_cfg.get("command") or ""):
                    body["exec"] = {**exec_cfg, "command": _absolute(base, exec_cfg["command"])}
                merged[section][str(entry["name"])] = body
    return merged


@dataclass(frozen=True)
class Resolved:
    """How one context of a kubeconfig reaches its cluster: the fields of kube.Credentials, and the namespace the
    context sets."""

    context: str
    server: str
    namespace: str | None = None
    ca_pem: bytes | None = None
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    exec_plugin: ExecPlugin | None = None


def _data_or_file(section: Mapping[str, Any], data_key: str, file_key: str, owner: str) -> bytes | None:
    if section.get(data_key):
        try:
            return base64.b64decode("".join(str(section[data_key]).split()), validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"{data_key} of {owner} is not valid base64") from None
    if section.get(file_key):
        try:
            return Path(section[file_key]).read_bytes()
        except OSError as e:
            raise KubeconfigError(f"cannot read {file_key} {section[file_key]} of {owner}: {e.strerror or e}") \
                from None
    return None


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, None when it is not a JWT or has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) if isinstance(claims, dict) and "exp" in claims else None
    except (IndexError, ValueError, TypeError, binascii.Error):
        return None


def auth_provider_token(provider: Mapping[str, Any], user: str) -> str:
    """The bearer token of an `auth-provider` (oidc's id-token); KubeconfigError for the others."""
    name = str(provider.get("name") or "")
    if name in _REMOVED_PROVIDERS:
        raise KubeconfigError(f'the auth-provider "{name}" of user "{user}" was removed in kubectl 1.26: '
                              f"{_REMOVED_PROVIDERS[name]}")
    if name != "oidc":
        raise KubeconfigError(f'the auth-provider "{name}" of user "{user}" is not supported: '
                              "switch the user to an exec credential plugin")
    token = str((provider.get("config") or {}).get("id-token") or "")
    if not token:
        raise KubeconfigError(f'the oidc auth-provider of user "{user}" holds no id-token: log in once with '
                              "kubectl, or switch to the exec plugin kubelogin (kubectl oidc-login)")
    expiry = jwt_expiry(token)
    if expiry is not None and expiry <= time.time():
        when = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise KubeconfigError(f'the oidc id-token of user "{user}" expired at {when} and clusternet does not '
                              "refresh it: run any kubectl command once (kubectl refreshes it in the kubeconfig), "
                              "or switch to the exec plugin kubelogin (kubectl oidc-login)")
    return token


def resolve(files: Sequence[Path], context: str | None = None) -> Resolved:
    """What the named (else the current) context of the merged files says; KubeconfigError when it cannot be
    used. Exec plugins are not run here: the client runs them before its first request."""
    cfg = merge(files)
    where = ", ".join(str(f) for f in files)
    name = context or cfg["current-context"]
    if not name:
        raise KubeconfigError(f"the kubeconfig ({where}) sets no current-context: pass --context")
    ctx = cfg["contexts"].get(name)
    if ctx is None:
        raise KubeconfigError(f'context "{name}" not found in kubeconfig ({where})')
    cluster_name, user_name = str(ctx.get("cluster") or ""), str(ctx.get("user") or "")
    cluster = cfg["clusters"].get(cluster_name)
    if cluster is None:
        raise KubeconfigError(f'cluster "{cluster_name}" of context "{name}" not found in kubeconfig ({where})')
    if not cluster.get("server"):
        raise KubeconfigError(f'cluster "{cluster_name}" in kubeconfig ({where}) has no server')
    user: Obj = cfg["users"].get(user_name) if user_name else {}
    if user is None:
        raise KubeconfigError(f'user "{user_name}" of context "{name}" not found in kubeconfig ({where})')
    owner = f'user "{user_name}"'
    ca = _data_or_file(cluster, "certificate-authority-data", "certificate-authority", f'cluster "{cluster_name}"')
    proxy = str(cluster.get("proxy-url") or "") or None
    if proxy and urlsplit(proxy).scheme not in ("http", "https"):
        raise KubeconfigError(f'proxy-url {redact_url(proxy)} of cluster "{cluster_name}" is not supported: '
                              "only http:// and https:// proxies are (no socks5)")
    token, token_file, exec_plugin = None, None, None
    if isinstance(user.get("exec"), dict):
        exec_plugin = ExecPlugin.from_config(user["exec"], user_name, cluster_info(cluster, ca))
    elif isinstance(user.get("auth-provider"), dict):
        token = auth_provider_token(user["auth-provider"], user_name)
    elif user.get("token"):
        token = str(user["token"])
    elif user.get("tokenFile"):
        token_file = str(user["tokenFile"])
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise KubeconfigError(f"cannot read tokenFile {token_file} of {owner}: {e.strerror or e}") from None
    return Resolved(
        context=name, server=str(cluster["server"]), namespace=str(ctx.get("namespace") or "") or None,
        ca_pem=ca, token=token, token_file=token_file,
        cert_pem=_data_or_file(user, "client-certificate-data", "client-certificate", owner),
        key_pem=_data_or_file(user, "client-key-data", "client-key", owner),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=str(cluster.get("tls-server-name") or "") or None, proxy_url=proxy,
        username=str(user.get("username") or "") or None, password=str(user.get("password") or "") or None,
        exec_plugin=exec_plugin)


def kubeconfig_path(explicit: str | Path | None = None) -> Path | None:
    """The first of kubectl's files (`explicit`, else the first of $KUBECONFIG, else ~/.kube/config when it
    exists); None when there is none. Kept for callers that want one file; `kubeconfig_files` has them all."""
    if explicit:
        return Path(explicit)
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env:
        return Path(env[0])
    default = default_path()
    return default if default.exists() else None


def kubeconfig_namespace(path: str | Path | Sequence[Path], context: str | None = None) -> str | None:
    """The namespace the named (else the current) context sets, if any (kubectl's default namespace); None
    also when the files or the context are missing."""
    files = [Path(path)] if isinstance(path, str | Path) else list(path)
    try:
        cfg = merge(files)
    except KubeconfigError:
        return None
    ctx = cfg["contexts"].get(context or cfg["current-context"] or "")
    return str(ctx.get("namespace") or "") or None if ctx is not None else None


__all__ = ["KubeconfigError", "Resolved", "auth_provider_token", "default_path", "files_for", "jwt_expiry",
           "kubeconfig_files", "kubeconfig_namespace", "kubeconfig_path", "merge", "no_kubeconfig", "read_file",
           "resolve", "split_paths"]
