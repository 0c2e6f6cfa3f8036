"""One resource type an API server serves, as discovery describes it: shared by the hub's shadow API, which
mirrors the parent's resources, and `kubectl clusternet`, which resolves kubectl's names for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusternet_api import known
from clusternet_api.restpaths import resource_path

__all__ = ["CLUSTERNET_GROUPS", "Resource", "namespaced_name", "object_type_name", "split_group", "type_name"]

CLUSTERNET_GROUPS = frozenset({known.APPS_GROUP, known.CLUSTERS_GROUP})


def split_group(api_version: str) -> str:
    """The API group of an apiVersion (`` for core `v1`)."""
    return api_version.rpartition("/")[0]


def type_name(kind: str, group: str) -> str:
    """kubectl's `<kind>.<group>` used in messages: `deployment.apps`, `service`."""
    return f"{kind.lower()}.{group}" if group else kind.lower()


def object_type_name(obj: Mapping[str, Any], missing: str = "") -> str:
    """`type_name` of an object (`missing` stands for an absent kind)."""
    return type_name(str(obj.get("kind") or missing), split_group(str(obj.get("apiVersion") or "")))


def key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of an object, namespace "" for a cluster-scoped one: how caches and queues key it."""
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


def namespaced_name(obj: Mapping[str, Any]) -> str:
    """`namespace/name` of a namespaced object, as messages and status fields name it."""
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


@dataclass(frozen=True)
class Resource:
    """One resource type the parent serves (or one assumed for a kind it does not know)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, group_version: str, entry: Mapping[str, Any]) -> Resource:
        """From an APIResource entry of discovery (`Kube.resources`)."""
        group, _, version = group_version.rpartition("/")
        return cls(group, version, entry["kind"], entry["name"], bool(entry.get("namespaced")),
                   entry.get("singularName") or "", tuple(entry.get("shortNames") or ()))

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def type_name(self) -> str:
        return type_name(self.kind, self.group)

    @property
    def group_resource(self) -> str:
        """`deployments.apps`, as in kubectl's NotFound messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def is_clusternet(self) -> bool:
        return self.group in CLUSTERNET_GROUPS

    def names(self) -> set[str]:
        return {self.plural, self.singular or self.kind.lower(), self.kind.lower()}

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        return resource_path(self.api_version, self.plural, self.namespaced, name, namespace)
