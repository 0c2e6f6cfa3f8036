"""Clusternet's names and labels for stored templates (Manifests) and the feeds that point at them.

Apart from rendering so that `kubectl clusternet apply`, which needs only these, does not load the
override machinery on every run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from clusternet_api import dnsnames, known
from clusternet_core.scheduling import feed_ref

Obj = Mapping[str, Any]


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> (`apps`, `v1`); the core group `v1` -> (``, `v1`)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def manifest_name(resource_plural: str, namespace: str | None, name: str) -> str:
    """Clusternet's Manifest name: `<resource>.<namespace>.<name>`, or `<resource>.<name>` if cluster-scoped.

    Dots cannot occur in a resource or namespace name, so, unlike the legacy hyphenated form, two objects
    can never map to the same Manifest.
    """
    if namespace:
        return f"{resource_plural}.{namespace}.{name}"
    return f"{resource_plural}.{name}"


def legacy_manifest_name(resource_plural: str, namespace: str | None, name: str) -> str:
    """The pre-v0.12 hyphenated form `<resource>-<namespace>-<name>`, still read by Clusternet."""
    if namespace:
        return f"{resource_plural}-{namespace}-{name}"
    return f"{resource_plural}-{name}"


def feed_labels(feed: Obj) -> dict[str, str]:
    """The `apps.clusternet.io/config.*` labels identifying a feed's Manifest (namespace only if set)."""
    ref = feed_ref(feed)
    group, version = split_api_version(ref["apiVersion"])
    labels = {
        known.LABEL_CONFIG_GROUP: group,
        known.LABEL_CONFIG_VERSION: version,
        known.LABEL_CONFIG_KIND: ref["kind"],
        known.LABEL_CONFIG_NAME: ref["name"],
    }
    if ref["namespace"]:
        labels[known.LABEL_CONFIG_NAMESPACE] = ref["namespace"]
    return labels


def manifest_labels(obj: Obj) -> dict[str, str]:
    """Labels of the Manifest storing `obj`: the object's own labels, then the config.* labels on top.

    The object's labels are kept so users can list shadow objects by their own selectors; the namespace
    label is always present (empty for cluster-scoped objects), as Clusternet writes it.
    """
    own = (obj.get("metadata") or {}).get("labels") or {}
    labels = {str(k): str(v) for k, v in own.items()}
    labels.update(feed_labels(obj))
    labels.setdefault(known.LABEL_CONFIG_NAMESPACE, "")
    return labels


def feed_selector(feed: Obj) -> str:
    """Label selector (`k=v,...`, sorted) that finds a feed's Manifests in clusternet-reserved."""
    return ",".join(f"{k}={v}" for k, v in sorted(feed_labels(feed).items()))


# Metadata never stored in a template: what the server sets (objects saved with `kubectl get -o yaml` carry it),
# and ownerReferences, which name objects of the cluster the object was saved from by UID. They mean nothing in
# the parent or a child (the deployers never apply them), and the parent's garbage collector, which sees templates
# through the shadow API, would delete a template whose owner the parent does not have (the review's F11).
STRIPPED_METADATA = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "selfLink", "generation",
                     "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")
MANIFEST_API_VERSION = f"{known.APPS_GROUP}/{known.APPS_VERSION}"
DROPPED_OWNERS = ("metadata.ownerReferences dropped: a template keeps no owners (they name objects of another "
                  "cluster, are never applied to children, and would let the parent's garbage collector delete the "
                  "template)")
"""The warning of a template write that had ownerReferences: the shadow API's Warning header, the plugin's line."""


def dropped_owners(obj: Obj) -> bool:
    """Did `obj` carry ownerReferences, which its template does not keep?"""
    meta = obj.get("metadata")
    return isinstance(meta, Mapping) and bool(meta.get("ownerReferences"))


def clean_object(obj: Obj) -> dict[str, Any]:
    """A copy without status and server-set metadata, fit to be applied or stored as a template."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in STRIPPED_METADATA:
            meta.pop(key, None)
    return out


def template_problem(resource_plural: str, obj: Obj) -> str | None:
    """Why `obj` cannot be stored as a template, in one line, or None. `metadata`, its labels and annotations
    must be maps (a string there crashed the plugin with a Python error and got a plain-text 500 from the shadow
    API). Its name must fit the Manifest Clusternet stores it in, named `<plural>.<namespace>.<name>` (a DNS
    subdomain) and labelled with the name (a label value: at most 63 characters), which names valid for their
    kind may not (ClusterRole `system:metrics-server`, a 64-character ConfigMap): the Manifest's 422 named only
    the Manifest (audit s35). Clusternet has the same limits."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return "metadata must be a map"
    for field in ("labels", "annotations"):
        if not isinstance(meta.get(field) or {}, Mapping):
            return f"metadata.{field} must be a map"
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "") or None
    stored = manifest_name(resource_plural, namespace, name)
    if (name and not dnsnames.is_label_name(name)) or not dnsnames.is_dns_subdomain(stored):
        return (f'name "{name}" cannot name a template: the Manifest storing it is named {stored!r} (a DNS '
                "subdomain: lowercase letters, digits, '-' and '.', at most 253 characters) and labelled with the "
                "name (at most 63 characters), as in Clusternet")
    return None


def skip_validating(obj: Obj) -> bool:
    """Whether the object asks to be stored without validation (a kind only the children know)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(known.ANNOTATION_SKIP_VALIDATING, "")).lower() == "true"


def manifest_for(resource_plural: str, obj: Obj) -> dict[str, Any]:
    """The Manifest storing a template (an already cleaned object), named and labelled as Clusternet does; the
    plugin's `apply` and the hub's shadow API both store templates with it."""
    namespace = str((obj.get("metadata") or {}).get("namespace") or "") or None
    return {
        "apiVersion": MANIFEST_API_VERSION,
        "kind": "Manifest",
        "metadata": {"name": manifest_name(resource_plural, namespace, str(obj["metadata"]["name"])),
                     "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(obj)},
        "template": obj,
    }
