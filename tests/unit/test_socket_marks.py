"""The hub records tunnel state on the ManagedCluster without holding up the tunnel itself.

Found by tests/integration/test_faults.py: after a cut, the agent's new tunnel was registered, then the hub
wrote SocketConnected=True (GET + PATCH, retried on 409 against the agent's heartbeats, behind the client's
QPS limit: seconds on a busy parent) and only then started reading the websocket. Meanwhile every stream
opened on the tunnel waited for an answer nobody read, and the proxy's requests timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from clusternet_api import fence, known
from clusternet_api.apierrors import ApiException
from clusternet_api.tunnel import Session
from clusternet_hub import socketmarks
from clusternet_hub.peerstreams import Peer
from clusternet_hub.sockets import SocketRegistry, Tunnel


class SlowParent:
    """The parent's API as the registry uses it; every GET waits for `go`, every PATCH is recorded."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.reading = asyncio.Event()  # a GET is waiting for `go`
        self.written: list[str] = []
        self.version = 0

    async def get(self, *_: Any) -> dict[str, Any]:
        self.reading.set()
        await self.go.wait()
        return {"metadata": {"resourceVersion": str(self.version)}, "status": {"conditions": []}}

    async def patch(self, api: str, kind: str, name: str, body: dict[str, Any], *_: Any, **__: Any) -> None:
        self.version += 1
        (condition,) = [c for c in body["status"]["conditions"] if c["type"] == known.CONDITION_SOCKET]
        self.written.append(condition["status"])


async def nowhere(_: bytes) -> None:
    return None


def tunnel() -> Tunnel:
    return Tunnel("cluster-a", Session(nowhere, is_client=True), "ns", "mc")


def closing_for_ever(stuck: Tunnel) -> asyncio.Event:
    """Make closing the tunnel hang (a handler then cancelled meanwhile); the event is set once it began."""
    closing = asyncio.Event()

    async def close(reason: str) -> None:
        closing.set()
        await asyncio.Event().wait()

    stuck.close = close  # type: ignore[method-assign]
    return closing


async def test_attach_does_not_wait_for_the_parent_and_the_last_state_is_written_last() -> None:
    """A state superseded while its mark waited for the parent is not written: the latest one is."""
    parent = SlowParent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    first, second = tunnel(), tunnel()
    await asyncio.wait_for(registry.attach(first), 1)  # the parent has not answered: attach is done anyway
    assert registry.get("cluster-a") is first
    await asyncio.wait_for(registry.detach(first, "agent disconnected"), 1)
    await asyncio.wait_for(registry.attach(second), 1)
    assert registry.get("cluster-a") is second and parent.written == []
    parent.go.set()
    await registry.close()  # waits for the writes still running
    # connected, cut, back: each superseded before its write was sent; hub stopping: the last state, written
    assert parent.written == ["False"]


async def test_a_detach_cancelled_while_it_closes_the_streams_still_records_the_cut() -> None:
    """aiohttp may cancel a websocket handler once the agent has gone; the cut is recorded all the same."""
    parent = SlowParent()
    parent.go.set()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    cut = tunnel()
    await registry.attach(cut)
    await registry.finish_marks()  # written before the cut (which would supersede it)
    closing = closing_for_ever(cut)
    detach = asyncio.create_task(registry.detach(cut, "agent disconnected"))
    await closing.wait()
    detach.cancel()
    await asyncio.gather(detach, return_exceptions=True)
    await registry.close()
    assert parent.written == ["True", "False"]


async def test_an_attach_cancelled_while_it_closes_the_tunnel_replaced_still_records_the_new_one() -> None:
    """An agent that reconnects and is gone again at once: the handler is cancelled inside attach."""
    parent = SlowParent()
    parent.go.set()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    old, new = tunnel(), tunnel()
    await registry.attach(old)
    await registry.finish_marks()
    closing = closing_for_ever(old)
    attach = asyncio.create_task(registry.attach(new))
    await closing.wait()
    attach.cancel()
    await asyncio.gather(attach, return_exceptions=True)
    assert registry.get("cluster-a") is new
    await registry.finish_marks()  # written before it goes (a later state would supersede it)
    await registry.detach(new, "agent disconnected")  # what the handler's finally now does
    await registry.close()
    assert parent.written == ["True", "True", "False"]


