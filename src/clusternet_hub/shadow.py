"""The shadow API (`shadow/v1alpha1`): every kind of the parent, stored and served as templates (Manifests).

Clusternet's client-go wrapper and `kubectl clusternet` send `/apis/shadow/v1alpha1/[namespaces/<ns>/]<plural>[/<name>]`
for objects of any kind (the group dropped, the object keeping its own apiVersion and kind). The hub serves that
through the parent's aggregation layer (APIService v1alpha1.shadow) and keeps each object as the plugin's `apply`
does: a Manifest in clusternet-reserved named and labelled by clusternet_core.naming, written by server-side apply
with the plugin's field manager, after the same dry run against the parent (clusternet_api.dryrun; skipped with
`apps.clusternet.io/skip-validating: "true"`). Reads translate Manifests back into objects whose resourceVersion,
uid and creationTimestamp are the Manifest's, so optimistic concurrency works as usual.

Templates keep no `ownerReferences`: a write drops them (clusternet_core.naming.clean_object, as the plugin's
`apply` does) and says so in a `Warning` header, and reads never show them, even from a Manifest written
otherwise. Kubernetes would store and serve them; here they name objects of the cluster the object was saved
from, the deployers never apply them, and the parent's garbage collector, which reads every mirrored resource
through this API, would delete a template whose owner the parent does not have (the review's F11).

Every call on the parent made for a request (the dry run and the Manifest reads and writes) impersonates the
requesting user and groups that the aggregation layer vouches for, so the parent's RBAC on Manifests decides;
the hub's own identity only reads discovery and namespaces and creates clusternet-reserved.

Discovery mirrors the parent's: the preferred version of every group (core first, then the parent's group order;
the first of two resources with the same plural wins), minus `*.clusternet.io`, `metrics.k8s.io`,
`custom.metrics.k8s.io` and subresources; refreshed every 30 s, and at once (at most every 5 s) when a request
names a resource not seen yet (a CRD just installed).

A delete honours the caller's DeleteOptions: the garbage collector and the namespace controller delete with
`preconditions.uid`, so that an object deleted and created again under the same name since they saw it stays.
A template's uid and resourceVersion are its Manifest's, so the preconditions are checked against the Manifest
(409 Conflict in Kubernetes' words when they do not match) and sent on with its DELETE, with the propagation
policy, grace period and dry run, for the parent to check again when it deletes. They are read as JSON, YAML or
Kubernetes protobuf (what those controllers send: clusternet_hub.shadowdelete). They used to be dropped (the
review's F11), which also made a dry-run delete a real one.

Supported: get, list, watch, create, update (PUT), patch (JSON merge patch and JSON patch), delete. Not supported:
strategic merge patch and apply patches (415, as for custom resources), deletecollection, subresources (scale,
status), generateName, the Table output format.

The pure part (paths, discovery documents, Manifest <-> object, errors) is clusternet_hub.shadowmapping, and
clusternet_hub.shadowdelete for deletes (DeleteOptions and preconditions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from clusternet_api import known
from clusternet_api.dryrun import APPLY_PATCH, dry_run_template
from clusternet_api.kube import ApiException, Headers, Kube, Obj, status_error
from clusternet_api.logs import error_text
from clusternet_api.sharedrun import SharedRuns
from clusternet_core.naming import manifest_for, manifest_name, skip_validating
from clusternet_hub.shadowdelete import delete_options, precondition_conflict, precondition_failed
from clusternet_hub.shadowmapping import (
    JSON_PATCH,
    MANIFESTS,
    MERGE_PATCH,
    ShadowError,
    ShadowPath,
    ShadowResource,
    already_exists,
    apply_patch,
    bad_request,
    conflict,
    discovery_resources,
    dropped_owners_warning,
    impersonation,
    list_of,
    matches,
    mirrored_group,
    not_found,
    parse_body,
    parse_path,
    prepare,
    resource_map,
    selector,
    status_details,
    template_of,
    unknown_resource,
    watch_event,
)

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
MISS_REFRESH_SECONDS = 5.0
WATCH_TIMEOUT = 1800  # seconds, when the client names none (kube-apiserver picks 30-60 min)
CLIENT_CHECK_SECONDS = 5.0  # how soon a watch whose client left ends while the parent sends nothing
PASSED_LIST_QUERY = ("resourceVersion", "resourceVersionMatch", "limit", "continue", "timeoutSeconds",
                     "allowWatchBookmarks")
PASSED_DELETE_QUERY = ("propagationPolicy", "gracePeriodSeconds", "orphanDependents", "dryRun")


class ShadowAPI:
    """Handlers of /apis/shadow[/v1alpha1[/...]] on the hub's server, acting on the parent through `kube`."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.resources: dict[str, ShadowResource] = {}
        self._fetched = 0.0
        self._refreshing: SharedRuns[str, None] = SharedRuns()  # the one discovery in flight

    # --- discovery -------------------------------------------------------------------------------------------

    async def _fetch(self) -> None:
        status, body = await self.kube.raw("GET", "/apis")
        if status != 200 or not isinstance(body, dict):
            raise ApiException(status, f"discovery of the parent failed: {body}")
        versions = ["v1"] + [g["preferredVersion"]["groupVersion"] for g in body.get("groups") or []
                             if g.get("preferredVersion") and mirrored_group(str(g.get("name") or ""))]

        async def one(gv: str) -> tuple[str, list[Obj]]:
            st, b = await self.kube.raw("GET", "/api/v1" if gv == "v1" else f"/apis/{gv}")
            return gv, (b.get("resources") or []) if st == 200 and isinstance(b, dict) else []

        self.resources = resource_map(await asyncio.gather(*(one(v) for v in versions)))
        self._fetched = time.monotonic()

    async def refresh(self, max_age: float = REFRESH_SECONDS) -> dict[str, ShadowResource]:
        """The mirrored resources, re-read when older than `max_age`; concurrent callers share one refresh."""
        if time.monotonic() - self._fetched > max_age or not self.resources:
            try:
                await self._refreshing.run("parent", self._fetch, "shadow API discovery")
            except ApiException as e:
                if not self.resources:
                    raise ShadowError(503, "ServiceUnavailable", str(e)) from e
                log.warning("shadow API: keeping the last discovery of the parent: %s", e)
        return self.resources

    async def resource(self, plural: str) -> ShadowResource:
        resources = await self.refresh()
        if plural not in resources:
            resources = await self.refresh(MISS_REFRESH_SECONDS)
        if plural not in resources:
            raise unknown_resource(plural)
        return resources[plural]

    async def discovery(self, _: web.Request) -> web.Response:
        try:
            return web.json_response(discovery_resources(await self.refresh()))
        except ShadowError as e:
            return web.json_response(e.body, status=e.code)

    # --- requests --------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request, identity: tuple[str, list[str]] | None) -> web.StreamResponse:
        try:
            if identity is None:
                raise ShadowError(401, "Unauthorized", "the shadow API is served through the parent's aggregation "
                                  "layer only (APIService v1alpha1.shadow): send the request to the parent")
            shadow_path = parse_path(request.match_info.get("tail", ""))
            if shadow_path is None:
                raise ShadowError(404, "NotFound", "the server could not find the requested resource")
            resource = await self.resource(shadow_path.plural)
            if shadow_path.subresource is not None:
                raise ShadowError(404, "NotFound", f"the shadow API serves no subresources ({resource.plural}/"
                                  f"{shadow_path.subresource})")
            if not resource.namespaced and shadow_path.namespace is not None:
                raise ShadowError(404, "NotFound", f"{resource.group_resource} are not namespaced")
            if resource.namespaced and shadow_path.namespace is None and shadow_path.name is not None:
                # kube-apiserver serves no such path: 404. The Manifest name `<plural>.<namespace>.<name>` made
                # `configmaps/kube-system.coredns` reach (and DELETE remove) kube-system's coredns (audit s35)
                raise ShadowError(404, "NotFound", f"{resource.group_resource} are namespaced: name the namespace "
                                  f"(/namespaces/<namespace>/{resource.plural}/{shadow_path.name})")
            call = _Call(self.kube, resource, shadow_path, impersonation(*identity))
            return await call.dispatch(request)
        except ShadowError as e:
            return web.json_response(e.body, status=e.code)
        except ApiException as e:
            return web.json_response(ShadowError.from_api(e).body, status=e.status or 500)


