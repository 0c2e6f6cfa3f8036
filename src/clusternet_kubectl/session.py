"""The parent connection of one command, and what the command learns about the parent on the way.

Credentials and discovery are `clusternet_api.kube`'s, kubeconfigs `clusternet_api.kubeconfig`'s, shared with hub
and agent and read as kubectl reads them: --kubeconfig, else the files of $KUBECONFIG merged, else ~/.kube/config,
else in-cluster; --context, else the current context; exec credential plugins and the oidc auth-provider. The
namespace comes from -n, else the context's, else `default`. Every failure is one line on stderr and exit code 1
(error_line); --debug shows the traceback instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from clusternet_api import __version__, known
from clusternet_api.kube import ApiException, Credentials, CredentialsError, Kube, Obj, ResourceNotFound, status_error
from clusternet_api.kubeconfig import kubeconfig_files, no_kubeconfig, resolve
from clusternet_kubectl.errors import PluginError, error_line, stdout_closed
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
            status, body = await self.kube.raw("GET", f"/api/v1/namespaces/{namespace}")
            if status in (401, 403):
                raise status_error(status, body)
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


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> tuple[Credentials, str]:
    """Credentials of the parent and the namespace commands default to; PluginError when there are none."""
    try:
        files = kubeconfig_files(kubeconfig)
        if not files:
            if not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise no_kubeconfig()
            pod_namespace = IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else None
            return Credentials.in_cluster(), namespace or pod_namespace or "default"
        resolved = resolve(files, context)
    except CredentialsError as exc:
        raise PluginError(str(exc)) from exc
    except OSError as exc:
        raise PluginError(f"cannot read the in-cluster credentials: {exc}") from exc
    return Credentials.from_resolved(resolved), namespace or resolved.namespace or "default"


def run(command: Command, *args: Any, kubeconfig: str | None, context: str | None, namespace: str | None,
        debug: bool = False, interrupted: int = 130) -> None:
    """Run an async command against the parent and exit with its code; any failure is one line and exit code 1
    (with `debug`, the traceback instead); Ctrl-C exits with `interrupted` (0 for `get -w`, as kubectl's); a
    closed stdout exits with 1 and says nothing (stdout_closed)."""
    used: list[Credentials] = []

    async def main() -> int:
        creds, default_namespace = connect(kubeconfig, context, namespace)
        used.append(creds)
        async with Kube(creds, user_agent=f"kubectl-clusternet/{__version__}") as kube:
            return await command(Session(kube, default_namespace), *args)

    try:
        code = asyncio.run(main())
    except BrokenPipeError:  # stdout's reader is gone: not an error to report, even with --debug
        code = stdout_closed()
    except KeyboardInterrupt:
        if debug:
            raise
        code = interrupted
    except Exception as exc:
        if debug:
            raise
        server, proxy = (used[0].server, used[0].proxy_url) if used else ("", None)
        click.echo(error_line(exc, server, proxy), err=True)
        code = 1
    sys.exit(code)
