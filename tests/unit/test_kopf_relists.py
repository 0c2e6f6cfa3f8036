"""An object deleted while a watch was down is handled as deleted when kopf lists again (review 6, finding 4):
kopf's re-list yields only what exists, and the hub's caches kept the rest for the life of the process. Run
through kopf's own infinite_watch and continuous_watch, with its LIST and WATCH requests faked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import pytest
from kopf._cogs.clients import errors, fetching, watching
from kopf._cogs.structs import references
from kopf._core.reactor import queueing

from clusternet_api import known
from clusternet_api.kube import ApiException, Credentials
from clusternet_hub import kopfhooks, operator
from clusternet_hub.controller import Controller
from clusternet_hub.controller.store import PRIMED, PrimeFailed, Store
from tests.unit.fakekube import FakeKube, Obj

CLUSTERS = references.Resource(group=known.CLUSTERS_GROUP, version=known.CLUSTERS_VERSION,
                               plural="managedclusters", namespaced=True)
MANIFESTS = references.Resource(group=known.APPS_GROUP, version=known.APPS_VERSION, plural="manifests",
                                namespaced=True)
GONE = {"type": "ERROR", "object": {"code": 410}}  # the watch's "resource version too old": kopf lists again


def obj(name: str, namespace: str = "clusternet-a", uid: str | None = None, **meta: Any) -> Obj:
    return {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
            "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}", **meta},
            "spec": {"clusterId": f"id-{name}"}}


Step = list[Obj] | Exception


@pytest.fixture
def parent(monkeypatch: pytest.MonkeyPatch) -> dict[Any, list[tuple[Step, list[Any]]]]:
    """resource -> what each of its listings returns (or fails with after its objects) and what the watch after
    it delivers (events, or an error raised) before its 410. kopf's functions, with the hub's wrapper installed."""
    script: dict[Any, list[tuple[Step, list[Any]]]] = {}
    watches: dict[Any, list[Any]] = {}

    async def fetch_objs(*, resource: Any, **_: Any) -> AsyncIterator[tuple[list[Obj], str]]:
        listing, watches[resource] = script[resource].pop(0)
        if isinstance(listing, Exception):
            yield [obj("partial")], "1"
            raise listing
        yield [dict(o) for o in listing], "1"

    async def watch_objs(*, resource: Any, **_: Any) -> AsyncIterator[dict[str, Any]]:
        for event in [*watches.pop(resource), GONE]:
            if isinstance(event, Exception):
                raise event
            yield event

    monkeypatch.setattr(fetching, "fetch_objs", fetch_objs)
    monkeypatch.setattr(watching, "watch_objs", watch_objs)
    monkeypatch.setattr(watching, "continuous_watch", kopfhooks.continuous_watch)
    return script


async def stream(resource: Any, listings: int) -> list[Any]:
    """What kopf's endless watch hands its queueing: `listings` listings, each followed by its watch."""
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0
    return [e async for e in watching.infinite_watch(settings=settings, resource=resource, namespace=None,
                                                     _iterations=listings)]


def summary(events: list[Any]) -> list[str]:
    return ["LISTED" if e is watching.Bookmark.LISTED else f"{e['type']} {e['object']['metadata']['name']}"
            for e in events]


NOT_FOUND = errors.APINotFoundError("404 page not found", status=404, headers={})  # kopfhooks ends the stream


@pytest.mark.parametrize("end", [GONE, NOT_FOUND], ids=["410", "404"])
async def test_what_a_relist_lacks_is_deleted_and_the_first_listing_deletes_nothing(parent: Any, end: Any) -> None:
    parent[CLUSTERS] = [([obj("a"), obj("b"), obj("c")], [{"type": "MODIFIED", "object": obj("b", labels={"x": "1"})},
                                                          {"type": "DELETED", "object": obj("c")}, end]),
                        ([obj("a")], [])]
    events = await stream(CLUSTERS, 2)
    assert summary(events) == ["None a", "None b", "None c", "LISTED", "MODIFIED b", "DELETED c",
                               "None a", "DELETED b", "LISTED"]
    assert events[7]["object"]["metadata"]["labels"] == {"x": "1"}  # its last state the watch delivered


