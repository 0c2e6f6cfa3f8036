"""The hub's shadow API without a cluster: paths, discovery mapping, Manifest <-> object translation."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

import aiohttp
import pytest

from clusternet_api import known
from clusternet_core.naming import manifest_for
from clusternet_hub import shadowdelete
from clusternet_hub import shadowmapping as mapping
from clusternet_hub.shadow import ShadowAPI
from clusternet_hub.shadowmapping import ShadowError, ShadowPath, ShadowResource, parse_path

DEPLOYMENTS = ShadowResource("apps", "v1", "Deployment", "deployments", True, "deployment", ("deploy",))
CONFIGMAPS = ShadowResource("", "v1", "ConfigMap", "configmaps", True, "configmap", ("cm",))
CLUSTERROLES = ShadowResource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False)


def deployment(name: str = "web", ns: str = "x", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, **meta},
            "spec": {"replicas": 1}}


def stored(obj: dict[str, Any], plural: str = "deployments", rv: str = "42") -> dict[str, Any]:
    m = manifest_for(plural, obj)
    m["metadata"].update(resourceVersion=rv, uid="u-1", creationTimestamp="2026-01-01T00:00:00Z")
    return m


def test_paths_as_clusternets_client_go_wrapper_rewrites_them() -> None:
    assert parse_path("namespaces/ns/configmaps/x") == ShadowPath("configmaps", "ns", "x")
    assert parse_path("/namespaces/ns/deployments") == ShadowPath("deployments", "ns")
    assert parse_path("deployments") == ShadowPath("deployments")
    assert parse_path("clusterroles/admin") == ShadowPath("clusterroles", None, "admin")
    assert parse_path("namespaces/foo") == ShadowPath("namespaces", None, "foo")  # the Namespace itself
    assert parse_path("namespaces/ns/deployments/x/scale") == ShadowPath("deployments", "ns", "x", "scale")
    assert parse_path("") is None
    assert parse_path("a/b/c/d") is None
    assert parse_path("namespaces//deployments") is None


def test_discovery_mirrors_the_parent_but_clusternet_metrics_and_subresources() -> None:
    discovered = [
        ("v1", [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "shortNames": ["cm"]},
                {"name": "pods/log", "kind": "Pod", "namespaced": True},
                {"name": "events", "kind": "Event", "namespaced": True}]),
        ("apps/v1", [{"name": "deployments", "kind": "Deployment", "namespaced": True, "singularName": "deployment"},
                     {"name": "deployments/scale", "kind": "Scale", "namespaced": True}]),
        ("events.k8s.io/v1", [{"name": "events", "kind": "Event", "namespaced": True}]),
        ("apps.clusternet.io/v1alpha1", [{"name": "manifests", "kind": "Manifest", "namespaced": True}]),
        ("proxies.clusternet.io/v1alpha1", [{"name": "sockets", "kind": "Socket", "namespaced": False}]),
        ("metrics.k8s.io/v1beta1", [{"name": "pods", "kind": "PodMetrics", "namespaced": True}]),
        ("custom.metrics.k8s.io/v1beta2", [{"name": "x", "kind": "MetricValueList", "namespaced": True}]),
        ("shadow/v1alpha1", [{"name": "widgets", "kind": "Widget", "namespaced": True}]),
        ("rbac.authorization.k8s.io/v1", [{"name": "clusterroles", "kind": "ClusterRole", "namespaced": False}]),
    ]
    mapped = mapping.resource_map(discovered)
    assert list(mapped) == ["configmaps", "events", "deployments", "clusterroles"]
    assert mapped["events"].group == ""  # the first of two plurals wins (core first, as kubectl resolves)
    assert mapped["deployments"] == ShadowResource("apps", "v1", "Deployment", "deployments", True, "deployment")
    listed = mapping.discovery_resources(mapped)
    assert listed["groupVersion"] == "shadow/v1alpha1" and listed["kind"] == "APIResourceList"
    cm = next(r for r in listed["resources"] if r["name"] == "configmaps")
    # no shortNames, though the parent's configmaps has `cm`: kubectl >= 1.29 would warn that `cm` could also match
    # configmaps.shadow on every `kubectl get cm` against the parent
    assert cm == {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
                  "verbs": mapping.VERBS}
    assert not [r for r in listed["resources"] if "shortNames" in r or "categories" in r]
    assert mapping.discovery_group()["preferredVersion"]["groupVersion"] == "shadow/v1alpha1"


def test_an_object_is_stored_as_the_plugin_stores_it_and_read_back_with_the_manifests_metadata() -> None:
    obj = mapping.prepare(DEPLOYMENTS, ShadowPath("deployments", "x"),
                         deployment(labels={"app": "web"}, resourceVersion="7", uid="theirs", managedFields=[]))
    m = manifest_for(DEPLOYMENTS.plural, obj)
    assert m["metadata"]["name"] == "deployments.x.web" and m["metadata"]["namespace"] == known.RESERVED_NAMESPACE
    assert m["metadata"]["labels"] == {"app": "web", known.LABEL_CONFIG_GROUP: "apps", known.LABEL_CONFIG_VERSION: "v1",
                                       known.LABEL_CONFIG_KIND: "Deployment", known.LABEL_CONFIG_NAME: "web",
                                       known.LABEL_CONFIG_NAMESPACE: "x"}
    assert "resourceVersion" not in m["template"]["metadata"] and "uid" not in m["template"]["metadata"]
    back = mapping.template_of(stored(obj))
    assert back["metadata"]["resourceVersion"] == "42" and back["metadata"]["uid"] == "u-1"
    assert back["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"
    assert back["spec"] == {"replicas": 1} and back["kind"] == "Deployment"


def test_prepare_checks_the_object_against_the_path() -> None:
    path = ShadowPath("deployments", "x")
    bare = mapping.prepare(DEPLOYMENTS, path, {"metadata": {"name": "web"}})
    assert bare["apiVersion"] == "apps/v1" and bare["kind"] == "Deployment" and bare["metadata"]["namespace"] == "x"
    for wrong in (deployment(ns="other"), {**deployment(), "kind": "StatefulSet"},
                  {**deployment(), "apiVersion": "extensions/v1beta1"}):
        with pytest.raises(ShadowError) as e:
            mapping.prepare(DEPLOYMENTS, path, wrong)
        assert e.value.code == 400
    with pytest.raises(ShadowError) as e:
        mapping.prepare(DEPLOYMENTS, path, {"metadata": {"generateName": "web-"}})
    assert e.value.code == 422
    with pytest.raises(ShadowError) as e:
        mapping.prepare(DEPLOYMENTS, ShadowPath("deployments", "x", "other"), deployment())
    assert e.value.code == 400
    with pytest.raises(ShadowError):
        mapping.prepare(DEPLOYMENTS, ShadowPath("deployments"), deployment())
    role = mapping.prepare(CLUSTERROLES, ShadowPath("clusterroles"), {"apiVersion": "rbac.authorization.k8s.io/v1",
                                                                    "kind": "ClusterRole",
                                                                    "metadata": {"name": "r", "namespace": "x"}})
    assert "namespace" not in role["metadata"]


def test_lists_and_watches_select_the_kinds_manifests() -> None:
    assert mapping.selector(DEPLOYMENTS, "x") == (f"{known.LABEL_CONFIG_GROUP}=apps,{known.LABEL_CONFIG_KIND}="
                                                 f"Deployment,{known.LABEL_CONFIG_NAMESPACE}=x")
    assert mapping.selector(CONFIGMAPS, None, "app=web", "metadata.name=a") == (
        f"{known.LABEL_CONFIG_GROUP}=,{known.LABEL_CONFIG_KIND}=ConfigMap,{known.LABEL_CONFIG_NAME}=a,app=web")
    with pytest.raises(ShadowError):
        mapping.selector(CONFIGMAPS, None, "", "spec.x=1")
    web, cm = stored(deployment()), stored({"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": "c", "namespace": "x"}}, "configmaps")
    other_ns = stored(deployment(ns="y"))
    listed = mapping.list_of(DEPLOYMENTS, [web, cm, other_ns], "x", {"resourceVersion": "99"})
    assert listed["kind"] == "DeploymentList" and listed["apiVersion"] == "apps/v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    assert listed["metadata"] == {"resourceVersion": "99"}
    assert len(mapping.list_of(DEPLOYMENTS, [web, other_ns], None, {})["items"]) == 2
    event = mapping.watch_event(DEPLOYMENTS, {"type": "ADDED", "object": web}, "x")
    assert event is not None and event["object"]["metadata"]["resourceVersion"] == "42"
    assert mapping.watch_event(DEPLOYMENTS, {"type": "ADDED", "object": cm}, "x") is None
    bookmark = mapping.watch_event(DEPLOYMENTS, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5"}}},
                                  None)
    assert bookmark == {"type": "BOOKMARK", "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                       "metadata": {"resourceVersion": "5"}}}


def test_patches_and_statuses() -> None:
    current = deployment(labels={"a": "1", "b": "2"})
    merged = mapping.apply_patch(current, json.dumps({"metadata": {"labels": {"a": None, "c": "3"}},
                                                     "spec": {"replicas": 3}}).encode(), mapping.MERGE_PATCH)
    assert merged["metadata"]["labels"] == {"b": "2", "c": "3"} and merged["spec"]["replicas"] == 3
    patched = mapping.apply_patch(current, b'[{"op": "replace", "path": "/spec/replicas", "value": 5}]',
                                 mapping.JSON_PATCH)
    assert patched["spec"]["replicas"] == 5 and current["spec"]["replicas"] == 1
    with pytest.raises(ShadowError) as e:
        mapping.apply_patch(current, b'[{"op": "remove", "path": "/nope"}]', mapping.JSON_PATCH)
    assert e.value.code == 422
    assert mapping.not_found(DEPLOYMENTS, "web").body["message"] == 'deployments.apps "web" not found'
    exists = mapping.already_exists(CONFIGMAPS, "c").body
    assert exists["reason"] == "AlreadyExists" and exists["code"] == 409 and exists["message"] == \
        'configmaps "c" already exists'
    assert mapping.impersonation("alice", ["dev", "system:authenticated"]) == [
        ("Impersonate-User", "alice"), ("Impersonate-Group", "dev"), ("Impersonate-Group", "system:authenticated")]
    assert mapping.parse_body(b"apiVersion: v1\nkind: ConfigMap\n") == {"apiVersion": "v1", "kind": "ConfigMap"}
    with pytest.raises(ShadowError):
        mapping.parse_body(b"[1]")


# --- the handlers, against a fake parent -----------------------------------------------------------------------


class FakeParent:
    """Just enough of the parent for the handlers: discovery, namespaces, dry runs and Manifests, with every call's
    impersonation headers recorded."""

    def __init__(self, forbid: str | None = None) -> None:
        self.manifests: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []
        self.forbid = forbid  # a user refused everything on Manifests
        self.rv = 0
        self.deletes: list[tuple[str, dict[str, Any], dict[str, str]]] = []  # Manifest, DeleteOptions, query

    async def raw(self, method: str, path: str, body: Any = None, *, content_type: str | None = None,
                  query: Any = None, accept: str = "", extra_headers: Any = ()) -> tuple[int, Any]:
        self.calls.append((method, path, tuple(extra_headers)))
        user = dict(extra_headers).get("Impersonate-User")
        if path == "/apis":
            return 200, {"groups": [{"name": "apps", "preferredVersion": {"groupVersion": "apps/v1"}}]}
        if path == "/api/v1":
            return 200, {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}]}
        if path == "/apis/apps/v1":
            return 200, {"resources": [{"name": "deployments", "kind": "Deployment", "namespaced": True}]}
        if path.startswith("/api/v1/namespaces"):
            return (200, {}) if path.endswith(known.RESERVED_NAMESPACE) else (404, {})
        if "dryRun" in (query or {}) and not path.startswith(mapping.MANIFESTS):
            if body["spec"].get("replicas") == -1:
                return 422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": "replicas: Invalid"}
            return 201, body
        assert path.startswith(mapping.MANIFESTS)
        if user == self.forbid:
            return 403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": f'User "{user}" cannot'}
        name = path[len(mapping.MANIFESTS) + 1:]
        if method == "GET" and not name:
            return 200, {"items": list(self.manifests.values()), "metadata": {"resourceVersion": str(self.rv)}}
        if method == "GET":
            return (200, self.manifests[name]) if name in self.manifests else (404, {})
        if method == "DELETE":
            return self.delete(name, body or {}, query or {})
        if method == "PATCH":
            current = self.manifests.get(name)
            wanted = body["metadata"].get("resourceVersion")
            if wanted and (current is None or current["metadata"]["resourceVersion"] != wanted):
                return 409, {"kind": "Status", "code": 409, "reason": "Conflict", "message": "conflict"}
            self.rv += 1
            stored = json.loads(json.dumps(body))
            stored["metadata"].update(resourceVersion=str(self.rv), uid=f"uid-{name}")
            self.manifests[name] = stored
            return 200, stored
        raise AssertionError((method, path))

    def delete(self, name: str, options: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        """As kube-apiserver deletes: NotFound, then the preconditions (409), then a dry run or the delete."""
        self.deletes.append((name, options, query))
        current = self.manifests.get(name)
        if current is None:
            return 404, {}
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = (options.get("preconditions") or {}).get(key)
            if wanted is not None and wanted != current["metadata"][key]:
                return 409, {"kind": "Status", "code": 409, "reason": "Conflict", "message": (
                    f'Operation cannot be fulfilled on manifests.apps.clusternet.io "{name}": Precondition failed: '
                    f"{label} in precondition: {wanted}, {label} in object meta: {current['metadata'][key]}")}
        if "dryRun" in query or options.get("dryRun"):
            return 200, current
        return 200, self.manifests.pop(name)

    async def watch_path(self, path: str, query: dict[str, str], server_timeout: int, extra_headers: Any = (),
                         on_open: Any = None) -> Any:
        self.calls.append(("WATCH", path + "?" + query["labelSelector"], tuple(extra_headers)))
        await on_open()
        for m in self.manifests.values():
            yield {"type": "ADDED", "object": m}
        yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        from clusternet_api.kube import status_error

        status, result = await self.raw(method, path, body, **kw)
        if not 200 <= status < 300:
            raise status_error(status, result)
        return result  # type: ignore[no-any-return]


async def shadow_client(parent: FakeParent, user: str = "alice") -> Any:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    api = ShadowAPI(parent)  # type: ignore[arg-type]
    app = web.Application()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await api.handle(request, (user, ["dev", "system:authenticated"]) if user else None)

    app.router.add_get(mapping.PREFIX, api.discovery)
    app.router.add_route("*", mapping.PREFIX + "/{tail:.+}", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_named_path_without_its_namespace_never_reaches_a_namespaced_template() -> None:
    """`configmaps/x.c` named Manifest configmaps.x.c, ConfigMap c of namespace x: read, and deleted (audit s35)."""
    parent = FakeParent()
    parent.manifests["configmaps.x.c"] = stored({"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "c", "namespace": "x"}}, "configmaps")
    client = await shadow_client(parent)
    try:
        for verb in (client.get, client.delete):
            resp = await verb(f"{mapping.PREFIX}/configmaps/x.c")
            assert resp.status == 404 and "are namespaced: name the namespace" in (await resp.json())["message"]
        assert "configmaps.x.c" in parent.manifests
    finally:
        await client.close()


async def test_what_cannot_be_a_template_is_a_status_not_a_server_error() -> None:
    """labels as a string (with skip-validating, no dry run to catch it) got a plain-text 500 (audit s35)."""
    parent = FakeParent()
    client = await shadow_client(parent)
    base = f"{mapping.PREFIX}/namespaces/x/deployments"
    skip = {known.ANNOTATION_SKIP_VALIDATING: "true"}
    try:
        resp = await client.post(base, json=deployment() | {"metadata": {"name": "web", "labels": "x",
                                                                           "annotations": skip}})
        body = await resp.json()
        assert resp.status == 422 and body["kind"] == "Status" and "metadata.labels must be a map" in body["message"]
        resp = await client.post(base, json=deployment("w" * 64))
        assert resp.status == 422 and "cannot name a template" in (await resp.json())["message"]
        assert parent.manifests == {}
    finally:
        await client.close()


async def test_a_patch_carrying_a_stale_resource_version_is_a_conflict() -> None:
    parent = FakeParent()
    client = await shadow_client(parent)
    base = f"{mapping.PREFIX}/namespaces/x/deployments"
    try:
        assert (await client.post(base, json=deployment())).status == 201  # resourceVersion 1
        assert (await client.put(f"{base}/web", json=deployment())).status == 200  # 2
        resp = await client.patch(f"{base}/web", json={"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 9}},
                                  headers={"Content-Type": mapping.MERGE_PATCH})
        assert resp.status == 409 and (await resp.json())["reason"] == "Conflict"
        resp = await client.patch(f"{base}/web", json={"metadata": {"resourceVersion": "2"}, "spec": {"replicas": 9}},
                                  headers={"Content-Type": mapping.MERGE_PATCH})
        assert resp.status == 200 and (await resp.json())["spec"]["replicas"] == 9
    finally:
        await client.close()


async def test_the_handlers_store_templates_as_the_user() -> None:
    parent = FakeParent()
    client = await shadow_client(parent)
    base = f"{mapping.PREFIX}/namespaces/x/deployments"
    try:
        resp = await client.get(mapping.PREFIX)
        assert [r["name"] for r in (await resp.json())["resources"]] == ["configmaps", "deployments"]
        resp = await client.post(base, json=deployment())
        created = await resp.json()
        assert resp.status == 201 and created["metadata"]["resourceVersion"] == "1", created
        assert "deployments.x.web" in parent.manifests
        # every Manifest call and the dry run impersonate the user and their groups
        writes = [c for c in parent.calls if c[1].startswith((mapping.MANIFESTS, "/apis/apps/v1/"))]
        assert writes and all(c[2] == (("Impersonate-User", "alice"), ("Impersonate-Group", "dev"),
                                       ("Impersonate-Group", "system:authenticated")) for c in writes)
        assert (await client.post(base, json=deployment())).status == 409
        resp = await client.patch(f"{base}/web", json={"spec": {"replicas": 4}},
                                  headers={"Content-Type": mapping.MERGE_PATCH})
        assert (await resp.json())["spec"]["replicas"] == 4
        stale = {**deployment(), "metadata": {**deployment()["metadata"], "resourceVersion": "1"}}
        resp = await client.put(f"{base}/web", json=stale)
        assert resp.status == 409 and (await resp.json())["reason"] == "Conflict"
        resp = await client.post(base, json=deployment("bad") | {"spec": {"replicas": -1}})
        assert resp.status == 422 and (await resp.json())["reason"] == "Invalid"
        resp = await client.get(base)
        assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["web"]
        parent.manifests["configmaps.x.c"] = stored({"apiVersion": "v1", "kind": "ConfigMap",
                                                     "metadata": {"name": "c", "namespace": "x"}}, "configmaps")
        resp = await client.get(base, params={"watch": "1", "timeoutSeconds": "3"})
        events = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [("ADDED", "web"),
                                                                                      ("BOOKMARK", None)]
        assert f"{known.LABEL_CONFIG_KIND}=Deployment" in parent.calls[-1][1]
        assert (await client.delete(f"{base}/web")).status == 200
        resp = await client.get(f"{base}/web")
        assert resp.status == 404 and (await resp.json())["message"] == 'deployments.apps "web" not found'
        resp = await client.get(f"{mapping.PREFIX}/namespaces/x/widgets/w")
        message = (await resp.json())["message"]
        assert resp.status == 404 and 'no resource "widgets"' in message and "install its CRD" in message
        assert (await client.get(f"{base}/web/scale")).status == 404
    finally:
        await client.close()


class QuietParent(FakeParent):
    """A parent whose watches send nothing (a quiet resource): what keeps a handler waiting after its client left."""

    def __init__(self) -> None:
        super().__init__()
        self.watches_ended = 0

    async def watch_path(self, path: str, query: dict[str, str], server_timeout: int, extra_headers: Any = (),
                         on_open: Any = None) -> Any:
        await on_open()
        try:
            await asyncio.Event().wait()
            yield {}
        finally:
            self.watches_ended += 1


async def test_a_watch_whose_client_left_ends_while_the_parent_sends_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fourth audit: handlers of watches whose clients had gone waited for the parent's next event, up to the
    watch's timeout, with their request and upstream connection (125 after 8 minutes of churn)."""
    from clusternet_hub import shadow

    monkeypatch.setattr(shadow, "CLIENT_CHECK_SECONDS", 0.05)
    parent = QuietParent()
    client = await shadow_client(parent)
    try:
        resp = await client.get(f"{mapping.PREFIX}/namespaces/x/deployments", params={"watch": "1"})
        assert resp.status == 200
        await asyncio.sleep(0.2)
        assert parent.watches_ended == 0  # the client is still there: the watch goes on
        resp.close()  # the client goes away
        for _ in range(40):
            if parent.watches_ended:
                break
            await asyncio.sleep(0.05)
        assert parent.watches_ended == 1
    finally:
        await client.close()


