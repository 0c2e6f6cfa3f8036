"""`delete`: Clusternet objects are deleted on the parent; templates by deleting their Manifests.

As kubectl: `delete KIND NAME...`, `delete KIND/NAME [NAME...]` or `delete -f FILE`, always in the current
namespace (no -A). Deleting a template deletes only its Manifest; the Subscriptions that use it are left
as they are.
"""

from __future__ import annotations

import click

from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_kubectl.documents import Document
from clusternet_kubectl.errors import PluginError, api_error
from clusternet_kubectl.resources import MANIFEST, Resource, object_type_name, split_group
from clusternet_kubectl.session import Session
from clusternet_kubectl.targets import Target, crd_resources, identity_of, manifest_for, resolve_target
from clusternet_kubectl.templates import Kind, list_templates, not_found_error, resolve_kind, template_namespace

DELETE_OPTIONS = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}


async def delete_real(session: Session, resource: Resource, name: str, namespace: str | None) -> bool:
    """Delete a Clusternet object; a failure (NotFound too) is reported in the server's words."""
    try:
        await session.kube.request("DELETE", resource.path(namespace, name), DELETE_OPTIONS)
    except ApiException as exc:
        click.echo(api_error(exc), err=True)
        return False
    click.echo(f'{resource.type_name} "{name}" deleted')
    return True


async def delete_template(session: Session, kind: Kind, name: str, namespace: str | None) -> bool:
    """Delete the Manifests of the templates of that kind and name (in that namespace, for namespaced kinds)."""
    manifests = await list_templates(session, kind, namespace, name)
    if namespace is not None and kind.resource is not None and kind.resource.namespaced:
        manifests = [m for m in manifests if template_namespace(m) == namespace]
    elif kind.resource is None:
        # a kind the parent does not serve: neither its scope nor its group is known. Templates in the namespace
        # come first; those without one (cluster-scoped) only when there are none; and never two groups at once
        # (the delete review, F12: `delete widgets foo -n team-a` also deleted another group's cluster-scoped one)
        manifests = [m for m in manifests if template_namespace(m) == namespace] or manifests
        groups = sorted({split_group(str((m.get("template") or {}).get("apiVersion") or "")) for m in manifests})
        if len(groups) > 1:
            click.echo(f'error: templates of {len(groups)} API groups are named "{name}" for "{kind.literal}" '
                       f"({', '.join(groups)}): name the group, as in {kind.literal.partition('.')[0]}.{groups[0]}",
                       err=True)
            return False
    if not manifests:
        click.echo(not_found_error(kind, name), err=True)
        return False
    for m in manifests:
        if await _delete_manifest(session, m["metadata"]["name"]):
            click.echo(f'{object_type_name(m.get("template") or {})} "{name}" deleted')
    return True


async def _delete_manifest(session: Session, name: str) -> bool:
    """False when it was gone already (deleted meanwhile)."""
    try:
        await session.kube.request("DELETE", MANIFEST.path(known.RESERVED_NAMESPACE, name))
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def delete_documents(session: Session, documents: list[Document]) -> int:
    """`delete -f`: each object of the files, as `apply` would have stored it (kinds defined by CRDs of the same
    files included, as `apply` takes them)."""
    ok = True
    defined = crd_resources(d.object for d in documents)
    for doc in documents:
        try:
            target = await resolve_target(session, doc.object, defined)
        except PluginError as exc:
            click.echo(f"error: {identity_of(doc.object)} from {doc.source}: {exc}", err=True)
            ok = False
            continue
        if target.is_template:
            ok &= await delete_stored(session, target)
        else:
            ok &= await delete_real(session, target.resource, target.name, target.namespace or None)
    return 0 if ok else 1


async def delete_stored(session: Session, target: Target) -> bool:
    """The one Manifest `apply -f` stores the object in, if it holds an object of that kind and group. A file knows
    the object's scope and group, which a kind typed in may not; until 2026-12-06 `-f` went by kind and name like
    a typed-in kind, so a file without a namespace of a kind the parent does not serve deleted that name's
    templates in every namespace, and one whose template was gone deleted the namespace-less one (audit s35)."""
    name = manifest_for(target)["metadata"]["name"]
    obj = target.object
    shown = f'{object_type_name(obj)} "{target.name}"'
    try:
        stored = await session.kube.request("GET", MANIFEST.path(known.RESERVED_NAMESPACE, name))
    except ApiException as exc:
        if exc.status != 404:
            raise
        stored = {}
    template = stored.get("template") or {}
    meta = template.get("metadata") or {}
    # the name too: `<plural>.<namespace>.<name>` is also what a namespace-less `team-a.foo` would be stored as
    if (template.get("kind"), split_group(str(template.get("apiVersion") or "")), meta.get("name"),
            meta.get("namespace") or "") != (obj.get("kind"), split_group(str(obj.get("apiVersion") or "")),
                                             target.name, target.namespace or ""):
        click.echo(f'Error from server (NotFound): {target.resource.group_resource} "{target.name}" not found',
                   err=True)
        return False
    if await _delete_manifest(session, name):
        click.echo(f"{shown} deleted")
    return True


async def delete_command(session: Session, kind_name: str | None, names: tuple[str, ...],
                         documents: list[Document]) -> int:
    if documents:
        return await delete_documents(session, documents)
    if kind_name is None:
        raise PluginError("you must provide a resource kind and names, or -f FILE")
    if "/" in kind_name:
        kind_name, _, one = kind_name.partition("/")
        names = (one, *names)
    if not names:
        raise PluginError("resource(s) were provided, but no name was specified")
    kind = await resolve_kind(session, kind_name)
    ok = True
    for name in names:
        if kind.resource is not None and kind.is_clusternet:
            ok &= await delete_real(session, kind.resource, name, session.namespace)
        else:
            ok &= await delete_template(session, kind, name, session.namespace)
    return 0 if ok else 1
