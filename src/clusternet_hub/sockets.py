"""Agents' tunnels on the hub: who may connect, the live sessions, and how requests get into them.

An agent dials `wss://.../apis/proxies.clusternet.io/v1alpha1/sockets/<clusterID>` with its parent-side
ServiceAccount token. The hub authorises the *token*, not the URL: the token's ServiceAccount must be the
agent account of the dedicated namespace whose ManagedCluster carries that cluster ID, so one agent can
neither open nor hijack another cluster's socket.

Everything the hub sends to a child goes as HTTP/1.1 on tunnel streams (clusternet_api.tunnel.http): the
proxy's requests and upgrades through `Tunnel.http`, the deployer's pushes through a `Kube` built with
`SocketRegistry.opener`. No loopback listener: it cost two socket hops and a second HTTP stack per request.
With several hub replicas, a cluster whose tunnel another replica holds is reached through that replica
(clusternet_hub.peers): `http_for` and `opener` hide which. The tunnels' SocketConnected marks on their
ManagedClusters are written by the registry's base, socketmarks.SocketMarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from clusternet_api import known
from clusternet_api.kube import ApiException, Kube
from clusternet_api.logs import error_text
from clusternet_api.sharedrun import SharedRuns
from clusternet_api.tunnel import ByteStream, FrameError, Session, Stream, StreamOpenError
from clusternet_api.tunnel.http import StreamHttp, StreamOpener
from clusternet_hub import metrics
from clusternet_hub.socketmarks import SocketMarks

if TYPE_CHECKING:
    from clusternet_hub.peers import Peers

log = logging.getLogger(__name__)

APISERVER_ADDRESS = known.TUNNEL_APISERVER_ADDRESS
AGENT_SA_PREFIX = "system:serviceaccount:"
MC_API = known.CLUSTERS_API_VERSION
REVIEW_TTL = 60.0  # seconds a TokenReview's answer is reused: the apiserver's own token cache keeps 10 s-1 min
OWNER_TTL = REVIEW_TTL  # and a cluster's ownership check, so neither outlives the other
OWNER_LIST_INTERVAL = 10.0  # seconds between two LISTs of every ManagedCluster for tunnel checks (at most)
CLOSE_REPLY_SECONDS = 2.0  # how long closing a tunnel waits for the agent's close frame (it answers at once)
PROBE_SECONDS = 3.0  # a live agent refuses the probe OPEN in one round trip (ms); a frozen one never does
# TokenReviews in flight at once. The hub's client serves its requests in arrival order through one rate limiter
# (--kube-api-qps, 50 by default): a reconnect storm of 1,000 agents to a replica whose review cache is empty
# (it just restarted) queued 1,000 reviews, a 20-s queue in front of everything else the hub asks (review 6),
# and every handshake waited behind all the others. 20 at once keep that queue under 0.4 s at 50 QPS; at a few
# ms per review they still review hundreds a second, more than the limiter lets through.
REVIEWS_AT_ONCE = 20


class Unauthorized(Exception):
    """The caller may not hold this socket; `status` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Tunnel:
    cluster_id: str
    session: Session
    namespace: str
    managed_cluster: str
    connected_at: float = field(default_factory=time.monotonic)
    http: StreamHttp = field(init=False)
    bytes_counted: dict[str, int] = field(default_factory=dict)  # direction -> bytes already in the metrics
    hangup: Callable[[str], Awaitable[object]] | None = None  # closes the websocket, saying why

    def __post_init__(self) -> None:
        self.http = StreamHttp(self.open_stream)

    async def open_stream(self, address: str) -> Stream:
        """A new stream to `address` in the child (counted in the socket metrics)."""
        stream = await self.session.open_stream(address, timeout=10)
        metrics.socket_streams.inc()
        return stream

    def count_bytes(self) -> None:
        """Add the stream bytes carried since the last count to the socket metrics (at scrapes and close)."""
        for direction, total in (("in", self.session.bytes_in), ("out", self.session.bytes_out)):
            metrics.socket_bytes.labels(direction).inc(total - self.bytes_counted.get(direction, 0))
            self.bytes_counted[direction] = total

    async def close(self, reason: str) -> None:
        """End the streams, then the websocket itself: with the streams alone, the agent learnt of a hub that
        stopped or replaced its tunnel only from its keepalive, 20-40 s later (the third audit), and the hub's
        exit waited for the handlers that long."""
        self.http.close()
        await self.session.close(reason)
        self.count_bytes()
        if self.hangup is not None:
            with contextlib.suppress(Exception):
                await self.hangup(reason)