async def test_a_watch_ends_when_its_client_is_gone_even_if_the_handler_is_not_cancelled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, when nothing cancels the handler (a connection the server has not seen lost yet): the client is
    looked at every CLIENT_CHECK_SECONDS while no event comes."""
    from clusternet_hub import shadow

    monkeypatch.setattr(shadow, "CLIENT_CHECK_SECONDS", 0.05)
    parent = QuietParent()

    class Transport:
        closing = False

        def is_closing(self) -> bool:
            return self.closing

    class Request:
        transport = Transport()

    async def opened() -> None:
        pass

    events = parent.watch_path("/x", {"labelSelector": ""}, 60, on_open=opened)
    waiting = asyncio.create_task(shadow._next_while_client_stays(Request(), events))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert not waiting.done()
    Request.transport.closing = True
    assert await asyncio.wait_for(waiting, 2) is None and parent.watches_ended == 1


class DyingParent(FakeParent):
    """A parent whose kube-apiserver dies mid-watch: the stream breaks as aiohttp breaks it."""

    async def watch_path(self, path: str, query: dict[str, str], server_timeout: int, extra_headers: Any = (),
                         on_open: Any = None) -> Any:
        await on_open()
        yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        raise aiohttp.ClientPayloadError("Response payload is not completed")


async def test_a_watch_the_parent_breaks_ends_the_stream_without_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """Audit 7: each parent crash gave one ERROR traceback per shadow watch (kube-controller-manager keeps dozens),
    the handler failing with the upstream's ClientPayloadError. The client's stream ends; it watches again."""
    client = await shadow_client(DyingParent())
    try:
        with caplog.at_level("INFO"):
            resp = await client.get(f"{mapping.PREFIX}/namespaces/x/deployments", params={"watch": "1"})
            assert resp.status == 200 and "BOOKMARK" in await resp.text()
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("a watch of deployments.apps ended" in r.getMessage() for r in caplog.records)
    finally:
        await client.close()


async def test_an_upstream_failure_racing_the_handlers_cancellation_is_read(caplog: pytest.LogCaptureFixture) -> None:
    """Audit 7: both connections drop with the parent; the upstream's failure lands in the same loop turn as the
    handler's cancellation, and asyncio logged "Task exception was never retrieved" for it."""
    from clusternet_hub import shadow

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def events() -> Any:
        await gate
        raise ConnectionResetError("the parent went away")
        yield {}

    class Request:
        transport = type("T", (), {"is_closing": lambda self: False})()

    stream = events()
    handler = asyncio.ensure_future(shadow._next_while_client_stays(Request(), stream))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    gate.set_result(None)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    del handler, stream
    gc.collect()
    await asyncio.sleep(0.05)
    assert "never retrieved" not in caplog.text


