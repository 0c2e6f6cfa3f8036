"""`kubectl clusternet`: author feeds as templates on the parent, list them, and preview what a cluster gets.

Installed as the console script `kubectl-clusternet`, so kubectl finds it as a plugin.

- Clusternet's own objects (groups apps.clusternet.io and clusters.clusternet.io: Subscriptions, HelmCharts,
  Localizations, ManagedClusters, ...) are real custom resources on the parent: `apply` server-side-applies
  them, `get` lists them with the server's printer columns, `delete` deletes them.
- Everything else (Namespaces, Deployments, other custom resources) is a *template*: `apply` validates it
  with a server-side dry run on the parent and stores it as a Manifest in `clusternet-reserved`, named and
  labelled as Clusternet does; it is never created in the parent itself. `get` and `delete` act on those
  Manifests.
- Objects of kinds the parent does not serve are refused unless annotated
  `apps.clusternet.io/skip-validating: "true"`; such templates use `<lowercase kind>s` as their resource
  name (the plural cannot be discovered) and keep the namespace written in the object (their scope is
  unknown, so no default namespace is added).
- `render` prints the objects one cluster would receive from a Subscription, with the same code the hub
  uses (clusternet_core.rendering.render_generic).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
import yaml

from clusternet_api import __version__, known
from clusternet_api.kube import ApiException, Credentials, Kube, Obj, status_error

FIELD_MANAGER = "kubectl-clusternet"
CLUSTERNET_GROUPS = frozenset({known.APPS_GROUP, known.CLUSTERS_GROUP})
CRR_API_VERSION = f"{known.CLUSTERS_GROUP}/{known.CLUSTERS_VERSION}"
APPLY_CONCURRENCY = 8  # templates stored at once by `apply`; a parent apiserver takes that easily
MANIFEST_API_VERSION = f"{known.APPS_GROUP}/{known.APPS_VERSION}"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
DOCUMENT_SUFFIXES = (".yaml", ".yml", ".json")
STRIPPED_METADATA = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "selfLink", "generation",
                     "deletionTimestamp", "deletionGracePeriodSeconds")


class PluginError(Exception):
    """A problem to report to the user as one line (without a traceback)."""


# ---------------------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Document:
    """One object read from a file (or stdin), with where it came from."""

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


def clean_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without status and server-set metadata, fit to be applied or stored as a template."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in STRIPPED_METADATA:
            meta.pop(key, None)
    return out


def object_ref(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name), raising PluginError when one of the required fields is missing."""
    meta = obj.get("metadata") or {}
    api_version, kind, name = obj.get("apiVersion"), obj.get("kind"), meta.get("name")
    if not api_version or not kind:
        raise PluginError("object is missing apiVersion or kind")
    if not name:
        raise PluginError(f"{kind} without metadata.name (generateName is not supported)")
    return str(api_version), str(kind), str(meta.get("namespace") or ""), str(name)


def split_group(api_version: str) -> str:
    """The API group of an apiVersion (`` for core `v1`)."""
    return api_version.rpartition("/")[0]


def type_name(kind: str, group: str) -> str:
    """kubectl's `<kind>.<group>` used in messages: `deployment.apps`, `service`."""
    return f"{kind.lower()}.{group}" if group else kind.lower()


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """kubectl's age format: 71s, 6m4s, 5d22h, 2y3d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """Age of an RFC 3339 timestamp, `<unknown>` when absent or unparsable."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


def cell_text(value: Any) -> str:
    """One table cell as kubectl prints it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """kubectl's plain table: upper-case headers, columns padded and separated by 3 spaces, no borders."""
    lines = [[h.upper() for h in headers]] + [[cell_text(c) for c in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for line in lines:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])] + [line[-1]]
        out.append("   ".join(padded).rstrip())
    return "\n".join(out)


def server_table(table: Mapping[str, Any], *, wide: bool = False, with_namespace: bool = False) -> str:
    """Render a meta.k8s.io Table (columnDefinitions + rows) like kubectl; priority>0 columns only if wide."""
    columns = table.get("columnDefinitions") or []
    keep = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    headers = [str(columns[i].get("name", "")) for i in keep]
    rows = []
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        values = [cells[i] if i < len(cells) else None for i in keep]
        if with_namespace:
            values.insert(0, ((row.get("object") or {}).get("metadata") or {}).get("namespace", ""))
        rows.append(values)
    if with_namespace:
        headers.insert(0, "Namespace")
    return format_table(headers, rows)


