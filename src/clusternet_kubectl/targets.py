"""Where one object of the user's goes: a real Clusternet CR on the parent, or a template in a Manifest.

Clusternet's plugin leaves that decision to the hub's shadow API (every non-Clusternet request goes there);
we decide here, by API group, and build the Manifest as the shadow API would: named and labelled by
clusternet_core.naming, in clusternet-reserved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusternet_api import known
from clusternet_api.kube import Obj
from clusternet_core.naming import manifest_for as core_manifest_for
from clusternet_core.naming import manifest_name, skip_validating
from clusternet_kubectl.documents import clean_object, object_ref
from clusternet_kubectl.errors import PluginError
from clusternet_kubectl.resources import CLUSTERNET_GROUPS, Resource, object_type_name, split_group
from clusternet_kubectl.session import Session


@dataclass
class Target:
    """One user object, cleaned, with the resource it belongs to."""

    resource: Resource
    object: dict[str, Any]
    known: bool = True
    """False for kinds the parent does not serve (skip-validating templates)."""

    @property
    def namespace(self) -> str:
        return str(self.object["metadata"].get("namespace") or "")

    @property
    def name(self) -> str:
        return str(self.object["metadata"]["name"])

    @property
    def is_template(self) -> bool:
        return not self.resource.is_clusternet

    @property
    def manifest_name(self) -> str:
        return manifest_name(self.resource.plural, self.namespace or None, self.name)

    @property
    def identity(self) -> str:
        return f"{self.resource.type_name}/{self.name}"


def is_template_kind(obj: Mapping[str, Any]) -> bool:
    """Objects of other groups than Clusternet's are stored as templates, not created on the parent."""
    return split_group(str(obj.get("apiVersion") or "")) not in CLUSTERNET_GROUPS


def identity_of(raw: Mapping[str, Any]) -> str:
    """`deployment.apps/name (namespace ns)` of an object as the user wrote it, for error messages."""
    meta = raw.get("metadata") or {}
    ns = f" (namespace {meta['namespace']})" if meta.get("namespace") else ""
    return f"{object_type_name(raw, '<no kind>')}/{meta.get('name') or '<no name>'}{ns}"


async def resolve_target(session: Session, raw: Mapping[str, Any]) -> Target:
    """Classify an object, default its namespace like kubectl and clean it."""
    api_version, kind, namespace, _ = object_ref(raw)
    obj = clean_object(raw)
    resource = await session.find(api_version, kind)
    if resource is None:
        return _unknown_kind(api_version, kind, namespace, obj)
    if resource.namespaced:
        obj["metadata"]["namespace"] = namespace or session.namespace
    else:
        obj["metadata"].pop("namespace", None)
    return Target(resource, obj)


def _unknown_kind(api_version: str, kind: str, namespace: str, obj: dict[str, Any]) -> Target:
    """A kind the parent does not serve: refused, unless a skip-validating template (then its plural is
    guessed as `<lowercase kind>s` and its namespace kept as written)."""
    group = split_group(api_version)
    if group in CLUSTERNET_GROUPS or not skip_validating(obj):
        hint = "" if group in CLUSTERNET_GROUPS else (
            f"; install its CRD on the parent or annotate {known.ANNOTATION_SKIP_VALIDATING}=true")
        raise PluginError(f"the parent does not know kind {kind} (apiVersion {api_version}){hint}")
    resource = Resource(group, api_version.rpartition("/")[2], kind, kind.lower() + "s", bool(namespace))
    return Target(resource, obj, known=False)


def manifest_for(target: Target) -> Obj:
    """The Manifest storing a template, named and labelled as Clusternet does."""
    return core_manifest_for(target.resource.plural, target.object)
