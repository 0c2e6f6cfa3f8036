"""An in-memory KubeApi for unit tests of the hub's controller: objects in a dict, every write recorded."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

from clusternet_api.kube import ApiException
from clusternet_hub.registration import AGENT_SERVICE_ACCOUNT

Obj = dict[str, Any]
ObjKey = tuple[str, str, str]  # kind, namespace, name


def merge(target: Obj, patch: Obj) -> Obj:
    """JSON merge patch (RFC 7386)."""
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    """JSON patch (RFC 6902): test, add, replace, remove of object members; a failed test is HTTP 422."""
    out = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = out
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict) or (op["op"] in ("test", "replace", "remove") and last not in node):
            raise ApiException(422, f"path {op['path']} not found")
        if op["op"] == "test" and node[last] != op["value"]:
            raise ApiException(422, f"test of {op['path']} failed")
        if op["op"] == "remove":
            del node[last]
        elif op["op"] in ("add", "replace"):
            node[last] = copy.deepcopy(op["value"])
    return out


class FakeKube:
    """Stores objects by (kind, namespace, name); `writes` lists (verb, kind, namespace/name) in order."""

    def __init__(self, *objects: Obj) -> None:
        self.objects: dict[ObjKey, Obj] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.bodies: list[Obj] = []  # what each write sent, aligned with writes
        # (verb, kind) or (verb, kind, namespace) -> raised instead
        self.fail: dict[tuple[str, str] | tuple[str, str, str], ApiException] = {}
        # (verb, kind) -> run once just before such a write lands: someone else's write in between (touch, recreate)
        self.meanwhile: dict[tuple[str, str], Callable[[], object]] = {}
        # (verb, kind) -> run once with the stored object just after such a write lands, before its response reaches
        # the caller: what the watch delivers meanwhile (this write, someone's newer one)
        self.landed: dict[tuple[str, str], Callable[[Obj], object]] = {}
        self.closed = False
        self._ids = itertools.count(1)
        for obj in objects:
            self.objects[self._key(obj)] = self._stored(obj, None)

    @staticmethod
    def _key(obj: Obj) -> ObjKey:
        meta = obj["metadata"]
        return obj["kind"], meta.get("namespace") or "", meta["name"]

    def _stored(self, obj: Obj, old: Obj | None) -> Obj:
        out = copy.deepcopy(obj)
        meta = out["metadata"]
        n = next(self._ids)
        meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or f"uid-{n}")
        meta["resourceVersion"] = str(n)
        generation = (old or {}).get("metadata", {}).get("generation") or 0
        meta["generation"] = generation + 1 if old is None or old.get("spec") != out.get("spec") else generation
        return out

    def _record(self, verb: str, kind: str, namespace: str | None, name: str, body: Any) -> None:
        for key in ((verb, kind), (verb, kind, namespace or "")):
            if key in self.fail:
                raise self.fail[key]
        self.writes.append((verb, kind, f"{namespace or ''}/{name}"))
        self.bodies.append(copy.deepcopy(body))

    def _landed(self, verb: str, kind: str, stored: Obj) -> None:
        if (then := self.landed.pop((verb, kind), None)) is not None:
            then(copy.deepcopy(stored))

    def find(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        return self.objects.get((kind, namespace or "", name))

    def touch(self, kind: str, namespace: str | None, name: str) -> Obj:
        """Someone else writes the object: the same uid, a new resourceVersion."""
        key = (kind, namespace or "", name)
        self.objects[key] = stored = self._stored(self.objects[key], self.objects[key])
        return stored

    def recreate(self, kind: str, namespace: str | None, name: str) -> Obj:
        """Someone else deletes the object and creates it again: the same content under a new uid."""
        key = (kind, namespace or "", name)
        again = copy.deepcopy(self.objects[key])
        del again["metadata"]["uid"]
        self.objects[key] = stored = self._stored(again, None)
        return stored

    def kinds_written(self) -> list[str]:
        return [f"{verb} {kind}" for verb, kind, _ in self.writes]

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                  cached: bool = False) -> Obj | None:
        found = self.find(kind, namespace, name)
        return copy.deepcopy(found) if found is not None else None

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None, *, cached: bool = False) -> list[Obj]:
        return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                if k == kind and (namespace is None or ns == namespace)]

    async def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        if "name" not in meta:
            meta["name"] = f"{meta.get('generateName', '')}{next(self._ids)}"
        self._record("create", obj["kind"], meta.get("namespace"), meta["name"], obj)
        if self._key(obj) in self.objects:
            raise ApiException(409, "AlreadyExists")
        self.objects[self._key(obj)] = stored = self._stored(obj, None)
        return copy.deepcopy(stored)

    async def apply(self, obj: Obj, field_manager: str, force: bool = True) -> Obj:
        return (await self.apply_created(obj, field_manager, force))[0]

    async def apply_created(self, obj: Obj, field_manager: str, force: bool = True) -> tuple[Obj, bool]:
        meta = obj["metadata"]
        self._record("apply", obj["kind"], meta.get("namespace"), meta["name"], obj)
        old = self.objects.get(self._key(obj))
        self.objects[self._key(obj)] = stored = self._stored(merge(old or {}, obj), old)
        self._landed("apply", obj["kind"], stored)
        return copy.deepcopy(stored), old is None

    async def patch(self, api_version: str, kind: str, name: str, body: Any, namespace: str | None = None,
                    *, subresource: str | None = None,
                    content_type: str = "application/merge-patch+json") -> Obj:
        self._record(f"patch{'/' + subresource if subresource else ''}", kind, namespace, name, body)
        old = self.find(kind, namespace, name)
        if old is None:
            raise ApiException(404, "NotFound")
        uid = body.get("metadata", {}).get("uid") if isinstance(body, dict) else None
        if uid is not None and uid != old["metadata"].get("uid"):  # as kube-apiserver: a uid is immutable
            raise ApiException(422, f'{kind} "{name}" is invalid: metadata.uid: Invalid value: "{uid}": field is '
                                    "immutable")
        patched = json_patch(old, body) if content_type == "application/json-patch+json" else merge(old, body)
        self.objects[(kind, namespace or "", name)] = stored = self._stored(patched, old)
        self._landed(f"patch{'/' + subresource if subresource else ''}", kind, stored)
        return copy.deepcopy(stored)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background", *, preconditions: dict[str, str] | None = None) -> bool:
        """As the API server: a precondition (uid, resourceVersion) the stored object no longer meets is 409."""
        self._record("delete", kind, namespace, name, {"preconditions": preconditions} if preconditions else None)
        if (meanwhile := self.meanwhile.pop(("delete", kind), None)) is not None:
            meanwhile()
        found = self.find(kind, namespace, name)
        if found is not None and any(found["metadata"].get(k) != v for k, v in (preconditions or {}).items()):
            raise ApiException(409, f"Precondition failed: {preconditions}")
        return self.objects.pop((kind, namespace or "", name), None) is not None

    async def preferred_versions(self) -> list[str]:
        """Discovery of what is stored: `v1`, then every other apiVersion of a stored object."""
        versions = {str(o.get("apiVersion") or "v1") for o in self.objects.values()} - {"v1"}
        return ["v1", *sorted(versions)]

    async def group_versions(self) -> list[str]:
        """Every stored apiVersion, as preferred_versions (the fake knows no preferred version)."""
        return await self.preferred_versions()

    async def discover(self, api_version: str) -> list[Obj]:
        return await self.resources(api_version)

    async def resources(self, api_version: str) -> list[Obj]:
        """One APIResource entry per kind stored in `api_version` (namespaced when its objects have a namespace)."""
        kinds: dict[str, bool] = {}
        for (kind, ns, _), o in self.objects.items():
            if str(o.get("apiVersion") or "v1") == api_version:
                kinds[kind] = kinds.get(kind, False) or bool(ns)
        return [{"name": kind.lower() + "s", "kind": kind, "namespaced": namespaced, "verbs": ["get", "list"]}
                for kind, namespaced in sorted(kinds.items())]

    async def close(self) -> None:
        self.closed = True


class ApprovingParent(FakeKube):
    """A parent for the hub's approvals: FakeKube with create_or_get and TokenRequests (tokens t1, t2, ...)."""

    tokens = itertools.count(1)

    async def create_or_get(self, obj: Obj) -> tuple[Obj, bool]:
        try:
            return await self.create(obj), True
        except ApiException:
            found = await self.get("", obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
            assert found is not None
            return found, False

    async def raw(self, method: str, path: str, *_: Any, **__: Any) -> tuple[int, Obj]:
        ns = path.split("/")[4]
        if self.find("ServiceAccount", ns, AGENT_SERVICE_ACCOUNT) is None:
            return 404, {}
        return 201, {"status": {"token": f"t{next(self.tokens)}"}}
