"""The API calls the hub's controller and the applier make, as a Protocol.

`clusternet_api.kube.Kube` satisfies it; unit tests hand in an in-memory fake instead, so reconcile and
push logic is tested without an API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

Obj = dict[str, Any]


class KubeApi(Protocol):
    async def preferred_versions(self) -> list[str]: ...  # discovery, before `list` shadows the builtin

    async def group_versions(self) -> list[str]: ...  # every served version, each group's preferred first

    async def resources(self, api_version: str) -> list[Obj]: ...

    async def discover(self, api_version: str) -> list[Obj]: ...  # resources, fresh; raises when unavailable

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None: ...

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Obj]: ...

    async def create(self, obj: Obj, namespace: str | None = None) -> Obj: ...

    async def apply(self, obj: Obj, field_manager: str, force: bool = True) -> Obj: ...

    async def apply_created(self, obj: Obj, field_manager: str, force: bool = True) -> tuple[Obj, bool]: ...

    async def patch(self, api_version: str, kind: str, name: str, body: Any, namespace: str | None = None,
                    *, subresource: str | None = None,
                    content_type: str = "application/merge-patch+json") -> Obj: ...

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background", *,
                     preconditions: Mapping[str, str] | None = None) -> bool: ...


class ChildApi(KubeApi, Protocol):
    """A connection to a child cluster, which its owner closes."""

    async def close(self) -> None: ...
