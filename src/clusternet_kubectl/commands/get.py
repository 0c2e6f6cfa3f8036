"""`get`: Clusternet objects with the server's printer columns; templates as NAME, CREATED AT (MANIFEST with -o
wide), Clusternet's columns: its shadow API answers with the API server's default table, whose one column after
the name is the creation timestamp as written (not an age).

Like kubectl's: `-l` (on templates, their own labels), `-o yaml|json|name|wide|jsonpath=|jsonpath-file=|
custom-columns=` with kubectl's output shapes (a `kind: List` for several objects, `deployment.apps/x` names,
kubectl's JSONPath dialect: clusternet_kubectl.jsonpath), and `-w` on templates (the table, then a row per
change, from a watch of their Manifests). Where we differ: templates are listed from their Manifests, so the
columns are ours (a Deployment template has no READY or UP-TO-DATE: it runs nowhere on the parent); `-w` on
Clusternet's own objects is left to kubectl itself (they are real objects on the parent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from clusternet_api import known
from clusternet_api.kube import ApiException, Kube, Obj, status_error
from clusternet_kubectl.errors import PluginError, api_error
from clusternet_kubectl.resources import MANIFEST, Resource, object_type_name
from clusternet_kubectl.session import Session
from clusternet_kubectl.tables import format_table, server_table
from clusternet_kubectl.templates import (
    Kind,
    kind_and_names,
    list_manifests,
    manifest_selector,
    named_templates,
    not_found_hint,
    resolve_kind,
    template_filter,
    template_name,
    template_namespace,
)

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
OBJECT_OUTPUTS = ("yaml", "json", "name")
WATCH_TIMEOUT = 300  # seconds a template watch asks for before it is opened again


def is_object_output(output: str | None) -> bool:
    """Whether -o prints the objects (yaml, json, name, templates) rather than a table."""
    return output is not None and (output in OBJECT_OUTPUTS or output.startswith(("jsonpath", "custom-columns")))


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
    data = as_printed(objects, single)
    if output == "json":
        return json.dumps(data, indent=4)
    return yaml.safe_dump(data, sort_keys=False).rstrip("\n")


def as_printed(objects: list[Obj], single: bool) -> Obj:
    """What kubectl prints: the object itself, or a v1 List of them."""
    return objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": objects,
                                      "metadata": {"resourceVersion": ""}}


def jsonpath_template(output: str) -> str:
    """The template of -o jsonpath=T or jsonpath-file=FILE."""
    name, _, arg = output.partition("=")
    if name == "jsonpath-file":
        try:
            return Path(arg).read_text()
        except OSError as exc:
            raise PluginError(f"error reading --template {arg}, {exc.strerror or exc}") from exc
    return arg


def custom_columns(objects: list[Obj], spec: str) -> str:
    """-o custom-columns=HEADER:.path,...: one row per object, `<none>` where a path finds nothing."""
    from clusternet_kubectl import jsonpath

    columns = []
    for part in spec.split(","):
        header, sep, expression = part.partition(":")
        if not sep or not header:
            raise PluginError(f'unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>')
        try:
            columns.append((header, jsonpath.parse(jsonpath.relaxed(expression))))
        except jsonpath.JSONPathError as exc:
            raise PluginError(f"error parsing jsonpath {jsonpath.relaxed(expression)}, {exc}") from exc
    rows = []
    for obj in objects:
        row = []
        for _, nodes in columns:
            values = jsonpath.find(nodes, obj)
            row.append(",".join(jsonpath.text_of(v) for v in values) if values else "<none>")
        rows.append(row)
    return format_table([h for h, _ in columns], rows, upper=False)


def render_objects(objects: list[Obj], output: str, single: bool, type_of: Callable[[Obj], str]) -> str:
    """The text of -o name, yaml, json, jsonpath or custom-columns for `objects` (no trailing newline for
    jsonpath, as kubectl)."""
    if output == "name":
        return "\n".join(f"{type_of(obj)}/{obj['metadata']['name']}" for obj in objects)
    if output in ("yaml", "json"):
        return dump(objects, output, single)
    if output.startswith("custom-columns="):
        return custom_columns(objects, output.partition("=")[2])
    from clusternet_kubectl import jsonpath

    template = jsonpath_template(output)
    try:
        return jsonpath.execute(template, as_printed(objects, single))
    except jsonpath.JSONPathError as exc:
        raise PluginError(f"error parsing jsonpath {template}, {exc}") from exc


def print_objects(objects: list[Obj], output: str, names: Sequence[str], type_of: Callable[[Obj], str]) -> None:
    """-o name, yaml, json, jsonpath or custom-columns; nothing when names were given and none was found
    (kubectl prints no empty List)."""
    if output == "name" and not objects:
        return
    if objects or not names:
        text = render_objects(objects, output, len(names) == 1 and len(objects) == 1, type_of)
        click.echo(text, nl=not output.startswith("jsonpath"))


def template_table(manifests: Sequence[Mapping[str, Any]], *, all_namespaces: bool, wide: bool) -> str:
    """NAME, CREATED AT (NAMESPACE first with -A; MANIFEST last with -o wide) for templates."""
    headers = (["Namespace"] if all_namespaces else []) + ["Name", "Created At"] + (["Manifest"] if wide else [])
    rows = []
    for m in manifests:
        row = [template_namespace(m)] if all_namespaces else []
        row += [template_name(m), (m.get("metadata") or {}).get("creationTimestamp") or "<unknown>"]
        if wide:
            row.append((m.get("metadata") or {}).get("name", ""))
        rows.append(row)
    return format_table(headers, rows)


async def get_command(session: Session, kind_name: str, names: tuple[str, ...], all_namespaces: bool,
                      output: str | None, selector: str = "", watch: bool = False) -> int:
    kind_name, names = kind_and_names(kind_name, names)
    if names and selector:
        raise PluginError("selectors and the all flag cannot be used when passing resource/name arguments")
    kind = await resolve_kind(session, kind_name)
    namespace = None if all_namespaces else session.namespace
    if kind.resource is not None and kind.is_clusternet:
        if watch:
            raise PluginError(f"-w is for templates; {kind.resource.group_resource} are objects on the parent: "
                              "use kubectl get -w")
        return await get_real(session, kind.resource, names, namespace, output, selector)
    return await get_templates(session, kind, names, namespace, output, selector, watch)


async def _fetch_each(kube: Kube, paths: list[str], as_table: bool,
                      query: Mapping[str, str] | None = None) -> tuple[list[Obj], bool]:
    """Each path's answer in order (a Table, or the object or list), and whether all were there; errors are
    reported as they come, like kubectl's."""
    answers: list[Obj] = []
    ok = True
    for path in paths:
        try:
            answers.append(await (get_table(kube, path, query) if as_table
                                  else kube.request("GET", path, query=query)))
        except ApiException as exc:
            if exc.status == 401:
                raise  # the credentials, not this object: one line for the whole command (session.run)
            click.echo(api_error(exc), err=True)
            ok = False
    return answers, ok


