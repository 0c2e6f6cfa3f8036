"""kubectl's JSONPath templates (`-o jsonpath=...`, `-o custom-columns=...`), evaluated as kubectl does.

No Python library does kubectl's dialect (k8s.io/client-go/util/jsonpath): text with `{...}` actions,
`{range ...}{end}`, quoted strings `{"\\n"}`, results of one action joined by spaces, maps and lists printed as
compact JSON with sorted keys, missing keys printing nothing (`get` allows missing keys). This module does
the subset kubectl users write: `$`, `@`, `.field` (`\\.` escapes a dot), `..field`, `.*`, `[n]`, `[-n]`,
`[a:b:c]`, `[*]`, `['key']`, unions `[a,b]`, filters `[?(@.x == "y")]` (==, !=, <, <=, >, >=, or
existence), nested `range`. Not done: kubectl's struct-only features and `jsonpath-as-json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class JSONPathError(Exception):
    """A template that does not parse (kubectl: `error parsing jsonpath ...`)."""


# --- parsing ----------------------------------------------------------------------------------------------------

Step = tuple[str, Any]  # ("field", name) ("wild", None) ("recursive", None) ("index", [items]) ("filter", Filter)


@dataclass
class Path:
    """One path of an action: its start (`$` root or `@`/`.` current) and its steps."""

    root: bool
    steps: list[Step]


@dataclass
class Filter:
    left: list[Path]
    op: str | None = None  # None: existence
    right: list[Path] | Any = None
    right_is_path: bool = False


@dataclass
class Action:
    """`{...}`: the union of paths, a quoted string (text), `range` or `end`."""

    paths: list[Path] = field(default_factory=list)
    text: str | None = None


@dataclass
class Range:
    paths: list[Path]
    body: list[Node]


Node = str | Action | Range

TERMINATORS = set(" \t\r\n.,[]$@{}()=!<>")


def _unquote(text: str) -> str:
    """A Go double- or single-quoted string literal."""
    if text.startswith("'"):
        return text[1:-1]
    try:
        value = json.loads(text, strict=False)  # Go keeps a literal tab in a quoted string
    except ValueError as exc:
        raise JSONPathError(f"invalid string {text}") from exc
    return str(value)


def _string_end(text: str, start: int) -> int:
    """Index just past the quoted string starting at `start`."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and quote == '"':
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        if text[i] == "\n":  # as Go's lexer: a quoted string ends on its line
            break
        i += 1
    raise JSONPathError("unterminated quoted string")


class _PathParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() and self.peek() in " \t":
            self.i += 1

    def paths(self, stop: str = "", union: bool = False) -> list[Path]:
        """A path (comma-separated paths with `union`) until the end or a character of `stop`."""
        out = [self.path()]
        self.skip_spaces()
        while union and self.peek() == ",":
            self.i += 1
            self.skip_spaces()
            out.append(self.path())
            self.skip_spaces()
        if self.peek() and self.peek() not in stop:
            raise JSONPathError(f"unrecognized character in action: U+{ord(self.peek()):04X} {self.peek()!r}")
        return out

    def path(self) -> Path:
        root = False
        if self.peek() == "$":
            root, self.i = True, self.i + 1
        elif self.peek() == "@":
            self.i += 1
        elif self.peek() not in (".", "["):
            raise JSONPathError(f"unrecognized identifier {self.text[self.i:]!r}")
        steps: list[Step] = []
        while self.peek() in (".", "["):
            if self.peek() == "[":
                steps.append(self.bracket())
                continue
            self.i += 1
            if self.peek() == ".":
                self.i += 1
                steps.append(("recursive", None))
            name = self.name()
            if name == "*":
                steps.append(("wild", None))
            elif name:
                steps.append(("field", name))
        return Path(root, steps)

    def name(self) -> str:
        out = []
        while self.peek() and self.peek() not in TERMINATORS:
            if self.peek() == "\\" and self.i + 1 < len(self.text):
                self.i += 1
            out.append(self.peek())
            self.i += 1
        return "".join(out)

    def bracket(self) -> Step:
        self.i += 1
        end = self._closing()
        inner = self.text[self.i:end].strip()
        self.i = end + 1
        if inner.startswith("?"):
            return "filter", _parse_filter(inner[1:].strip())
        if inner == "*":
            return "wild", None
        items: list[Any] = []
        for part in _split_top(inner, ","):
            part = part.strip()
            if part[:1] in ("'", '"'):
                items.append(("key", _unquote(part)))
            elif ":" in part:
                bounds = [int(b) if b.strip() else None for b in part.split(":")]
                if len(bounds) > 3:
                    raise JSONPathError(f"invalid array slice [{inner}]")
                items.append(("slice", ([*bounds, None, None])[:3]))
            else:
                try:
                    items.append(("index", int(part)))
                except ValueError:
                    items.append(("key", part))
        return "index", items

    def _closing(self) -> int:
        depth, i = 0, self.i
        while i < len(self.text):
            c = self.text[i]
            if c in "'\"":
                i = _string_end(self.text, i)
                continue
            if c in "[(":
                depth += 1
            elif c in ")]":
                if depth == 0 and c == "]":
                    return i
                depth -= 1
            i += 1
        raise JSONPathError("unterminated array")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quotes and brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            i = _string_end(text, i)
            continue
        if c in "[(":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


OPERATORS = ("==", "!=", "<=", ">=", "<", ">")


