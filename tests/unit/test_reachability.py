"""A child no connection can be made to is not asked again for a while (clusternet_api.reachability): the hub's
pushes to a cluster out of reach fail at once instead of holding a worker for every request's timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from clusternet_api import apierrors
from clusternet_api.credentials import Credentials
from clusternet_api.kube import Kube
from clusternet_api.reachability import Reachability, Unreachable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def timed_out(path: str = "/api/v1/namespaces/default/configmaps/a") -> aiohttp.ConnectionTimeoutError:
    return aiohttp.ConnectionTimeoutError(f"Connection timeout to host https://child:6443{path}")


def refused(address: str) -> aiohttp.ClientConnectorError:
    key = ConnectionKey("child", 6443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(113, f"Connect call failed ('{address}', 6443)"))


async def fail(reach: Reachability, error: BaseException | None = None) -> str:
    """One request that found no connection; the text it failed with."""
    with pytest.raises(Unreachable) as raised:
        async with reach.attempt():
            raise error or timed_out()
    return str(raised.value)


async def answer(reach: Reachability) -> None:
    async with reach.attempt():
        pass


async def test_without_a_connection_requests_fail_at_once_with_one_text_until_the_hold_has_passed() -> None:
    clock = Clock()
    reach = Reachability("https://child:6443", first=2.0, cap=60.0, clock=clock)
    await answer(reach)  # answering: nothing held
    said = await fail(reach)
    assert said == ("https://child:6443 cannot be reached (connection timed out); asked again by one request at a "
                    "time, every 2 s at first, at most every 60 s")  # no path, no times: the same at every retry
    clock.now += 1.0
    with pytest.raises(Unreachable) as raised:
        await answer(reach)
    assert str(raised.value) == said
    assert apierrors.is_passing(raised.value)  # a cleanup or prune waits for it, never takes an object as gone
    clock.now += 1.0
    assert await fail(reach, timed_out("/apis/apps/v1")) == said  # the probe fails: the same text again
    clock.now += 4.0
    await answer(reach)  # the next probe is answered: nothing held any more
    assert not reach.held


async def test_the_hold_doubles_while_probes_fail_up_to_the_cap_and_ends_at_an_answer() -> None:
    clock = Clock()
    reach = Reachability("s", first=2.0, cap=5.0, clock=clock)
    await fail(reach)
    holds = []
    for _ in range(3):
        start = clock.now
        probed = False
        while not probed:
            clock.now += 0.5
            with contextlib.suppress(Unreachable):
                async with reach.attempt():
                    probed = True  # let through: the probe, once the hold has passed
                    raise timed_out()
        holds.append(clock.now - start)
    assert holds == [2.0, 4.0, 5.0]
    clock.now += 5.0
    await answer(reach)
    await fail(reach)  # a new outage starts from the first hold again
    clock.now += 2.0
    await answer(reach)


async def test_requests_wait_for_the_probe_out_and_go_on_when_it_is_answered() -> None:
    """Review s37: refused while the probe was out, the rest of a push failed, and its Description waited one more
    retry after the child was back."""
    clock = Clock()
    reach = Reachability("s", first=2.0, cap=60.0, clock=clock)
    await fail(reach)
    clock.now += 2.0
    go = asyncio.Event()
    sent: list[str] = []

    async def probe() -> None:
        async with reach.attempt():
            await go.wait()
            sent.append("probe")

    async def other(i: int) -> None:
        async with reach.attempt():
            sent.append(f"other {i}")

    probing = asyncio.create_task(probe())
    await asyncio.sleep(0)
    others = [asyncio.create_task(other(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert sent == [] and not any(t.done() for t in others)  # waiting for the probe, not failed
    go.set()
    await asyncio.gather(probing, *others)
    assert sent == ["probe", "other 0", "other 1", "other 2"] and not reach.held


async def test_a_failed_probe_fails_those_waiting_for_it_and_a_probe_ended_otherwise_frees_the_next() -> None:
    clock = Clock()
    reach = Reachability("s", first=2.0, cap=60.0, clock=clock)
    said = await fail(reach)
    clock.now += 2.0
    go = asyncio.Event()

    async def probe(error: BaseException) -> None:
        async with reach.attempt():
            await go.wait()
            raise error

    probing = asyncio.create_task(probe(asyncio.CancelledError()))  # cut: no verdict
    await asyncio.sleep(0)
    waiting = asyncio.create_task(fail(reach))  # becomes the next probe, and finds no connection
    await asyncio.sleep(0.01)
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await probing
    assert await waiting == said
    waiter = asyncio.create_task(answer(reach))
    await asyncio.sleep(0)
    with pytest.raises(Unreachable):  # held again (4 s now): refused at once, not waiting
        await waiter


async def test_slow_answers_a_refused_certificate_and_a_closed_connection_hold_nothing() -> None:
    reach = Reachability("s")
    for error in (aiohttp.ServerTimeoutError("Timeout on reading data from socket"), TimeoutError(),
                  aiohttp.ServerDisconnectedError(), ValueError("bad body")):
        with pytest.raises(type(error)):
            async with reach.attempt():
                raise error
        assert not reach.held
    await answer(reach)


@asynccontextmanager
async def silent_tls_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Accepts TCP connections and never says a word: a TLS handshake to it never ends (a frozen API server, or a
    black hole's, shows the same: nothing comes back)."""
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
        with pytest.raises(Unreachable, match=r"cannot be reached \(connection timed out\)"):
            await kube.raw("GET", "/version")
        assert time.monotonic() - started < 2.0  # not the request's 120 s
        started = time.monotonic()
        results = await asyncio.gather(*(kube.raw("GET", "/version") for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, Unreachable) for r in results), results
        assert time.monotonic() - started < 0.2
        assert accepted == [1]  # asked once; the other 20 never left the hub