class SocketRegistry(SocketMarks):
    """Live tunnels by cluster ID, plus cached token authorisation; their SocketConnected marks: SocketMarks."""

    def __init__(self, kube: Kube, peers: Peers | None = None) -> None:
        super().__init__()
        self.kube = kube
        self.peers = peers  # the other hub replicas, when this one runs with --peer-port
        self.tunnels: dict[str, Tunnel] = {}
        self._remote: dict[str, StreamHttp] = {}  # cluster ID -> keep-alive HTTP through the replica with its tunnel
        self._reviews: dict[str, tuple[float, str]] = {}
        self._reviewing = asyncio.Semaphore(REVIEWS_AT_ONCE)
        self._owners: dict[tuple[str, str], tuple[float, str]] = {}  # (namespace, cluster ID) -> (expiry, MC name)
        self._owner_lists: SharedRuns[str, None] = SharedRuns()  # the LIST of every ManagedCluster in flight
        self._owners_listed_at = -OWNER_LIST_INTERVAL  # monotonic time that LIST was last answered
        self.managed_cluster_of: Callable[[str], tuple[str, str] | None] = lambda _: None
        """The leader's watch cache of ManagedClusters by cluster ID (set by the hub): tunnel checks without a LIST."""
        self._pruned = time.monotonic()  # when expired answers were last dropped from _reviews and _owners
        self._announcing: set[asyncio.Task[None]] = set()  # telling the peers of a new tunnel (attach)

    def get(self, cluster_id: str) -> Tunnel | None:
        """This replica's own live tunnel of the cluster."""
        tunnel = self.tunnels.get(cluster_id)
        return tunnel if tunnel and not tunnel.session.closed else None

    def has_tunnel(self, cluster_id: str) -> bool:
        return self.get(cluster_id) is not None

    async def open_local(self, cluster_id: str, address: str) -> Stream:
        tunnel = self.get(cluster_id)
        if tunnel is None:
            raise StreamOpenError(f"the tunnel of cluster {cluster_id} is down")
        return await tunnel.open_stream(address)

    async def cluster_exists(self, cluster_id: str) -> bool:
        """Whether a ManagedCluster carries this cluster ID, asked of the parent: for a replica that is not
        leading, whose controllers (and their cache of clusters) do not run."""
        try:
            found = await self.kube.list_metadata(MC_API, "ManagedCluster",
                                                  label_selector=f"{known.LABEL_CLUSTER_ID}={cluster_id}")
        except Exception as e:  # cannot tell: say "disconnected" rather than "no such cluster"
            if not isinstance(e, ApiException):  # the parent out of reach: a 500 with a traceback (audit s36 F8)
                log.info("could not ask the parent whether cluster %s exists: %s", cluster_id, error_text(e))
            return True
        return bool(found)

    async def reachable(self, cluster_id: str) -> bool:
        """Whether a tunnel of the cluster is up, here or on another replica."""
        return self.get(cluster_id) is not None or (
            self.peers is not None and await self.peers.locate(cluster_id) is not None)

    async def http_for(self, cluster_id: str) -> StreamHttp | None:
        """Keep-alive HTTP into the cluster: through our tunnel, else through the replica that holds one."""
        tunnel = self.get(cluster_id)
        if tunnel is not None:
            return tunnel.http
        if self.peers is None or await self.peers.locate(cluster_id) is None:
            return None
        remote = self._remote.get(cluster_id)
        if remote is None:
            peers = self.peers
            remote = self._remote[cluster_id] = StreamHttp(lambda address: peers.open_stream(cluster_id, address))
        return remote

    def opener(self, cluster_id: str, address: str) -> StreamOpener:
        """Opens streams to `address` through whichever tunnel of `cluster_id` is live at the time, ours or a
        peer replica's.

        A client built on it (the deployer's `Kube` for pushes) outlives reconnects: its idle streams die
        with the old tunnel, and its next request opens a stream on the new one.
        """

        async def open_stream() -> ByteStream:
            if self.get(cluster_id) is None and self.peers is not None:
                return await self.peers.open_stream(cluster_id, address)
            return await self.open_local(cluster_id, address)

        return open_stream

    async def _username_for_token(self, token: str) -> str:
        """The token's user, from a TokenReview (at most REVIEWS_AT_ONCE at a time) or its answer within
        REVIEW_TTL."""
        key = hashlib.sha256(token.encode()).hexdigest()
        if (cached := self._cached_review(key)) is not None:
            return cached
        async with self._reviewing:
            if (cached := self._cached_review(key)) is not None:  # the same token reviewed while we waited
                return cached
            review = await self.kube.create({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                             "spec": {"token": token}})
        status = review.get("status") or {}
        if not status.get("authenticated"):
            raise Unauthorized(401, "the tunnel token was not accepted by the parent cluster")
        username = str(status["user"]["username"])
        self._prune()
        self._reviews[key] = (time.monotonic() + REVIEW_TTL, username)
        return username

    def _cached_review(self, key: str) -> str | None:
        cached = self._reviews.get(key)
        return cached[1] if cached and cached[0] > time.monotonic() else None

    def _prune(self) -> None:
        """Drop the expired answers, at most once a REVIEW_TTL. Only a new answer replaced an old one: every token
        an agent ever held (a new one at each refresh) and every cluster ever checked stayed for the hub's life."""
        now = time.monotonic()
        if now - self._pruned < REVIEW_TTL:
            return
        self._pruned = now
        self._reviews = {key: answer for key, answer in self._reviews.items() if answer[0] > now}
        self._owners = {key: owner for key, owner in self._owners.items() if owner[0] > now}

    async def authorize(self, cluster_id: str, *, token: str | None, username: str | None) -> tuple[str, str]:
        """(namespace, ManagedCluster name) when this identity is the agent of `cluster_id`."""
        if username is None:
            if not token:
                raise Unauthorized(401, "the tunnel needs the agent's bearer token")
            username = await self._username_for_token(token)
        if not username.startswith(AGENT_SA_PREFIX):
            raise Unauthorized(403, f"{username} is not a cluster agent's ServiceAccount")
        namespace, _, sa = username[len(AGENT_SA_PREFIX):].partition(":")
        if sa != "clusternet-agent":
            raise Unauthorized(403, f"{username} is not a cluster agent's ServiceAccount")
        return namespace, await self._owned_by(namespace, cluster_id, username)

    async def _owned_by(self, namespace: str, cluster_id: str, username: str) -> str:
        """The name of the ManagedCluster in `namespace` that carries `cluster_id` (403 when none).

        Answered from the leader's watch cache, else from a check made within OWNER_TTL, else by one LIST of every
        ManagedCluster that the handshakes waiting meanwhile share (_list_owners), then, for a cluster still not
        found, a LIST of its own (a registration since). A registration burst or a reconnect storm of a thousand
        agents otherwise queued a LIST per tunnel behind the approvals in the client's rate limiter, and
        handshakes timed out (bench/scale.py); a replica that does not lead has no watch cache, and took back the
        tunnels of 100 clusters after a restart with 221 LISTs. Only positive answers are kept, for as long as a
        TokenReview's."""
        cached = self.managed_cluster_of(cluster_id)
        if cached is not None and cached[0] == namespace:
            return cached[1]
        key = (namespace, cluster_id)
        name = self._cached_owner(key) or await self._list_owners(key) or await self._list_owner(key)
        if name is None:
            raise Unauthorized(403, f"{username} may not open the socket of cluster {cluster_id}")
        return name

    def _cached_owner(self, key: tuple[str, str]) -> str | None:
        owner = self._owners.get(key)
        return owner[1] if owner and owner[0] > time.monotonic() else None

    async def _list_owners(self, key: tuple[str, str]) -> str | None:
        """Every ManagedCluster's owner from one LIST, shared by the handshakes that wait for it; not again within
        OWNER_LIST_INTERVAL (an agent whose cluster was removed, reconnecting, would have each of its attempts
        read every ManagedCluster)."""
        if time.monotonic() - self._owners_listed_at >= OWNER_LIST_INTERVAL or "all" in self._owner_lists:
            with contextlib.suppress(Unauthorized):  # it failed: the cluster's own LIST decides
                await self._owner_lists.run("all", self._list_all_owners, "list ManagedCluster owners")
        return self._cached_owner(key)

    async def _list_all_owners(self) -> None:
        self._owners_listed_at = time.monotonic()  # an attempt that fails counts too: no LIST per handshake then
        found = await self._owner_list(None, known.LABEL_CLUSTER_ID)
        self._prune()
        expiry = time.monotonic() + OWNER_TTL
        for mc in found:
            cluster_id = (mc["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID)
            if cluster_id:
                self._owners[(mc["metadata"]["namespace"], cluster_id)] = (expiry, str(mc["metadata"]["name"]))

    async def _list_owner(self, key: tuple[str, str]) -> str | None:
        """The one cluster's owner, asked on its own: registered after the shared LIST was answered."""
        found = await self._owner_list(key[0], f"{known.LABEL_CLUSTER_ID}={key[1]}")
        if not found:
            return None
        name = str(found[0]["metadata"]["name"])
        self._prune()
        self._owners[key] = (time.monotonic() + OWNER_TTL, name)
        return name

    async def _owner_list(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        try:
            return await self.kube.list_metadata(MC_API, "ManagedCluster", namespace=namespace,
                                                 label_selector=selector)
        except ApiException as e:
            raise Unauthorized(503, f"cannot check the cluster's ownership (HTTP {e.status})") from e

    async def attach(self, tunnel: Tunnel) -> None:
        """Register the tunnel and record it, tell the other replicas (a dead tunnel of the cluster there is
        dropped: verify), then close the one it replaces here: recorded after that await, the record was lost
        when the handler was cancelled meanwhile (the agent gone again at once)."""
        old = self.tunnels.get(tunnel.cluster_id)
        self.tunnels[tunnel.cluster_id] = tunnel
        metrics.socket_connections.set(len(self.tunnels))
        metrics.socket_reconnects.inc()
        self._record(tunnel, True, self.connected_message())
        if self.peers is not None and self.peers.live:
            announcing = asyncio.create_task(self.peers.announce(tunnel.cluster_id))
            self._announcing.add(announcing)
            announcing.add_done_callback(self._announcing.discard)
        if old is not None:
            await old.close("replaced by a new connection from the agent")

    async def verify(self, cluster_id: str) -> None:
        """The cluster's agent connected to another replica: keep our tunnel of it only if its agent still
        answers (within PROBE_SECONDS). A live one stays (two agents without leader election each keep theirs);
        a frozen or cut-off one is closed now rather than when the keepalive gives up (up to 30 s), so that
        requests landing here go to the live tunnel through the peer."""
        tunnel = self.get(cluster_id)
        if tunnel is None or await tunnel.session.answers(PROBE_SECONDS):
            return
        if self.tunnels.get(cluster_id) is not tunnel:
            return  # replaced here meanwhile
        log.info("cluster %s connected its tunnel to another hub replica and its tunnel here does not answer: "
                 "closing it", cluster_id)
        await self.detach(tunnel, "the agent connected to another hub replica; this tunnel no longer answers")

    async def detach(self, tunnel: Tunnel, reason: str) -> None:
        """Record the tunnel's end, then end its streams at once (their requests fail now, not when they time
        out). Recorded first: the websocket's handler may be cancelled while it closes the streams, and a
        record left for after that await was lost (SocketConnected stayed True after an agent's clean stop)."""
        current = self.tunnels.get(tunnel.cluster_id) is tunnel
        if current:
            del self.tunnels[tunnel.cluster_id]
            self._record(tunnel, False, reason)
        metrics.socket_connections.set(len(self.tunnels))
        await tunnel.close(reason)

    def count_bytes(self) -> None:
        for tunnel in self.tunnels.values():
            tunnel.count_bytes()

    async def close(self, wait_marks: bool = True) -> None:
        """Close every tunnel, and (`wait_marks`) write their SocketConnected marks as finish_marks does; without,
        the marks are held until finish_marks."""
        for remote in self._remote.values():
            remote.close()
        if not wait_marks and self._held is None:
            self._held = []
        await asyncio.gather(*(self.detach(tunnel, "hub shutting down") for tunnel in list(self.tunnels.values())))
        if wait_marks:
            await self.finish_marks()


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


async def tunnel_endpoint(request: web.Request, registry: SocketRegistry, front_proxy_user: str | None) -> Any:
    """Accept an agent's websocket after authorising its token for this cluster ID."""
    cluster_id = request.match_info["cluster_id"]
    try:
        namespace, mc_name = await registry.authorize(cluster_id, token=bearer(request), username=front_proxy_user)
    except Unauthorized as e:
        log.warning("refused tunnel for cluster %s: %s", cluster_id, e)
        return web.json_response(status_body(e.status, str(e)), status=e.status)
    except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as e:
        # the parent cannot tell us who the agent is now (restarting, out of reach): the agent tries again; this
        # was a 500 with a traceback at every retry of every agent for the whole outage (audit 7)
        log.warning("tunnel for cluster %s: cannot authorise it now, the parent did not answer: %s", cluster_id,
                    error_text(e))
        return web.json_response(status_body(503, "the hub cannot check the agent's identity with the parent "
                                                  "cluster now; retry"), status=503, headers={"Retry-After": "2"})
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=2 * 1024 * 1024, compress=False,
                               timeout=CLOSE_REPLY_SECONDS)
    try:
        await ws.prepare(request)
    except ConnectionResetError as e:  # aiohttp's ClientConnectionResetError: the transport is closing
        # the agent gave the handshake up (its 10-s timeout) before the 101 could be written: at 2,000 clusters a
        # saturated hub logged an ERROR with a traceback for each (bench/README.md); aiohttp answers the exception
        # quietly on a closing connection
        log.info("tunnel for cluster %s: the agent was gone before the handshake's answer: %s", cluster_id,
                 error_text(e))
        raise web.HTTPServiceUnavailable(text="the agent was gone before the handshake's answer") from None
    session = Session(ws.send_bytes, is_client=True)

    async def hangup(why: str) -> None:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=why.encode()[:120])

    tunnel = Tunnel(cluster_id, session, namespace, mc_name, hangup=hangup)
    reason = "agent disconnected"
    try:  # attach inside: cancelled while it closes the tunnel replaced, this one was never detached
        await registry.attach(tunnel)
        log.info("cluster %s connected its tunnel", cluster_id)
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:  # the keepalive went unanswered, say
                reason = f"websocket error: {error_text(ws.exception() or msg.data)}"
                break
            if msg.type is not WSMsgType.BINARY:
                reason = "agent sent a non-binary message"
                break
            session.feed(msg.data)
    except FrameError as e:
        reason = f"protocol error from agent: {e}"
    finally:
        if session.closed and registry.tunnels.get(cluster_id) is not tunnel and reason == "agent disconnected":
            reason = "closed by the hub (a newer tunnel of the agent, or the hub stopping)"
        log.info("cluster %s tunnel closed: %s", cluster_id, reason)
        await registry.detach(tunnel, reason)
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


def status_body(code: int, message: str) -> dict[str, Any]:
    """A Kubernetes Status object, so kubectl prints the message as it would for the apiserver."""
    reasons = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               502: "BadGateway", 503: "ServiceUnavailable"}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reasons.get(code, "InternalError"), "code": code}