async def test_the_parents_refusal_comes_back_and_anonymous_requests_are_refused() -> None:
    parent = FakeParent(forbid="mallory")
    client = await shadow_client(parent, "mallory")
    try:
        resp = await client.get(f"{mapping.PREFIX}/namespaces/x/deployments")
        assert resp.status == 403 and "mallory" in (await resp.json())["message"]
    finally:
        await client.close()
    client = await shadow_client(parent, "")
    try:
        assert (await client.get(f"{mapping.PREFIX}/namespaces/x/deployments")).status == 401
    finally:
        await client.close()


# --- ownerReferences and DeleteOptions (the review's F11) ------------------------------------------------------

OWNERS = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "child-uid", "controller": True,
           "blockOwnerDeletion": True}]


def test_templates_keep_no_owner_references_and_the_shadow_view_shows_none() -> None:
    """The parent's garbage collector reads templates through the shadow API: one with ownerReferences to an owner
    of the child it was saved from (unknown to the parent) would be collected. Writes drop them, and a Manifest
    that still holds some (written by an older plugin, or by kubectl itself) is served without."""
    obj = mapping.prepare(DEPLOYMENTS, ShadowPath("deployments", "x"), deployment(ownerReferences=OWNERS))
    assert "ownerReferences" not in obj["metadata"]
    old = stored(deployment())
    old["template"]["metadata"]["ownerReferences"] = OWNERS
    assert "ownerReferences" not in mapping.template_of(old)["metadata"]
    assert old["template"]["metadata"]["ownerReferences"] == OWNERS  # the stored Manifest is not touched
    [item] = mapping.list_of(DEPLOYMENTS, [old], "x", {})["items"]
    event = mapping.watch_event(DEPLOYMENTS, {"type": "MODIFIED", "object": old}, "x")
    assert "ownerReferences" not in item["metadata"] and event and "ownerReferences" not in event["object"]["metadata"]
    warning = mapping.dropped_owners_warning(deployment(ownerReferences=OWNERS))
    assert warning and warning.startswith('299 - "metadata.ownerReferences dropped')
    assert mapping.dropped_owners_warning(deployment()) is None


