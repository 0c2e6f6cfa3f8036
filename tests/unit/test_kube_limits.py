"""Client-side QPS/burst (a token bucket per Kube, watches not counted) and 429/503 Retry-After retries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

import clusternet_api.kube as kube_mod
import clusternet_api.ratelimit as ratelimit
from clusternet_api.credentials import Credentials
from clusternet_api.kube import Kube
from clusternet_api.ratelimit import TokenBucket, retry_after


@asynccontextmanager
async def serving(handler: Callable[[web.Request], object]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def test_bucket_allows_a_burst_then_qps() -> None:
    now = [0.0]
    bucket = TokenBucket(qps=10, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)  # reservations queue up in order
    now[0] = 10.0  # idle for long: refilled to burst, no more
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() > 0


def test_retry_after_rules() -> None:
    assert retry_after(429, {"Retry-After": "2"}) == 2.0
    assert retry_after(429, {}) == ratelimit.DEFAULT_RETRY_AFTER
    assert retry_after(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == ratelimit.DEFAULT_RETRY_AFTER
    assert retry_after(429, {"Retry-After": "3600"}) == ratelimit.MAX_RETRY_AFTER
    assert retry_after(503, {"Retry-After": "1"}) == 1.0
    assert retry_after(503, {}) is None  # a broken server, not a busy one: no retry
    assert retry_after(500, {"Retry-After": "1"}) is None
    assert retry_after(200, {"Retry-After": "1"}) is None


async def test_requests_wait_for_tokens_without_blocking_the_loop() -> None:
    hits: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        return web.json_response({"kind": "Status"})

    async with serving(handler) as url, Kube(Credentials(url), qps=20, burst=2) as kube:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        start = time.monotonic()
        await asyncio.gather(*(kube.raw("GET", "/version") for _ in range(6)))
        elapsed = time.monotonic() - start
        t.cancel()
    assert len(hits) == 6
    assert elapsed >= 0.19  # 2 at once, then 4 at 20/s: 0.2 s
    assert ticks >= 10  # the loop kept running while requests waited


async def test_watches_do_not_take_tokens() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"type":"ADDED","object":{}}\n')
            return resp
        return web.json_response({})

    async with serving(handler) as url, Kube(Credentials(url), qps=1, burst=1) as kube:
        for _ in range(3):
            events = [e async for e in kube.watch("v1", "ConfigMap", "default", server_timeout=5)]
            assert events == [{"type": "ADDED", "object": {}}]
        start = time.monotonic()
        await kube.raw("GET", "/version")  # the one token is still there
        assert time.monotonic() - start < 0.5


async def test_a_watch_event_longer_than_aiohttps_line_limit_arrives_whole() -> None:
    big = {"type": "ADDED", "object": {"metadata": {"name": "big"}, "data": {"k": "x" * 3 * 2**20}}}
    body = json.dumps(big).encode() + b"\n\n" + b'{"type":"DELETED","object":{}}\n{"type":"BOOKMARK","object":{}}'

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            resp = web.StreamResponse()
            await resp.prepare(request)
            for i in range(0, len(body), 100_000):
                await resp.write(body[i:i + 100_000])
            return resp
        return web.json_response({})

    async with serving(handler) as url, Kube(Credentials(url)) as kube:
        events = [e async for e in kube.watch("v1", "ConfigMap", "default", server_timeout=5)]
    # the last one without its newline still counts, as before
    assert events == [big, {"type": "DELETED", "object": {}}, {"type": "BOOKMARK", "object": {}}]


async def test_429_is_retried_after_the_seconds_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read()))
        if len(seen) < 3:
            return web.json_response({"kind": "Status", "code": 429}, status=429, headers={"Retry-After": "0.2"})
        return web.json_response({"ok": True}, status=201)

    async with serving(handler) as url, Kube(Credentials(url)) as kube:
        start = time.monotonic()
        assert await kube.request("POST", "/api/v1/namespaces", {"a": 1}) == {"ok": True}
        assert time.monotonic() - start >= 0.4
    assert seen == [("POST", b'{"a":1}')] * 3  # the same request each time


async def test_503_with_retry_after_is_retried_and_without_is_final() -> None:
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        calls["n"] += 1
        if request.path == "/busy" and calls["n"] == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        if request.path == "/broken":
            return web.Response(status=503)
        return web.json_response({})

    async with serving(handler) as url, Kube(Credentials(url)) as kube:
        assert (await kube.raw("GET", "/busy"))[0] == 200
        assert calls["n"] == 2
        calls["n"] = 0
        assert (await kube.raw("GET", "/broken"))[0] == 503
        assert calls["n"] == 1


async def test_retries_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_mod, "MAX_RETRIES", 2)
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        calls["n"] += 1
        return web.json_response({"message": "slow down"}, status=429, headers={"Retry-After": "0"})

    async with serving(handler) as url, Kube(Credentials(url)) as kube:
        status, _ = await kube.raw("GET", "/x")
    assert status == 429 and calls["n"] == 3


async def test_clusternet_groups_have_a_bucket_of_their_own() -> None:
    """As Clusternet's two clientsets (Kubernetes, Clusternet) from one rest.Config: one limiter each."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status"})

    async with serving(handler) as url, Kube(Credentials(url), qps=1, burst=1) as kube:
        start = time.monotonic()
        await kube.raw("GET", "/api/v1/namespaces/default")
        await kube.raw("GET", "/apis/clusters.clusternet.io/v1beta1/managedclusters")  # its own token
        assert time.monotonic() - start < 0.5
        await kube.raw("GET", "/apis/apps.clusternet.io/v1alpha1/subscriptions")  # same bucket: waits 1 s
        assert time.monotonic() - start >= 0.9
    assert kube_mod._CLUSTERNET_GROUP.match("/apis/apps.clusternet.io")
    assert not kube_mod._CLUSTERNET_GROUP.match("/apis/apps/v1/deployments")
    assert not kube_mod._CLUSTERNET_GROUP.match("/apis/evil.clusternet.io.example.com/v1")