async def test_a_listing_cut_short_deletes_nothing_and_the_next_one_decides(parent: Any) -> None:
    parent[CLUSTERS] = [([obj("a"), obj("b")], []), (aiohttp.ClientConnectionError("reset"), []), ([obj("b")], [])]
    assert summary(await stream(CLUSTERS, 3)) == [
        "None a", "None b", "LISTED", "None partial", "None b", "DELETED a", "DELETED partial", "LISTED"]


async def test_recreated_or_finalizer_held_objects_are_no_deletion(parent: Any) -> None:
    """Keyed by namespace and name, as the hub's caches and client-go: one re-created under its name is an update;
    one being deleted (held by a finalizer, the hub's on its apps kinds) is still listed."""
    held = obj("held", deletionTimestamp="2026-12-05T00:00:00Z", finalizers=[known.FINALIZER_APPS])
    parent[CLUSTERS] = [([obj("a"), obj("held")], []), ([obj("a", uid="new"), held], [])]
    assert summary(await stream(CLUSTERS, 2)) == ["None a", "None held", "LISTED", "None a", "None held", "LISTED"]


async def test_each_stream_compares_with_its_own_objects(parent: Any) -> None:
    """Per resource (and namespace), and per kopf watch task: another stream's objects are not its own."""
    manifest = {**obj("a"), "kind": "Manifest"}
    parent[CLUSTERS] = [([obj("a"), obj("b")], []), ([obj("a"), obj("b")], [])]
    parent[MANIFESTS] = [([manifest], []), ([], [])]
    clusters, manifests = await asyncio.gather(stream(CLUSTERS, 2), stream(MANIFESTS, 2))
    assert summary(clusters) == ["None a", "None b", "LISTED", "None a", "None b", "LISTED"]
    assert summary(manifests) == ["None a", "LISTED", "DELETED a", "LISTED"]
    parent[CLUSTERS] = [([obj("a")], [])]
    assert summary(await stream(CLUSTERS, 1)) == ["None a", "LISTED"]  # a new task: a first listing again


async def no_tunnel(cluster_id: str) -> None:
    return None


async def test_the_hub_forgets_a_cluster_and_a_manifest_deleted_while_its_watch_was_down(parent: Any) -> None:
    """Through the hub's own handlers: no longer scheduled onto, nor rendered."""
    ctx = operator.HubContext(operator.HubOptions(), Credentials(server="https://p"))
    ctx.controller = Controller(FakeKube(), ctx.clusters, no_tunnel)
    track_manifests = next(h.fn for h in operator.HUB._watching.get_all_handlers()
                           if h.fn.__name__ == "track_manifests")
    template = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}}
    manifest = {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": template,
                "metadata": {"name": "configmaps.default.cfg", "namespace": known.RESERVED_NAMESPACE, "uid": "m"}}
    a, b = (obj(n, labels={known.LABEL_CLUSTER_ID: f"id-{n}"}) for n in "ab")
    parent[CLUSTERS] = [([a, b], []), ([a], [])]
    parent[MANIFESTS] = [([manifest], []), ([], [])]
    for resource, handler in ((CLUSTERS, operator.track_cluster), (MANIFESTS, track_manifests)):
        for event in await stream(resource, 2):
            if isinstance(event, dict):  # what kopf hands its event handlers, type None for listed objects
                await handler(type=event["type"], body=kopf.Body(event["object"]), memo=ctx)  # type: ignore[operator]
    assert list(ctx.clusters) == [("clusternet-a", "a")] and ctx.cluster_ids == {"id-a": ("clusternet-a", "a")}
    assert ctx.controller.store.caches.manifests == {}
    assert list(ctx.controller.store.deleted_manifests) == ["m"]  # a LIST answered before the deletion: not taken


