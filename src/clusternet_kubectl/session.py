"""The parent connection of one command, and what the command learns about the parent on the way.

Credentials, the kubeconfig lookup and discovery are `clusternet_api.kube`'s, shared with hub and agent. On top,
kubectl's rules: --kubeconfig, else the first file of $KUBECONFIG, else ~/.kube/config, else in-cluster; the
namespace from -n, else the context's, else `default`. Where we differ from kubectl: only the first $KUBECONFIG
file is read (kubectl merges them all), and only tokens and client certificates are understood (no exec or
auth-provider plugins).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
import yaml

from clusternet_api import __version__, known
from clusternet_api.kube import (
    ApiException,
    Credentials,
    Kube,
    Obj,
    ResourceNotFound,
    kubeconfig_namespace,
    kubeconfig_path,
)
from clusternet_kubectl.errors import PluginError, api_error
from clusternet_kubectl.resources import Resource, match_resource, split_group

T = TypeVar("T")
Command = Callable[..., Awaitable[int]]


async def once(cache: dict[str, asyncio.Future[T]], key: str, fetch: Callable[[], Awaitable[T]]) -> T:
    """The result of `fetch` for `key`, asked for only once however many tasks want it at the same time
    (`apply` works on several objects at once, which need the same lookups)."""
    if key not in cache:
        cache[key] = asyncio.ensure_future(fetch())
    return await asyncio.shield(cache[key])


@dataclass
class Session:
    """The parent connection, the namespace commands default to, and the namespaces seen so far."""

    kube: Kube
    namespace: str
    namespaces_seen: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    reserved: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    async def namespace_exists(self, namespace: str) -> bool:
        async def fetch() -> bool:
            status, _ = await self.kube.raw("GET", f"/api/v1/namespaces/{namespace}")
            return status == 200

        return await once(self.namespaces_seen, namespace, fetch)

    async def ensure_reserved_namespace(self) -> None:
        """Create clusternet-reserved (where templates live) unless it exists; once per command."""
        async def create() -> None:
            if await self.namespace_exists(known.RESERVED_NAMESPACE):
                return
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": known.RESERVED_NAMESPACE}}
            try:
                await self.kube.request("POST", "/api/v1/namespaces", ns)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            created: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            created.set_result(True)
            self.namespaces_seen[known.RESERVED_NAMESPACE] = created

        await once(self.reserved, known.RESERVED_NAMESPACE, create)

    async def find(self, api_version: str, kind: str) -> Resource | None:
        """The resource serving `kind` in `api_version`, or None when the parent does not serve it."""
        try:
            plural, namespaced = await self.kube.resource(api_version, kind)
        except ResourceNotFound:
            return None
        return Resource(split_group(api_version), api_version.rpartition("/")[2], kind, plural, namespaced)

    async def all_resources(self) -> list[Resource]:
        """Every resource of the preferred version of every group, core first (kubectl's search order)."""
        versions = await self.kube.preferred_versions()
        entries = await asyncio.gather(*(self.kube.resources(v) for v in versions))
        return [Resource.from_api(v, e) for v, es in zip(versions, entries, strict=True) for e in es]

    async def resolve(self, name: str) -> Resource | None:
        """The resource a kubectl-style name (`deploy`, `subs`, `deployments.apps`, `Namespace`) means."""
        return match_resource(await self.all_resources(), name)

    async def list(self, resource: Resource, namespace: str | None = None, selector: str | None = None) -> list[Obj]:
        """The objects of a resource (all namespaces when None), optionally by label selector."""
        query = {"labelSelector": selector} if selector else None
        body = await self.kube.request("GET", resource.path(namespace), query=query)
        items: list[Obj] = body.get("items") or []
        return items


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> tuple[Credentials, str]:
    """Credentials of the parent and the namespace commands default to."""
    path = kubeconfig_path(kubeconfig)
    try:
        creds = Credentials.load(None) if path is None else Credentials.from_kubeconfig(path, context)
        return creds, namespace or (kubeconfig_namespace(path, context) if path else None) or "default"
    except (OSError, KeyError, StopIteration, yaml.YAMLError) as exc:
        raise PluginError(f"cannot load kubeconfig {path or ''}: {exc!r}") from exc


def run(command: Command, *args: Any, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
    """Run an async command against the parent; exit with its code, report PluginErrors and API errors as
    one line."""
    async def main() -> int:
        creds, default_namespace = connect(kubeconfig, context, namespace)
        async with Kube(creds, user_agent=f"kubectl-clusternet/{__version__}") as kube:
            return await command(Session(kube, default_namespace), *args)

    try:
        code = asyncio.run(main())
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        code = 1
    except ApiException as exc:
        click.echo(api_error(exc), err=True)
        code = 1
    sys.exit(code)