# ---------------------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One resource type the parent serves (or one assumed for a kind it does not know)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def type_name(self) -> str:
        return type_name(self.kind, self.group)

    @property
    def group_resource(self) -> str:
        """`deployments.apps`, as in kubectl's NotFound messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def is_clusternet(self) -> bool:
        return self.group in CLUSTERNET_GROUPS

    def names(self) -> set[str]:
        return {self.plural, self.singular or self.kind.lower(), self.kind.lower()}

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{ns}/{self.plural}" + (f"/{name}" if name else "")


def parse_resource_list(group_version: str, body: Mapping[str, Any]) -> list[Resource]:
    """Resources (not subresources) of one APIResourceList."""
    group, _, version = group_version.rpartition("/")
    out = []
    for r in body.get("resources") or []:
        if "/" in r.get("name", ""):
            continue
        out.append(Resource(group, version, r["kind"], r["name"], bool(r.get("namespaced")),
                            r.get("singularName") or "", tuple(r.get("shortNames") or ())))
    return out


def match_resource(resources: Sequence[Resource], name: str) -> Resource | None:
    """kubectl-style alias resolution: plural, singular or kind first, then short names; `name.group` too."""
    wanted, _, group = name.partition(".")
    wanted = wanted.lower()
    candidates = [r for r in resources if not group or group in (r.group, f"{r.version}.{r.group}")]
    for r in candidates:
        if wanted in r.names():
            return r
    for r in candidates:
        if wanted in r.short_names:
            return r
    return None


T = TypeVar("T")


async def once(cache: dict[str, asyncio.Future[T]], key: str, fetch: Callable[[], Awaitable[T]]) -> T:
    """The result of `fetch` for `key`, asked for only once however many tasks want it at the same time
    (`apply` works on up to APPLY_CONCURRENCY objects at once, which need the same lookups)."""
    if key not in cache:
        cache[key] = asyncio.ensure_future(fetch())
    return await asyncio.shield(cache[key])


class Discovery:
    """Lazy, cached discovery of the parent's API resources."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._gv: dict[str, asyncio.Future[list[Resource] | None]] = {}
        self._all: list[Resource] | None = None

    async def group_version(self, group_version: str) -> list[Resource] | None:
        """Resources of one group/version; None when the parent does not serve it."""
        async def fetch() -> list[Resource] | None:
            path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            status, body = await self.kube.raw("GET", path)
            if status == 404:
                return None
            if status != 200 or not isinstance(body, dict):
                raise PluginError(f"discovery of {group_version} failed ({status}): {_message(body)}")
            return parse_resource_list(group_version, body)

        return await once(self._gv, group_version, fetch)

    async def find(self, api_version: str, kind: str) -> Resource | None:
        """The resource serving `kind` in `api_version`, or None."""
        return next((r for r in await self.group_version(api_version) or [] if r.kind == kind), None)

    async def all(self) -> list[Resource]:
        """Every resource of the preferred version of every group, core first."""
        if self._all is None:
            status, body = await self.kube.raw("GET", "/apis")
            if status != 200 or not isinstance(body, dict):
                raise PluginError(f"discovery failed ({status}): {_message(body)}")
            versions = ["v1"] + [g["preferredVersion"]["groupVersion"] for g in body.get("groups") or []
                                 if g.get("preferredVersion")]
            lists = await asyncio.gather(*(self.group_version(v) for v in versions))
            self._all = [r for rs in lists for r in rs or []]
        return self._all

    async def resolve(self, name: str) -> Resource | None:
        """The resource a kubectl-style name (`deploy`, `subs`, `deployments.apps`, `Namespace`) means."""
        return match_resource(await self.all(), name)


# ---------------------------------------------------------------------------------------------------------
# Talking to the parent
# ---------------------------------------------------------------------------------------------------------


def _message(body: Any) -> str:
    if isinstance(body, (bytes, bytearray)):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        text: str = body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(body)


def api_error(exc: ApiException) -> str:
    """kubectl's `Error from server (Reason): message` for an API error."""
    reason, message = "", str(exc.reason or "")
    if exc.body:
        try:
            status = json.loads(exc.body)
            reason, message = str(status.get("reason") or ""), str(status.get("message") or message)
        except (ValueError, AttributeError):
            message = _message(exc.body)
    return f"Error from server ({reason or exc.status}): {message}"


async def get_table(kube: Kube, path: str, query: Mapping[str, str] | None = None) -> Obj:
    """GET `path` as a meta.k8s.io Table (the server's printer columns)."""
    status, body = await kube.raw("GET", path, query=query, accept=TABLE_ACCEPT)
    if not 200 <= status < 300:
        raise status_error(status, body)
    if not isinstance(body, dict):
        raise ApiException(status=status, reason=f"the server answered {path} with something other than a Table")
    return body


@dataclass
class Session:
    """The parent connection and what a command learnt about it."""

    kube: Kube
    namespace: str
    discovery: Discovery
    namespaces_seen: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    reserved: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    async def namespace_exists(self, namespace: str) -> bool:
        async def fetch() -> bool:
            status, _ = await self.kube.raw("GET", f"/api/v1/namespaces/{namespace}")
            return status == 200

        return await once(self.namespaces_seen, namespace, fetch)

    async def ensure_reserved_namespace(self) -> None:
        async def create() -> None:
            if await self.namespace_exists(known.RESERVED_NAMESPACE):
                return
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": known.RESERVED_NAMESPACE}}
            try:
                await self.kube.request("POST", "/api/v1/namespaces", ns)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            created: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            created.set_result(True)
            self.namespaces_seen[known.RESERVED_NAMESPACE] = created

        await once(self.reserved, known.RESERVED_NAMESPACE, create)


def kubeconfig_path(explicit: str | None) -> Path | None:
    """--kubeconfig, else the first file of $KUBECONFIG, else ~/.kube/config (None if that is missing)."""
    if explicit:
        return Path(explicit)
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env:
        return Path(env[0])
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else None


def context_namespace(path: Path | None, context: str | None) -> str | None:
    """The namespace of the kubeconfig's (current) context, if it sets one."""
    if path is None or not path.exists():
        return None
    cfg = yaml.safe_load(path.read_text()) or {}
    name = context or cfg.get("current-context")
    for ctx in cfg.get("contexts") or []:
        if ctx.get("name") == name:
            return (ctx.get("context") or {}).get("namespace") or None
    return None


