"""Reads from the API server's watch cache (resourceVersion=0): what asks for them, and a "not found" from the cache
asked again of storage, which the cache may trail (an object created a moment ago)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from clusternet_api.credentials import Credentials
from clusternet_api.kube import Kube
from tests.unit.test_kube_limits import serving

CRR = "/apis/clusters.clusternet.io/v1beta1/clusterregistrationrequests/clusternet-a"
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}


def answering(stored: bool, cache_holds: bool, seen: list[str],
              selectors: list[str] | None = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        seen.append(request.query.get("resourceVersion", "(storage)"))
        if selectors is not None and request.path.endswith("/managedclusters"):
            selectors.append(request.query.get("labelSelector", ""))
        cached = request.query.get("resourceVersion") == "0"
        if request.path == "/apis/clusters.clusternet.io/v1beta1":  # discovery of the group
            return web.json_response({"kind": "APIResourceList", "groupVersion": "clusters.clusternet.io/v1beta1",
                                      "resources": [{"name": "clusterregistrationrequests", "namespaced": False,
                                                     "kind": "ClusterRegistrationRequest", "verbs": ["get"]},
                                                    {"name": "managedclusters", "namespaced": True,
                                                     "kind": "ManagedCluster", "verbs": ["list"]}]})
        if request.path == CRR and stored and (cache_holds or not cached):
            return web.json_response({"metadata": {"name": "clusternet-a"}, "from": "cache" if cached else "etcd"})
        if request.path.endswith("/managedclusters"):
            return web.json_response({"items": []})
        return web.json_response(NOT_FOUND, status=404)
    return handler


async def read(stored: bool, cache_holds: bool) -> tuple[dict[str, object] | None, list[str]]:
    seen: list[str] = []
    async with serving(answering(stored, cache_holds, seen)) as url, Kube(Credentials(url)) as kube:
        got = await kube.get("clusters.clusternet.io/v1beta1", "ClusterRegistrationRequest", "clusternet-a",
                             cached=True)
    return got, seen


async def test_a_cached_read_the_cache_answers_asks_nothing_of_storage() -> None:
    got, seen = await read(stored=True, cache_holds=True)
    assert got is not None and got["from"] == "cache"
    assert seen[-1] == "0" and seen.count("(storage)") <= 1  # at most the group's discovery, before


async def test_not_found_in_the_cache_is_asked_of_storage_which_the_cache_may_trail() -> None:
    got, seen = await read(stored=True, cache_holds=False)  # created a moment ago
    assert got is not None and got["from"] == "etcd"
    assert seen[-2:] == ["0", "(storage)"]
    gone, seen = await read(stored=False, cache_holds=False)
    assert gone is None and seen[-2:] == ["0", "(storage)"]


async def test_a_cached_list_keeps_its_label_selector() -> None:
    seen: list[str] = []
    selectors: list[str] = []
    async with serving(answering(True, True, seen, selectors)) as url, Kube(Credentials(url)) as kube:
        assert await kube.list("clusters.clusternet.io/v1beta1", "ManagedCluster", label_selector="a=b",
                               cached=True) == []
        assert await kube.list("clusters.clusternet.io/v1beta1", "ManagedCluster", label_selector="a=b") == []
    assert seen[-2:] == ["0", "(storage)"]
    assert selectors == ["a=b", "a=b"]