async def test_a_refused_connection_holds_too() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Kube(Credentials(server=f"http://127.0.0.1:{port}", token="t"), fail_fast=True) as kube:
        for _ in range(2):
            with pytest.raises(Unreachable, match=f"http://127.0.0.1:{port} cannot be reached"):
                await kube.raw("GET", "/version")


async def test_without_fail_fast_every_request_tries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Kube(Credentials(server=f"http://127.0.0.1:{port}", token="t")) as kube:
        for _ in range(2):
            with pytest.raises(aiohttp.ClientConnectorError):
                await kube.raw("GET", "/version")


async def test_a_push_client_gives_up_reading_from_a_server_gone_silent_and_holds_at_its_next_connection() -> None:
    """A connection kept alive from the last push to a child frozen since: the request is written and nothing
    comes back. The read times out (not held: a slow answer would too); the next request needs a new connection,
    which the frozen child does not complete, and the hold begins."""
    requests: list[bytes] = []
    frozen = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            if frozen.is_set():
                await asyncio.sleep(30)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with Kube(Credentials(server=url, token="t"), read_timeout=0.3, connect_timeout=0.3,
                        fail_fast=True) as kube:
            assert (await kube.raw("GET", "/version"))[0] == 200
            frozen.set()
            server.close()  # and its listening socket gone: the next connection fails
            started = time.monotonic()
            with pytest.raises(aiohttp.ServerTimeoutError):
                await kube.raw("GET", "/version")
            assert time.monotonic() - started < 2.0
            with pytest.raises(Unreachable):
                await kube.raw("GET", "/version")
            with pytest.raises(Unreachable):
                await kube.raw("GET", "/version")
            assert len(requests) == 2
    finally:
        server.close()


async def test_one_outage_one_text_whatever_address_a_probe_tried() -> None:
    """Re-review s37: a name with several addresses failed each probe with another one in the text, and each new
    text was a status write and an event."""
    clock = Clock()
    reach = Reachability("https://child:6443", clock=clock)
    said = await fail(reach, refused("10.0.0.1"))
    for address in ("10.0.0.2", "10.0.0.3"):
        clock.now += 60
        assert await fail(reach, refused(address)) == said


async def test_a_probe_that_connected_but_got_no_answer_ends_the_hold_for_all_waiting() -> None:
    """Re-review s37: a probe ending in a read timeout left the next waiter to probe, one read timeout after the
    other. It connected: the hold is over, and those waiting go on together."""
    clock = Clock()
    reach = Reachability("s", clock=clock)
    await fail(reach)
    clock.now += 2.0
    go = asyncio.Event()

    async def probe() -> None:
        async with reach.attempt():
            await go.wait()
            raise aiohttp.ServerTimeoutError("Timeout on reading data from socket")

    sent: list[int] = []

    async def other(i: int) -> None:
        async with reach.attempt():
            sent.append(i)

    probing = asyncio.create_task(probe())
    await asyncio.sleep(0)
    others = [asyncio.create_task(other(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    go.set()
    with pytest.raises(aiohttp.ServerTimeoutError):
        await probing
    assert not reach.held  # over: not left to the next waiter to find out, after a read timeout of its own
    await asyncio.gather(*others)
    assert sent == [0, 1, 2]
