"""The hub's shadow API without a cluster: paths, discovery mapping, Manifest <-> object translation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from clusternet_api import known
from clusternet_core.naming import manifest_for
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
    assert cm == {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
                  "verbs": mapping.VERBS, "shortNames": ["cm"]}
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
        if "dryRun" in (query or {}):
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
            return (200, self.manifests.pop(name)) if name in self.manifests else (404, {})
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


# --- ownerReferences (the review's F11) ------------------------------------------------------------------------

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

