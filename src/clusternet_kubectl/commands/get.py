"""`get`: Clusternet objects with the server's printer columns; templates as NAME, AGE (MANIFEST with -o wide).

Where we differ from kubectl: templates are listed from their Manifests, so the columns are ours (a
Deployment template has no READY or UP-TO-DATE: it runs nowhere on the parent), and `-o` knows only wide,
yaml, json and name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click
import yaml

from clusternet_api.kube import ApiException, Kube, Obj, status_error
from clusternet_kubectl.errors import api_error
from clusternet_kubectl.resources import Resource, object_type_name
from clusternet_kubectl.session import Session
from clusternet_kubectl.tables import age, format_table, server_table
from clusternet_kubectl.templates import (
    Kind,
    kind_and_names,
    list_templates,
    named_templates,
    not_found_hint,
    resolve_kind,
    template_name,
    template_namespace,
)

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
OBJECT_OUTPUTS = ("yaml", "json", "name")


async def get_table(kube: Kube, path: str, query: Mapping[str, str] | None = None) -> Obj:
    """GET `path` as a meta.k8s.io Table (the server's printer columns)."""
    status, body = await kube.raw("GET", path, query=query, accept=TABLE_ACCEPT)
    if not 200 <= status < 300:
        raise status_error(status, body)
    if not isinstance(body, dict):
        raise ApiException(status=status, reason=f"the server answered {path} with something other than a Table")
    return body


def dump(objects: list[Obj], output: str, single: bool) -> str:
    """-o yaml/json: one object, or a v1 List like kubectl."""
    data: Obj = objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": objects,
                                           "metadata": {"resourceVersion": ""}}
    if output == "json":
        return json.dumps(data, indent=4)
    return yaml.safe_dump(data, sort_keys=False).rstrip("\n")


def print_objects(objects: list[Obj], output: str, names: Sequence[str], type_of: Callable[[Obj], str]) -> None:
    """-o name, yaml or json; nothing when names were given and none was found (kubectl prints no empty List)."""
    if output == "name":
        for obj in objects:
            click.echo(f"{type_of(obj)}/{obj['metadata']['name']}")
    elif objects or not names:
        click.echo(dump(objects, output, single=len(names) == 1 and len(objects) == 1))


def template_table(manifests: Sequence[Mapping[str, Any]], *, all_namespaces: bool, wide: bool,
                   now: datetime | None = None) -> str:
    """NAME, AGE (NAMESPACE first with -A; MANIFEST last with -o wide) for templates."""
    headers = (["Namespace"] if all_namespaces else []) + ["Name", "Age"] + (["Manifest"] if wide else [])
    rows = []
    for m in manifests:
        row = [template_namespace(m)] if all_namespaces else []
        row += [template_name(m), age((m.get("metadata") or {}).get("creationTimestamp"), now)]
        if wide:
            row.append((m.get("metadata") or {}).get("name", ""))
        rows.append(row)
    return format_table(headers, rows)


async def get_command(session: Session, kind_name: str, names: tuple[str, ...], all_namespaces: bool,
                      output: str | None) -> int:
    kind_name, names = kind_and_names(kind_name, names)
    kind = await resolve_kind(session, kind_name)
    namespace = None if all_namespaces else session.namespace
    if kind.resource is not None and kind.is_clusternet:
        return await get_real(session, kind.resource, names, namespace, output)
    return await get_templates(session, kind, names, namespace, output)


async def _fetch_each(kube: Kube, paths: list[str], as_table: bool) -> tuple[list[Obj], bool]:
    """Each path's answer in order (a Table, or the object or list), and whether all were there; errors are
    reported as they come, like kubectl's."""
    answers: list[Obj] = []
    ok = True
    for path in paths:
        try:
            answers.append(await (get_table(kube, path) if as_table else kube.request("GET", path)))
        except ApiException as exc:
            if exc.status == 401:
                raise  # the credentials, not this object: one line for the whole command (session.run)
            click.echo(api_error(exc), err=True)
            ok = False
    return answers, ok


async def get_real(session: Session, resource: Resource, names: tuple[str, ...], namespace: str | None,
                   output: str | None) -> int:
    """Real Clusternet CRs: the server's table, or the objects."""
    show_ns = resource.namespaced and namespace is None
    if names and namespace is None:
        namespace = session.namespace  # kubectl: -A with names means the current namespace
    paths = [resource.path(namespace, name) for name in names] or [resource.path(namespace)]
    as_table = output not in OBJECT_OUTPUTS
    answers, ok = await _fetch_each(session.kube, paths, as_table)
    if not as_table:
        assert output is not None
        objects = answers if names else [item for a in answers for item in a.get("items") or []]
        print_objects(objects, output, names, lambda _: resource.type_name)
        return 0 if ok else 1
    merged: Obj = {"columnDefinitions": answers[0]["columnDefinitions"] if answers else [],
                   "rows": [r for t in answers for r in t.get("rows") or []]}
    if merged["rows"]:
        click.echo(server_table(merged, wide=output == "wide", with_namespace=show_ns))
    elif not names and ok:
        click.echo(not_found_hint(namespace if resource.namespaced else None), err=True)
    return 0 if ok else 1


async def get_templates(session: Session, kind: Kind, names: tuple[str, ...], namespace: str | None,
                        output: str | None) -> int:
    """Templates (Manifests) of any other kind."""
    namespaced = kind.resource.namespaced if kind.resource is not None else True
    manifests = await list_templates(session, kind, namespace)
    if not manifests and not names:
        click.echo(not_found_hint(namespace if namespaced else None), err=True)
        return 0
    manifests, ok = named_templates(manifests, names, kind)
    if output in OBJECT_OUTPUTS:
        assert output is not None
        print_objects([dict(m.get("template") or {}) for m in manifests], output, names, object_type_name)
    elif manifests:
        click.echo(template_table(manifests, all_namespaces=namespace is None and namespaced,
                                  wide=output == "wide"))
    return 0 if ok else 1
