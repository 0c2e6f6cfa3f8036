"""The objects a user hands to `apply -f` / `delete -f`: read from files, directories or stdin, and cleaned.

Like kubectl: multi-document YAML or JSON, any `*List` expanded, a directory's .yaml/.yml/.json files in
name order (`-R` walks sub-directories); `-k DIR` is what the real `kubectl kustomize DIR` builds (kustomize is
kubectl's own, so its version and plugins are the user's). Unlike kubectl, no URLs with -f.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from clusternet_core.naming import clean_object as clean_object  # re-exported: the plugin's commands use it
from clusternet_kubectl.errors import PluginError

DOCUMENT_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Document:
    """One object read from a file (or stdin), with where it came from (for error messages)."""

    source: str
    object: dict[str, Any]


def _expand(doc: Any, source: str) -> Iterator[dict[str, Any]]:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise PluginError(f"{source}: expected an object, got {type(doc).__name__}")
    kind = str(doc.get("kind") or "")
    if kind.endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _expand(item, source)
        return
    yield doc


def parse_documents(text: str, source: str) -> list[Document]:
    """All objects in a YAML (multi-document) or JSON text; `kind: List` (or any *List) is expanded."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise PluginError(f"{source}: invalid YAML or JSON: {exc}") from exc
    return [Document(source, obj) for doc in docs for obj in _expand(doc, source)]


def document_files(path: Path, recursive: bool) -> list[Path]:
    """The files `-f path` names: the file itself, or a directory's .yaml/.yml/.json files, sorted."""
    if not path.exists():
        raise PluginError(f"the path {str(path)!r} does not exist")
    if not path.is_dir():
        return [path]
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)


def load_documents(sources: Sequence[str], recursive: bool = False, stdin: TextIO | None = None) -> list[Document]:
    """Objects from every `-f` argument in order; `-` reads stdin."""
    documents: list[Document] = []
    for source in sources:
        if source == "-":
            documents += parse_documents((stdin or sys.stdin).read(), "<stdin>")
            continue
        for file in document_files(Path(source), recursive):
            documents += parse_documents(file.read_text(), str(file))
    return documents


def kubectl_error(stderr: str) -> str:
    """The message of kubectl's error output: `error: X`, or klog's `... "command failed" err="X"`."""
    import re

    for line in stderr.splitlines():
        logged = re.search(r'err="((?:[^"\\]|\\.)*)"', line)
        if logged:
            return logged.group(1).replace('\\"', '"')
        if line.strip():
            return line.strip().removeprefix("error: ").removeprefix("Error: ")
    return ""


def kustomize(directory: str) -> list[Document]:
    """The objects `kubectl kustomize DIR` prints; PluginError (one line) when kubectl is missing or fails."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise PluginError("kubectl not found on PATH: -k runs `kubectl kustomize`")
    try:
        proc = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise PluginError(f"cannot run {kubectl} kustomize: {exc}") from exc
    if proc.returncode != 0:
        raise PluginError(f"kustomize {directory} failed: {kubectl_error(proc.stderr) or f'exit {proc.returncode}'}")
    return parse_documents(proc.stdout, f"{directory} (kustomize)")


def object_ref(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name), raising PluginError when one of the required fields is missing
    (a template needs a fixed name: its Manifest is named after it, so generateName cannot work)."""
    meta = obj.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise PluginError("metadata must be a map")
    api_version, kind, name = obj.get("apiVersion"), obj.get("kind"), meta.get("name")
    if not api_version or not kind:
        raise PluginError("object is missing apiVersion or kind")
    if not name:
        raise PluginError(f"{kind} without metadata.name (generateName is not supported)")
    return str(api_version), str(kind), str(meta.get("namespace") or ""), str(name)
