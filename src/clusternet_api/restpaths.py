"""REST paths of Kubernetes resources, and the built-in kinds every side addresses without discovery.

Pure (no I/O): clusternet_api.kube builds its requests with it, and so do the modules that only need a path
(leader election, the shadow API's mapping, the test harness's set-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Built-in kinds addressed without discovery: kind -> (plural, namespaced).
CORE_PLURALS = {
    "Namespace": ("namespaces", False),
    "Secret": ("secrets", True),
    "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True),
    "Service": ("services", True),
    "Event": ("events", True),
    "Node": ("nodes", False),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "APIService": ("apiservices", False),
    "Deployment": ("deployments", True),
    "Lease": ("leases", True),
}
# ... and the group-versions they are known under (a kind under another version goes through discovery).
CORE_VERSIONS = {
    "Namespace": "v1", "Secret": "v1", "ServiceAccount": "v1", "ConfigMap": "v1", "Service": "v1",
    "Event": "v1", "Node": "v1", "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1", "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1", "CustomResourceDefinition": "apiextensions.k8s.io/v1",
    "APIService": "apiregistration.k8s.io/v1", "Deployment": "apps/v1", "Lease": "coordination.k8s.io/v1",
}


def core_resource(api_version: str, kind: str) -> tuple[str, bool] | None:
    """(plural, namespaced) of a built-in kind under the group-version it is known by, else None (discovery)."""
    return CORE_PLURALS[kind] if CORE_VERSIONS.get(kind) == api_version else None


def resource_path(api_version: str, plural: str, namespaced: bool, name: str | None = None,
                  namespace: str | None = None, subresource: str | None = None) -> str:
    """REST path of a resource, one object of it, or its subresource; the namespace only counts for namespaced
    resources (`/api/v1/namespaces/x` whatever namespace is given)."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespaced and namespace else ""
    path = f"{base}{ns}/{plural}" + (f"/{name}" if name else "")
    return f"{path}/{subresource}" if subresource else path


def object_path(obj: Mapping[str, Any]) -> str:
    """REST path of a built-in object (no discovery); used by the test harness for set-up."""
    meta = obj.get("metadata", {})
    plural, namespaced = CORE_PLURALS[obj["kind"]]
    return resource_path(obj["apiVersion"], plural, namespaced, meta["name"], meta.get("namespace"))
