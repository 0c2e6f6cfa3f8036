"""The patch primitives overrides are made of: values parsed from YAML or JSON, JSON Patch (RFC 6902), JSON
Merge Patch (RFC 7386), patches of a string field holding YAML or JSON, and the diff that names what changed.

Every failure raises PatchFailure with a message a person understands (the JSON pointer that does not
exist, the operation that failed and why), which overrides.py turns into a reported OverrideError.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer
import yaml

from clusternet_api import known

__all__ = [
    "MAX_JSON_PATCH_OPERATIONS",
    "TRAILING_REMOVALS",
    "PatchFailure",
    "apply_field_patch",
    "apply_json_patch",
    "apply_merge_patch",
    "changed_paths",
    "is_helm_chart",
    "json_type",
    "jsonify",
    "merge_patch",
    "parse_value",
    "strip_trailing",
]

Obj = Mapping[str, Any]

TRAILING_REMOVALS: tuple[str, ...] = (
    "/metadata/managedFields",
    "/metadata/uid",
    "/metadata/resourceVersion",
    "/metadata/creationTimestamp",
    "/metadata/generation",
    "/status",
)
"""Removed after every override: server-owned fields that must not be copied into a child cluster."""

MAX_JSON_PATCH_OPERATIONS = 10000
"""Clusternet's cap on operations in one JSON patch; it protects the renderer from pathological input."""

_PATCH_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})
_MISSING = object()


class PatchFailure(Exception):
    """A patch that cannot be applied, with the reason for people (overrides.py reports it per override)."""


class _JSONishLoader(yaml.SafeLoader):
    """SafeLoader without timestamp resolution: values must stay JSON types (dates stay strings)."""


_JSONishLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


MAX_VALUES = 500_000
"""Values a parsed YAML or JSON text may expand to. YAML aliases are references that jsonify, and every JSON
encoder after it, expands: a kilobyte of nested `&a [*b, *b, ...]` became ~4 x 10^8 values, built in the hub's
event loop, so one Localization in one cluster namespace froze the hub for every tenant (audit s35). Aliases
themselves stay welcome (`<<: *defaults` in a config a FieldMergePatch edits); half a million values is more than
an object the API server accepts (1.5 MB) can hold, and takes the hub well under a second to build."""