@dataclass
class _Call:
    """One request on the shadow API, made on the parent as the requesting user (`headers`)."""

    kube: Kube
    resource: ShadowResource
    path: ShadowPath
    headers: Headers
    warnings: list[str] = field(default_factory=list)  # Warning headers of the answer

    @property
    def namespace(self) -> str | None:
        return self.path.namespace if self.resource.namespaced else None

    @property
    def manifest(self) -> str:
        assert self.path.name is not None
        return f"{MANIFESTS}/{manifest_name(self.resource.plural, self.namespace, self.path.name)}"

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        method, named = request.method, self.path.name is not None
        if method == "GET" and named:
            return web.json_response(await self.get())
        if method == "GET" and request.query.get("watch") in ("1", "true"):
            return await self.watch(request)
        if method == "GET":
            return web.json_response(await self.list(request.query))
        if method == "POST" and not named:
            return self._answer(await self.write(parse_body(await request.read()), create=True), 201)
        if method == "PUT" and named:
            return self._answer(await self.write(parse_body(await request.read()), create=False))
        if method == "PATCH" and named:
            return self._answer(await self.patch(await request.read(), request.content_type))
        if method == "DELETE" and named:
            return web.json_response(await self.delete(await request.read(), request.content_type,
                                                       request.query))
        raise ShadowError(405, "MethodNotAllowed", f"{method} is not supported on this path of the shadow API")

    def _answer(self, body: Obj, status: int = 200) -> web.Response:
        """A write's answer, with its Warning headers (kubectl prints them, as it does the API server's)."""
        response = web.json_response(body, status=status)
        for warning in self.warnings:
            response.headers.add("Warning", warning)
        return response

    async def _manifest(self) -> Obj:
        assert self.path.name is not None
        status, body = await self.kube.raw("GET", self.manifest, extra_headers=self.headers)
        if status == 404 or (status == 200 and not matches(self.resource, body, self.namespace)):
            raise not_found(self.resource, self.path.name)
        if status != 200 or not isinstance(body, dict):
            raise ShadowError.from_api(_error(status, body))
        return body

    async def get(self) -> Obj:
        return template_of(await self._manifest())

    async def list(self, query: Mapping[str, str]) -> Obj:
        q = {k: query[k] for k in PASSED_LIST_QUERY if k in query}
        q["labelSelector"] = selector(self.resource, self.namespace, query.get("labelSelector", ""),
                                      query.get("fieldSelector", ""))
        body = await self.kube.request("GET", MANIFESTS, query=q, extra_headers=self.headers)
        return list_of(self.resource, body.get("items") or [], self.namespace, body.get("metadata") or {})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        q = {k: query[k] for k in PASSED_LIST_QUERY if k in query}
        q["watch"] = "1"
        q.setdefault("timeoutSeconds", str(WATCH_TIMEOUT))
        q["labelSelector"] = selector(self.resource, self.namespace, query.get("labelSelector", ""),
                                      query.get("fieldSelector", ""))
        try:
            timeout = int(q["timeoutSeconds"])
        except ValueError as e:
            raise bad_request(f"timeoutSeconds: {q['timeoutSeconds']!r} is not a number") from e
        response: web.StreamResponse | None = None

        async def opened() -> None:  # headers go out as soon as the parent accepted the watch
            nonlocal response
            response = await self._start_stream(request)

        events = self.kube.watch_path(MANIFESTS, q, timeout, self.headers, on_open=opened)
        try:
            async with contextlib.aclosing(events):
                while (event := await _next_while_client_stays(request, events)) is not None:
                    translated = watch_event(self.resource, event, self.namespace)
                    if translated is not None and response is not None:
                        await response.write(json.dumps(translated).encode() + b"\n")
        except ApiException as e:
            if response is None:
                raise
            log.info("shadow API: a watch of %s ended: %s", self.resource.group_resource, e)
        except UPSTREAM_ENDED as e:  # the parent went away mid-watch (audit 7: a traceback each, by the dozen)
            log.info("shadow API: a watch of %s ended: %s", self.resource.group_resource, error_text(e))
        if response is None:
            response = await self._start_stream(request)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    @staticmethod
    async def _start_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        return response

    async def _namespace_exists(self, namespace: str) -> bool:
        status, _ = await self.kube.raw("GET", f"/api/v1/namespaces/{namespace}")
        return status == 200

    async def _ensure_reserved(self) -> None:
        if await self._namespace_exists(known.RESERVED_NAMESPACE):
            return
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": known.RESERVED_NAMESPACE}}
        status, body = await self.kube.raw("POST", "/api/v1/namespaces", ns)
        if status not in (201, 409):
            raise ShadowError.from_api(_error(status, body))

    async def _validate(self, obj: Obj) -> None:
        if skip_validating(obj):
            return
        await dry_run_template(self.kube, self.resource.path, obj, self._namespace_exists,
                               known.TEMPLATE_FIELD_MANAGER, extra_headers=self.headers)

    async def write(self, body: Obj, create: bool, resource_version: str | None = None) -> Obj:
        """Create or update a template: validated by the dry run, then its Manifest server-side applied as
        `kubectl clusternet apply` does (`resource_version`, else the object's own, is a precondition)."""
        obj = prepare(self.resource, self.path, body)  # without ownerReferences (clusternet_core.naming)
        if (warning := dropped_owners_warning(body)) is not None:
            self.warnings.append(warning)
        rv = resource_version or str(body.get("metadata", {}).get("resourceVersion") or "") or None
        name = str(obj["metadata"]["name"])
        call = _Call(self.kube, self.resource, ShadowPath(self.path.plural, self.namespace, name), self.headers)
        await self._ensure_reserved()  # first: a dry run in a namespace the parent lacks is made in this one
        await self._validate(obj)
        status, existing = await self.kube.raw("GET", call.manifest, extra_headers=self.headers)
        if status not in (200, 404):
            raise ShadowError.from_api(_error(status, existing))
        if create and status == 200:
            raise already_exists(self.resource, name)
        if not create and status == 404:
            raise not_found(self.resource, name)
        manifest = manifest_for(self.resource.plural, obj)
        if rv:
            manifest["metadata"]["resourceVersion"] = rv
        query = {"fieldManager": known.TEMPLATE_FIELD_MANAGER, "force": "true"}
        try:
            stored = await self.kube.request("PATCH", call.manifest, manifest, content_type=APPLY_PATCH,
                                             query=query, extra_headers=self.headers)
        except ApiException as e:
            if e.status == 409:
                raise conflict(self.resource, name) from e
            raise
        return template_of(stored)

    async def patch(self, patch: bytes, content_type: str) -> Obj:
        if content_type not in (MERGE_PATCH, JSON_PATCH):
            raise ShadowError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                              f'accepted media types include: {JSON_PATCH}, {MERGE_PATCH} (the shadow API has no '
                              f'strategic merge patch nor apply patch: "{content_type}")')
        current = await self._manifest()
        patched = apply_patch(template_of(current), patch, content_type)
        # a resourceVersion the patch carries is a precondition, as in kube-apiserver (a stale one: 409); the
        # current one was put over it until 2026-12-06, so a stale patch overwrote silently (audit s35)
        carried = (patched.get("metadata") or {}).get("resourceVersion")
        return await self.write(patched, create=False, resource_version=str(
            carried or current["metadata"].get("resourceVersion") or "") or None)

    async def delete(self, raw: bytes, content_type: str, query: Mapping[str, str]) -> Obj:
        """Delete the template's Manifest with the caller's DeleteOptions (body, and the query parameters kubectl
        may send instead). Preconditions are checked against the Manifest read here, for a 409 in the template's
        words, and sent on with the DELETE, so that the parent checks them again at the moment it deletes."""
        assert self.path.name is not None
        options = delete_options(raw, content_type)
        current = await self._manifest()  # NotFound in the template's words, and only templates of this kind
        failed = precondition_failed(self.resource, self.path.name, options, current)
        if failed is not None:
            raise failed
        sent = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
        passed = {k: query[k] for k in PASSED_DELETE_QUERY if k in query}
        status, body = await self.kube.raw("DELETE", self.manifest, sent, query=passed or None,
                                           extra_headers=self.headers)
        if status == 404:
            raise not_found(self.resource, self.path.name)
        if status == 409:  # the Manifest changed after it was read here
            raise precondition_conflict(self.resource, self.path.name, _error(status, body).reason or "")
        if not 200 <= status < 300:
            raise ShadowError.from_api(_error(status, body))
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": status_details(self.resource, self.path.name)}


