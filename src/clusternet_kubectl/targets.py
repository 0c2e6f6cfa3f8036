"""Where one object of the user's goes: a real Clusternet CR on the parent, or a template in a Manifest.

Clusternet's plugin leaves that decision to the hub's shadow API (every non-Clusternet request goes there);
we decide here, by API group, and build the Manifest as the shadow API would: named and labelled by
clusternet_core.naming, in clusternet-reserved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

CRD_GROUP = "apiextensions.k8s.io"


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
    found = raw.get("metadata")
    meta: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    ns = f" (namespace {meta['namespace']})" if meta.get("namespace") else ""
    return f"{object_type_name(raw, '<no kind>')}/{meta.get('name') or '<no name>'}{ns}"


def crd_resources(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Resource]:
    """(apiVersion, kind) -> resource of every served version of the CustomResourceDefinitions among `objects`:
    the kinds they define are known to this apply, though the parent does not serve them (a CRD applied here is
    a template, never installed on the parent)."""
    out: dict[tuple[str, str], Resource] = {}
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition" or split_group(str(obj.get("apiVersion"))) != CRD_GROUP:
            continue
        spec = obj.get("spec") or {}
        names, group = spec.get("names") or {}, str(spec.get("group") or "")
        versions = [str(v.get("name")) for v in spec.get("versions") or [] if v.get("served", True)]
        for version in versions or [str(spec.get("version") or "")]:
            if names.get("kind") and names.get("plural") and version:
                out[(f"{group}/{version}", str(names["kind"]))] = Resource(
                    group, version, str(names["kind"]), str(names["plural"]), spec.get("scope") != "Cluster")
    return out


async def resolve_target(session: Session, raw: Mapping[str, Any],
                         defined: Mapping[tuple[str, str], Resource] | None = None) -> Target:
    """Classify an object, default its namespace like kubectl and clean it. `defined`: kinds the CRDs of the
    same apply define (crd_resources), taken when the parent does not serve them."""
    api_version, kind, namespace, _ = object_ref(raw)
    obj = clean_object(raw)
    resource = await session.find(api_version, kind)
    if resource is None and (api_version, kind) in (defined or {}):
        resource = (defined or {})[(api_version, kind)]
        if resource.namespaced:
            obj["metadata"]["namespace"] = namespace or session.namespace
        return Target(resource, obj, known=False)  # nothing on the parent can validate it
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
            f"; apply its CRD in the same command, install it on the parent, or annotate "
            f"{known.ANNOTATION_SKIP_VALIDATING}=true")
        raise PluginError(f"the parent does not know kind {kind} (apiVersion {api_version}){hint}")
    resource = Resource(group, api_version.rpartition("/")[2], kind, kind.lower() + "s", bool(namespace))
    return Target(resource, obj, known=False)


def manifest_for(target: Target) -> Obj:
    """The Manifest storing a template, named and labelled as Clusternet does."""
    return core_manifest_for(target.resource.plural, target.object)