async def test_a_write_with_owner_references_stores_none_and_warns() -> None:
    parent = FakeParent()
    client = await shadow_client(parent)
    base = f"{mapping.PREFIX}/namespaces/x/deployments"
    try:
        resp = await client.post(base, json=deployment(ownerReferences=OWNERS))
        assert resp.status == 201 and "ownerReferences" not in (await resp.json())["metadata"]
        assert "metadata.ownerReferences dropped" in resp.headers["Warning"]
        assert "ownerReferences" not in parent.manifests["deployments.x.web"]["template"]["metadata"]
        resp = await client.patch(f"{base}/web", json={"spec": {"replicas": 2}},
                                  headers={"Content-Type": mapping.MERGE_PATCH})
        assert resp.status == 200 and "Warning" not in resp.headers
        parent.manifests["deployments.x.web"]["template"]["metadata"]["ownerReferences"] = OWNERS  # kubectl wrote it
        got = await (await client.get(f"{base}/web")).json()
        assert got["metadata"]["name"] == "web" and "ownerReferences" not in got["metadata"]
        listed = await (await client.get(base)).json()
        assert [i["metadata"].get("ownerReferences") for i in listed["items"]] == [None]
    finally:
        await client.close()


def test_delete_options_and_preconditions_in_kubernetes_words() -> None:
    assert shadowdelete.delete_options(b"", "application/json") == {}
    options = shadowdelete.delete_options(json.dumps({
        "kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "u-1", "resourceVersion": None},
        "propagationPolicy": "Background", "gracePeriodSeconds": None, "dryRun": ["All"]}).encode(), "application/json")
    assert options == {"preconditions": {"uid": "u-1", "resourceVersion": None}, "propagationPolicy": "Background",
                       "dryRun": ["All"]}
    for wrong in ({"kind": "Deployment"}, {"preconditions": "u-1"}, {"preconditions": {"uid": 5}}):
        with pytest.raises(ShadowError) as e:
            shadowdelete.delete_options(json.dumps(wrong).encode(), "application/json")
        assert e.value.code == 400
    manifest = stored(deployment())  # uid u-1, resourceVersion 42
    assert shadowdelete.precondition_failed(DEPLOYMENTS, "web", options, manifest) is None
    assert shadowdelete.precondition_failed(DEPLOYMENTS, "web", {}, manifest) is None
    failed = shadowdelete.precondition_failed(DEPLOYMENTS, "web", {"preconditions": {"uid": "u-0"}}, manifest)
    assert failed is not None and failed.code == 409 and failed.body["reason"] == "Conflict"
    assert failed.body["message"] == ('Operation cannot be fulfilled on deployments.apps "web": Precondition failed: '
                                      "UID in precondition: u-0, UID in object meta: u-1")
    assert failed.body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    stale = shadowdelete.precondition_failed(DEPLOYMENTS, "web", {"preconditions": {"uid": "u-1",
                                                                                   "resourceVersion": "41"}}, manifest)
    assert stale is not None and stale.body["message"].endswith(
        "Precondition failed: ResourceVersion in precondition: 41, ResourceVersion in object meta: 42")