@dataclass
class Options:
    """Connection options, given before or after the sub-command."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None

    def merged(self, other: Options) -> Options:
        return Options(other.kubeconfig or self.kubeconfig, other.context or self.context,
                       other.namespace or self.namespace)

    def credentials(self) -> tuple[Credentials, str]:
        path = kubeconfig_path(self.kubeconfig)
        try:
            creds = Credentials.load(None) if path is None else Credentials.from_kubeconfig(path, self.context)
        except (OSError, KeyError, StopIteration, yaml.YAMLError) as exc:
            raise PluginError(f"cannot load kubeconfig {path or ''}: {exc!r}") from exc
        return creds, self.namespace or context_namespace(path, self.context) or "default"


def run(opts: Options, command: Any, *args: Any) -> None:
    """Run an async command against the parent; exit with its code, report PluginErrors cleanly."""
    async def main() -> int:
        creds, namespace = opts.credentials()
        async with Kube(creds, user_agent=f"kubectl-clusternet/{__version__}") as kube:
            code: int = await command(Session(kube, namespace, Discovery(kube)), *args)
            return code

    try:
        code = asyncio.run(main())
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        code = 1
    except ApiException as exc:
        click.echo(api_error(exc), err=True)
        code = 1
    sys.exit(code)


# ---------------------------------------------------------------------------------------------------------
# apply
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """Where one user object goes: a real Clusternet CR or a Manifest template."""

    resource: Resource
    object: dict[str, Any]
    known: bool = True
    """False for kinds the parent does not serve (skip-validating templates)."""

    @property
    def namespace(self) -> str:
        return str(self.object["metadata"].get("namespace") or "")

    @property
    def name(self) -> str:
        return str(self.object["metadata"]["name"])

    @property
    def is_template(self) -> bool:
        return not self.resource.is_clusternet

    @property
    def manifest_name(self) -> str:
        from clusternet_core.naming import manifest_name

        return manifest_name(self.resource.plural, self.namespace or None, self.name)

    @property
    def identity(self) -> str:
        return f"{self.resource.type_name}/{self.name}"

    def describe(self) -> str:
        where = f" (namespace {self.namespace})" if self.namespace else ""
        return f"{self.identity}{where}"


def skip_validating(obj: Mapping[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(known.ANNOTATION_SKIP_VALIDATING, "")).lower() == "true"


async def resolve_target(session: Session, raw: Mapping[str, Any]) -> Target:
    """Classify an object, default its namespace like kubectl and clean it."""
    api_version, kind, namespace, _ = object_ref(raw)
    obj = clean_object(raw)
    resource = await session.discovery.find(api_version, kind)
    if resource is None:
        group = split_group(api_version)
        if group in CLUSTERNET_GROUPS or not skip_validating(obj):
            hint = "" if group in CLUSTERNET_GROUPS else (
                f"; install its CRD on the parent or annotate {known.ANNOTATION_SKIP_VALIDATING}=true")
            raise PluginError(f"the parent does not know kind {kind} (apiVersion {api_version}){hint}")
        resource = Resource(group, api_version.rpartition("/")[2], kind, kind.lower() + "s", bool(namespace))
        return Target(resource, obj, known=False)
    if resource.namespaced:
        obj["metadata"]["namespace"] = namespace or session.namespace
    else:
        obj["metadata"].pop("namespace", None)
    return Target(resource, obj)


async def dry_run(session: Session, target: Target) -> None:
    """Validate a template on the parent with a server-side-apply dry run (nothing is persisted)."""
    body = copy.deepcopy(target.object)
    namespace = target.namespace or None
    if namespace and not await session.namespace_exists(namespace):
        await session.ensure_reserved_namespace()
        namespace = known.RESERVED_NAMESPACE
        body["metadata"]["namespace"] = namespace
    kube, resource = session.kube, target.resource
    try:
        try:  # a create gives the clearest validation messages ...
            await kube.request("POST", resource.path(namespace), body,
                               query={"fieldManager": FIELD_MANAGER, "dryRun": "All"})
        except ApiException as exc:
            if exc.status != 409:
                raise
            # ... but the parent may have a real object of that name (e.g. Namespace default): apply instead
            await kube.request("PATCH", resource.path(namespace, target.name), body,
                               content_type="application/apply-patch+yaml",
                               query={"fieldManager": FIELD_MANAGER, "force": "true", "dryRun": "All"})
    except ApiException as exc:
        raise PluginError(f"rejected by the parent's validation: {api_error(exc)}") from exc


async def server_side_apply(session: Session, resource: Resource, obj: Obj, validate: Target | None = None) -> str:
    """Server-side apply; `created`, `configured` or `unchanged`. With `validate`, that template is
    dry-run on the parent first (concurrently with reading the current object) and nothing is written
    when the parent rejects it."""
    meta = obj["metadata"]
    path = resource.path(meta.get("namespace"), meta["name"])
    if validate is not None:
        (status, before), _ = await asyncio.gather(session.kube.raw("GET", path), dry_run(session, validate))
    else:
        status, before = await session.kube.raw("GET", path)
    query = {"fieldManager": FIELD_MANAGER, "force": "true"}
    after = await session.kube.request("PATCH", path, obj, content_type="application/apply-patch+yaml", query=query)
    if status == 404 or not isinstance(before, dict):
        return "created"
    same = before.get("metadata", {}).get("resourceVersion") == after.get("metadata", {}).get("resourceVersion")
    return "unchanged" if same else "configured"


MANIFEST = Resource(known.APPS_GROUP, known.APPS_VERSION, "Manifest", "manifests", True, "manifest")


def manifest_for(target: Target) -> Obj:
    """The Manifest storing a template, named and labelled as Clusternet does."""
    from clusternet_core.naming import manifest_labels

    return {
        "apiVersion": MANIFEST_API_VERSION,
        "kind": "Manifest",
        "metadata": {"name": target.manifest_name, "namespace": known.RESERVED_NAMESPACE,
                     "labels": manifest_labels(target.object)},
        "template": target.object,
    }


async def apply_one(session: Session, raw: Mapping[str, Any]) -> str:
    """Apply one object; returns kubectl's `<type>/<name> <result>` line."""
    target = await resolve_target(session, raw)
    if not target.is_template:
        result = await server_side_apply(session, target.resource, target.object)
        return f"{target.identity} {result}"
    await session.ensure_reserved_namespace()
    result = await server_side_apply(session, MANIFEST, manifest_for(target), target if target.known else None)
    return f"{target.identity} {result}"


def _identity_of(raw: Mapping[str, Any]) -> str:
    meta = raw.get("metadata") or {}
    name = meta.get("name") or "<no name>"
    ns = f" (namespace {meta['namespace']})" if meta.get("namespace") else ""
    return f"{type_name(str(raw.get('kind') or '<no kind>'), split_group(str(raw.get('apiVersion') or '')))}" \
           f"/{name}{ns}"


def is_template_kind(obj: Mapping[str, Any]) -> bool:
    """Objects of other groups than Clusternet's are stored as templates, not created on the parent."""
    return split_group(str(obj.get("apiVersion") or "")) not in CLUSTERNET_GROUPS


