"""A thin async Kubernetes access layer over kubernetes_asyncio, shared by hub and agent.

Why a wrapper at all: both operators talk to several clusters (the parent, a child, a child through the
tunnel) with plain-dict objects, server-side apply and "absent is fine" semantics. kubernetes_asyncio's
dynamic client does the REST work; this module only fixes the conventions (dicts in, dicts out, 404 as
None, one ApiClient per cluster) so handlers stay short.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient
from kubernetes_asyncio.dynamic.exceptions import ResourceNotFoundError

Obj = dict[str, Any]

# Built-in kinds the harness and the operators address without discovery.
_CORE_PLURALS = {
    "Namespace": ("namespaces", False),
    "Secret": ("secrets", True),
    "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True),
    "Service": ("services", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "APIService": ("apiservices", False),
    "Deployment": ("deployments", True),
    "Lease": ("leases", True),
}


def object_path(obj: Mapping[str, Any]) -> str:
    """REST path of a built-in object (no discovery); used by the test harness for set-up."""
    api_version: str = obj["apiVersion"]
    kind: str = obj["kind"]
    meta = obj.get("metadata", {})
    plural, namespaced = _CORE_PLURALS[kind]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{base}{ns}/{plural}/{meta['name']}"


@dataclass(frozen=True)
class Credentials:
    """Where and how to reach one API server. Tokens are never part of repr() or logs."""

    server: str
    ca_pem: bytes | None = None
    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    insecure: bool = False

    def __repr__(self) -> str:
        return f"Credentials(server={self.server!r}, token={'***' if self.token else None})"

    @classmethod
    def from_kubeconfig(cls, path: str | Path | None = None, context: str | None = None) -> Credentials:
        """Read credentials from a kubeconfig file (token or client certificate; CA data or file)."""
        path = Path(path) if path else Path.home() / ".kube" / "config"
        cfg = yaml.safe_load(path.read_text())
        ctx_name = context or cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user: dict[str, Any] = next(
            (u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {}) or {}

        def data_or_file(data_key: str, file_key: str, section: Mapping[str, Any]) -> bytes | None:
            if section.get(data_key):
                return base64.b64decode(str(section[data_key]))
            if section.get(file_key):
                return (path.parent / str(section[file_key])).read_bytes()
            return None

        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (path.parent / user["tokenFile"]).read_text().strip()
        return cls(
            server=cluster["server"],
            ca_pem=data_or_file("certificate-authority-data", "certificate-authority", cluster),
            token=token,
            cert_pem=data_or_file("client-certificate-data", "client-certificate", user),
            key_pem=data_or_file("client-key-data", "client-key", user),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )

    @classmethod
    def in_cluster(cls) -> Credentials:
        """The pod's own ServiceAccount credentials."""
        import os

        sa = Path("/var/run/secrets/kubernetes.io/serviceaccount")
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        if ":" in host:
            host = f"[{host}]"
        return cls(server=f"https://{host}:{port}", ca_pem=(sa / "ca.crt").read_bytes(),
                   token=(sa / "token").read_text().strip())

    @classmethod
    def load(cls, kubeconfig: str | Path | None) -> Credentials:
        """A kubeconfig when given, else in-cluster config, else ~/.kube/config."""
        import os

        if kubeconfig:
            return cls.from_kubeconfig(kubeconfig)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster()
        return cls.from_kubeconfig(os.environ.get("KUBECONFIG") or None)

    def with_token(self, token: str) -> Credentials:
        return Credentials(self.server, self.ca_pem, token, None, None, self.insecure)

    def kubeconfig_dict(self, name: str = "cluster", namespace: str | None = None) -> Obj:
        user: Obj = {}
        if self.token:
            user["token"] = self.token
        if self.cert_pem and self.key_pem:
            user["client-certificate-data"] = base64.b64encode(self.cert_pem).decode()
            user["client-key-data"] = base64.b64encode(self.key_pem).decode()
        cluster: Obj = {"server": self.server}
        if self.ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        if self.insecure:
            cluster["insecure-skip-tls-verify"] = True
        ctx: Obj = {"cluster": name, "user": name}
        if namespace:
            ctx["namespace"] = namespace
        return {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": name, "cluster": cluster}],
                "users": [{"name": name, "user": user}], "contexts": [{"name": name, "context": ctx}],
                "current-context": name}


