"""Who may open a cluster's tunnel, and how few requests the hub spends to know it (clusternet_hub.sockets).

A registration burst or a reconnect storm of a thousand agents used to cost a TokenReview and a LIST of
ManagedClusters per tunnel, queued behind the approvals in the hub's rate limiter (bench/scale.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_hub import sockets
from clusternet_hub.sockets import SocketRegistry, Unauthorized


class Parent:
    """TokenReview and ManagedCluster LIST, counted."""

    def __init__(self) -> None:
        self.reviews = 0
        self.lists = 0
        self.clusters: dict[tuple[str, str], str] = {("clusternet-abc", "id-1"): "child1"}

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        token = body["spec"]["token"]
        if token == "bad":
            return {"status": {"authenticated": False}}
        ns = token.split("/")[0]
        return {"status": {"authenticated": True,
                           "user": {"username": f"system:serviceaccount:{ns}:clusternet-agent"}}}

    async def list_metadata(self, api: str, kind: str, namespace: str | None = None,
                            label_selector: str = "") -> list[dict[str, Any]]:
        self.lists += 1
        await asyncio.sleep(0)
        wanted = label_selector.partition("=")[2]  # "": every cluster's (the label's existence)
        return [{"metadata": {"name": name, "namespace": ns, "labels": {known.LABEL_CLUSTER_ID: cluster_id}}}
                for (ns, cluster_id), name in self.clusters.items()
                if namespace in (None, ns) and wanted in ("", cluster_id)]


async def test_a_known_agent_is_checked_once_then_answered_from_the_caches() -> None:
    parent = Parent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    for _ in range(5):  # a reconnect storm: the same agent again and again
        assert await registry.authorize("id-1", token="clusternet-abc/t", username=None) == ("clusternet-abc",
                                                                                              "child1")
    assert (parent.reviews, parent.lists) == (1, 1)


async def test_a_reconnect_storm_on_a_replica_without_a_watch_cache_costs_one_list() -> None:
    """A replica that does not lead (or has just started) has no watch cache of ManagedClusters: bench/scale.py's
    hub restart took back 102 tunnels with 221 LISTs, one per handshake, in the client's 50-QPS bucket."""
    parent = Parent()
    parent.clusters = {(f"clusternet-{i}", f"id-{i}"): f"child{i}" for i in range(50)}
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(registry.authorize(f"id-{i}", token=f"clusternet-{i}/t", username=None)
                                     for i in range(50)))
    assert answers == [(f"clusternet-{i}", f"child{i}") for i in range(50)]
    assert parent.lists == 1


async def test_a_failing_list_of_every_cluster_falls_back_to_the_clusters_own_and_is_not_repeated() -> None:
    """Review: with the shared LIST failing (a parent too busy for a LIST of everything), every handshake started
    another one and was answered 503; the cluster's own LIST decides instead, and the next handshake within
    OWNER_LIST_INTERVAL does not try the LIST of everything again."""
    class Busy(Parent):
        async def list_metadata(self, api: str, kind: str, namespace: str | None = None,
                                label_selector: str = "") -> list[dict[str, Any]]:
            if namespace is None:
                self.lists += 1
                raise ApiException(504, "the LIST of every ManagedCluster timed out")
            return await super().list_metadata(api, kind, namespace, label_selector)

    parent = Busy()
    parent.clusters[("clusternet-abc", "id-2")] = "child2"
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    assert await registry.authorize("id-1", token="clusternet-abc/t", username=None) == ("clusternet-abc", "child1")
    assert await registry.authorize("id-2", token="clusternet-abc/t", username=None) == ("clusternet-abc", "child2")
    assert parent.lists == 3  # one LIST of everything (failed), then each cluster's own


async def test_the_leaders_watch_cache_answers_without_a_list() -> None:
    parent = Parent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    registry.managed_cluster_of = {"id-1": ("clusternet-abc", "child1")}.get
    assert await registry.authorize("id-1", token=None, username="system:serviceaccount:clusternet-abc:"
                                    "clusternet-agent") == ("clusternet-abc", "child1")
    assert parent.lists == 0


async def test_another_clusters_agent_is_refused_every_time_and_never_cached() -> None:
    parent = Parent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    # the cache says id-1 lives in clusternet-abc: an agent of another namespace gets no shortcut
    registry.managed_cluster_of = {"id-1": ("clusternet-abc", "child1")}.get
    for _ in range(2):
        with pytest.raises(Unauthorized) as refused:
            await registry.authorize("id-1", token="clusternet-xyz/t", username=None)
        assert refused.value.status == 403
    # a refusal is asked again, never remembered as an answer: the first time in the LIST of all clusters and on
    # its own, then on its own (the LIST of all is not made again within OWNER_LIST_INTERVAL)
    assert parent.lists == 3
    with pytest.raises(Unauthorized) as refused:
        await registry.authorize("id-1", token="bad", username=None)
    assert refused.value.status == 401


async def test_expired_answers_are_dropped_not_kept_for_the_life_of_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents refresh their tokens (every 16 h) and clusters come and go: an answer about a token or a cluster
    nobody presents any more goes once it has expired, or the caches grew with every token ever seen."""
    now = [1000.0]
    monkeypatch.setattr(sockets, "time", SimpleNamespace(monotonic=lambda: now[0]))
    parent = Parent()
    parent.clusters[("clusternet-abc", "id-2")] = "child2"
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    await registry.authorize("id-2", token="clusternet-abc/old-token", username=None)
    now[0] += 2 * sockets.REVIEW_TTL  # the agent refreshed its token; the cluster id-2 was removed
    del parent.clusters[("clusternet-abc", "id-2")]
    await registry.authorize("id-1", token="clusternet-abc/new-token", username=None)
    assert len(registry._reviews) == 1  # the new token's answer only
    assert list(registry._owners) == [("clusternet-abc", "id-1")]


async def test_an_agent_is_told_to_retry_while_the_parent_cannot_review_its_token(
        caplog: pytest.LogCaptureFixture) -> None:
    """Audit 7: during a parent outage every tunnel attempt of every agent got a 500 and a traceback."""
    class Unreachable(Parent):
        async def create(self, body: dict[str, Any]) -> dict[str, Any]:
            raise aiohttp.ClientConnectionError("Cannot connect to host parent:443")

    registry = SocketRegistry(Unreachable())  # type: ignore[arg-type]
    request = make_mocked_request("GET", "/apis/proxies.clusternet.io/v1alpha1/sockets/id-1",
                                  headers={"Authorization": "Bearer clusternet-abc/t"},
                                  match_info={"cluster_id": "id-1"})
    response = await sockets.tunnel_endpoint(request, registry, None)
    assert response.status == 503 and response.headers["Retry-After"] == "2"
    assert "retry" in response.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]