def jsonify(value: Any, limit: int | None = None) -> Any:
    """YAML may produce non-string keys; JSON (and Kubernetes) only has string keys. Raises PatchFailure past
    `limit` values (parsed YAML text: MAX_VALUES; data that came as JSON holds no aliases)."""
    left = [limit]

    def walk(item: Any) -> Any:
        if left[0] is not None:
            left[0] -= 1
            if left[0] < 0:
                raise PatchFailure(f"expands to more than {limit:,} values (YAML aliases repeated within each other?)")
        if isinstance(item, Mapping):
            return {str(k) if not isinstance(k, bool) else str(k).lower(): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    return walk(value)


def _parse_text(text: str, fmt: str) -> Any:
    if fmt == "JSON":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PatchFailure(f"not valid JSON: {exc}") from exc
    try:
        return jsonify(yaml.load(text, Loader=_JSONishLoader), MAX_VALUES)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PatchFailure(f"not valid YAML: {_yaml_problem(exc)}") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        return f"{exc.problem}{where}"
    return _first_line(str(exc))


def parse_value(value: Any) -> Any:
    """An override `value` as JSON data: YAML or JSON text, or data already parsed (list/dict).

    Raises ValueError with a readable reason when the text is neither JSON nor YAML.
    """
    if not isinstance(value, str):
        return copy.deepcopy(jsonify(value))
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        json_error = exc
    try:
        return _parse_text(value, "YAML")
    except PatchFailure as exc:
        # Text that looks like JSON was most likely meant as JSON: its error message is the useful one.
        reason = str(json_error) if value.lstrip()[:1] in ("[", "{") else str(exc).removeprefix("not valid YAML: ")
        raise ValueError(f"value is neither valid JSON nor valid YAML: {reason}") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_type(value: Any) -> str:
    """How people call a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def changed_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """JSON pointers where `after` differs from `before`.

    Recurses through objects and equal-length lists; an added, removed or retyped subtree, or a list
    whose length changed, is reported once at its own pointer rather than leaf by leaf.
    """
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        paths: list[str] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{prefix}/{_escape(str(key))}"
            if key not in after or key not in before:
                paths.append(sub)
            else:
                paths.extend(changed_paths(before[key], after[key], sub))
        return paths
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        paths = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            paths.extend(changed_paths(b, a, f"{prefix}/{i}"))
        return paths
    if type(before) is not type(after) or before != after:
        return [prefix]
    return []


def _resolve(doc: Any, pointer: str) -> Any:
    try:
        return jsonpointer.resolve_pointer(doc, pointer, _MISSING)
    except (jsonpointer.JsonPointerException, TypeError, ValueError):
        return _MISSING


def _parent(pointer: str) -> str:
    return pointer.rsplit("/", 1)[0]


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _validate_json_patch(patch: Any) -> list[dict[str, Any]]:
    if isinstance(patch, Mapping):
        patch = [patch]  # a single operation is a common slip; accept it rather than fail
    if not isinstance(patch, list):
        raise PatchFailure(f"a JSON patch must be a list of operations, got {json_type(patch)}")
    if len(patch) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchFailure(f"a JSON patch may hold at most {MAX_JSON_PATCH_OPERATIONS} operations, got {len(patch)}")
    for i, op in enumerate(patch, start=1):
        where = f"operation {i}"
        if not isinstance(op, Mapping):
            raise PatchFailure(f"{where} is not an object: {op!r}")
        name = op.get("op")
        if name not in _PATCH_OPS:
            raise PatchFailure(f"{where} has op {name!r}; use one of {', '.join(sorted(_PATCH_OPS))}")
        pointers = ["path"] + (["from"] if name in ("move", "copy") else [])
        for key in pointers:
            ptr = op.get(key)
            if not isinstance(ptr, str) or (ptr and not ptr.startswith("/")):
                raise PatchFailure(f"{where} ({name}) needs a '{key}' JSON pointer starting with '/', got {ptr!r}")
        if name in ("add", "replace", "test") and "value" not in op:
            raise PatchFailure(f"{where} ({name} {op['path']}) has no 'value'")
    return [dict(op) for op in patch]


def _explain_op_failure(doc: Any, op: Mapping[str, Any], exc: Exception) -> str:
    name, path = op["op"], op["path"]
    if name in ("remove", "replace", "test") and _resolve(doc, path) is _MISSING:
        return f"path {path} does not exist"
    if name in ("move", "copy") and _resolve(doc, op["from"]) is _MISSING:
        return f"path {op['from']} (from) does not exist"
    if name in ("add", "move", "copy") and path and _resolve(doc, _parent(path)) is _MISSING:
        return f"path {path} cannot be created: its parent {_parent(path) or '/'} does not exist"
    if isinstance(exc, jsonpatch.JsonPatchTestFailed):
        return f"test failed: {path} is {json.dumps(_resolve(doc, path))}, not {json.dumps(op.get('value'))}"
    return f"cannot {name} {path}: {_first_line(str(exc))}"


def apply_json_patch(doc: Any, patch: Any) -> Any:
    ops = _validate_json_patch(patch)
    work = copy.deepcopy(doc)
    for i, op in enumerate(ops, start=1):
        try:
            work = jsonpatch.apply_patch(work, [op], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError,
                KeyError, IndexError) as exc:
            reason = _explain_op_failure(work, op, exc)
            raise PatchFailure(reason if len(ops) == 1 else f"operation {i}: {reason}") from exc
    return work


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        raise PatchFailure(f"a merge patch must be an object, got {json_type(patch)}")
    return merge_patch(doc, patch)


def _dump(data: Any, fmt: str, original: str) -> str:
    if fmt == "JSON":
        text = json.dumps(data, indent=2, ensure_ascii=False) if "\n" in original.strip() else json.dumps(data)
    else:
        text = yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=True)
    text = text.rstrip("\n")
    return text + "\n" if original.endswith("\n") or (fmt == "YAML" and "\n" in text) else text


def apply_field_patch(doc: Any, conf: Mapping[str, Any], patch: Any, as_json_patch: bool) -> Any:
    pointer = conf.get("fieldPath")
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise PatchFailure(f"fieldPath must be a JSON pointer such as /data/config.yaml, got {pointer!r}")
    fmt = conf.get("fieldFormat") or "YAML"
    if fmt not in ("YAML", "JSON"):
        raise PatchFailure(f"fieldFormat {fmt!r} is not supported; use YAML or JSON")
    current = _resolve(doc, pointer)
    if current is _MISSING:
        raise PatchFailure(f"field {pointer} does not exist")
    if not isinstance(current, str):
        raise PatchFailure(f"field {pointer} is {json_type(current)}, not a string holding {fmt}")
    try:
        content = _parse_text(current, fmt) if current.strip() else None
    except PatchFailure as exc:
        raise PatchFailure(f"field {pointer} is {exc}") from exc
    patched = apply_json_patch(content, patch) if as_json_patch else apply_merge_patch(content, patch)
    if patched == content:
        return doc
    result = copy.deepcopy(doc)
    jsonpointer.set_pointer(result, pointer, _dump(patched, fmt, current))
    return result


def is_helm_chart(obj: Obj) -> bool:
    return obj.get("kind") == "HelmChart" and str(obj.get("apiVersion", "")).startswith(known.APPS_GROUP + "/")


def strip_trailing(obj: dict[str, Any]) -> None:
    for pointer in TRAILING_REMOVALS:
        parent = _resolve(obj, _parent(pointer))
        key = pointer.rsplit("/", 1)[1]
        if isinstance(parent, dict):
            parent.pop(key, None)