async def get_real(session: Session, resource: Resource, names: tuple[str, ...], namespace: str | None,
                   output: str | None, selector: str = "") -> int:
    """Real Clusternet CRs: the server's table, or the objects."""
    show_ns = resource.namespaced and namespace is None
    if names and namespace is None:
        namespace = session.namespace  # kubectl: -A with names means the current namespace
    paths = [resource.path(namespace, name) for name in names] or [resource.path(namespace)]
    as_table = not is_object_output(output)
    answers, ok = await _fetch_each(session.kube, paths, as_table, {"labelSelector": selector} if selector else None)
    if not as_table:
        assert output is not None
        objects = answers if names else [item for a in answers for item in a.get("items") or []]
        if not objects and not names and ok:
            click.echo(not_found_hint(namespace if resource.namespaced else None), err=True)
            return 0
        print_objects(objects, output, names, lambda _: resource.type_name)
        return 0 if ok else 1
    merged: Obj = {"columnDefinitions": answers[0]["columnDefinitions"] if answers else [],
                   "rows": [r for t in answers for r in t.get("rows") or []]}
    if merged["rows"]:
        click.echo(server_table(merged, wide=output == "wide", with_namespace=show_ns))
    elif not names and ok:
        click.echo(not_found_hint(namespace if resource.namespaced else None), err=True)
    return 0 if ok else 1


def template_objects(manifests: Sequence[Mapping[str, Any]]) -> list[Obj]:
    return [dict(m.get("template") or {}) for m in manifests]


async def get_templates(session: Session, kind: Kind, names: tuple[str, ...], namespace: str | None,
                        output: str | None, selector: str = "", watch: bool = False) -> int:
    """Templates (Manifests) of any other kind."""
    namespaced = kind.resource.namespaced if kind.resource is not None else True
    manifests, version = await list_manifests(session, kind, namespace, selector=selector)
    with_namespace = namespace is None and namespaced
    if not manifests and not names:
        click.echo(not_found_hint(namespace if namespaced else None), err=True)
        if not watch:
            return 0
    manifests, ok = named_templates(manifests, names, kind)
    printed = 0
    if watch and is_object_output(output):  # kubectl get -w prints objects one by one, even the first list
        for manifest in manifests:
            printed = print_watched(manifest, output, printed)
    elif is_object_output(output):
        assert output is not None
        print_objects(template_objects(manifests), output, names, object_type_name)
    elif manifests:
        click.echo(template_table(manifests, all_namespaces=with_namespace, wide=output == "wide"))
    if not watch:
        return 0 if ok else 1
    return await watch_templates(session, kind, names, namespace, output, selector, version, with_namespace, printed)


def print_watched(manifest: Mapping[str, Any], output: str | None, printed: int) -> int:
    """One template of `get -w` in an object output (yaml documents separated by `---`, as kubectl's); returns
    how many were printed so far."""
    assert output is not None
    if output == "yaml" and printed:
        click.echo("---")
    click.echo(render_objects(template_objects([manifest]), output, True, object_type_name),
               nl=not output.startswith("jsonpath"))
    return printed + 1


async def watch_templates(session: Session, kind: Kind, names: tuple[str, ...], namespace: str | None,
                          output: str | None, selector: str, version: str, with_namespace: bool,
                          printed: int = 0) -> int:
    """`get -w`: one line (or object) per change of a matching template, from a watch of the Manifests that
    starts where the list ended and is opened again when the server closes it, until interrupted."""
    wanted = template_filter(kind, namespace)
    query = {"watch": "1", "labelSelector": manifest_selector(kind, selector=selector),
             "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_TIMEOUT)}
    if not query["labelSelector"]:
        del query["labelSelector"]
    path = MANIFEST.path(known.RESERVED_NAMESPACE)
    while True:
        if version:
            query["resourceVersion"] = version
        async for event in session.kube.watch_path(path, query, WATCH_TIMEOUT):
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                if obj.get("code") == 410:  # expired: watch again from now, as a reflector relists
                    version = ""
                    query.pop("resourceVersion", None)
                    break
                raise PluginError(f"the watch failed: {obj.get('message') or obj}")
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if event.get("type") == "BOOKMARK" or not wanted(obj) or (names and template_name(obj) not in names):
                continue
            if is_object_output(output):
                printed = print_watched(obj, output, printed)
            else:
                table = template_table([obj], all_namespaces=with_namespace, wide=output == "wide")
                click.echo(table.splitlines()[1])