def apply_batches(documents: list[Document]) -> list[list[Document]]:
    """Documents in the order they must be applied: runs of templates go together (they only become
    Manifests in clusternet-reserved, so their order does not matter), every object created for real on the
    parent (Subscription, Localization, Namespace of a Subscription, ...) waits for what came before it."""
    batches: list[list[Document]] = []
    run: list[Document] = []
    for doc in documents:
        if is_template_kind(doc.object):
            run.append(doc)
            continue
        if run:
            batches.append(run)
            run = []
        batches.append([doc])
    if run:
        batches.append(run)
    return batches


async def prefetch(session: Session, documents: list[Document]) -> None:
    """Ask the parent everything the documents will need to know (discovery of their group-versions, which
    namespaces exist) in one round of concurrent requests, instead of as each document comes to need it."""
    versions = {str(d.object.get("apiVersion") or "") for d in documents} - {""}
    namespaces = {str((d.object.get("metadata") or {}).get("namespace") or "") for d in documents
                  if is_template_kind(d.object)} - {""}
    if any(is_template_kind(d.object) for d in documents):
        namespaces.add(known.RESERVED_NAMESPACE)
    # failures are kept in the caches and reported with the document that needs the answer
    await asyncio.gather(*(session.discovery.group_version(v) for v in versions),
                         *(session.namespace_exists(ns) for ns in namespaces), return_exceptions=True)


async def apply_command(session: Session, documents: list[Document]) -> int:
    failed = False
    limit = asyncio.Semaphore(APPLY_CONCURRENCY)
    await prefetch(session, documents)

    async def one(doc: Document) -> tuple[Document, str | None, str | None]:
        async with limit:
            try:
                return doc, await apply_one(session, doc.object), None
            except (PluginError, ApiException) as exc:
                return doc, None, api_error(exc) if isinstance(exc, ApiException) else str(exc)

    for batch in apply_batches(documents):
        for doc, line, error in await asyncio.gather(*(one(d) for d in batch)):  # printed in file order
            if error is None:
                click.echo(line)
            else:
                failed = True
                click.echo(f"error: {_identity_of(doc.object)} from {doc.source}: {error}", err=True)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------------------
# get / delete
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Kind:
    """What a kind argument names: a known resource, or a literal kind/plural of templates only."""

    resource: Resource | None
    literal: str

    @property
    def is_clusternet(self) -> bool:
        return self.resource is not None and self.resource.is_clusternet

    def matches_template(self, manifest: Mapping[str, Any]) -> bool:
        template = manifest.get("template") or {}
        kind = str(template.get("kind") or "")
        if self.resource is not None:
            return kind == self.resource.kind and split_group(str(template.get("apiVersion") or "")) == \
                self.resource.group
        plural = str((manifest.get("metadata") or {}).get("name") or "").partition(".")[0]
        return self.literal.lower() in (kind.lower(), kind.lower() + "s", plural.lower())


async def resolve_kind(session: Session, name: str) -> Kind:
    return Kind(await session.discovery.resolve(name), name)


async def list_templates(session: Session, kind: Kind, namespace: str | None, name: str | None = None) -> list[Obj]:
    """Manifests of one kind; namespace None means all namespaces (cluster-scoped kinds ignore it)."""
    selector = []
    if kind.resource is not None:
        selector.append(f"{known.LABEL_CONFIG_KIND}={kind.resource.kind}")
        if not kind.resource.namespaced:
            namespace = None
    if name:
        selector.append(f"{known.LABEL_CONFIG_NAME}={name}")
    query = {"labelSelector": ",".join(selector)} if selector else None
    status, body = await session.kube.raw("GET", MANIFEST.path(known.RESERVED_NAMESPACE), query=query)
    if status == 404:
        return []
    if status != 200 or not isinstance(body, dict):
        raise PluginError(f"listing Manifests failed ({status}): {_message(body)}")
    items = [m for m in body.get("items") or [] if kind.matches_template(m)]
    if namespace is not None:
        items = [m for m in items if (m.get("metadata", {}).get("labels") or {}).get(
            known.LABEL_CONFIG_NAMESPACE, "") in (namespace, "")]
    items.sort(key=lambda m: (_template_ns(m), str(m.get("template", {}).get("metadata", {}).get("name", ""))))
    return items


def _template_ns(manifest: Mapping[str, Any]) -> str:
    return str(((manifest.get("template") or {}).get("metadata") or {}).get("namespace") or "")


def _template_name(manifest: Mapping[str, Any]) -> str:
    return str(((manifest.get("template") or {}).get("metadata") or {}).get("name") or "")


def _not_found_hint(namespace: str | None) -> str:
    return f"No resources found in {namespace} namespace." if namespace else "No resources found"


def template_table(manifests: Sequence[Mapping[str, Any]], *, all_namespaces: bool, wide: bool,
                   now: datetime | None = None) -> str:
    """NAME, AGE (NAMESPACE first with -A; MANIFEST last with -o wide) for templates."""
    headers = (["Namespace"] if all_namespaces else []) + ["Name", "Age"] + (["Manifest"] if wide else [])
    rows = []
    for m in manifests:
        row = [_template_ns(m)] if all_namespaces else []
        row += [_template_name(m), age((m.get("metadata") or {}).get("creationTimestamp"), now)]
        if wide:
            row.append((m.get("metadata") or {}).get("name", ""))
        rows.append(row)
    return format_table(headers, rows)


def dump(objects: list[Obj], output: str, single: bool) -> str:
    """-o yaml/json: one object, or a v1 List like kubectl."""
    data: Obj = objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": objects,
                                           "metadata": {"resourceVersion": ""}}
    if output == "json":
        return json.dumps(data, indent=4)
    return yaml.safe_dump(data, sort_keys=False).rstrip("\n")


