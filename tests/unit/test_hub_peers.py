"""Peer streams between hub replicas (clusternet_hub.peers): a real tunnel session pair behind replica A's peer
server over TLS, and replica B's side dialling it; no API server (Leases are exercised in test_hub_ha)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import ssl
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from clusternet_api.pki import issue_cert, make_ca
from clusternet_api.tlsfiles import load_cert_chain_pem
from clusternet_api.tunnel import StreamOpenError
from clusternet_api.tunnel.http import StreamHttp, read_body
from clusternet_hub import peers as peers_module
from clusternet_hub import sockets
from clusternet_hub.peers import PeerConfig, Peers
from clusternet_hub.peerserver import peer_app
from clusternet_hub.peerstreams import HEAD_LIMIT, NotHere, Peer, client_context, dial
from clusternet_hub.sockets import SocketRegistry, Tunnel
from tests.unit.test_tunnel_mux import echo, raw_session, session_pair, tcp_server

CLUSTER = "c-1"
TOKEN = "s3cret"


def tls_pair() -> tuple[ssl.SSLContext, bytes]:
    """(server context, trust PEM) for a replica's certificate that does not name 127.0.0.1, as a pod IP is not."""
    ca, key, cert = make_ca("hub-ca")
    pair = issue_cert(key, cert, "clusternet-hub", dns_names=["clusternet-hub.clusternet-system.svc"], server=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_cert_chain_pem(server, pair.cert_pem, pair.key_pem)
    return server, ca.cert_pem


def peers_of(token: str, trust: bytes) -> Peers:
    peers = Peers(None, PeerConfig(0, "127.0.0.1", token), lambda: trust)  # type: ignore[arg-type]
    peers.token = token
    return peers


@contextlib.asynccontextmanager
async def replica_a(tunnels: dict[str, Tunnel], registry: SocketRegistry | None = None,
                    tls: tuple[ssl.SSLContext, bytes] | None = None,
                    a: Peers | None = None) -> AsyncIterator[tuple[Peer, bytes]]:
    """Replica A's peer server holding `tunnels` (those of `registry` when given), with certificate `tls` (a new
    one by default) and peer state `a`: (the Peer to dial, the trust PEM)."""
    server_tls, trust = tls or tls_pair()
    a = a or peers_of(TOKEN, trust)

    async def open_local(cluster_id: str, address: str) -> object:
        return await tunnels[cluster_id].open_stream(address)

    if registry is not None:
        tunnels = registry.tunnels
    runner = web.AppRunner(peer_app(a, lambda c: c in tunnels, open_local,  # type: ignore[arg-type]
                                    registry.verify if registry is not None else None))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    try:
        yield Peer("a", "127.0.0.1", runner.addresses[0][1]), trust
    finally:
        await runner.cleanup()


async def test_a_peer_stream_reaches_the_tunnel_of_another_replica() -> None:
    async with tcp_server(echo) as target, session_pair() as (hub_session, _), \
            replica_a({CLUSTER: Tunnel(CLUSTER, hub_session, "ns", "mc")}) as (peer, trust):
        stream = await dial(peer, CLUSTER, target, TOKEN, client_context(trust))
        await stream.write(b"hello through two hubs")
        got = b""
        while len(got) < 22:
            got += await stream.read()
        assert got == b"hello through two hubs" and stream.bytes_out == 22
        stream.close()
        assert stream.done


async def test_wrong_token_unknown_cluster_and_untrusted_certificate_are_refused() -> None:
    async with session_pair() as (hub_session, _), \
            replica_a({CLUSTER: Tunnel(CLUSTER, hub_session, "ns", "mc")}) as (peer, trust):
        with pytest.raises(StreamOpenError, match="401"):
            await dial(peer, CLUSTER, "x:1", "wrong", client_context(trust))
        with pytest.raises(NotHere):
            await dial(peer, "other", "x:1", TOKEN, client_context(trust))
        _, other_trust = tls_pair()  # another hub's CA: the certificate does not verify
        with pytest.raises(StreamOpenError, match="unreachable"):
            await dial(peer, CLUSTER, "x:1", TOKEN, client_context(other_trust))


async def test_http_through_a_peer_keeps_its_connection_for_the_next_request() -> None:
    """Replica B's StreamHttp over peer streams: two requests, one TLS connection to A (keep-alive)."""
    async def child(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", child)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    address = f"127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with session_pair() as (hub_session, _):
            tunnel = Tunnel(CLUSTER, hub_session, "ns", "mc")
            async with replica_a({CLUSTER: tunnel}) as (peer, trust):
                b = peers_of(TOKEN, trust)
                b.live = {peer.id: peer}
                b.located[CLUSTER] = peer
                http = StreamHttp(lambda addr: b.open_stream(CLUSTER, addr))
                for path in ("/api", "/apis"):
                    response = await http.request(address, "GET", path, [("Host", "child")], None)
                    assert response.status == 200 and path.encode() in await read_body(response)
                assert hub_session.streams_opened == 1  # the second request reused the first peer stream
                http.close()
    finally:
        await runner.cleanup()


async def test_a_dead_tunnel_is_dropped_when_its_agent_connects_to_another_replica(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fourth audit froze an agent leader: its standby connected to replica B, and replica A kept preferring
    its dead tunnel until the keepalive gave up (15 s of 503s for requests landing on A). B now tells A, which
    probes its own tunnel and drops it if its agent does not answer; a live one stays."""
    monkeypatch.setattr(sockets, "PROBE_SECONDS", 0.3)
    async with session_pair(allow=lambda _: False) as (live_session, _), raw_session() as (frozen_session, _sent):
        registry = SocketRegistry(None)  # type: ignore[arg-type]
        registry.tunnels.update({"live": Tunnel("live", live_session, "ns", "mc"),
                                 CLUSTER: Tunnel(CLUSTER, frozen_session, "ns", "mc")})
        async with replica_a({}, registry) as (peer, trust):
            b = peers_of(TOKEN, trust)
            b.live = {peer.id: peer}
            async with aiohttp.ClientSession() as b._session:
                await b.announce(CLUSTER)
                await b.announce("live")
            for _ in range(50):
                if CLUSTER not in registry.tunnels:
                    break
                await asyncio.sleep(0.05)
            assert CLUSTER not in registry.tunnels and frozen_session.closed
            await asyncio.sleep(0.4)
            assert "live" in registry.tunnels and not live_session.closed


async def test_a_peer_that_lost_the_tunnel_is_forgotten() -> None:
    async with replica_a({}) as (peer, trust):
        b = peers_of(TOKEN, trust)
        b.live = {peer.id: peer}
        b.located[CLUSTER] = peer  # remembered from before the agent moved
        b._listed = asyncio.get_running_loop().time() + 1e9  # no re-list (there is no API server here)
        async with aiohttp.ClientSession() as b._session:
            with pytest.raises(StreamOpenError, match=r"down \(on every hub replica\)"):
                await b.open_stream(CLUSTER, "x:1")  # asked again at once: A says it has none, nor does anyone
            assert CLUSTER not in b.located
            assert await b.locate(CLUSTER) is None  # asked again: A says it has none
            assert await b.holds(Peer("gone", "127.0.0.1", 1), CLUSTER) is False
            assert "gone" in b._down  # a replica that does not answer is skipped for a while


@pytest.mark.parametrize("remembered", ["moved", "gone"])
async def test_a_request_after_the_tunnel_moved_reaches_its_new_replica(remembered: str) -> None:
    """Audit s36 F2: an agent's tunnel moved from replica X to Y (a rolling update of the hub, any reconnect), or
    X is gone (killed, its Lease not expired yet). Replica B, still remembering X, answered 503 once per cluster;
    it now asks afresh and reaches the tunnel through Y."""
    tls = tls_pair()
    async with tcp_server(echo) as target, session_pair() as (hub_session, _), replica_a({}, tls=tls) as (x, trust), \
            replica_a({CLUSTER: Tunnel(CLUSTER, hub_session, "ns", "mc")}, tls=tls) as (y, _):
        x = dataclasses.replace(x, id="x") if remembered == "moved" else Peer("x", "127.0.0.1", 1)  # nothing there
        y = dataclasses.replace(y, id="y")
        b = peers_of(TOKEN, trust)
        b.live = {"x": x, "y": y}
        b.located[CLUSTER] = x  # where the tunnel was before its agent reconnected to Y
        async with aiohttp.ClientSession() as b._session:
            stream = await b.open_stream(CLUSTER, target)
            await stream.write(b"ping")
            assert await stream.read() == b"ping"
            stream.close()
        assert b.located[CLUSTER] == y


async def test_a_replica_told_of_a_move_notes_where_the_tunnel_went() -> None:
    """Audit s36 F2: the replica with the new tunnel announces it, and the others kept dialling the old one."""
    told = peers_of(TOKEN, b"")
    async with replica_a({}, a=told) as (peer, trust):
        b = peers_of(TOKEN, trust)
        b.live = {peer.id: peer}
        old = Peer("old", "10.0.0.9", 8123)
        told.live = {"old": old, b.me.id: b.me}
        told.located = {CLUSTER: old, "other": old}
        async with aiohttp.ClientSession() as b._session:
            await b.announce(CLUSTER)
            assert told.located == {CLUSTER: b.me, "other": old}
            del told.live[b.me.id]  # an announcer not known there yet: where the tunnel was is forgotten
            told.located[CLUSTER] = old
            await b.announce(CLUSTER)
            assert told.located == {"other": old}


async def test_a_replica_gone_without_a_word_holds_up_no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit s36 F3: a replica killed or cut off with its node stays live until its Lease expires (30-40 s).
    Every lookup waited for its answer (DIAL_TIMEOUT) although another replica had answered yes; and a stream
    through it, remembered, timed out without marking it down, so the lookup that follows asked it again."""
    monkeypatch.setattr("clusternet_hub.peerstreams.DIAL_TIMEOUT", 0.3)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read()  # never answers, not even the TLS handshake
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server, tcp_server(echo) as target, session_pair() as (hub_session, _), \
            replica_a({CLUSTER: Tunnel(CLUSTER, hub_session, "ns", "mc")}) as (y, trust):
        gone = Peer("gone", "127.0.0.1", server.sockets[0].getsockname()[1])
        b = peers_of(TOKEN, trust)
        b.live = {"gone": gone, "y": y}
        async with aiohttp.ClientSession() as b._session:
            assert await asyncio.wait_for(b.locate(CLUSTER), 1) == y
            asking = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "Peers.holds"]
            assert asking == []  # the question to the silent replica was not left running
            b.located[CLUSTER] = gone  # remembered from before it went
            stream = await asyncio.wait_for(b.open_stream(CLUSTER, target), 2)
            stream.close()
            assert "gone" in b._down  # its failed dial skips it for a while, as a failed question does


@pytest.mark.parametrize("answer", [b"", b"x" * (HEAD_LIMIT * 4 + 1)], ids=["silent", "no-head-in-sight"])
async def test_a_dial_whose_upgrade_fails_closes_its_connection(monkeypatch: pytest.MonkeyPatch,
                                                               answer: bytes) -> None:
    """A replica that accepts the connection but never answers the upgrade (frozen, overloaded), or something
    else at its address that answers no HTTP: the dial fails, and its connection is closed, not left open."""
    monkeypatch.setattr("clusternet_hub.peerstreams.DIAL_TIMEOUT", 0.3)
    server_tls, trust = tls_pair()
    closed = asyncio.Event()

    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer:
            writer.write(answer)
        with contextlib.suppress(OSError):
            while await reader.read(1024):
                pass
        closed.set()  # the dialler closed its side
        writer.close()

    server = await asyncio.start_server(replica, "127.0.0.1", 0, ssl=server_tls)
    try:
        peer = Peer("a", "127.0.0.1", server.sockets[0].getsockname()[1])
        with pytest.raises(StreamOpenError, match="unreachable") as failed:
            await dial(peer, CLUSTER, "x:1", TOKEN, client_context(trust))
        kept = failed.value  # as a log record or a failed task holds it: the socket may not wait for its collection
        async with asyncio.timeout(5):
            await closed.wait()
        assert kept is not None
    finally:
        server.close()


def peer_lease(peer: Peer, version: str, labelled: bool = True) -> dict[str, object]:
    identity = json.dumps({"id": peer.id, "host": peer.host, "port": peer.port})
    return {"metadata": {"name": f"clusternet-hub-peer-{peer.id}", "resourceVersion": version,
                         "labels": {"clusternet.io/hub-peer": "true"} if labelled else {}},
            "spec": {"holderIdentity": identity}}


async def test_a_replica_is_known_from_its_lease_event_at_once_and_forgotten_when_it_is_deleted() -> None:
    """The watch, not the next list (10 s later), tells a replica about a new one: with a list, a cluster whose
    tunnel landed on the new replica was reported down meanwhile (test_hub_ha, half the runs)."""
    b = peers_of(TOKEN, b"")
    a = Peer("a", "10.0.0.1", 8123)
    await b._observe_event({"type": "ADDED", "object": peer_lease(a, "1")})
    assert b.live == {"a": a}
    await b._observe_event({"type": "ADDED", "object": peer_lease(b.me, "2")})  # our own Lease
    await b._observe_event({"type": "MODIFIED", "object": peer_lease(Peer("x", "h", 1), "3", labelled=False)})
    assert b.live == {"a": a}
    await b._observe_all([peer_lease(a, "1")])  # the watch's resync, within EXPIRE_SECONDS: still live
    assert b.live == {"a": a}
    await b._observe_event({"type": "DELETED", "object": peer_lease(a, "4")})
    assert b.live == {} and b._seen == {}


async def test_while_the_parent_takes_no_renewal_the_cached_leases_expire_nobody() -> None:
    """A parent outage stops every replica's renewals and our watch: its cache is stale, not the peers dead."""
    b = peers_of(TOKEN, b"")
    a = Peer("a", "10.0.0.1", 8123)
    b._renewed = time.monotonic()
    await b._observe_all([peer_lease(a, "1")])
    b._seen = {name: (version, seen - 3600) for name, (version, seen) in b._seen.items()}  # unchanged for an hour
    b._renewed = time.monotonic() - 60  # our own renewals failing for a minute
    await b._observe_cached([peer_lease(a, "1")])
    assert b.live == {"a": a}
    b._renewed = time.monotonic()  # the parent is back: a's Lease counts as seen anew, not as expired
    await b._observe_cached([peer_lease(a, "1")])
    assert b.live == {"a": a}


async def test_what_was_noted_about_replicas_that_are_gone_is_forgotten() -> None:
    """A replica gets a new id at every start: which ones failed to answer, and which held a tunnel, must not be
    kept for every replica ever seen (a rolling update adds one per replica)."""
    b = peers_of(TOKEN, b"")
    a, restarted = Peer("a", "10.0.0.1", 8123), Peer("old", "10.0.0.2", 8123)
    for event in ("ADDED", "DELETED"):
        await b._observe_event({"type": "ADDED", "object": peer_lease(a, "1")})
        await b._observe_event({"type": "ADDED", "object": peer_lease(restarted, "2")})
        b._down = {"a": time.monotonic(), "old": time.monotonic()}
        b.located = {"c-a": a, "c-old": restarted}
        if event == "DELETED":  # the replica deleted its Lease as it stopped
            await b._observe_event({"type": "DELETED", "object": peer_lease(restarted, "3")})
        else:  # killed: its Lease is no longer listed (expired and deleted by a reader)
            await b._observe_all([peer_lease(a, "1")])
        assert list(b._down) == ["a"] and b.located == {"c-a": a}, event


async def test_a_peer_token_mismatch_is_logged_on_both_sides_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    """Fourth audit (P1): a replica started with another --peer-token answered 503 "tunnel is down" for clusters
    whose tunnels were on the others, and no replica said why."""
    async with session_pair() as (hub_session, _), \
            replica_a({CLUSTER: Tunnel(CLUSTER, hub_session, "ns", "mc")}) as (peer, trust):
        b = peers_of("another-token", trust)
        async with aiohttp.ClientSession() as b._session:
            assert await b.holds(peer, CLUSTER) is False
            assert await b.holds(peer, CLUSTER) is False
    ours = [r.message for r in caplog.records if "refuses this replica's peer token" in r.message]
    theirs = [r.message for r in caplog.records if "wrong or missing peer token" in r.message]
    assert len(ours) == 1 and len(theirs) == 1, caplog.text


async def test_a_live_peer_that_does_not_answer_is_said_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    """Audit 7: a replica advertising an address it did not listen on gave 503s for clusters whose tunnels were
    there, with nothing above debug in either log."""
    b = peers_of(TOKEN, b"")
    silent = Peer("a", "127.0.0.1", 9)  # nothing listens there
    async with aiohttp.ClientSession() as b._session:
        assert await b.holds(silent, CLUSTER) is False
        assert await b.holds(silent, CLUSTER) is False
    said = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING" and "--peer-advertise-address" in said[0].getMessage()


async def test_a_failed_look_for_new_replicas_is_not_here_not_an_error() -> None:
    """Review 6: the re-list of peer Leases caught only API errors, so a dropped connection reached the proxy
    handler as a 500 instead of the 503 of a cluster no replica holds."""
    b = peers_of(TOKEN, b"")

    async def dropped() -> None:
        raise aiohttp.ServerDisconnectedError()

    b._list_peers = dropped  # type: ignore[method-assign]
    async with aiohttp.ClientSession() as b._session:
        assert await b.locate(CLUSTER) is None


async def test_a_parent_out_of_reach_makes_an_unknown_cluster_disconnected_not_a_500() -> None:
    """Audit s36 F8: a non-leading replica asks the parent whether a cluster without a tunnel exists; only an
    ApiException was caught, so a refused connection escaped the proxy as a 500 with a traceback."""

    class Unreachable:
        async def list_metadata(self, *args: object, **kwargs: object) -> list[object]:
            raise aiohttp.ClientConnectionError("Cannot connect to host parent:6443")

    assert await SocketRegistry(Unreachable()).cluster_exists("c-1")  # type: ignore[arg-type]


async def test_a_hung_peer_lease_renewal_is_given_up_and_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit s36 F9: a renewal hung on a dead keep-alive connection waited the client's 120 s, while the peers
    expire a Lease unrenewed for 30 s: a live replica was forgotten, its clusters 503 on the others."""

    class Idle:
        def __init__(self, *args: object) -> None:
            pass

        async def run(self) -> None:
            await asyncio.Event().wait()

    monkeypatch.setattr(peers_module, "RENEW_SECONDS", 0.1)
    monkeypatch.setattr(peers_module, "ListWatch", Idle)
    peers = peers_of(TOKEN, b"")
    attempts: list[float] = []

    async def hanging(list_peers: bool = True) -> None:
        attempts.append(time.monotonic())
        await asyncio.Event().wait()

    peers.refresh = hanging  # type: ignore[method-assign]
    running = asyncio.create_task(peers.run())
    await asyncio.sleep(0.65)
    running.cancel()
    await asyncio.wait({running})
    assert len(attempts) >= 2


async def test_a_stopping_replica_does_not_wait_on_a_parent_out_of_reach_for_its_lease(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit s36 F5: the peer Lease's delete at exit waited the client's 120 s on a parent that did not answer."""
    monkeypatch.setattr(peers_module, "RENEW_SECONDS", 0.2)

    class Hanging:
        async def delete(self, *args: object, **kwargs: object) -> None:
            await asyncio.Event().wait()

    peers = peers_of(TOKEN, b"")
    peers.kube = Hanging()  # type: ignore[assignment]
    await asyncio.wait_for(peers.close(), 2)


async def test_every_answer_of_a_lookup_is_read_a_failure_too(caplog: pytest.LogCaptureFixture) -> None:
    """CI, test_hub_ha: with the peers' session closed, each question failed; the first failure was raised and the
    others were left unread ("Task exception was never retrieved", with a traceback in the hub's log)."""
    peers = peers_of(TOKEN, b"")
    peers.live = {p.id: p for p in (Peer("x", "127.0.0.1", 1), Peer("y", "127.0.0.1", 2), Peer("z", "127.0.0.1", 3))}

    async def closed(peer: Peer, cluster_id: str) -> bool:
        raise RuntimeError("Session is closed")

    peers.holds = closed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await peers._ask(CLUSTER)

    async def one_says_yes(peer: Peer, cluster_id: str) -> bool:
        if peer.id == "x":
            raise RuntimeError("Session is closed")
        return peer.id == "z"

    peers.holds = one_says_yes  # type: ignore[method-assign]
    assert (await peers._ask(CLUSTER)).id == "z"  # type: ignore[union-attr]
    await asyncio.sleep(0)
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