def _error(status: int, body: Any) -> ApiException:
    return status_error(status, body)


UPSTREAM_ENDED = (ConnectionError, TimeoutError, aiohttp.ClientError, HttpProcessingError)
"""How the parent's watch behind a shadow watch ends when the parent goes away: the client is told by the end of
its stream, and watches again (as when kube-apiserver ends a watch)."""


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _next_while_client_stays(request: web.Request, events: AsyncIterator[Obj]) -> Obj | None:
    """The watch's next event, or None when the parent ended it or the client went away. aiohttp does not cancel
    a handler whose client left, and a quiet watch only noticed at its next event: up to its timeout (30 min
    unless the client names one), each holding its request and its upstream connection. The fourth audit saw 125
    such handlers after 8 minutes of watch churn through the aggregation layer, and the hub's memory grow with
    them; the client is now looked at every CLIENT_CHECK_SECONDS while no event comes."""
    step = asyncio.ensure_future(anext(events))
    try:
        while not (await asyncio.wait({step}, timeout=CLIENT_CHECK_SECONDS))[0]:
            if client_gone(request):
                return None
        return step.result()
    except StopAsyncIteration:
        return None
    finally:  # the client gone, or this handler cancelled (aiohttp does on a lost connection): end the upstream
        if not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await step
        elif not step.cancelled():
            step.exception()  # read: an upstream failure that raced this handler's cancellation (both connections
            # dropped with the parent) was logged as "Task exception was never retrieved" (audit 7)