async def test_kopfs_queueing_hands_the_deletion_to_the_objects_own_worker(
        parent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole of kopf's watcher: the event reaches its processor (which calls the hub's handlers and makes kopf
    forget the object), in order after the object's earlier events."""
    parent[CLUSTERS] = [([obj("a"), obj("b")], [{"type": "MODIFIED", "object": obj("b", labels={"x": "1"})}]),
                        ([obj("a")], [])]
    seen: list[str] = []
    deleted = asyncio.Event()

    async def processor(*, raw_event: dict[str, Any], **_: Any) -> None:
        seen.append(f"{raw_event['type']} {raw_event['object']['metadata']['name']}")
        if raw_event["type"] == "DELETED":
            deleted.set()

    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0
    settings.queueing.idle_timeout = settings.queueing.exit_timeout = 0.1
    listed_twice = asyncio.Event()
    original = kopfhooks._kopf_continuous_watch

    async def then_quiet(**kwargs: Any) -> AsyncIterator[Any]:
        if not parent[CLUSTERS]:
            listed_twice.set()
            await asyncio.Event().wait()
        async for event in original(**kwargs):
            yield event

    monkeypatch.setattr(kopfhooks, "_kopf_continuous_watch", then_quiet)
    watcher = asyncio.create_task(queueing.watcher(namespace=None, settings=settings, resource=CLUSTERS,
                                                   processor=processor))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(deleted.wait(), 5)
        await listed_twice.wait()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert [s for s in seen if s.endswith(" b")] == ["None b", "MODIFIED b", "DELETED b"]
    assert "DELETED a" not in seen