def _configuration(creds: Credentials) -> k8s.Configuration:
    cfg = k8s.Configuration()
    cfg.host = creds.server
    if creds.token:
        cfg.api_key = {"BearerToken": creds.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
    tmp = Path(tempfile.mkdtemp(prefix="clusternet-creds-"))
    if creds.ca_pem:
        (tmp / "ca.crt").write_bytes(creds.ca_pem)
        cfg.ssl_ca_cert = str(tmp / "ca.crt")
    if creds.cert_pem and creds.key_pem:
        (tmp / "tls.crt").write_bytes(creds.cert_pem)
        (tmp / "tls.key").write_bytes(creds.key_pem)
        cfg.cert_file, cfg.key_file = str(tmp / "tls.crt"), str(tmp / "tls.key")
    cfg.verify_ssl = not creds.insecure
    return cfg


class Kube:
    """One API server, dict-based. `async with Kube(creds) as kube:` or call `close()`."""

    def __init__(self, creds: Credentials, *, user_agent: str = "clusternet-py") -> None:
        self.creds = creds
        self.api = k8s.ApiClient(_configuration(creds))
        self.api.user_agent = user_agent
        self._dyn: DynamicClient | None = None
        self._dyn_lock = asyncio.Lock()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.api.close()

    def set_token(self, token: str) -> None:
        """Use a refreshed bearer token for subsequent requests."""
        self.api.configuration.api_key = {"BearerToken": token}
        self.creds = self.creds.with_token(token)

    async def dynamic(self) -> DynamicClient:
        async with self._dyn_lock:  # one discovery, however many requests start at once
            if self._dyn is None:
                cache = Path(tempfile.gettempdir()) / f"clusternet-discovery-{abs(hash(self.creds.server))}.json"
                self._dyn = await DynamicClient(self.api, cache_file=str(cache))
        return self._dyn

    async def resource(self, api_version: str, kind: str) -> Any:
        dyn = await self.dynamic()
        try:
            return await dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            await dyn.resources.invalidate_cache()
            return await dyn.resources.get(api_version=api_version, kind=kind)

    async def path(self, api_version: str, kind: str, name: str | None = None,
                   namespace: str | None = None, subresource: str | None = None) -> str:
        res = await self.resource(api_version, kind)
        path: str = res.path(name=name, namespace=namespace if res.namespaced else None)
        return f"{path}/{subresource}" if subresource else path

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json",
                      query: Mapping[str, str] | None = None) -> Obj:
        """One request; JSON result as a dict. Non-2xx answers raise ApiException (status, reason, body)."""
        status, result = await self.raw(method, path, body, content_type=content_type, query=query)
        if not 200 <= status < 300:
            reason = result.get("message") if isinstance(result, dict) else str(result)[:200]
            error = ApiException(status=status, reason=reason)
            error.body = (result if isinstance(result, str) else json.dumps(result)).encode()
            raise error
        return result if isinstance(result, dict) else {}

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return await self.request("GET", await self.path(api_version, kind, name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Obj]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", await self.path(api_version, kind, namespace=namespace), query=query)
        items: list[Obj] = result.get("items", [])
        return items

    async def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", await self.path(obj["apiVersion"], obj["kind"], namespace=ns), obj)

    async def create_or_get(self, obj: Obj) -> tuple[Obj, bool]:
        """Create, or return the existing object when it is already there (idempotent retries)."""
        meta = obj["metadata"]
        try:
            return await self.create(obj), True
        except ApiException as e:
            if e.status != 409 or "name" not in meta:
                raise
        existing = await self.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if existing is None:  # deleted in between: try once more
            return await self.create(obj), True
        return existing, False

    async def apply(self, obj: Obj, field_manager: str, force: bool = True) -> Obj:
        """Server-side apply."""
        meta = obj["metadata"]
        path = await self.path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        query = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return await self.request("PATCH", path, obj, content_type="application/apply-patch+yaml", query=query)

    async def patch(self, api_version: str, kind: str, name: str, body: Any, namespace: str | None = None,
                    *, subresource: str | None = None,
                    content_type: str = "application/merge-patch+json") -> Obj:
        path = await self.path(api_version, kind, name, namespace, subresource)
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            await self.request("DELETE", await self.path(api_version, kind, name, namespace), body)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    async def raw(self, method: str, path: str, body: Any = None, *, content_type: str | None = None,
                  query: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """An arbitrary request (health endpoints, /version); returns (status, parsed body or text)."""
        headers = {"Accept": "application/json, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            resp = await self.api.call_api(
                path, method, header_params=headers, body=body, query_params=list((query or {}).items()),
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True)
            text = (await resp.read()).decode(errors="replace")
            status = int(resp.status)
        except ApiException as e:
            return int(e.status), e.body
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    async def watch(self, api_version: str, kind: str, namespace: str | None = None,
                    server_timeout: int = 60, resource_version: str | None = None) -> AsyncIterator[Obj]:
        """Watch events as dicts {type, object} until the server closes the stream."""
        query = [("watch", "1"), ("timeoutSeconds", str(server_timeout)), ("allowWatchBookmarks", "true")]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        resp = await self.api.call_api(
            await self.path(api_version, kind, namespace=namespace), "GET",
            header_params={"Accept": "application/json"}, query_params=query, auth_settings=["BearerToken"],
            _preload_content=False, _return_http_data_only=True, _request_timeout=server_timeout + 10)
        try:
            if resp.status != 200:
                raise ApiException(status=resp.status, reason=(await resp.read()).decode(errors="replace"))
            async for line in resp.content:
                if line.strip():
                    event: Obj = json.loads(line)
                    yield event
        finally:
            resp.release()


def is_status(e: BaseException, *codes: int) -> bool:
    """True when `e` is an API error with one of the given HTTP status codes."""
    return isinstance(e, ApiException) and e.status in codes


__all__ = ["ApiException", "Credentials", "Kube", "Obj", "is_status", "object_path"]
