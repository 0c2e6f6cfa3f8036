"""Globalizations and Localizations: which apply to a feed in a cluster, in which order, and what they did.

Order is Clusternet's (reference §6): matching Globalizations, then the cluster's Localizations, each group
by `spec.priority` ascending (default 500) then creation time (then name, so equal timestamps still give
one order); within an object, `spec.overrides[]` in list order. Later overrides win.

Unlike Clusternet, which drops a failing patch silently (a typo in a JSON pointer just does nothing), every
override that cannot be applied is reported with a message a person understands, the other overrides
still apply, and nothing raises: a bad Localization must not stop a whole rollout, but it must be seen.
Each applied override also reports the JSON pointers it changed, for `kubectl clusternet render`.

Field overrides (`FieldJSONPatch`, `FieldMergePatch`) locate their string field with an RFC 6901 JSON
pointer in `fieldPath`, e.g. `/data/config.yaml` (escape `/` in a key as `~1`, `~` as `~0`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import jsonpointer
import yaml

from clusternet_api import known
from clusternet_core.scheduling import InvalidSelector, feed_ref, label_selector_matches

__all__ = [
    "TRAILING_REMOVALS",
    "AppliedOverride",
    "OverrideError",
    "OverrideResult",
    "apply_overrides",
    "changed_paths",
    "merge_patch",
    "parse_value",
    "select_overrides",
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


# ---------------------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------------------


def _same_feed(a: Obj, b: Obj) -> bool:
    return feed_ref(a) == feed_ref(b)


def _creation_time(obj: Obj) -> datetime:
    text = (obj.get("metadata") or {}).get("creationTimestamp")
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    if not text:
        return datetime.min.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _order_key(obj: Obj) -> tuple[int, datetime, str, str]:
    spec = obj.get("spec") or {}
    priority = spec.get("priority")
    meta = obj.get("metadata") or {}
    return (
        known.DEFAULT_PRIORITY if priority is None else int(priority),
        _creation_time(obj),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _live(obj: Obj) -> bool:
    # An override being deleted is already rolled back (that is how users undo one).
    return not (obj.get("metadata") or {}).get("deletionTimestamp")


def select_overrides(
    feed: Obj,
    cluster: Obj,
    globalizations: Iterable[Obj],
    localizations: Iterable[Obj],
) -> list[dict[str, Any]]:
    """The Globalizations then Localizations that apply to `feed` in `cluster`, in application order.

    `feed` is a Feed dict or the object itself. A Globalization without clusterAffinity applies to every
    cluster; a Localization applies only when it lives in the cluster's dedicated namespace. Objects being
    deleted are left out. Raises InvalidSelector (naming the Globalization) for a broken clusterAffinity.
    """
    cluster_meta = cluster.get("metadata") or {}
    cluster_labels = cluster_meta.get("labels") or {}
    cluster_ns = cluster_meta.get("namespace")

    globs: list[dict[str, Any]] = []
    for glob in globalizations:
        spec = glob.get("spec") or {}
        if not _live(glob) or not _same_feed(spec.get("feed") or {}, feed):
            continue
        affinity = spec.get("clusterAffinity")
        if affinity is not None:
            try:
                if not label_selector_matches(affinity, cluster_labels):
                    continue
            except InvalidSelector as exc:
                name = (glob.get("metadata") or {}).get("name")
                raise InvalidSelector(f"Globalization {name} spec.clusterAffinity: {exc}") from exc
        globs.append(dict(glob))

    locs = [
        dict(loc)
        for loc in localizations
        if _live(loc)
        and (loc.get("metadata") or {}).get("namespace") == cluster_ns
        and _same_feed((loc.get("spec") or {}).get("feed") or {}, feed)
    ]
    globs.sort(key=_order_key)
    locs.sort(key=_order_key)
    return globs + locs


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedOverride:
    """One override that took effect, and the JSON pointers whose values it changed."""

    kind: str
    """Globalization or Localization."""
    namespace: str | None
    name: str
    override_name: str
    """`spec.overrides[].name`, or `#<index>` when unnamed."""
    changed_paths: tuple[str, ...]
    type: str = ""
    """The override type (JSONPatch, MergePatch, ...)."""
    target: str = "object"
    """`object` for the rendered object, `values` for the Helm values."""


@dataclass(frozen=True)
class OverrideError:
    """One override that could not be applied; the object was rendered without it."""

    kind: str
    namespace: str | None
    name: str
    override_name: str
    message: str
    """The whole sentence, naming the override object, the override and the problem."""
    reason: str = ""
    """Just the problem, e.g. `path /spec/replicaz does not exist`."""

    def __str__(self) -> str:
        return self.message


@dataclass
class OverrideResult:
    """The overridden object plus a record of what each override did or why it failed."""

    object: dict[str, Any]
    applied: list[AppliedOverride] = field(default_factory=list)
    errors: list[OverrideError] = field(default_factory=list)
    helm_values: dict[str, Any] = field(default_factory=dict)
    """Helm-type overrides (not `overrideChart`) merged in order, for the Helm deployer."""

    @property
    def ok(self) -> bool:
        return not self.errors


class _Failure(Exception):
    """Internal: an override that cannot be applied, with the reason for people."""


# ---------------------------------------------------------------------------------------------------------
# Values, patches, diffs
# ---------------------------------------------------------------------------------------------------------


class _JSONishLoader(yaml.SafeLoader):
    """SafeLoader without timestamp resolution: values must stay JSON types (dates stay strings)."""


_JSONishLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _jsonify(value: Any) -> Any:
    """YAML may produce non-string keys; JSON (and Kubernetes) only has string keys."""
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, bool) else str(k).lower(): _jsonify(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonify(v) for v in value]
    return value


def _parse_text(text: str, fmt: str) -> Any:
    if fmt == "JSON":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Failure(f"not valid JSON: {exc}") from exc
    try:
        return _jsonify(yaml.load(text, Loader=_JSONishLoader))  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _Failure(f"not valid YAML: {_yaml_problem(exc)}") from exc


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
        return copy.deepcopy(_jsonify(value))
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        json_error = exc
    try:
        return _parse_text(value, "YAML")
    except _Failure as exc:
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


def _json_type(value: Any) -> str:
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
        raise _Failure(f"a JSON patch must be a list of operations, got {_json_type(patch)}")
    if len(patch) > MAX_JSON_PATCH_OPERATIONS:
        raise _Failure(f"a JSON patch may hold at most {MAX_JSON_PATCH_OPERATIONS} operations, got {len(patch)}")
    for i, op in enumerate(patch, start=1):
        where = f"operation {i}"
        if not isinstance(op, Mapping):
            raise _Failure(f"{where} is not an object: {op!r}")
        name = op.get("op")
        if name not in _PATCH_OPS:
            raise _Failure(f"{where} has op {name!r}; use one of {', '.join(sorted(_PATCH_OPS))}")
        pointers = ["path"] + (["from"] if name in ("move", "copy") else [])
        for key in pointers:
            ptr = op.get(key)
            if not isinstance(ptr, str) or (ptr and not ptr.startswith("/")):
                raise _Failure(f"{where} ({name}) needs a '{key}' JSON pointer starting with '/', got {ptr!r}")
        if name in ("add", "replace", "test") and "value" not in op:
            raise _Failure(f"{where} ({name} {op['path']}) has no 'value'")
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


def _apply_json_patch(doc: Any, patch: Any) -> Any:
    ops = _validate_json_patch(patch)
    work = copy.deepcopy(doc)
    for i, op in enumerate(ops, start=1):
        try:
            work = jsonpatch.apply_patch(work, [op], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError,
                KeyError, IndexError) as exc:
            reason = _explain_op_failure(work, op, exc)
            raise _Failure(reason if len(ops) == 1 else f"operation {i}: {reason}") from exc
    return work


def _apply_merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        raise _Failure(f"a merge patch must be an object, got {_json_type(patch)}")
    return merge_patch(doc, patch)


def _dump(data: Any, fmt: str, original: str) -> str:
    if fmt == "JSON":
        text = json.dumps(data, indent=2, ensure_ascii=False) if "\n" in original.strip() else json.dumps(data)
    else:
        text = yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=True)
    text = text.rstrip("\n")
    return text + "\n" if original.endswith("\n") or (fmt == "YAML" and "\n" in text) else text


def _apply_field_patch(doc: Any, conf: Mapping[str, Any], patch: Any, as_json_patch: bool) -> Any:
    pointer = conf.get("fieldPath")
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise _Failure(f"fieldPath must be a JSON pointer such as /data/config.yaml, got {pointer!r}")
    fmt = conf.get("fieldFormat") or "YAML"
    if fmt not in ("YAML", "JSON"):
        raise _Failure(f"fieldFormat {fmt!r} is not supported; use YAML or JSON")
    current = _resolve(doc, pointer)
    if current is _MISSING:
        raise _Failure(f"field {pointer} does not exist")
    if not isinstance(current, str):
        raise _Failure(f"field {pointer} is {_json_type(current)}, not a string holding {fmt}")
    try:
        content = _parse_text(current, fmt) if current.strip() else None
    except _Failure as exc:
        raise _Failure(f"field {pointer} is {exc}") from exc
    patched = _apply_json_patch(content, patch) if as_json_patch else _apply_merge_patch(content, patch)
    if patched == content:
        return doc
    result = copy.deepcopy(doc)
    jsonpointer.set_pointer(result, pointer, _dump(patched, fmt, current))
    return result


def _is_helm_chart(obj: Obj) -> bool:
    return obj.get("kind") == "HelmChart" and str(obj.get("apiVersion", "")).startswith(known.APPS_GROUP + "/")


def _strip_trailing(obj: dict[str, Any]) -> None:
    for pointer in TRAILING_REMOVALS:
        parent = _resolve(obj, _parent(pointer))
        key = pointer.rsplit("/", 1)[1]
        if isinstance(parent, dict):
            parent.pop(key, None)


# ---------------------------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------------------------


def apply_overrides(obj: Obj, overrides: Iterable[Obj]) -> OverrideResult:
    """Apply the overrides (Globalization/Localization dicts, already ordered) to a copy of `obj`.

    A failing override is skipped and reported; the others still apply. Helm-type overrides never touch
    a generic object: their values are merged into `helm_values`; with `overrideChart` they merge-patch a
    HelmChart object (never its `spec.chart` or `spec.targetNamespace`). Patch types do not apply to a
    HelmChart and are reported. Finally the server-owned TRAILING_REMOVALS are dropped.
    """
    current: Any = copy.deepcopy(_jsonify(obj))
    result = OverrideResult(object={})
    helm_chart = _is_helm_chart(obj)
    for override in overrides:
        meta = override.get("metadata") or {}
        kind = str(override.get("kind") or ("Localization" if meta.get("namespace") else "Globalization"))
        namespace = meta.get("namespace") or None
        name = str(meta.get("name") or "")
        who = f"{kind} {namespace + '/' if namespace else ''}{name}"
        for index, conf in enumerate((override.get("spec") or {}).get("overrides") or []):
            conf = conf if isinstance(conf, Mapping) else {}
            oname = str(conf.get("name") or f"#{index}")
            otype = str(conf.get("type") or "")
            try:
                outcome = _apply_one(current, result.helm_values, conf, otype, helm_chart)
            except _Failure as exc:
                label = f"override '{oname}'" if conf.get("name") else f"override {oname}"
                message = f"{who} {label} ({otype or 'no type'}): {exc}"
                result.errors.append(OverrideError(kind, namespace, name, oname, message, str(exc)))
                continue
            if outcome is None:
                continue
            target, before, after = outcome
            if target == "values":
                result.helm_values = after
            else:
                current = after
            result.applied.append(
                AppliedOverride(kind, namespace, name, oname, tuple(changed_paths(before, after)), otype, target)
            )
    if isinstance(current, dict):
        _strip_trailing(current)
        result.object = current
    return result


def _apply_one(
    current: Any, helm_values: dict[str, Any], conf: Mapping[str, Any], otype: str, helm_chart: bool
) -> tuple[str, Any, Any] | None:
    """Apply one `spec.overrides[]` entry; None when it has nothing to do here (empty, not for this object)."""
    raw = conf.get("value")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None  # Clusternet skips empty values too
    if otype not in ("Helm", "JSONPatch", "MergePatch", "FieldJSONPatch", "FieldMergePatch"):
        raise _Failure(
            f"unknown override type {otype!r}; use JSONPatch, MergePatch, FieldJSONPatch, FieldMergePatch or Helm"
        )
    try:
        patch = parse_value(raw)
    except ValueError as exc:
        raise _Failure(str(exc)) from exc

    if otype == "Helm":
        if not isinstance(patch, Mapping):
            raise _Failure(f"Helm values must be an object, got {_json_type(patch)}")
        if conf.get("overrideChart"):
            if not helm_chart:
                return None
            spec_patch = patch.get("spec")
            if isinstance(spec_patch, Mapping):
                patch = dict(patch, spec={k: v for k, v in spec_patch.items() if k not in ("chart", "targetNamespace")})
            return "object", current, merge_patch(current, patch)
        return "values", helm_values, merge_patch(helm_values, patch)

    if helm_chart:
        raise _Failure(
            f"{otype} overrides do not apply to a HelmChart; use type Helm (with overrideChart to patch the chart)"
        )
    if otype == "JSONPatch":
        patched = _apply_json_patch(current, patch)
        if not isinstance(patched, Mapping):
            raise _Failure(f"the patch would replace the whole object with {_json_type(patched)}")
        return "object", current, patched
    if otype == "MergePatch":
        return "object", current, _apply_merge_patch(current, patch)
    return "object", current, _apply_field_patch(current, conf, patch, as_json_patch=otype == "FieldJSONPatch")
