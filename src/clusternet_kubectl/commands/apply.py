"""`apply -f`: Clusternet objects are server-side-applied; everything else becomes a template (a Manifest).

Where we differ from Clusternet's plugin: there the hub's shadow API validates and stores templates; here a
server-side-apply dry run on the parent validates each template (in clusternet-reserved when its namespace
does not exist on the parent, since templates' namespaces usually do not), and the CLI stores the Manifest, so
no hub is needed. The hub's shadow API (clusternet_hub.shadow) does the same with the same code
(clusternet_api.dryrun, clusternet_core.naming.manifest_for), so both store and see the same templates.
Templates are applied concurrently; each Clusternet object waits for everything before it in the input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import click

from clusternet_api import known
from clusternet_api.dryrun import APPLY_PATCH, dry_run_template
from clusternet_api.kube import ApiException, Obj
from clusternet_core.naming import DROPPED_OWNERS, dropped_owners, template_problem
from clusternet_kubectl.documents import Document
from clusternet_kubectl.errors import PluginError, api_error, unknown_fields
from clusternet_kubectl.resources import MANIFEST, Resource
from clusternet_kubectl.session import Session
from clusternet_kubectl.targets import (
    Target,
    crd_resources,
    identity_of,
    is_template_kind,
    manifest_for,
    resolve_target,
)

FIELD_MANAGER = known.TEMPLATE_FIELD_MANAGER
APPLY_CONCURRENCY = 8  # templates stored at once by `apply`; a parent apiserver takes that easily


async def dry_run(session: Session, target: Target) -> None:
    """Validate a template on the parent with a server-side dry run (nothing is persisted)."""
    resource = target.resource
    try:
        await dry_run_template(session.kube, resource.path, target.object, session.namespace_exists, FIELD_MANAGER,
                               before_reserved=session.ensure_reserved_namespace)
    except ApiException as exc:
        raise PluginError(f"rejected by the parent's validation: {unknown_fields(exc) or api_error(exc)}") from exc


async def server_side_apply(session: Session, resource: Resource, obj: Obj, validate: Target | None = None) -> str:
    """Server-side apply; `created`, `configured` or `unchanged` (kubectl's words, from the resourceVersion
    before and after). With `validate`, that template is dry-run on the parent first (concurrently with
    reading the current object) and nothing is written when the parent rejects it. A field the kind's schema
    lacks is reported as kubectl's `unknown field` (errors.unknown_fields), not as the 500 of kube-apiserver 1.20."""
    meta = obj["metadata"]
    path = resource.path(meta.get("namespace"), meta["name"])
    if validate is not None:
        (status, before), _ = await asyncio.gather(session.kube.raw("GET", path), dry_run(session, validate))
    else:
        status, before = await session.kube.raw("GET", path)
    query = {"fieldManager": FIELD_MANAGER, "force": "true"}
    try:
        after = await session.kube.request("PATCH", path, obj, content_type=APPLY_PATCH, query=query)
    except ApiException as exc:
        if (unknown := unknown_fields(exc)) is not None:
            raise PluginError(unknown) from exc
        raise
    if status == 404 or not isinstance(before, dict):
        return "created"
    same = before.get("metadata", {}).get("resourceVersion") == after.get("metadata", {}).get("resourceVersion")
    return "unchanged" if same else "configured"


async def apply_one(session: Session, raw: Mapping[str, object],
                    defined: Mapping[tuple[str, str], Resource] | None = None) -> str:
    """Apply one object; returns kubectl's `<type>/<name> <result>` line. `defined`: the kinds the CRDs among
    the documents define (targets.crd_resources)."""
    target = await resolve_target(session, raw, defined)
    if not target.is_template:
        result = await server_side_apply(session, target.resource, target.object)
        return f"{target.identity} {result}"
    if problem := template_problem(target.resource.plural, target.object):  # before the dry run and any write
        raise PluginError(problem)
    await session.ensure_reserved_namespace()
    result = await server_side_apply(session, MANIFEST, manifest_for(target), target if target.known else None)
    if dropped_owners(raw):  # as kubectl prints the shadow API's Warning header for the same write
        click.echo(f"Warning: {target.identity}: {DROPPED_OWNERS}", err=True)
    return f"{target.identity} {result}"


def apply_batches(documents: list[Document]) -> list[list[Document]]:
    """Documents in the order they must be applied: runs of templates go together (they only become
    Manifests in clusternet-reserved, so their order does not matter), every object created for real on the
    parent (Subscription, Localization, ...) waits for what came before it."""
    batches: list[list[Document]] = []
    templates: list[Document] = []
    for doc in documents:
        if is_template_kind(doc.object):
            templates.append(doc)
            continue
        if templates:
            batches.append(templates)
            templates = []
        batches.append([doc])
    if templates:
        batches.append(templates)
    return batches


async def prefetch(session: Session, documents: list[Document]) -> None:
    """Ask the parent everything the documents will need to know (discovery of their group-versions, which
    namespaces exist) in one round of concurrent requests, instead of as each document comes to need it."""
    versions = {str(d.object.get("apiVersion") or "") for d in documents} - {""}
    namespaces = {str(meta.get("namespace") or "") for d in documents if is_template_kind(d.object)
                  and isinstance(meta := d.object.get("metadata") or {}, Mapping)} - {""}
    if any(is_template_kind(d.object) for d in documents):
        namespaces.add(known.RESERVED_NAMESPACE)
    # a failure here is asked again, and reported, with the document that needs the answer
    await asyncio.gather(*(session.kube.resources(v) for v in versions),
                         *(session.namespace_exists(ns) for ns in namespaces), return_exceptions=True)


async def apply_command(session: Session, documents: list[Document]) -> int:
    """Apply every document, batch after batch; report results in file order, go on after a failure."""
    limit = asyncio.Semaphore(APPLY_CONCURRENCY)
    await prefetch(session, documents)
    # a CRD and objects of its kind in one apply: the CRD becomes a template, so the parent never serves its kind
    # and cannot validate them; they are stored as its templates (kubectl would need the CRD installed first)
    defined = crd_resources(d.object for d in documents)

    async def one(doc: Document) -> tuple[str | None, str | None]:
        async with limit:
            try:
                return await apply_one(session, doc.object, defined), None
            except (PluginError, ApiException) as exc:
                error = api_error(exc) if isinstance(exc, ApiException) else str(exc)
                return None, f"error: {identity_of(doc.object)} from {doc.source}: {error}"

    failed = False
    for batch in apply_batches(documents):
        for line, error in await asyncio.gather(*(one(d) for d in batch)):  # printed in file order
            failed |= error is not None
            click.echo(line if error is None else error, err=error is not None)
    return 1 if failed else 0