class RememberingParent(SlowParent):
    """A parent that answers at once and keeps the conditions written: a ManagedCluster's status, as read back."""

    def __init__(self) -> None:
        super().__init__()
        self.go.set()
        self.conditions: list[dict[str, Any]] = []

    async def get(self, *_: Any) -> dict[str, Any]:
        self.reads = getattr(self, "reads", 0) + 1
        return {"metadata": {"resourceVersion": str(self.version)}, "status": {"conditions": list(self.conditions)}}

    async def patch(self, api: str, kind: str, name: str, body: dict[str, Any], *args: Any, **kw: Any) -> None:
        if body["metadata"]["resourceVersion"] != str(self.version):
            raise ApiException(409, "the object has been modified")
        await super().patch(api, kind, name, body, *args, **kw)
        self.conditions = body["status"]["conditions"]


async def test_a_mark_already_shown_is_not_written_again_and_a_transition_keeps_its_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a reconnect storm a cut superseded before it was written left the condition True: the return's mark then
    finds it shown and writes nothing (at 1,000 clusters the marks were 4 requests per cluster behind the 50-QPS
    limit). The agent's own report may have written the same. The time of the last transition stays while the
    status does, as Kubernetes conditions keep it."""
    parent = RememberingParent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    first, second, third = tunnel(), tunnel(), tunnel()
    await registry.attach(first)
    await registry.finish_marks()
    assert parent.written == ["True"]
    since = parent.conditions[0]["lastTransitionTime"]
    await registry.attach(second)  # a new tunnel replaces one the hub did not see go
    await registry.finish_marks()
    assert parent.written == ["True"] and parent.reads == 2
    parent.conditions[0]["message"] = "connected through another replica"
    monkeypatch.setattr(socketmarks, "now_rfc3339", lambda: "2030-01-01T00:00:00Z")  # a rewritten time would show
    await registry.attach(third)
    await registry.finish_marks()
    assert parent.written == ["True", "True"] and parent.conditions[0]["lastTransitionTime"] == since
    assert parent.conditions[0]["message"] == "agent tunnel connected"


async def test_the_hub_counts_the_marks_it_has_yet_to_write() -> None:
    """bench/scale.py's reconnect storm waits for the conditions to be final: every tunnel's mark written or found
    shown (clusternet_socket_marks_pending back at 0)."""
    from clusternet_hub import metrics

    parent = SlowParent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    for i in range(3):
        await registry.attach(Tunnel(f"cluster-{i}", Session(nowhere, is_client=True), "ns", f"mc-{i}"))
    assert metrics.REGISTRY.get_sample_value("clusternet_socket_marks_pending") == 3
    parent.go.set()
    await registry.finish_marks()
    await asyncio.sleep(0)  # the writers' done callbacks
    assert metrics.REGISTRY.get_sample_value("clusternet_socket_marks_pending") == 0


class OtherReplicas:
    """The other hub replicas as the registry asks them (Peers.locate): `holder` holds the cluster's tunnel."""

    live: dict[str, Any] = {}

    def __init__(self, me: str = "a") -> None:
        self.holder: str | None = None
        self.me = Peer(me, "127.0.0.1", 1)

    async def locate(self, cluster_id: str, fresh: bool = False) -> str | None:
        return self.holder


async def test_a_stopping_replica_does_not_mark_disconnected_a_tunnel_that_moved_meanwhile() -> None:
    """Audit s36 F4: a stopping replica asked the others whether the agent had moved before its mark waited for
    the parent (behind the QPS limiter: seconds for hundreds of tunnels); the agent reconnected to replica C
    meanwhile, C marked it True, and this replica's False landed on top of it."""
    parent = SlowParent()
    others = OtherReplicas()
    registry = SocketRegistry(parent, others)  # type: ignore[arg-type]
    cut = tunnel()
    registry.tunnels[cut.cluster_id] = cut
    await registry.detach(cut, "hub shutting down")
    await asyncio.wait_for(parent.reading.wait(), 1)  # the mark waits for the parent
    others.holder = "c"  # the agent reconnects to replica C, which marks it connected
    parent.written.append("True")
    parent.version += 1
    parent.go.set()
    await registry.close()
    assert parent.written == ["True"]