# What client-go's metadata client (the garbage collector's, the namespace controller's) sends, written out by hand
# from the protobuf definitions: "k8s\0", then runtime.Unknown {1: typeMeta {1: apiVersion, 2: kind}, 2: raw,
# 3: contentEncoding, 4: contentType} whose raw is DeleteOptions {2: preconditions {1: uid}, 4: propagationPolicy}.
GC_DELETE = (b"k8s\x00" b"\x0a\x1f" b"\x0a\x0emeta.k8s.io/v1" b"\x12\x0dDeleteOptions"
             b"\x12\x13" b"\x12\x05\x0a\x03u-1" b"\x22\x0aBackground" b"\x1a\x00" b"\x22\x00")


def pb(number: int, value: int | bytes) -> bytes:
    """One protobuf field: a varint (int64 as two's complement) or length-delimited bytes."""
    def varint(n: int) -> bytes:
        n &= (1 << 64) - 1
        out = b""
        while n > 0x7F:
            out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
        return out + bytes([n])
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def test_delete_options_as_the_garbage_collector_sends_them_in_protobuf() -> None:
    assert shadowdelete.delete_options(GC_DELETE, shadowdelete.PROTOBUF) == {
        "preconditions": {"uid": "u-1"}, "propagationPolicy": "Background"}
    every = (pb(1, -1) + pb(2, pb(1, b"u-2") + pb(2, b"4711")) + pb(3, 1) + pb(4, b"Orphan") + pb(5, b"All")
             + pb(6, 1))  # 6: a field newer than this reader, dropped
    body = shadowdelete.PROTOBUF_MAGIC + pb(1, pb(2, b"DeleteOptions")) + pb(2, every)
    assert shadowdelete.delete_options(body, shadowdelete.PROTOBUF) == {
        "gracePeriodSeconds": -1, "preconditions": {"uid": "u-2", "resourceVersion": "4711"},
        "orphanDependents": True, "propagationPolicy": "Orphan", "dryRun": ["All"]}
    for broken in (b"{}", GC_DELETE[:-9], shadowdelete.PROTOBUF_MAGIC + pb(1, pb(2, b"Pod")),
                   shadowdelete.PROTOBUF_MAGIC + pb(2, pb(2, 7))):
        with pytest.raises(ShadowError) as e:
            shadowdelete.delete_options(broken, shadowdelete.PROTOBUF)
        assert e.value.code == 400, broken
    with pytest.raises(ShadowError) as e:
        shadowdelete.delete_options(b"\xa1", shadowdelete.CBOR)
    assert e.value.code == 415  # client-go sends JSON instead


