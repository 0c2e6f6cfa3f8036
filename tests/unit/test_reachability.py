"""A child that does not answer is not asked again for a while (clusternet_api.reachability): the hub's pushes to a
cluster out of reach fail at once instead of holding a worker for every request's timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager

import aiohttp
import pytest

from clusternet_api import apierrors
from clusternet_api.credentials import Credentials
from clusternet_api.kube import Kube
from clusternet_api.reachability import Reachability, Unreachable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(reach: Reachability, error: BaseException | None = None) -> None:
    with pytest.raises(type(error) if error else aiohttp.ConnectionTimeoutError), reach.attempt():
        raise error or aiohttp.ConnectionTimeoutError("Connection timeout to host https://child:6443")


def end(attempt: AbstractContextManager[None], error: BaseException) -> None:
    """End an attempt entered by hand with `error` (several attempts open at once, as concurrent requests)."""
    assert attempt.__exit__(type(error), error, None) is False  # not swallowed


def answer(reach: Reachability) -> None:
    with reach.attempt():
        pass


def test_after_no_answer_requests_fail_at_once_until_the_hold_has_passed() -> None:
    clock = Clock()
    reach = Reachability("https://child:6443", first=2.0, cap=60.0, clock=clock)
    answer(reach)  # answering: nothing held
    fail(reach)
    clock.now += 1.0
    with pytest.raises(Unreachable, match=r"https://child:6443 not asked: it did not answer \(ConnectionTimeoutError: "
                                          r"Connection timeout to host https://child:6443\) 1s ago, and is asked "
                                          r"again in 1s"):
        answer(reach)
    assert apierrors.is_passing(Unreachable("x"))  # a cleanup or prune waits for it, never takes an object as gone
    clock.now += 1.0
    answer(reach)  # the hold passed: asked, and it answered: nothing held any more
    assert not reach.held
    answer(reach)


def test_the_hold_doubles_while_probes_fail_up_to_the_cap_and_ends_at_an_answer() -> None:
    clock = Clock()
    reach = Reachability("s", first=2.0, cap=5.0, clock=clock)
    fail(reach)
    holds = []
    for _ in range(3):
        start = clock.now
        while True:
            clock.now += 0.5
            try:
                fail(reach, TimeoutError())  # the probe, once the hold has passed
                break
            except Unreachable:
                continue
        holds.append(clock.now - start)
    assert holds == [2.0, 4.0, 5.0]
    clock.now += 5.0
    answer(reach)
    fail(reach)  # a new silence starts from the first hold again
    clock.now += 2.0
    answer(reach)


def test_one_probe_at_a_time_and_a_probe_ended_otherwise_frees_the_next() -> None:
    clock = Clock()
    reach = Reachability("s", first=2.0, cap=60.0, clock=clock)
    fail(reach)
    clock.now += 2.0
    probe = reach.attempt()
    probe.__enter__()
    with pytest.raises(Unreachable, match="being asked again now"), reach.attempt():
        pass
    end(probe, asyncio.CancelledError())  # cancelled (or cut mid-answer): no verdict, the next one probes
    fail(reach, aiohttp.ServerTimeoutError("timeout"))
    assert reach.held


def test_requests_sent_before_the_hold_began_do_not_lengthen_it() -> None:
    clock = Clock()
    reach = Reachability("s", first=2.0, cap=60.0, clock=clock)
    early = [reach.attempt() for _ in range(3)]
    for cm in early:
        cm.__enter__()
    for cm in early:  # all three time out one after the other: one silence, held 2 s from the first
        end(cm, TimeoutError())
        clock.now += 0.5
    clock.now += 0.5
    answer(reach)


def test_a_connection_the_server_closed_is_not_silence() -> None:
    reach = Reachability("s")
    fail(reach, aiohttp.ServerDisconnectedError())  # an API server restarting: reconnect at once
    answer(reach)
    with pytest.raises(ValueError), reach.attempt():
        raise ValueError
    assert not reach.held


@asynccontextmanager
async def silent_tls_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Accepts TCP connections and never says a word: a TLS handshake to it never ends (a black hole, as a
    partition's, shows the same: nothing comes back)."""
    accepted: list[int] = []
    held: list[asyncio.StreamWriter] = []

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}", accepted
    finally:
        for w in held:
            w.close()
        server.close()


async def test_a_push_client_gives_up_connecting_and_then_fails_at_once() -> None:
    async with silent_tls_server() as (url, accepted), \
            Kube(Credentials(server=url, token="t"), connect_timeout=0.3, fail_fast=True) as kube:
        started = time.monotonic()
        with pytest.raises(aiohttp.ConnectionTimeoutError):
            await kube.raw("GET", "/version")
        assert time.monotonic() - started < 2.0  # not the request's 120 s
        started = time.monotonic()
        results = await asyncio.gather(*(kube.raw("GET", "/version") for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, Unreachable) for r in results), results
        assert time.monotonic() - started < 0.2
        assert accepted == [1]  # asked once; the other 20 never left the hub


async def test_a_refused_connection_holds_too_and_an_answer_ends_it() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Kube(Credentials(server=f"http://127.0.0.1:{port}", token="t"), fail_fast=True) as kube:
        with pytest.raises(aiohttp.ClientConnectorError):
            await kube.raw("GET", "/version")
        with pytest.raises(Unreachable, match=f"http://127.0.0.1:{port} not asked"):
            await kube.raw("GET", "/version")


async def test_without_fail_fast_every_request_tries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Kube(Credentials(server=f"http://127.0.0.1:{port}", token="t")) as kube:
        for _ in range(2):
            with pytest.raises(aiohttp.ClientConnectorError):
                await kube.raw("GET", "/version")


async def test_a_push_client_gives_up_reading_from_a_server_that_went_silent() -> None:
    """A connection kept alive from the last push to a child frozen (or cut off) since: the request is written,
    and nothing comes back. Read time-out, then held."""
    requests: list[bytes] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with Kube(Credentials(server=url, token="t"), read_timeout=0.3, fail_fast=True) as kube:
            started = time.monotonic()
            with pytest.raises(aiohttp.ServerTimeoutError):
                await kube.raw("GET", "/version")
            assert time.monotonic() - started < 2.0
            with pytest.raises(Unreachable):
                await kube.raw("GET", "/version")
            assert len(requests) == 1
    finally:
        server.close()