def _parse_filter(text: str) -> Filter:
    if not (text.startswith("(") and text.endswith(")")):
        raise JSONPathError(f"unrecognized filter {text!r}")
    body = text[1:-1].strip()
    for op in OPERATORS:
        at = _find_operator(body, op)
        if at >= 0:
            left, right = body[:at].strip(), body[at + len(op):].strip()
            f = Filter(_PathParser(left).paths(), op)
            if right[:1] in ("@", "$", "."):
                f.right, f.right_is_path = _PathParser(right).paths(), True
            elif right[:1] in ("'", '"'):
                f.right = _unquote(right)
            else:
                try:
                    f.right = json.loads(right)
                except ValueError as exc:
                    raise JSONPathError(f"unrecognized filter value {right!r}") from exc
            return f
    return Filter(_PathParser(body).paths())


def _find_operator(body: str, op: str) -> int:
    i = 0
    while i < len(body):
        if body[i] in "'\"":
            i = _string_end(body, i)
            continue
        if body.startswith(op, i):
            if op in ("<", ">") and body[i + 1:i + 2] == "=":
                i += 2
                continue
            return i
        i += 1
    return -1


def parse(template: str) -> list[Node]:
    """The nodes of a template; JSONPathError when it does not parse."""
    root: list[Node] = []
    stack: list[list[Node]] = [root]
    i = 0
    while i < len(template):
        start = template.find("{", i)
        if start < 0:
            stack[-1].append(template[i:])
            break
        if start > i:
            stack[-1].append(template[i:start])
        end = start + 1
        while end < len(template) and template[end] != "}":
            end = _string_end(template, end) if template[end] in "'\"" else end + 1
        if end >= len(template):
            raise JSONPathError("unclosed action")
        inner = template[start + 1:end].strip()
        i = end + 1
        if inner == "end":
            if len(stack) == 1:
                raise JSONPathError("not in range, nothing to end")
            stack.pop()
        elif inner.startswith("range ") or inner.startswith("range\t"):
            node = Range(_PathParser(inner[6:].strip()).paths(), [])
            stack[-1].append(node)
            stack.append(node.body)
        elif inner[:1] in ("'", '"') and _string_end(inner, 0) == len(inner):
            stack[-1].append(Action(text=_unquote(inner)))
        elif inner:
            stack[-1].append(Action(_PathParser(inner).paths()))
    if len(stack) > 1:
        raise JSONPathError("range not closed with {end}")
    return root


# --- evaluation --------------------------------------------------------------------------------------------------

def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, list):
        return list(value)
    return []


def _recursive(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        kids = _children(value)
        if kids:
            out.append(value)
            out += _recursive(kids)
    return out


def _slice(value: list[Any], bounds: list[int | None]) -> list[Any]:
    start, stop, step = bounds
    return value[slice(start, stop, step or None)]


def _compare(left: Any, op: str, right: Any) -> bool:
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    try:
        return ops[op](left, right)
    except TypeError:
        return False


def _step(values: list[Any], step: Step, root: Any) -> list[Any]:
    kind, arg = step
    out: list[Any] = []
    if kind == "recursive":
        return _recursive(values)
    for value in values:
        if kind == "field":
            if isinstance(value, dict) and arg in value:
                out.append(value[arg])
        elif kind == "wild":
            out += _children(value)
        elif kind == "index":
            for item_kind, item in arg:
                if item_kind == "key":
                    if isinstance(value, dict) and item in value:
                        out.append(value[item])
                elif not isinstance(value, list):
                    continue
                elif item_kind == "index":
                    if -len(value) <= item < len(value):
                        out.append(value[item])
                else:
                    out += _slice(value, item)
        elif kind == "filter" and isinstance(value, list):
            out += [item for item in value if _keep(item, arg, root)]
    return out


def _keep(item: Any, f: Filter, root: Any) -> bool:
    left = _eval_paths(f.left, root, item)
    if f.op is None:
        return bool(left)
    right = _eval_paths(f.right, root, item) if f.right_is_path else [f.right]
    return bool(left) and bool(right) and _compare(left[0], f.op, right[0])


def _eval_paths(paths: list[Path], root: Any, current: Any) -> list[Any]:
    out: list[Any] = []
    for path in paths:
        values = [root if path.root else current]
        for step in path.steps:
            values = _step(values, step, root)
        out += values
    return out


def go_json(value: Any) -> str:
    """encoding/json.Marshal's text: compact, sorted keys, <, > and & escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def text_of(value: Any) -> str:
    """One result as kubectl prints it: maps and lists as JSON, scalars as Go's fmt does."""
    if isinstance(value, (dict, list)):
        return go_json(value)
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def _run(nodes: list[Node], root: Any, current: Any) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, str):
            yield node
        elif isinstance(node, Range):
            for item in _eval_paths(node.paths, root, current):
                yield from _run(node.body, item, item)
        elif node.text is not None:
            yield node.text
        else:
            yield " ".join(text_of(v) for v in _eval_paths(node.paths, root, current))


def execute(template: str | list[Node], data: Any) -> str:
    """The template's output for `data` (kubectl adds no newline)."""
    nodes = parse(template) if isinstance(template, str) else template
    return "".join(_run(nodes, data, data))


def find(template: str | list[Node], data: Any) -> list[Any]:
    """The values the template's actions find (custom-columns: one column's cells)."""
    nodes = parse(template) if isinstance(template, str) else template
    out: list[Any] = []
    for node in nodes:
        if isinstance(node, Action) and node.text is None:
            out += _eval_paths(node.paths, data, data)
    return out


def relaxed(expression: str) -> str:
    """kubectl's RelaxedJSONPathExpression (custom-columns): `.a.b`, `a.b` and `{.a.b}` all mean `{.a.b}`."""
    expr = expression.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    if expr and expr[0] not in ".$@[":
        expr = "." + expr
    return "{" + expr + "}"