async def test_a_delete_honours_the_callers_preconditions_and_options() -> None:
    """The garbage collector and the namespace controller delete with preconditions.uid: a template deleted and
    created again under the same name since they saw it must not go. The shadow API used to drop DeleteOptions
    (and so turned a dry run into a delete)."""
    parent = FakeParent()
    client = await shadow_client(parent)
    url = f"{mapping.PREFIX}/namespaces/x/deployments/web"
    try:
        await client.post(f"{mapping.PREFIX}/namespaces/x/deployments", json=deployment())
        uid = (await (await client.get(url)).json())["metadata"]["uid"]
        resp = await client.delete(url, json={"kind": "DeleteOptions", "apiVersion": "v1",
                                              "preconditions": {"uid": "the-old-one"}})
        body = await resp.json()
        assert resp.status == 409 and body["reason"] == "Conflict" and body["message"] == (
            'Operation cannot be fulfilled on deployments.apps "web": Precondition failed: UID in precondition: '
            f"the-old-one, UID in object meta: {uid}")
        resp = await client.delete(url, json={"preconditions": {"uid": uid, "resourceVersion": "0"}})
        assert resp.status == 409 and "ResourceVersion in precondition: 0" in (await resp.json())["message"]
        assert "deployments.x.web" in parent.manifests and parent.deletes == []  # refused before the parent's DELETE
        resp = await client.delete(url, params={"dryRun": "All"})
        assert resp.status == 200 and "deployments.x.web" in parent.manifests
        assert parent.deletes[-1][2] == {"dryRun": "All"}
        resp = await client.delete(url, json={"preconditions": {"uid": uid}, "propagationPolicy": "Foreground"})
        assert resp.status == 200 and "deployments.x.web" not in parent.manifests
        assert parent.deletes[-1][1] == {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid},
                                         "propagationPolicy": "Foreground"}
    finally:
        await client.close()