async def test_a_hub_cut_off_from_the_parent_stops_without_waiting_for_its_marks(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Audit s36 F5: a leader deposed because it was cut off from the parent waited for its tunnels' marks
    without bound, each GET and PATCH up to the client's 120 s, with its port open meanwhile."""
    monkeypatch.setattr(socketmarks, "MARKS_STALL_SECONDS", 0.2)
    parent = SlowParent()  # never answers
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    await registry.attach(tunnel())
    await asyncio.wait_for(registry.close(), 2)
    said = [r.getMessage() for r in caplog.records if "without recording the tunnel state" in r.getMessage()]
    assert len(said) == 1 and "cluster-a" in said[0], caplog.text


async def test_a_stopping_hub_writes_every_mark_a_slow_parent_keeps_taking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s36: a 5-s bound left most of 1,000 marks unwritten behind the QPS limiter, though the parent was
    answering; the wait now ends only when marks stop being written (or at MARKS_GRACE_SECONDS)."""
    monkeypatch.setattr(socketmarks, "MARKS_STALL_SECONDS", 0.3)

    class Paced(SlowParent):
        async def get(self, *_: Any) -> dict[str, Any]:  # one at a time, as the limiter lets them through
            async with lock:
                await asyncio.sleep(0.05)
            return {"metadata": {"resourceVersion": str(self.version)}, "status": {"conditions": []}}

    lock = asyncio.Lock()
    parent = Paced()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    for i in range(20):  # 1 s of marks in all, more than three stall periods
        await registry.attach(Tunnel(f"cluster-{i}", Session(nowhere, is_client=True), "ns", f"mc-{i}"))
    await asyncio.wait_for(registry.close(), 5)
    assert parent.written.count("False") == 20


async def serve_tunnels(registry: SocketRegistry) -> tuple[Any, int]:
    """The hub's tunnel endpoint on a free loopback port, every agent authorised as cluster ns/mc: (runner, port)."""
    from aiohttp import web

    from clusternet_hub.sockets import tunnel_endpoint

    async def authorize(*_args: Any, **_kw: Any) -> tuple[str, str]:
        return "ns", "mc"

    async def endpoint(request: web.Request) -> Any:
        return await tunnel_endpoint(request, registry, None)

    registry.authorize = authorize  # type: ignore[method-assign]
    app = web.Application()
    app.router.add_get("/tunnel/{cluster_id}", endpoint)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def test_a_stopping_hub_closes_the_agents_websockets_at_once() -> None:
    """The third audit: a SIGTERM'd hub ended the streams but not the websockets, so its agents learnt of it from
    their keepalive 20-40 s later, and the hub's exit waited for the handlers as long."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed


    parent = SlowParent()
    parent.go.set()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]

    attached, attach = asyncio.Event(), registry.attach

    async def attached_then_told(tunnel: Tunnel) -> None:
        await attach(tunnel)
        attached.set()

    registry.attach = attached_then_told  # type: ignore[method-assign]
    runner, port = await serve_tunnels(registry)
    try:
        async with connect(f"ws://127.0.0.1:{port}/tunnel/cluster-a") as ws:
            await asyncio.wait_for(attached.wait(), 2)
            await asyncio.wait_for(registry.close(), 2)
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2)
            assert (ws.close_code, ws.close_reason) == (1001, "hub shutting down")
    finally:
        await asyncio.wait_for(runner.cleanup(), 2)


async def test_a_stopping_hub_does_not_wait_for_a_request_that_never_ends() -> None:
    """A watch through the shadow API or the proxy never ends by itself: aiohttp's default 60 s of grace kept a
    SIGTERM'd hub up 40-130 s (the third audit)."""
    import time

    import aiohttp
    from aiohttp import web

    from clusternet_hub import server

    started = asyncio.Event()

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        started.set()
        await asyncio.Event().wait()
        return response

    app = web.Application()
    app.router.add_get("/watch", watch)
    runner = await server.start(app, "127.0.0.1", 0, None)
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{port}/watch"):
        await asyncio.wait_for(started.wait(), 2)
        stopping = time.monotonic()
        await asyncio.wait_for(runner.cleanup(), 10)
        assert time.monotonic() - stopping < 2 * server.HANDLERS_GRACE_SECONDS + 1  # aiohttp waits twice


async def test_closing_without_waiting_holds_the_marks_for_finish_marks() -> None:
    """Re-review s36: the hub waited for its marks before releasing its Lease, so no replica led meanwhile; and
    marks started inside kopf's cleanup handler are cancelled when kopf ends. The close inside it now closes the
    tunnels and holds their marks, which finish_marks writes after the Lease's release, outside kopf (cli.py)."""
    parent = SlowParent()
    parent.go.set()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    await registry.attach(tunnel())
    await asyncio.wait_for(registry.close(wait_marks=False), 0.5)
    assert registry._held is not None and len(registry._held) == 1 and not registry.tunnels
    for task in list(registry._marks.values()):  # kopf cancelling what was started while it ran
        task.cancel()
    await asyncio.wait_for(registry.finish_marks(), 2)
    assert parent.written[-1] == "False" and not registry._marks


async def test_a_replica_whose_read_came_before_the_agent_moved_does_not_mark_its_new_tunnel_down() -> None:
    """Review s47 (audit s36 F4 again): replica A, stopping, read True and heard that no other replica held the
    tunnel; then the agent attached to B. B's True must change the resourceVersion, so that A's False fails (409)
    and A asks again. Both replicas wrote the same True, B found it shown and wrote nothing, and A's False landed
    over B's live tunnel until the agent's next report (3 minutes). With other replicas the message names the
    replica that holds the tunnel."""
    parent = RememberingParent()
    a_peers, b_peers = OtherReplicas("a"), OtherReplicas("b")
    a = SocketRegistry(parent, a_peers)  # type: ignore[arg-type]
    b = SocketRegistry(parent, b_peers)  # type: ignore[arg-type]
    await a.attach(tunnel())
    await a.finish_marks()
    assert parent.conditions[0]["message"] == "agent tunnel connected to hub replica a"
    asked = []

    async def locate(cluster_id: str, fresh: bool = False) -> str | None:
        asked.append(a_peers.holder)
        if len(asked) == 1:  # the agent reaches B just after A heard that it had not
            await b.attach(tunnel())
            await b.finish_marks()
            a_peers.holder = "b"
            return None
        return a_peers.holder

    a_peers.locate = locate  # type: ignore[method-assign]
    await a.close()  # hub shutting down: A's False is read, then written after B's True
    assert asked == [None, "b"] and parent.written == ["True", "True"]
    [condition] = parent.conditions
    assert (condition["status"], condition["message"]) == ("True", "agent tunnel connected to hub replica b")


async def test_a_mark_whose_writer_is_cancelled_is_written_by_finish_marks() -> None:
    """kopf cancels every task started while it ran when it ends, the marks' writers too: the state one was writing
    is kept for finish_marks, which writes it once the Lease is released."""
    parent = SlowParent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    cut = tunnel()
    registry.tunnels[cut.cluster_id] = cut
    await registry.detach(cut, "agent disconnected")
    await asyncio.wait_for(parent.reading.wait(), 1)
    for writer in list(registry._marks.values()):  # kopf ending
        writer.cancel()
    await asyncio.sleep(0)
    assert parent.written == []
    parent.go.set()
    await registry.finish_marks()
    assert parent.written == ["False"]


class Gated(RememberingParent):
    """A PATCH waits for `limiter` (the client's rate limiter), is let through by the task's fence as `Kube` asks it
    at the last moment before sending (clusternet_api.fence), then waits for `answer` (on the wire); both open."""

    def __init__(self) -> None:
        super().__init__()
        self.limiter, self.answer = asyncio.Event(), asyncio.Event()
        self.limiter.set()
        self.answer.set()
        self.waiting, self.sent = asyncio.Event(), asyncio.Event()

    async def patch(self, api: str, kind: str, name: str, body: dict[str, Any], *args: Any, **kw: Any) -> None:
        self.waiting.set()
        await self.limiter.wait()
        fence.check("PATCH")
        self.sent.set()
        await self.answer.wait()
        await super().patch(api, kind, name, body, *args, **kw)


async def cut_then_back(parent: Gated, ready: asyncio.Event) -> SocketRegistry:
    """A tunnel cut, and back once the cut's PATCH reached `ready`; the marks then written."""
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    cut = tunnel()
    registry.tunnels[cut.cluster_id] = cut
    await registry.detach(cut, "agent disconnected")
    await asyncio.wait_for(ready.wait(), 1)
    await registry.attach(tunnel())
    await asyncio.sleep(0.05)
    parent.limiter.set()
    parent.answer.set()
    await registry.finish_marks()
    return registry


async def test_a_write_waiting_for_the_rate_limiter_is_not_sent_once_a_later_state_is_recorded() -> None:
    """In a storm the cuts' PATCHes wait for the client's 50-QPS limiter behind one another while their tunnels come
    back: the superseded one is given up (its token back to the bucket) and the later state is written instead."""
    parent = Gated()
    parent.limiter.clear()
    await cut_then_back(parent, parent.waiting)
    assert parent.written == ["True"], parent.written


async def test_a_write_already_sent_is_awaited_before_the_later_state_is_read() -> None:
    """A PATCH that passed the fence is on the wire: cancelled, it could still land after the later state's read,
    which would then find the later state shown and write nothing over the stale one."""
    parent = Gated()
    parent.answer.clear()
    await cut_then_back(parent, parent.sent)
    assert parent.written == ["False", "True"]
    assert parent.conditions[0]["status"] == "True"


async def test_a_writer_cancelled_mid_request_takes_its_request_along_and_a_failure_stays_in_the_writer(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each request runs in a task of its own (socketmarks._Race): kopf, when it stops, cancels the writers and
    re-raises the exceptions of tasks still running, so a request must neither outlive its writer nor end with an
    exception of its own (review s47)."""

    def requests() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if "_outcome" in repr(t.get_coro())]

    parent = SlowParent()
    registry = SocketRegistry(parent)  # type: ignore[arg-type]
    await registry.attach(tunnel())
    await asyncio.wait_for(parent.reading.wait(), 1)
    assert len(requests()) == 1
    for writer in list(registry._marks.values()):
        writer.cancel()
    await asyncio.sleep(0.01)
    assert requests() == [] and parent.written == []

    class Failing(RememberingParent):
        async def patch(self, *_: Any, **__: Any) -> None:
            raise ApiException(500, "etcd is down")

    failing = Failing()
    registry = SocketRegistry(failing)  # type: ignore[arg-type]
    await registry.attach(tunnel())
    await registry.finish_marks()
    assert [t for t in requests() if t.done() and not t.cancelled() and t.result()[1]] == []
    assert "recording tunnel state of cluster cluster-a failed: HTTP 500: etcd is down" in caplog.text


async def test_an_agent_gone_before_the_handshakes_answer_is_one_line_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """At 2,000 clusters agents gave handshakes up (10 s) that the saturated hub went on to answer: writing the 101
    to the closing connection raised in the handler, and aiohttp logged an ERROR with a traceback for each."""
    import aiohttp
    from aiohttp import web


    caplog.set_level("INFO", logger="clusternet_hub.sockets")
    registry = SocketRegistry(SlowParent())  # type: ignore[arg-type]

    async def closing(self: web.WebSocketResponse, request: web.Request) -> None:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    monkeypatch.setattr(web.WebSocketResponse, "prepare", closing)

    runner, port = await serve_tunnels(registry)
    try:
        async with aiohttp.ClientSession() as client, client.get(
                f"http://127.0.0.1:{port}/tunnel/cluster-a",
                headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as answer:
            assert answer.status == 503
    finally:
        await asyncio.wait_for(runner.cleanup(), 2)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    said = [r.getMessage() for r in caplog.records if "gone before the handshake's answer" in r.getMessage()]
    assert len(said) == 1 and "cluster-a" in said[0]
    assert registry.get("cluster-a") is None