def kind_and_names(kind_name: str, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """kubectl's `deploy/my-nginx` form, given without further names, as kind and name."""
    if "/" in kind_name and not names:
        kind_name, _, one = kind_name.partition("/")
        return kind_name, (one,)
    return kind_name, names


async def get_command(session: Session, kind_name: str, names: tuple[str, ...], all_namespaces: bool,
                      output: str | None) -> int:
    kind_name, names = kind_and_names(kind_name, names)
    kind = await resolve_kind(session, kind_name)
    namespace = None if all_namespaces else session.namespace
    if kind.is_clusternet:
        assert kind.resource is not None
        return await get_real(session, kind.resource, names, namespace, output)
    return await get_templates(session, kind, names, namespace, output)


async def get_real(session: Session, resource: Resource, names: tuple[str, ...], namespace: str | None,
                   output: str | None) -> int:
    """Real Clusternet CRs: the server's table, or the objects."""
    show_ns = resource.namespaced and namespace is None
    code = 0
    targets: list[str | None] = list(names) or [None]
    if names and namespace is None:
        namespace = session.namespace  # kubectl: -A with names means the current namespace
    objects: list[Obj] = []
    tables: list[Obj] = []
    for name in targets:
        path = resource.path(namespace, name)
        try:
            if output in ("yaml", "json", "name"):
                found = await session.kube.request("GET", path)
                objects += [found] if name else found.get("items") or []
            else:
                tables.append(await get_table(session.kube, path))
        except ApiException as exc:
            click.echo(api_error(exc), err=True)
            code = 1
    if output == "name":
        for obj in objects:
            click.echo(f"{resource.type_name}/{obj['metadata']['name']}")
    elif output in ("yaml", "json"):
        if objects or not names:
            click.echo(dump(objects, output, single=len(names) == 1 and len(objects) == 1))
    else:
        merged: Obj = {"columnDefinitions": tables[0]["columnDefinitions"] if tables else [],
                       "rows": [r for t in tables for r in t.get("rows") or []]}
        if merged["rows"]:
            click.echo(server_table(merged, wide=output == "wide", with_namespace=show_ns))
        elif not names:
            click.echo(_not_found_hint(namespace if resource.namespaced else None), err=True)
    return code


async def get_templates(session: Session, kind: Kind, names: tuple[str, ...], namespace: str | None,
                        output: str | None) -> int:
    """Templates (Manifests) of any other kind."""
    namespaced = kind.resource.namespaced if kind.resource is not None else True
    manifests = await list_templates(session, kind, namespace)
    code = 0
    if names:
        chosen = []
        for name in names:
            found = [m for m in manifests if _template_name(m) == name]
            if not found:
                click.echo(_not_found_error(kind, name), err=True)
                code = 1
            chosen += found
        manifests = chosen
    elif not manifests:
        click.echo(_not_found_hint(namespace if namespaced else None), err=True)
        return 0
    if not manifests:
        return code
    templates = [dict(m.get("template") or {}) for m in manifests]
    if output == "name":
        for t in templates:
            click.echo(f"{type_name(str(t.get('kind')), split_group(str(t.get('apiVersion'))))}"
                       f"/{t['metadata']['name']}")
    elif output in ("yaml", "json"):
        click.echo(dump(templates, output, single=len(names) == 1 and len(templates) == 1))
    else:
        click.echo(template_table(manifests, all_namespaces=namespace is None and namespaced,
                                  wide=output == "wide"))
    return code


def _not_found_error(kind: Kind, name: str) -> str:
    what = kind.resource.group_resource if kind.resource is not None else kind.literal
    return f'Error from server (NotFound): {what} "{name}" not found'


async def delete_real(session: Session, resource: Resource, name: str, namespace: str | None) -> bool:
    try:
        await session.kube.request("DELETE", resource.path(namespace, name),
                                   {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
    except ApiException as exc:
        click.echo(api_error(exc), err=True)
        return False
    click.echo(f'{resource.type_name} "{name}" deleted')
    return True


async def delete_template(session: Session, kind: Kind, name: str, namespace: str | None) -> bool:
    manifests = await list_templates(session, kind, namespace, name)
    if namespace is not None and kind.resource is not None and kind.resource.namespaced:
        manifests = [m for m in manifests if _template_ns(m) == namespace]
    if not manifests:
        click.echo(_not_found_error(kind, name), err=True)
        return False
    for m in manifests:
        if await _delete_manifest(session, m["metadata"]["name"]):
            t = m.get("template") or {}
            click.echo(f'{type_name(str(t.get("kind")), split_group(str(t.get("apiVersion"))))} "{name}" deleted')
    return True


async def _delete_manifest(session: Session, name: str) -> bool:
    try:
        await session.kube.request("DELETE", MANIFEST.path(known.RESERVED_NAMESPACE, name))
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def delete_command(session: Session, kind_name: str | None, names: tuple[str, ...],
                         documents: list[Document]) -> int:
    ok = True
    if documents:
        for doc in documents:
            try:
                target = await resolve_target(session, doc.object)
            except PluginError as exc:
                click.echo(f"error: {_identity_of(doc.object)} from {doc.source}: {exc}", err=True)
                ok = False
                continue
            kind = Kind(target.resource if target.known else None, target.resource.kind)
            if target.is_template:
                ok &= await delete_template(session, kind, target.name, target.namespace or None)
            else:
                ok &= await delete_real(session, target.resource, target.name, target.namespace or None)
        return 0 if ok else 1
    if kind_name is None:
        raise PluginError("you must provide a resource kind and names, or -f FILE")
    if "/" in kind_name:
        kind_name, _, one = kind_name.partition("/")
        names = (one, *names)
    if not names:
        raise PluginError("resource(s) were provided, but no name was specified")
    kind = await resolve_kind(session, kind_name)
    for name in names:
        if kind.is_clusternet:
            assert kind.resource is not None
            ok &= await delete_real(session, kind.resource, name, session.namespace)
        else:
            ok &= await delete_template(session, kind, name, session.namespace)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------------
# describe
# ---------------------------------------------------------------------------------------------------------


def _fields(pairs: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in pairs) + 3  # the colon, then at least two spaces
    return [f"{(k + ':').ljust(width)}{v}" for k, v in pairs]


def _key_values(values: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((values or {}).items())) or "<none>"


def _indented_yaml(value: Any) -> list[str]:
    return ["  " + line for line in yaml.safe_dump(value, sort_keys=False).rstrip("\n").splitlines()]


def _replica_text(replicas: Mapping[str, Any] | None) -> str:
    if not replicas:
        return "-"
    if "replicas" in replicas:
        return f"{replicas.get('readyReplicas') or 0}/{replicas['replicas']} ready"
    return ", ".join(f"{k} {replicas[k]}" for k in ("active", "succeeded", "failed") if k in replicas) or "-"


def describe_template(manifest: Mapping[str, Any], subscriptions: Sequence[Mapping[str, Any]],
                      now: datetime | None = None) -> str:
    """A template as `kubectl describe` would show an object, plus where it is deployed and how it is doing
    there (from the Subscriptions that use it: their bound clusters and aggregated statuses)."""
    from clusternet_core.scheduling import feed_key

    template = manifest.get("template") or {}
    meta = template.get("metadata") or {}
    key = feed_key(template)
    users = [sub for sub in subscriptions
             if any(feed_key(f) == key for f in (sub.get("spec") or {}).get("feeds") or [])]
    mmeta = manifest.get("metadata") or {}
    lines = _fields([
        ("Name", str(meta.get("name") or "")),
        ("Namespace", str(meta.get("namespace") or "<none>")),
        ("Kind", str(template.get("kind") or "")),
        ("API Version", str(template.get("apiVersion") or "")),
        ("Labels", _key_values(meta.get("labels"))),
        ("Stored as", f"Manifest {mmeta.get('namespace')}/{mmeta.get('name')} "
                      f"({age(mmeta.get('creationTimestamp'), now)} ago)"),
        ("Subscriptions", ", ".join(f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in users)
         or "<none>: stored, but no Subscription deploys it"),
    ])
    rows = []
    for sub in users:
        status = sub.get("status") or {}
        entry: Mapping[str, Any] = next(
            (a for a in status.get("aggregatedStatuses") or [] if feed_key(a) == key), {})
        bindings = list(status.get("bindingClusters") or [])
        details = list(entry.get("feedStatusDetails") or [])
        if len(details) != len(bindings):  # written together, one per bound cluster, in order: not yet, then
            details = [{}] * len(bindings)
        for binding, detail in zip(bindings, details, strict=True):
            cluster_ns, _, cluster = binding.partition("/")
            rows.append([f"{sub['metadata']['namespace']}/{sub['metadata']['name']}",
                         detail.get("clusterName") or cluster, cluster_ns,
                         detail.get("available", "unknown"), _replica_text(detail.get("replicaStatus"))])
    if rows:
        lines.append("Clusters:")
        lines += ["  " + line for line in format_table(
            ["Subscription", "Cluster", "Namespace", "Available", "Replicas"], rows).splitlines()]
    elif users:
        lines.append("Clusters:       <none>: no cluster is bound yet")
    return "\n".join(lines)


def describe_object(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """A Clusternet object with its spec, status and events, like `kubectl describe`."""
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    lines = _fields([
        ("Name", str(meta.get("name") or "")),
        ("Namespace", str(meta.get("namespace") or "<none>")),
        ("Kind", str(obj.get("kind") or "")),
        ("Labels", _key_values(meta.get("labels"))),
        ("Annotations", _key_values(annotations)),
        ("Created", f"{age(meta.get('creationTimestamp'), now)} ago"),
    ])
    for section in ("spec", "template", "status"):
        if obj.get(section):
            lines += [f"{section.capitalize()}:", *_indented_yaml(obj[section])]
    ordered = sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    if not ordered:
        lines.append("Events:  <none>")
    else:
        lines.append("Events:")
        rows = [[e.get("type"), e.get("reason"), age(e.get("lastTimestamp") or e.get("eventTime"), now),
                 (e.get("source") or {}).get("component") or e.get("reportingComponent") or "",
                 e.get("message")] for e in ordered]
        lines += ["  " + line for line in format_table(["Type", "Reason", "Age", "From", "Message"],
                                                       rows).splitlines()]
    return "\n".join(lines)


async def events_of(session: Session, obj: Mapping[str, Any]) -> list[Obj]:
    meta = obj.get("metadata") or {}
    selector = f"involvedObject.kind={obj.get('kind')},involvedObject.name={meta.get('name')}"
    if meta.get("namespace"):
        selector += f",involvedObject.namespace={meta['namespace']}"
    status, body = await session.kube.raw("GET", "/api/v1/events", query={"fieldSelector": selector})
    return list(body.get("items") or []) if status == 200 and isinstance(body, dict) else []


async def describe_command(session: Session, kind_name: str, names: tuple[str, ...]) -> int:
    kind_name, names = kind_and_names(kind_name, names)
    kind = await resolve_kind(session, kind_name)
    namespace = session.namespace
    texts: list[str] = []
    code = 0
    if kind.is_clusternet:
        assert kind.resource is not None
        resource = kind.resource
        ns = namespace if resource.namespaced else None
        if names:
            objects = []
            for name in names:
                try:
                    objects.append(await session.kube.request("GET", resource.path(ns, name)))
                except ApiException as exc:
                    click.echo(_not_found_error(kind, name) if exc.status == 404 else api_error(exc), err=True)
                    code = 1
        else:
            objects = (await session.kube.request("GET", resource.path(ns))).get("items") or []
        found = await asyncio.gather(*(events_of(session, obj) for obj in objects))
        texts = [describe_object(obj, evs) for obj, evs in zip(objects, found, strict=True)]
    else:
        manifests = await list_templates(session, kind, namespace)
        if names:
            for name in names:
                if not any(_template_name(m) == name for m in manifests):
                    click.echo(_not_found_error(kind, name), err=True)
                    code = 1
            manifests = [m for m in manifests if _template_name(m) in names]
        subscriptions: list[Obj] = []
        if manifests:
            listed = await session.kube.request("GET", f"/apis/{MANIFEST_API_VERSION}/subscriptions")
            subscriptions = listed.get("items") or []
        texts = [describe_template(m, subscriptions) for m in manifests]
    if not texts and not names:
        click.echo(_not_found_hint(namespace), err=True)
    if texts:
        click.echo("\n\n".join(texts))
    return code


# ---------------------------------------------------------------------------------------------------------
# render
# ---------------------------------------------------------------------------------------------------------

MANAGED_CLUSTER = Resource(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "ManagedCluster", "managedclusters", True)
SUBSCRIPTION = Resource(known.APPS_GROUP, known.APPS_VERSION, "Subscription", "subscriptions", True)
LOCALIZATION = Resource(known.APPS_GROUP, known.APPS_VERSION, "Localization", "localizations", True)
GLOBALIZATION = Resource(known.APPS_GROUP, known.APPS_VERSION, "Globalization", "globalizations", False)
FEED_INVENTORY = Resource(known.APPS_GROUP, known.APPS_VERSION, "FeedInventory", "feedinventories", True)


async def _list(session: Session, resource: Resource, namespace: str | None = None,
                selector: str | None = None) -> list[Obj]:
    query = {"labelSelector": selector} if selector else None
    body = await session.kube.request("GET", resource.path(namespace), query=query)
    items: list[Obj] = body.get("items") or []
    return items


async def find_cluster(session: Session, cluster: str) -> Obj:
    """A ManagedCluster by `namespace/name`, or by cluster id (label, then spec.clusterId), or by name."""
    if "/" in cluster:
        ns, _, name = cluster.partition("/")
        status, body = await session.kube.raw("GET", MANAGED_CLUSTER.path(ns, name))
        if status != 200 or not isinstance(body, dict):
            raise PluginError(f"ManagedCluster {cluster} not found")
        return body
    found = await _list(session, MANAGED_CLUSTER, selector=f"{known.LABEL_CLUSTER_ID}={cluster}")
    if not found:
        found = [mc for mc in await _list(session, MANAGED_CLUSTER)
                 if cluster in ((mc.get("spec") or {}).get("clusterId"), mc["metadata"]["name"])]
    if not found:
        raise PluginError(f"no ManagedCluster with cluster id or name {cluster!r}")
    if len(found) > 1:
        where = ", ".join(f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in found)
        raise PluginError(f"{cluster!r} matches several ManagedClusters ({where}); use namespace/name")
    return found[0]


def render_header(item: Any) -> list[str]:
    """Comment lines naming the object, its feed and which override changed which fields."""
    from clusternet_core.scheduling import format_feed

    obj = item.object
    lines = [f"# {obj.get('apiVersion')} {format_feed(obj)}"]
    if not item.applied:
        lines.append("# overrides: none")
    for applied in item.applied:
        where = f"{applied.namespace}/{applied.name}" if applied.namespace else applied.name
        kind = f" {applied.type}" if applied.type else ""
        paths = ", ".join(applied.changed_paths) or "no change"
        lines.append(f"# override {applied.kind} {where} [{applied.override_name}]{kind}: {paths}")
    for error in item.errors:
        where = f"{error.namespace}/{error.name}" if error.namespace else error.name
        lines.append(f"# FAILED override {error.kind} {where} [{error.override_name}]: {error.reason or error}")
    return lines


async def dividing_splits(session: Session, sub: Obj, cluster: Obj, templates: Mapping[str, Obj]) -> dict[str, Any]:
    """This cluster's share of a Dividing Subscription's replicas, as the hub renders it: the counts from
    status.replicas, the JSON pointers from the FeedInventory (computed from the templates when absent)."""
    from clusternet_api.models import FeedInventory
    from clusternet_core.feedinventory import build_feed_inventory, is_dividing, replica_splits

    if not is_dividing(sub):
        return {}
    meta, status = sub["metadata"], sub.get("status") or {}
    code, finv = await session.kube.raw("GET", FEED_INVENTORY.path(meta["namespace"], meta["name"]))
    try:
        inventory = FeedInventory.from_dict(finv) if code == 200 and isinstance(finv, dict) else None
    except ValueError:  # pydantic's ValidationError: not one the hub wrote
        inventory = None
    if inventory is None:
        inventory = build_feed_inventory(sub, templates).inventory
    cm = cluster["metadata"]
    return dict(replica_splits(status.get("replicas") or {}, status.get("bindingClusters") or [],
                               f"{cm['namespace']}/{cm['name']}", inventory, f"{meta['namespace']}/{meta['name']}"))


async def render_command(session: Session, subscription: str, cluster_ref: str) -> int:
    from clusternet_core.feedresolve import resolve_feeds
    from clusternet_core.rendering import feed_selector, render_generic

    status, sub = await session.kube.raw("GET", SUBSCRIPTION.path(session.namespace, subscription))
    if status == 404 or not isinstance(sub, dict):
        raise PluginError(f'subscriptions.{known.APPS_GROUP} "{subscription}" not found in namespace '
                          f"{session.namespace}")
    cluster = await find_cluster(session, cluster_ref)
    feeds: list[Obj] = (sub.get("spec") or {}).get("feeds") or []
    candidates: list[Obj] = []
    for feed in feeds:  # the hub resolves every feed, HelmCharts too (they have no Manifest in practice)
        candidates += await _list(session, MANIFEST, known.RESERVED_NAMESPACE, feed_selector(feed))
    resolved = resolve_feeds(feeds, candidates)
    if resolved.ambiguous:  # the hub refuses such a Subscription: render nothing rather than a guess
        for ambiguity in resolved.ambiguous:
            click.echo(f"error: {ambiguity.message()}; the hub refuses this Subscription until then", err=True)
        return 1
    templates = resolved.templates
    globs = await _list(session, GLOBALIZATION)
    locs = await _list(session, LOCALIZATION, cluster["metadata"]["namespace"])
    result = render_generic(feeds, templates, cluster, globs, locs,
                            await dividing_splits(session, sub, cluster, templates))
    cm = cluster["metadata"]
    click.echo(f"# Subscription {session.namespace}/{subscription} rendered for ManagedCluster "
               f"{cm['namespace']}/{cm['name']} (cluster id {(cluster.get('spec') or {}).get('clusterId', '?')})")
    for item in result.items:
        click.echo("---")
        click.echo("\n".join(render_header(item)))
        click.echo(yaml.safe_dump(item.object, sort_keys=False).rstrip("\n"))
    for skipped in result.skipped_feeds:
        click.echo(f"note: HelmChart {skipped['namespace']}/{skipped['name']} is deployed by the Helm "
                   "deployer (not rendered here)", err=True)
    for message in result.all_errors():
        click.echo(f"error: {message}", err=True)
    return 0 if result.items else 1


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


async def verdict_command(session: Session, requests: tuple[str, ...], verdict: str, reason: str) -> int:
    """Record an admin's verdict on ClusterRegistrationRequests; the hub acts on it."""
    failed = False
    for ref in requests:
        name = ref if ref.startswith("clusternet-") else f"clusternet-{ref}"
        annotations = {known.ANNOTATION_APPROVAL: verdict, known.ANNOTATION_DENIAL_REASON: reason or None}
        try:
            crr = await session.kube.patch(CRR_API_VERSION, "ClusterRegistrationRequest", name,
                                           {"metadata": {"annotations": annotations}})
        except ApiException as exc:
            failed = True
            click.echo(api_error(exc), err=True)
            continue
        result = (crr.get("status") or {}).get("result")
        note = f" (already {result}; the verdict applies to pending requests only)" if result else ""
        click.echo(f"clusterregistrationrequest.clusters.clusternet.io/{name} {verdict.lower()}{note}")
    return 1 if failed else 0


def connection_options(f: Any) -> Any:
    """--kubeconfig, --context and -n/--namespace, accepted before or after the sub-command."""
    f = click.option("-n", "--namespace", default=None, help="Namespace (default: the context's, else default).")(f)
    f = click.option("--context", default=None, help="Kubeconfig context to use.")(f)
    f = click.option("--kubeconfig", default=None, metavar="PATH",
                     help="Kubeconfig of the parent cluster (default: $KUBECONFIG, then ~/.kube/config).")(f)
    return f


def _opts(ctx: click.Context, kubeconfig: str | None, context: str | None, namespace: str | None) -> Options:
    parent: Options = ctx.find_object(Options) or Options()
    return parent.merged(Options(kubeconfig, context, namespace))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@click.pass_context
def main(ctx: click.Context, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
    """Manage Clusternet feeds, subscriptions and overrides on the parent cluster."""
    ctx.obj = Options(kubeconfig, context, namespace)


@main.command()
@click.option("-f", "--filename", "filenames", multiple=True, required=True,
              help="File, directory or - (stdin) with objects to apply; repeatable.")
@click.option("-R", "--recursive", is_flag=True, help="Walk directories given with -f recursively.")
@connection_options
@click.pass_context
def apply(ctx: click.Context, filenames: tuple[str, ...], recursive: bool, kubeconfig: str | None,
          context: str | None, namespace: str | None) -> None:
    """Apply Clusternet objects as CRs and everything else as templates (Manifests)."""
    opts = _opts(ctx, kubeconfig, context, namespace)
    try:
        documents = load_documents(filenames, recursive)
    except (PluginError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if not documents:
        click.echo("error: no objects passed to apply", err=True)
        sys.exit(1)
    run(opts, apply_command, documents)


@main.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-o", "--output", type=click.Choice(["wide", "yaml", "json", "name"]), default=None)
@connection_options
@click.pass_context
def get(ctx: click.Context, kind: str, names: tuple[str, ...], all_namespaces: bool, output: str | None,
        kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
    """List Clusternet objects (server columns), or the templates of any other kind (NAME, AGE; -o wide adds
    the Manifest name)."""
    run(_opts(ctx, kubeconfig, context, namespace), get_command, kind, names, all_namespaces, output)


@main.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@connection_options
@click.pass_context
def describe(ctx: click.Context, kind: str, names: tuple[str, ...], kubeconfig: str | None, context: str | None,
             namespace: str | None) -> None:
    """Show templates with the clusters they are deployed to and how they are doing there, or Clusternet
    objects with their spec, status and events."""
    run(_opts(ctx, kubeconfig, context, namespace), describe_command, kind, names)


@main.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, help="Delete the objects in these files.")
@click.option("-R", "--recursive", is_flag=True, help="Walk directories given with -f recursively.")
@connection_options
@click.pass_context
def delete(ctx: click.Context, kind: str | None, names: tuple[str, ...], filenames: tuple[str, ...],
           recursive: bool, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
    """Delete Clusternet objects, or the templates of any other kind."""
    documents: list[Document] = []
    if filenames:
        try:
            documents = load_documents(filenames, recursive)
        except (PluginError, OSError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    run(_opts(ctx, kubeconfig, context, namespace), delete_command, kind, names, documents)


@main.command()
@click.argument("subscription")
@click.option("--cluster", required=True, metavar="ID|NAMESPACE/NAME",
              help="The ManagedCluster: its cluster id, name, or namespace/name.")
@connection_options
@click.pass_context
def render(ctx: click.Context, subscription: str, cluster: str, kubeconfig: str | None, context: str | None,
           namespace: str | None) -> None:
    """Print the objects one cluster gets from a Subscription, after overrides, as YAML."""
    run(_opts(ctx, kubeconfig, context, namespace), render_command, subscription, cluster)


@main.command()
@click.argument("requests", nargs=-1, required=True, metavar="CRR|CLUSTER_ID...")
@connection_options
@click.pass_context
def approve(ctx: click.Context, requests: tuple[str, ...], kubeconfig: str | None, context: str | None,
            namespace: str | None) -> None:
    """Approve pending cluster registrations (hub started with --cluster-approval=Manual)."""
    run(_opts(ctx, kubeconfig, context, namespace), verdict_command, requests, "Approved", "")


@main.command()
@click.argument("requests", nargs=-1, required=True, metavar="CRR|CLUSTER_ID...")
@click.option("--reason", default="", help="Why: shown to the cluster's agent in its error message.")
@connection_options
@click.pass_context
def deny(ctx: click.Context, requests: tuple[str, ...], reason: str, kubeconfig: str | None, context: str | None,
         namespace: str | None) -> None:
    """Deny cluster registrations (the agent stops with the reason; delete the request to let it retry)."""
    run(_opts(ctx, kubeconfig, context, namespace), verdict_command, requests, "Denied", reason)


@main.command()
def version() -> None:
    """Print the plugin version."""
    click.echo(f"kubectl-clusternet {__version__}")