async def test_a_delete_from_the_garbage_collector_in_protobuf_is_honoured() -> None:
    """The parent's controllers send DeleteOptions as protobuf: a stale one is refused, a current one goes on to the
    parent as JSON."""
    parent = FakeParent()
    client = await shadow_client(parent, "system:serviceaccount:kube-system:generic-garbage-collector")
    url = f"{mapping.PREFIX}/namespaces/x/deployments/web"
    protobuf = {"Content-Type": shadowdelete.PROTOBUF}
    try:
        await client.post(f"{mapping.PREFIX}/namespaces/x/deployments", json=deployment())
        uid = (await (await client.get(url)).json())["metadata"]["uid"]
        resp = await client.delete(url, data=GC_DELETE, headers=protobuf)  # preconditions.uid u-1: an older one
        assert resp.status == 409 and "UID in precondition: u-1, UID in object meta: " in (await resp.json())["message"]
        assert "deployments.x.web" in parent.manifests
        current = shadowdelete.PROTOBUF_MAGIC + pb(1, pb(2, b"DeleteOptions")) + pb(2, pb(2, pb(1, uid.encode())))
        resp = await client.delete(url, data=current, headers=protobuf)
        assert resp.status == 200 and "deployments.x.web" not in parent.manifests
        assert parent.deletes[-1][1] == {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
    finally:
        await client.close()


class RecreatingParent(FakeParent):
    """A parent on which the template is deleted and created again (a new Manifest uid) between the shadow API's
    read and its DELETE."""

    def delete(self, name: str, options: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        self.manifests[name]["metadata"]["uid"] = "the-new-one"
        return super().delete(name, options, query)


async def test_the_preconditions_go_on_to_the_parent_which_checks_them_when_it_deletes() -> None:
    parent = RecreatingParent()
    client = await shadow_client(parent)
    url = f"{mapping.PREFIX}/namespaces/x/deployments/web"
    try:
        await client.post(f"{mapping.PREFIX}/namespaces/x/deployments", json=deployment())
        uid = (await (await client.get(url)).json())["metadata"]["uid"]
        resp = await client.delete(url, json={"preconditions": {"uid": uid}})
        body = await resp.json()
        assert resp.status == 409 and body["reason"] == "Conflict" and body["message"] == (
            'Operation cannot be fulfilled on deployments.apps "web": Precondition failed: UID in precondition: '
            f"{uid}, UID in object meta: the-new-one")
        assert body["details"]["name"] == "web" and parent.manifests["deployments.x.web"]["metadata"]["uid"] == \
            "the-new-one"
    finally:
        await client.close()