async def test_the_first_listing_waits_for_prime_and_calls_deleted_what_prime_listed_and_it_lacks(
        parent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object the controller's first LIST returned, deleted before the watch's own LIST: neither the listing nor
    the watch after it says so, and it stayed cached (scheduled onto) for the life of the leader."""
    ctx = operator.HubContext(operator.HubOptions(), Credentials(server="https://p"))
    kube = FakeKube(obj("a"), obj("b"))
    ctx.controller = Controller(kube, ctx.clusters, no_tunnel)
    store = ctx.controller.store
    monkeypatch.setattr(kopfhooks, "_seed", store.seed)  # as kopfhooks.install(store.seed) in the hub's CLI
    parent[CLUSTERS] = [([obj("a", labels={"x": "1"})], [])]  # b deleted since prime's LIST
    watch = asyncio.create_task(stream(CLUSTERS, 1))
    await asyncio.sleep(0.05)
    assert not watch.done() and parent[CLUSTERS], "the watch listed before prime: its listing may be the older"
    await store.prime(kube)
    events = await watch
    assert summary(events) == ["None a", "DELETED b", "LISTED"]
    for event in events:
        if isinstance(event, dict):
            await operator.track_cluster(type=event["type"], body=kopf.Body(event["object"]), memo=ctx)
    assert list(ctx.clusters) == [("clusternet-a", "a")] and ctx.clusters[("clusternet-a", "a")]["metadata"][
        "labels"] == {"x": "1"}
    # kinds the controller does not cache are not held back
    assert await asyncio.wait_for(store.seed(known.CLUSTERS_GROUP, "clusterregistrationrequests"), 1) == []


def failing_lists(kube: FakeKube, failing: str, error: ApiException, times: int | None = None) -> list[str]:
    """Make the LISTs of kind `failing` raise `error` (the first `times` ones; None: all); the kinds listed."""
    listed: list[str] = []
    fake_list = kube.list

    async def list_(api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> list[Obj]:
        listed.append(kind)
        if kind == failing and (times is None or listed.count(kind) <= times):
            raise error
        return await fake_list(api_version, kind, namespace, **kw)

    kube.list = list_  # type: ignore[method-assign]
    return listed


async def test_a_retried_prime_does_not_list_again_what_its_watch_may_already_follow() -> None:
    """A later kind failing (its CRD not served yet) retries prime; a listing of clusters older than the events
    their watch (started once they were primed) has delivered must not put back what those removed."""
    kube = FakeKube(obj("a"))
    listed = failing_lists(kube, "Description", ApiException(404, "the server could not find the resource"), 1)
    store = Store({})
    with pytest.raises(PrimeFailed, match="listing Description"):
        await store.prime(kube)
    store.caches.clusters.pop(("clusternet-a", "a"))  # its watch's DELETED event (track_cluster)
    await store.prime(kube)
    assert store.caches.clusters == {}
    assert listed.count("ManagedCluster") == 1 and listed.count("Description") == 2
    assert await asyncio.wait_for(store.seed(known.APPS_GROUP, "helmreleases"), 1) == []


async def test_a_kind_whose_listing_fails_holds_back_its_own_watch_alone(caplog: pytest.LogCaptureFixture,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of the seed: prime stopped at the first failing kind, so every watch after it waited, silently."""
    from clusternet_hub.controller import store as store_module

    monkeypatch.setattr(store_module, "SEED_WAIT_WARNING", 0.05)
    kube = FakeKube(obj("a"))
    failing_lists(kube, "Manifest", ApiException(403, "manifests is forbidden"))
    store = Store({})
    with pytest.raises(PrimeFailed, match="listing Manifest"):
        await store.prime(kube)
    assert await asyncio.wait_for(store.seed(known.APPS_GROUP, "helmreleases"), 1) == []  # listed after it
    assert [o["metadata"]["name"] for o in await store.seed(known.CLUSTERS_GROUP, "managedclusters")] == ["a"]
    held = asyncio.create_task(store.seed(known.APPS_GROUP, "manifests"))
    await asyncio.sleep(0.2)
    assert not held.done() and "waits for the deployment controller's first LIST" in caplog.text
    held.cancel()


def test_a_manifest_outside_the_reserved_namespace_is_no_template() -> None:
    """The cache is by name: one elsewhere used to replace (or, deleted, remove) the real template of that name."""
    store = Store({})
    real = {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": {"kind": "ConfigMap"},
            "metadata": {"name": "configmaps.default.cfg", "namespace": known.RESERVED_NAMESPACE, "uid": "m"}}
    stray = {**real, "template": {"kind": "Secret"}, "metadata": {**real["metadata"], "namespace": "team-a",
                                                                   "uid": "x"}}
    store.on_manifest("MODIFIED", real)
    store.on_manifest("MODIFIED", stray)
    store.on_manifest("DELETED", stray)
    assert store.caches.manifests == {"configmaps.default.cfg": real} and "x" not in store.deleted_manifests


async def test_a_namespaced_watch_compares_with_what_the_controller_listed_in_its_namespace_only(
        parent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's watches are cluster-wide; one limited to a namespace must not call another namespace's objects
    deleted because its listing lacks them."""
    async def seed(group: str, plural: str) -> list[Obj]:
        return [obj("a"), obj("b", namespace="clusternet-b")]

    monkeypatch.setattr(kopfhooks, "_seed", seed)
    parent[CLUSTERS] = [([], [])]
    settings = kopf.OperatorSettings()
    events = [e async for e in watching.infinite_watch(settings=settings, resource=CLUSTERS,
                                                       namespace="clusternet-a", _iterations=1)]
    assert summary(events) == ["DELETED a", "LISTED"]


async def test_prime_queues_the_work_a_first_sighting_queues() -> None:
    """The watch's first listing comes after prime and finds every object cached: a Helm Description whose
    HelmReleases a hub killed mid-rollout had not written yet waited for a change (test_helm, 2 of 5 runs)."""
    helm = {"apiVersion": known.APPS_API_VERSION, "kind": "Description", "spec": {"deployer": "Helm"},
            "metadata": {"name": "app-helm", "namespace": "clusternet-a"}}
    release = {"apiVersion": known.APPS_API_VERSION, "kind": "HelmRelease", "spec": {},
               "metadata": {"name": "app-helm-default-chart", "namespace": "clusternet-a"}}
    store = Store({})
    await store.prime(FakeKube(helm, release))
    queued = {item for item, _ in store.queue.drain()}
    assert {("helm", "clusternet-a", "app-helm"), ("release", "clusternet-a", "app-helm-default-chart")} <= queued


def test_every_primed_kind_names_a_cache_and_a_handler_of_the_store() -> None:
    """PRIMED is the one table of what prime lists: a kind added to it without a cache field or with a handler
    the Store lacks fails here, not at a hub's start."""
    store = Store({})
    for primed in PRIMED:
        assert isinstance(getattr(store.caches, primed.field), dict), primed
        assert primed.first_sight is None or callable(getattr(store, primed.first_sight)), primed
    assert len({p.plural for p in PRIMED}) == len({p.field for p in PRIMED}) == len(PRIMED)
