"""The shadow API's pure part: its paths and discovery documents, objects to and from Manifests, and its errors.

No I/O here; clusternet_hub.shadow serves it (and says what the API is).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch
import yaml

from clusternet_api import known
from clusternet_api.apiresource import Resource
from clusternet_api.kube import ApiException, Obj
from clusternet_api.restpaths import resource_path
from clusternet_core.naming import DROPPED_OWNERS, clean_object, dropped_owners, split_api_version, template_problem
from clusternet_core.patches import merge_patch

GROUP_VERSION = f"{known.SHADOW_GROUP}/{known.SHADOW_VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}"
EXCLUDED_GROUPS = frozenset({"metrics.k8s.io", "custom.metrics.k8s.io", known.SHADOW_GROUP})
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
MANIFESTS = resource_path(known.APPS_API_VERSION, "manifests", True, namespace=known.RESERVED_NAMESPACE)
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


ShadowResource = Resource
"""One resource of the parent, as mirrored in the shadow API (the same type `kubectl clusternet` resolves)."""


def discovery_entry(resource: Resource) -> Obj:
    """Its APIResource entry in the shadow API's discovery (every verb the shadow API serves).

    No `shortNames` (nor `categories`): the originals keep theirs, and a short name listed twice makes kubectl
    1.29 and later print `Warning: short name "deploy" could also match lower priority resource
    deployments.shadow` on every `kubectl get deploy|ns|svc...` against the parent (the sixth audit; Linkerd
    dropped them from its aggregated API for the same reason, linkerd/linkerd2#11784). The shadow API is reached
    by its paths (`--raw`, Clusternet's client-go wrapper), never by a short name, so nothing is lost."""
    return {"name": resource.plural, "singularName": resource.singular or resource.kind.lower(),
            "namespaced": resource.namespaced, "kind": resource.kind, "verbs": VERBS}


def mirrored_group(group: str) -> bool:
    return group not in EXCLUDED_GROUPS and group != "clusternet.io" and not group.endswith(".clusternet.io")


def resource_map(discovered: Iterable[tuple[str, Sequence[Mapping[str, Any]]]]) -> dict[str, ShadowResource]:
    """plural -> resource, from (groupVersion, APIResource entries) in kubectl's order; the first plural wins,
    subresources and excluded groups are left out."""
    out: dict[str, ShadowResource] = {}
    for group_version, entries in discovered:
        if not mirrored_group(split_api_version(group_version)[0]):
            continue
        for e in entries:
            plural = str(e.get("name") or "")
            if not plural or "/" in plural or plural in out or not e.get("kind"):
                continue
            out[plural] = Resource.from_api(group_version, e)
    return out


def discovery_resources(resources: Mapping[str, ShadowResource]) -> Obj:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": [discovery_entry(r) for r in resources.values()]}


def discovery_group() -> Obj:
    version = {"groupVersion": GROUP_VERSION, "version": known.SHADOW_VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": known.SHADOW_GROUP, "versions": [version],
            "preferredVersion": version}


@dataclass(frozen=True)
class ShadowPath:
    """What a path under /apis/shadow/v1alpha1 names."""

    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_path(tail: str) -> ShadowPath | None:
    """`[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`; `namespaces/<name>` is the Namespace itself."""
    parts = [p for p in tail.strip("/").split("/")]
    if not parts or any(not p for p in parts):
        return None
    if parts[0] == "namespaces" and len(parts) >= 3:
        ns, rest = parts[1], parts[2:]
    else:
        ns, rest = None, parts
    if len(rest) > 3:
        return None
    return ShadowPath(rest[0], ns, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


class ShadowError(Exception):
    """An answer in Kubernetes' Status shape."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code}
        if details:
            self.body["details"] = details
        self.code = code

    @classmethod
    def from_api(cls, exc: ApiException) -> ShadowError:
        """The parent's own Status (403s and dry-run 422s keep its words)."""
        body: Any = None
        with contextlib.suppress(ValueError, TypeError):
            body = json.loads(exc.body or b"")
        err = cls(exc.status or 500, "InternalError", exc.reason or str(exc))
        if isinstance(body, dict) and body.get("kind") == "Status":
            err.body = body
        return err


def status_details(resource: ShadowResource, name: str) -> Obj:
    return {"name": name, "group": resource.group, "kind": resource.plural}


def not_found(resource: ShadowResource, name: str) -> ShadowError:
    return ShadowError(404, "NotFound", f'{resource.group_resource} "{name}" not found', status_details(resource, name))


def unknown_resource(plural: str) -> ShadowError:
    """A plural the parent does not serve. Kubernetes says only "the server could not find the requested
    resource"; a template of a kind whose CRD is not on the parent is the usual cause here, so say what to do."""
    return ShadowError(404, "NotFound", f'the parent serves no resource "{plural}": the shadow API mirrors the '
                       "resources the parent discovers (not *.clusternet.io); install its CRD on the parent, or "
                       f"store the template with `kubectl clusternet apply` and {known.ANNOTATION_SKIP_VALIDATING}"
                       '="true"', {"kind": plural})


def already_exists(resource: ShadowResource, name: str) -> ShadowError:
    return ShadowError(409, "AlreadyExists", f'{resource.group_resource} "{name}" already exists',
                       status_details(resource, name))


def conflict(resource: ShadowResource, name: str) -> ShadowError:
    return ShadowError(409, "Conflict", f'Operation cannot be fulfilled on {resource.group_resource} "{name}": the '
                       "object has been modified; please apply your changes to the latest version and try again",
                       status_details(resource, name))


def bad_request(message: str) -> ShadowError:
    return ShadowError(400, "BadRequest", message)


def template_of(manifest: Mapping[str, Any]) -> Obj:
    """The object a Manifest stores, with the Manifest's resourceVersion, uid and creationTimestamp, and without
    ownerReferences. Writes drop them (clean_object), but a Manifest written otherwise (an older plugin, kubectl
    itself) may keep some; the parent's garbage collector reads templates through the shadow API, and would delete
    one whose owner (an object of the child it was saved from) the parent does not have. Kubernetes serves what
    was stored; here a template is what the user wants in children, and owners there are never applied."""
    obj: Obj = json.loads(json.dumps(manifest.get("template") or {}))
    meta = obj.setdefault("metadata", {})
    meta.pop("ownerReferences", None)
    mmeta = manifest.get("metadata") or {}
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
        if mmeta.get(key) is not None:
            meta[key] = mmeta[key]
    return obj


def matches(resource: ShadowResource, manifest: Mapping[str, Any], namespace: str | None) -> bool:
    """Whether a Manifest stores an object of this resource (in this namespace, when given)."""
    template = manifest.get("template") or {}
    if template.get("kind") != resource.kind:
        return False
    if split_api_version(str(template.get("apiVersion") or ""))[0] != resource.group:
        return False
    if namespace is not None and resource.namespaced:
        return str((template.get("metadata") or {}).get("namespace") or "") == namespace
    return True


def selector(resource: ShadowResource, namespace: str | None, label_selector: str = "",
             field_selector: str = "") -> str:
    """The Manifests' label selector for a list or watch: the kind's config labels, the user's own label selector
    (templates' labels are on their Manifests), and metadata.name/namespace field selectors as config labels."""
    terms = [f"{known.LABEL_CONFIG_GROUP}={resource.group}", f"{known.LABEL_CONFIG_KIND}={resource.kind}"]
    if namespace is not None and resource.namespaced:
        terms.append(f"{known.LABEL_CONFIG_NAMESPACE}={namespace}")
    for term in (t.strip() for t in field_selector.split(",") if t.strip()):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        labels = {"metadata.name": known.LABEL_CONFIG_NAME, "metadata.namespace": known.LABEL_CONFIG_NAMESPACE}
        if not op or "!" in key or key.strip() not in labels:
            raise bad_request(f'field label not supported: "{term}" (the shadow API selects by metadata.name and '
                              "metadata.namespace equality only)")
        terms.append(f"{labels[key.strip()]}={value.strip()}")
    if label_selector.strip():
        terms.append(label_selector.strip())
    return ",".join(terms)


def list_of(resource: ShadowResource, manifests: Iterable[Mapping[str, Any]], namespace: str | None,
            list_meta: Mapping[str, Any]) -> Obj:
    items = [template_of(m) for m in manifests if matches(resource, m, namespace)]
    meta = {k: v for k, v in list_meta.items() if k in ("resourceVersion", "continue", "remainingItemCount")}
    return {"apiVersion": resource.api_version, "kind": f"{resource.kind}List", "metadata": meta, "items": items}


def watch_event(resource: ShadowResource, event: Mapping[str, Any], namespace: str | None) -> Obj | None:
    """A Manifest watch event as the template's; None for other kinds' Manifests."""
    kind, obj = event.get("type"), event.get("object") or {}
    if kind == "ERROR":
        return dict(event)
    if kind == "BOOKMARK":
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in ("resourceVersion", "annotations")}
        return {"type": kind, "object": {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta}}
    if not matches(resource, obj, namespace):
        return None
    return {"type": kind, "object": template_of(obj)}


def dropped_owners_warning(body: Mapping[str, Any]) -> str | None:
    """A Warning header (kubectl prints it) for a write whose object had ownerReferences, which the template does
    not keep (clusternet_core.naming.STRIPPED_METADATA); None when it had none."""
    return f'299 - "{DROPPED_OWNERS}"' if dropped_owners(body) else None


def impersonation(user: str, groups: Sequence[str]) -> list[tuple[str, str]]:
    """Headers making the parent act as the requesting user. Extras are not passed on: RBAC never looks at them,
    and impersonating arbitrary extra keys would need `impersonate` on every `userextras/*`."""
    return [("Impersonate-User", user), *(("Impersonate-Group", g) for g in groups if g)]


def parse_body(raw: bytes) -> Obj:
    try:
        body = json.loads(raw) if raw.lstrip()[:1] in (b"{", b"[") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"the request body is neither JSON nor YAML: {e}") from e
    if not isinstance(body, dict):
        raise bad_request("the request body is not an object")
    return body


def prepare(resource: ShadowResource, shadow_path: ShadowPath, body: Mapping[str, Any]) -> Obj:
    """The object of a create or update, cleaned, checked against the path and defaulted like kube-apiserver does
    (namespace from the path, apiVersion and kind from discovery when absent)."""
    obj = clean_object(body)
    obj.setdefault("apiVersion", resource.api_version)
    obj.setdefault("kind", resource.kind)
    if obj["kind"] != resource.kind or split_api_version(str(obj["apiVersion"]))[0] != resource.group:
        raise bad_request(f"the object's {obj['apiVersion']}, Kind={obj['kind']} is not served by "
                          f"{resource.group_resource}")
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ShadowError(422, "Invalid", f"{resource.kind} is invalid: metadata.name: Required value "
                          "(generateName is not supported: a template's Manifest is named after it)")
    if shadow_path.name is not None and meta["name"] != shadow_path.name:
        raise bad_request(f'the name of the object ({meta["name"]}) does not match the name on the URL '
                          f"({shadow_path.name})")
    if resource.namespaced:
        if shadow_path.namespace is None:
            raise bad_request(f"{resource.group_resource} are namespaced: use /namespaces/<namespace>/"
                              f"{resource.plural}")
        if meta.get("namespace") and meta["namespace"] != shadow_path.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                              "request")
        meta["namespace"] = shadow_path.namespace
    else:
        meta.pop("namespace", None)
    if problem := template_problem(resource.plural, obj):  # before the dry run: it would pass, the Manifest not
        raise ShadowError(422, "Invalid", f"{resource.kind} is invalid: {problem}")
    return obj


def apply_patch(current: Obj, patch: bytes, content_type: str) -> Obj:
    """JSON merge patch (RFC 7386) or JSON patch (RFC 6902) of a template."""
    try:
        document = json.loads(patch)
    except ValueError as e:
        raise bad_request(f"the patch is not JSON: {e}") from e
    if content_type == MERGE_PATCH:
        patched_doc: Obj = merge_patch(current, document)
        return patched_doc
    try:
        patched = jsonpatch.apply_patch(current, document)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise ShadowError(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
    if not isinstance(patched, dict):
        raise bad_request("the JSON patch did not leave an object")
    return patched
