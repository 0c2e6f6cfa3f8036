"""Finding stored templates (Manifests in clusternet-reserved) by the kind and names a user typed.

`get`, `describe` and `delete` take kubectl's arguments (`deploy my-nginx`, `deploy/my-nginx`,
`deployments.apps`), resolved against the parent's discovery as kubectl (and Clusternet's plugin, which is
kubectl) resolves them: a kind it does not know is kubectl's `the server doesn't have a resource type "x"`.
Where we go further: a kind the parent does not serve but has skip-validating templates of is found by its
literal kind or plural, since those templates are stored only here. kubectl's messages are kept (`No resources
found in foo namespace.`, `(NotFound)`), though what is not found is a template, not an object on the parent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from clusternet_api import known
from clusternet_api.kube import ApiException, Obj
from clusternet_kubectl.errors import PluginError, server_message
from clusternet_kubectl.resources import MANIFEST, Resource, split_group
from clusternet_kubectl.session import Session


@dataclass
class Kind:
    """What a kind argument names: a known resource, or a literal kind/plural of templates only."""

    resource: Resource | None
    literal: str
    # Every Manifest and the list's resourceVersion, when resolve_kind had to list them all to know a literal
    # kind exists: the command's own listing filters that list instead of asking the parent again.
    everything: tuple[list[Obj], str] | None = field(default=None, repr=False)

    @property
    def is_clusternet(self) -> bool:
        return self.resource is not None and self.resource.is_clusternet

    @property
    def group_resource(self) -> str:
        """What kubectl's NotFound message names: `deployments.apps`, else the literal argument."""
        return self.resource.group_resource if self.resource is not None else self.literal

    def matches_template(self, manifest: Mapping[str, Any]) -> bool:
        template = manifest.get("template") or {}
        kind = str(template.get("kind") or "")
        if self.resource is not None:
            return kind == self.resource.kind and split_group(str(template.get("apiVersion") or "")) == \
                self.resource.group
        plural = str((manifest.get("metadata") or {}).get("name") or "").partition(".")[0]
        literal, _, group = self.literal.lower().partition(".")  # `widgets.example.com` names its group too
        if group and split_group(str(template.get("apiVersion") or "")).lower() != group:
            return False
        return literal in (kind.lower(), kind.lower() + "s", plural.lower())


async def resolve_kind(session: Session, name: str) -> Kind:
    """The kind a user typed (plural, singular, short name, kind, `deployments.apps`), from the parent's
    discovery; PluginError with kubectl's words when the parent neither serves it nor stores templates of it
    (skip-validating ones). When the parent cannot answer discovery (5xx...), the name is taken literally:
    the templates are looked up by it, as before discovery decided, rather than the command failing; a 401
    or 403 is the user's to see, as kubectl shows it."""
    try:
        resource = await session.resolve(name)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise
        return Kind(None, name)
    kind = Kind(resource, name)
    if resource is None and not await list_templates(session, kind, None):
        # kubectl (resource.Builder.mappingFor) names what comes before the first dot: `deployments.appz`
        # says "deployments"
        raise PluginError(f'the server doesn\'t have a resource type "{name.partition(".")[0]}"')
    return kind


def kind_and_names(kind_name: str, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """kubectl's `deploy/my-nginx` form, given without further names, as kind and name."""
    if "/" in kind_name and not names:
        kind_name, _, one = kind_name.partition("/")
        return kind_name, (one,)
    return kind_name, names


def template_namespace(manifest: Mapping[str, Any]) -> str:
    return str(((manifest.get("template") or {}).get("metadata") or {}).get("namespace") or "")


def template_name(manifest: Mapping[str, Any]) -> str:
    return str(((manifest.get("template") or {}).get("metadata") or {}).get("name") or "")


def manifest_selector(kind: Kind, name: str | None = None, selector: str = "") -> str:
    """The Manifests' label selector for templates of `kind` (and `name`) whose own labels match `selector`:
    a template's labels are on its Manifest (clusternet_core.naming.manifest_labels), so the user's selector is
    passed on as it is, after the config.* terms (a selector's terms are ANDed)."""
    terms = []
    if kind.resource is not None:
        terms.append(f"{known.LABEL_CONFIG_KIND}={kind.resource.kind}")
    if name:
        terms.append(f"{known.LABEL_CONFIG_NAME}={name}")
    if selector.strip():
        terms.append(selector.strip())
    return ",".join(terms)


def template_filter(kind: Kind, namespace: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a Manifest holds a template of `kind` in `namespace` (None: any; cluster-scoped kinds ignore it)."""
    if kind.resource is not None and not kind.resource.namespaced:
        namespace = None

    def wanted(m: Mapping[str, Any]) -> bool:
        if not kind.matches_template(m):
            return False
        labels = (m.get("metadata") or {}).get("labels") or {}
        return namespace is None or labels.get(known.LABEL_CONFIG_NAMESPACE, "") in (namespace, "")

    return wanted


async def list_manifests(session: Session, kind: Kind, namespace: str | None, name: str | None = None,
                         selector: str = "") -> tuple[list[Obj], str]:
    """`list_templates` and the list's resourceVersion (where `get -w` starts watching)."""
    if kind.everything is not None and not selector.strip():
        listed, version = kind.everything
        everything = [m for m in listed if not name or template_name(m) == name]  # the config.name label's value
    else:
        everything, version = await _list_all(session, manifest_selector(kind, name, selector))
        if kind.resource is None and not name and not selector.strip():
            kind.everything = everything, version
    wanted = template_filter(kind, namespace)
    items = [m for m in everything if wanted(m)]
    items.sort(key=lambda m: (template_namespace(m), template_name(m)))
    return items, version


async def _list_all(session: Session, selector: str) -> tuple[list[Obj], str]:
    """The Manifests in clusternet-reserved that `selector` selects (all when empty), and the resourceVersion."""
    query = {"labelSelector": selector} if selector else None
    status, body = await session.kube.raw("GET", MANIFEST.path(known.RESERVED_NAMESPACE), query=query)
    if status == 404:
        return [], ""
    if status != 200 or not isinstance(body, dict):
        message = server_message(body)
        if status == 400:  # a selector the API server does not parse: kubectl's words
            raise PluginError(f"Error from server (BadRequest): {message}")
        raise PluginError(f"listing Manifests failed ({status}): {message}")
    return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")


async def list_templates(session: Session, kind: Kind, namespace: str | None, name: str | None = None,
                         selector: str = "") -> list[Obj]:
    """Manifests of one kind, sorted; namespace None means all namespaces (cluster-scoped kinds ignore it);
    `selector` is a label selector on the templates' own labels."""
    return (await list_manifests(session, kind, namespace, name, selector))[0]


def not_found_hint(namespace: str | None) -> str:
    return f"No resources found in {namespace} namespace." if namespace else "No resources found"


def not_found_error(kind: Kind, name: str) -> str:
    return f'Error from server (NotFound): {kind.group_resource} "{name}" not found'


def named_templates(manifests: list[Obj], names: tuple[str, ...], kind: Kind) -> tuple[list[Obj], bool]:
    """The manifests of the templates named, in the order named, and whether all were found; a name not found
    is reported like kubectl's NotFound. No names: all of them."""
    if not names:
        return manifests, True
    chosen: list[Obj] = []
    ok = True
    for name in names:
        found = [m for m in manifests if template_name(m) == name]
        if not found:
            click.echo(not_found_error(kind, name), err=True)
            ok = False
        chosen += found
    return chosen, ok
