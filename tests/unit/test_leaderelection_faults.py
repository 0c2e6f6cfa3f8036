"""Leader election when the API server drops a connection without answering (review 6, finding 3).

aiohttp.ServerDisconnectedError is neither an OSError nor a TimeoutError: one dropped connection (a kube-apiserver
behind a load balancer shutting down gracefully) made the leader exit with a misleading "Lease lost" and "Task
exception was never retrieved", and crashed a standby. Real `Kube` and `LeaderElector` against an in-memory Lease
API over HTTP that closes the connection of the next requests without a response.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from clusternet_api.leaderelection import LeaderElector, LeadershipLost, run_while_leading
from tests.unit.test_leaderelection import CONFIG, LeaseAPI, lease_api


class DroppingLeaseAPI(LeaseAPI):
    """LeaseAPI whose next `drops` requests see their connection closed with no response. aiohttp retries a
    request on a reused idempotent connection once, so 2 drops make one request fail."""

    def __init__(self) -> None:
        super().__init__()
        self.drops = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.drops > 0:
            self.drops -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return await super().handle(request)


async def test_a_leader_renews_past_a_dropped_connection() -> None:
    api = DroppingLeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        stop = asyncio.Event()
        running = asyncio.create_task(run_while_leading(a, stop, stop.wait))
        await asyncio.sleep(0.3)
        assert api.holder == "a"
        renewals = len(api.puts)
        api.drops = 2  # the next renewal's GET, and aiohttp's retry of it
        await asyncio.sleep(2 * CONFIG.renew_deadline)
        assert api.drops == 0 and not running.done() and a.leading  # before: LeadershipLost at once
        assert len(api.puts) > renewals  # renewed again after the failed attempt
        stop.set()
        await asyncio.wait_for(running, 2)
        assert api.holder == ""  # released on the way out, as after any clean run


async def test_a_standby_keeps_trying_past_a_dropped_connection() -> None:
    api = DroppingLeaseAPI()
    async with lease_api(api) as kube:
        a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
        assert await a.try_acquire_or_renew()  # then killed: never renews
        api.drops = 2  # b's first read of the Lease
        assert await asyncio.wait_for(b.acquire(), 3)  # before: ServerDisconnectedError out of acquire()
        assert api.holder == "b" and api.drops == 0


async def test_a_release_meeting_a_dropped_connection_is_only_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    api = DroppingLeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        assert await a.try_acquire_or_renew()
        api.drops = 2
        with caplog.at_level(logging.WARNING, "clusternet_api.leaderelection"):
            await a.release()  # before: ServerDisconnectedError at shutdown
        assert "releasing Lease clusternet-system/clusternet-hub failed" in caplog.text
        assert api.holder == "a" and not a.leading  # it expires by itself


async def test_an_unexpected_renewal_failure_is_read_logged_and_the_cause(caplog: pytest.LogCaptureFixture) -> None:
    """Whatever still escapes hold() (a bug) is logged with its traceback and chained to LeadershipLost, not left
    for asyncio's "Task exception was never retrieved" at exit."""
    api = LeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")

        async def broken_hold() -> None:
            raise RuntimeError("a bug in the renewal")

        a.hold = broken_hold  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, "clusternet_api.leaderelection"), pytest.raises(LeadershipLost) as lost:
            await asyncio.wait_for(run_while_leading(a, asyncio.Event(), asyncio.Event().wait), 2)
        assert isinstance(lost.value.__cause__, RuntimeError)
        failed = [r for r in caplog.records if "renewing the Lease failed unexpectedly" in r.getMessage()]
        assert failed and failed[0].exc_info is not None and "a bug in the renewal" in failed[0].getMessage()


class HangingLeaseAPI(LeaseAPI):
    """LeaseAPI that stops answering once `hang` is set: a dead connection at shutdown."""

    hang = False

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()  # set at the end, so the server's shutdown does not wait for the handler

    async def handle(self, request: web.Request) -> web.Response:
        if self.hang:
            await self.answer.wait()
        return await super().handle(request)


async def test_a_release_the_api_server_does_not_answer_ends_within_the_renew_deadline(
        caplog: pytest.LogCaptureFixture) -> None:
    """Review 6: a release hung on a dead connection held a stopping replica for the client's 120 s, past
    Kubernetes' 30-s grace period; the Lease expires by itself anyway."""
    api = HangingLeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        assert await a.try_acquire_or_renew()
        api.hang = True
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(a.release(), 5)
        assert asyncio.get_running_loop().time() - started < CONFIG.renew_deadline + 0.5
        api.answer.set()
    assert "releasing Lease clusternet-system/clusternet-hub failed (it expires by itself): no answer" in caplog.text
