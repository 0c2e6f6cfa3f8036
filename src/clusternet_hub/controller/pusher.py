"""Pushing Descriptions to the clusters that allow it (appPusher, not Pull), and cleaning up on deletion.

One push of a Description at a time: the work queue never hands a key to two workers (pushes would race
each other's creates), and a request that comes in meanwhile runs once the current push is done.

A Description being deleted is cleaned up only while its cluster is not being removed (its namespace or its
ManagedCluster being deleted, or gone): that keeps the cluster's workloads, whatever order the namespace controller
deletes things in; the hub then lets it go without touching the child, in every sync mode (release_with_cluster,
clusternet_api.namespaceguard).

Nor is it cleaned up while its Subscription still wants it: the garbage collector or a person deleted it, not the
hub (controller/wanted.py), and the hub re-creates it and re-adopts the child's objects.

An object a Description lets go of (cleanup, or dropped from its feeds) that another Description of the cluster
wants is handed over to that one, which is pushed at once (clusternet_api.ownership): not deleted and re-created
at its next resync, up to a resync period later (30 s by default), with the object missing in between.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from clusternet_api import applier, known, namespaceguard, pendingprunes
from clusternet_api.carried import CarriedOver
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.kubeapi import ChildApi, KubeApi
from clusternet_api.logs import Repeats, error_text
from clusternet_api.ownership import Claimants, Released, ReleaseDeferred
from clusternet_api.tunnel.http import StreamOpener
from clusternet_core.plan import Key
from clusternet_hub.controller.store import TUNNEL_DOWN, Store
from clusternet_hub.controller.wanted import WantUnknown, say_unwanted_or_warn, still_wanted
from clusternet_hub.controller.workqueue import Backoff
from clusternet_hub.health import is_ready, ready_condition
from clusternet_hub.registration import drop_token_secret

log = logging.getLogger(__name__)
# The status of a Description being deleted while its cluster is offline, whoever deploys it (the hub cleans up
# pushed ones, the agent pulled ones, once the cluster is back): nothing is deleted meanwhile.
CLEANUP_PENDING = "cleanup pending: the cluster is offline; its workloads stay until it returns"
# ... and while the hub, just started (or just leading), has not yet seen the cluster report (review F9)
UNHEARD_PENDING = ("cleanup pending: waiting for the cluster's first heartbeat since the hub started (or regained "
                   "the parent); its workloads stay until then")
# The status of what waits for its agent's push credentials (the hub does not watch that Secret).
DEPLOYER_CREDENTIALS_MISSING = f"waiting for the agent's {known.DEPLOYER_SECRET} credentials"
# Why what a Description no longer names stays in the cluster for now (pendingprunes.PRUNE_PENDING), by cleanup_wait.
PRUNE_WAITS = {"offline": "the cluster is offline; deleted once it returns",
               "unheard": "waiting for the cluster's first heartbeat since the hub started (or regained the parent)"}

# How long the hub trusts its copy of an agent's push credentials. The push/pull decision never rests on it
# (that is the ManagedCluster's appPusher), and a failed push drops the copy at once. The agent re-issues them
# every 20 minutes with an hour of life, so a copy 5 minutes old still works; at 60 s these reads were the
# largest share of the parent's steady-state requests per cluster left (1 a minute, bench/scale.py).
PUSH_SECRET_TTL = 300.0
# Connections the hub keeps to one child. Straight to its API server each new one is a TLS handshake for hub
# and child alike (a third of the hub's CPU when it opened up to 8 per push to 100 clusters), so two, which
# keep a push's requests overlapping; through the tunnel a connection is only a stream: as many as a push uses.
CHILD_CONNECTIONS = 2
TUNNEL_CONNECTIONS = 8
# For a new connection straight to a child, TLS included. A handshake takes milliseconds on a LAN and well under
# a second across continents; a request to an address that drops packets waited for the whole request timeout
# (120 s) instead, holding a worker (audit s36, controllers, finding 7). client-go dials for up to 30 s.
CONNECT_TIMEOUT = 10.0
# For each read of a child's answer: on a connection kept alive from the last push to a child cut off or frozen
# since, a request waited the whole 120 s. Above the 60 s after which a child's API server ends a request itself
# (--request-timeout), so an answer it would still give is never cut (review s37: 30 s cut answers held up by
# admission webhooks); the next request's new connection then fails within CONNECT_TIMEOUT, and the hold begins.
READ_TIMEOUT = 65.0
# A failed push comes back with growing delay, not on its own status events
RETRY_FIRST, RETRY_MAX = 2.0, 60.0

TunnelOpener = Callable[[str], Awaitable[StreamOpener | None]]
"""cluster id -> opens streams through its tunnel to the child's API server, or None when the tunnel is down."""
Connect = Callable[[Credentials, int, StreamOpener | None], ChildApi]
"""(credentials, connections, tunnel opener or None) -> a client of the child's API server."""


def connect_child(creds: Credentials, connections: int, opener: StreamOpener | None) -> ChildApi:
    """A client that does not ask again for a while a child it could not connect to (clusternet_api.reachability):
    a push to it then fails at once, and a few clusters out of reach no longer hold every worker."""
    return Kube(creds, user_agent="clusternet-hub-deployer", connections=connections, opener=opener,
                connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, fail_fast=True)


async def release_with_cluster(kube: KubeApi, obj: Obj, mc: Obj | None) -> bool:
    """Let a Description or HelmRelease being deleted go without touching the child when its cluster is gone (no
    ManagedCluster: nobody can clean up, never block the deletion) or being removed (namespaceguard: its namespace
    terminating or gone, or its ManagedCluster being deleted; the namespace controller deletes the ManagedCluster,
    credentials and Descriptions in no fixed order, and the workloads of a removed cluster stay). A cached
    ManagedCluster with a deletionTimestamp (held by another party's finalizer) counts as removed: it used to count
    as live, and the resync that unbound it had the hub clean up the child. The cache is trusted only to let go:
    before a cleanup the guard reads the ManagedCluster afresh. Whatever the sync mode: a Pull agent may have lost
    its Role already, and the namespace's deletion would hang on the finalizer. True when released."""
    if mc is None or mc["metadata"].get("deletionTimestamp"):
        if mc is not None:
            log.info("%s (%s %s released without cleanup)", namespaceguard.cluster_removed_message(
                mc["metadata"]["namespace"], mc["metadata"]["name"]), obj.get("kind"), obj["metadata"]["name"])
        await applier.remove_finalizer(kube, obj)
        return True
    return await namespaceguard.release_if_removed(kube, obj, mc["metadata"]["name"])


def description_key(owner: str) -> Key:
    """The cache key of the Description an ownership mark (`<namespace>.<name>`; namespaces have no dots) names."""
    namespace, name = owner.split(".", 1)
    return namespace, name


def uses_tunnel(mc: Obj) -> bool:
    """Whether the cluster's agent reaches the hub through a tunnel (its SocketConnection gate, as it reports)."""
    return bool((mc.get("status") or {}).get("useSocket"))


def cleanup_wait(store: Store, mc: Obj) -> Literal["offline", "unheard"] | None:
    """Why nothing may be deleted in the cluster now (None: it may).

    "offline": it is silent (Ready other than True). "unheard": a cluster the hub reaches through its API server
    directly, of which this hub, since it started, took the lead or regained the parent, has not yet seen a report
    arrive: the Ready=True it first read may be older than its agent's death, and health judges nobody for a grace
    period after a start (health.Observation.heard; review F9). Up to one heartbeat period (3 min by default) after
    a start; the store pushes what waited once the report comes (Store._after_report). A tunnel cluster needs no
    such wait: it is reached through its agent's live tunnel or not at all (TUNNEL_DOWN)."""
    if not is_ready(mc):
        return "offline"
    if not uses_tunnel(mc) and not store.heard((mc["metadata"]["namespace"], mc["metadata"]["name"])):
        store.awaiting_report.add(mc["metadata"]["namespace"])
        return "unheard"
    return None


def agents_reason_stands(desc: Obj, mc: Obj) -> bool:
    """Whether the status gives a Pull agent's own reason for a waiting cleanup that still holds, which the hub's
    "offline" must then not replace: any `cleanup pending:` text but the hub's two (the agent may not read its
    namespace, or its Base is gone and unmarked), unless it is AWAITING_HUB and the hub has marked the object since
    (applier.awaits_hub), while the agent reports (Ready=False: its heartbeats arrive, its API server fails the
    probes). Then each wrote its reason over the other's, each write the other's watch event, without end
    (re-review s33, findings 1 and 6). Once its heartbeats stop (Ready=Unknown) the agent writes nothing more, and
    "offline" is the truer reason (review s34, finding 5). A Push-mode reason of the hub's (a Subscription it could
    not judge) left from before the cluster turned to Pull counts as the agent's too, until the agent writes its
    own."""
    if (ready_condition(mc) or {}).get("status") != "False":
        return False
    said = str((desc.get("status") or {}).get("reason") or "")
    if not said.startswith("cleanup pending: ") or said in (CLEANUP_PENDING, UNHEARD_PENDING):
        return False
    return applier.AWAITING_HUB not in said or applier.awaits_hub(desc)


class Pusher:
    def __init__(self, kube: KubeApi, store: Store, tunnel_opener: TunnelOpener,
                 connect: Connect = connect_child) -> None:
        self.kube, self.store, self.tunnel_opener, self.connect = kube, store, tunnel_opener, connect
        self.children: dict[str, tuple[str, ChildApi]] = {}  # cluster id -> (credentials fingerprint, client)
        self.secrets: dict[str, tuple[float, dict[str, bytes]]] = {}  # namespace -> (expiry, data)
        # Description -> (uid, generation, monotonic time) of its last push; events for what was pushed
        # already need no push (drift is the periodic resync's job), which also ends push -> status -> event
        # -> push rounds, and the resync skips what was pushed moments ago
        self.pushed: dict[Key, tuple[str, int, float]] = {}
        self.retries: Backoff[Key] = Backoff(RETRY_FIRST, RETRY_MAX)
        self.carried = CarriedOver()  # what released Descriptions had deployed, for their successors' first push
        self.status_failures = Repeats()  # a "why it waits" write refused the same way again is warned about once

    def resync(self, interval: float) -> None:
        """Push every Description again (drift), except those pushed moments ago, being pushed or queued:
        the push they get anyway applies what this one would (a resync during a big rollout used to push
        the Descriptions in flight twice)."""
        fresh = time.monotonic() - interval / 2
        for key in list(self.store.caches.descriptions):
            if self.store.queue.waiting(("push", *key)):
                continue
            if self.pushed.get(key, ("", 0, 0.0))[2] < fresh:
                self.store.enqueue("push", key, force=True, background=True)

    async def close(self) -> None:
        children, self.children = self.children, {}  # taken at once: no table changing while closing
        for _, child in children.values():
            await child.close()

    async def forget_gone(self, cluster_ids: set[str], namespaces: set[str]) -> None:
        """Close the clients of clusters not in `cluster_ids` and drop the credentials cached for namespaces not in
        `namespaces`: kept per cluster for the next push, they outlived their cluster's removal (a client with its
        connections, a child's token in memory) for the life of the hub."""
        gone = [self.children.pop(c)[1] for c in [c for c in self.children if c not in cluster_ids]]
        for child in gone:
            await child.close()
        for namespace in [n for n in self.secrets if n not in namespaces]:
            del self.secrets[namespace]

    def cluster_in(self, namespace: str) -> Obj | None:
        return next((mc for (ns, _), mc in self.store.caches.clusters.items() if ns == namespace), None)

    async def _secret(self, namespace: str) -> dict[str, bytes] | None:
        cached = self.secrets.get(namespace)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        secret = await self.kube.get("v1", "Secret", known.DEPLOYER_SECRET, namespace)
        if secret is not None and await drop_token_secret(self.kube, secret) is not None:
            # a never-expiring parent token its agent made for itself, never push credentials; one created again
            # since it was read is not used unread either: the next push reads it
            secret = None
        if secret is None:
            self.secrets.pop(namespace, None)
            return None
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        self.secrets[namespace] = (time.monotonic() + PUSH_SECRET_TTL, data)
        return data

    async def route(self, mc: Obj) -> tuple[StreamOpener | None, str | None]:
        """How the hub reaches a cluster: through its tunnel (an opener) when it is up on any replica; straight to
        the URL its agent advertised (None) only when the agent uses no tunnel; else why it waits.

        Clusternet's rule (status.useSocket: the tunnel alone). We used to dial the advertised URL whenever the
        tunnel was down: an address the agent wrote, dialled from the hub's network position, which for an agent
        in a pod is the child's in-cluster service address (`https://10.96.0.1`, the parent's own API server
        there) and for a cluster behind NAT is unreachable anyway; the push failed with a TLS or connection
        error in its status instead of saying what it waits for."""
        opener = await self.tunnel_opener(str(mc["spec"]["clusterId"]))
        if opener is None and uses_tunnel(mc):
            return None, TUNNEL_DOWN
        return opener, None

    async def child_client(self, mc: Obj, routed: tuple[StreamOpener | None, str | None] | None = None
                           ) -> ChildApi | str:
        """Child access for pushing, the agent's deployer credentials through `route` (or `routed`, its answer when
        the caller has it: under HA a route may ask every peer replica); else why there is none."""
        opener, waiting = routed or await self.route(mc)
        if waiting is not None:
            return waiting
        data = await self._secret(mc["metadata"]["namespace"])
        if data is None:
            return DEPLOYER_CREDENTIALS_MISSING
        cluster_id = str(mc["spec"]["clusterId"])
        creds = Credentials(server=data["apiserver-advertise-url"].decode(), ca_pem=data.get("ca.crt"),
                            token=data["token"].decode())
        via = "tunnel" if opener is not None else creds.server
        # the CA too: a child whose CA was rotated (the agent rewrites ca.crt, same token) failed TLS at every push
        # until the agent's next token (audit s36)
        fingerprint = f"{via}|{hashlib.sha256((creds.token or '').encode() + (creds.ca_pem or b'')).hexdigest()}"
        cached = self.children.get(cluster_id)
        if cached and cached[0] == fingerprint:
            return cached[1]
        # replaced before anything is awaited: two workers of this cluster after a token rotation each made a
        # client while the other closed the old one, and the client of the one that set it first was never closed
        child = self.connect(creds, CHILD_CONNECTIONS if opener is None else TUNNEL_CONNECTIONS, opener)
        self.children[cluster_id] = (fingerprint, child)
        if cached:
            await cached[1].close()
        return child

    def _retry_later(self, key: Key, failed: bool) -> None:
        """A failed push comes back with growing delay (2 s doubling to 60 s), not on its own status events."""
        if failed:
            self.store.queue.add_after(("push", *key), self.retries.next(key), force=True)
        else:
            self.retries.forget(key)

    async def push(self, key: Key, force: bool = False) -> None:
        desc = self.store.caches.descriptions.get(key)
        if desc is None:  # deleted: nothing more to push
            self.pushed.pop(key, None)
            self.retries.forget(key)
            return
        if (desc.get("spec") or {}).get("deployer") == "Helm":
            return  # its HelmReleases are deployed (controller/helmreleases.py), not its raw values
        meta = desc["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        if not deleting and not force and self.pushed.get(key, ())[:2] == (meta["uid"], meta.get("generation")):
            return
        mc = self.cluster_in(key[0])
        if deleting and await release_with_cluster(self.kube, desc, mc):
            return
        if mc is None:
            return
        if deleting and not applier.deployable_by_hub(mc):  # its agent cleans up: tell it if it is an unbinding
            self.store.keep_marked(self.store.caches.descriptions, desc, await say_unwanted_or_warn(
                self.kube, desc, mc, self.store.caches.subscriptions))
        if deleting and not is_ready(mc):  # whoever cleans up does so when it is back: say so meanwhile
            if applier.deployable_by_hub(mc) or not agents_reason_stands(
                    self.store.caches.descriptions.get(key, desc), mc):
                await self._pending(desc, CLEANUP_PENDING)
            return
        if not applier.deployable_by_hub(mc):
            return
        # drift correction off and deployed: no re-apply; only a prune owed, by a prune-only pass (review s36)
        prune_only = not deleting and applier.prune_only(desc)
        wait = cleanup_wait(self.store, mc) if not deleting else None
        if prune_only and (not pendingprunes.prunes_pending(desc) or wait is not None):
            return
        child = await self.child_client(mc)
        if isinstance(child, str):
            if not (child == TUNNEL_DOWN and not deleting and applier.deployed(desc)):
                await self._pending(desc, child)  # a drift check waits unsaid: no write per Description when
                # a restarted hub resyncs before its tunnels are back
            self._retry_later(key, child == TUNNEL_DOWN)  # besides Store.on_cluster's push when it is back
        elif deleting:
            await self._clean_up(desc, mc, child)
        else:
            await self._apply(desc, child, PRUNE_WAITS.get(wait or ""), prune_only)

    async def _clean_up(self, desc: Obj, mc: Obj, child: ChildApi) -> None:
        """Delete what the Description deployed, unless its Subscription still wants it (deleted by the garbage
        collector or by hand: wanted.py; the hub re-creates it and keeps the child's objects). Nothing is decided
        while the cluster is silent: letting it go then would leave its successor waiting for the cluster, with
        the list of what it deployed only in this process's memory (carried.py) for the whole outage, as when
        the Pull agent is the one to decide on its return."""
        wait = cleanup_wait(self.store, mc)
        if wait is not None:
            await self._pending(desc, CLEANUP_PENDING if wait == "offline" else UNHEARD_PENDING)
            return
        try:
            wanted = await still_wanted(self.kube, desc, mc, self.store.caches.subscriptions)
        except WantUnknown as e:  # retried as any failure; the status says why meanwhile, as a Pull agent's does
            await self._pending(desc, f"cleanup pending: {e}")
            raise
        if wanted:
            self.carried.keep(desc)
            await applier.remove_finalizer(self.kube, desc)
            return
        try:
            released = await applier.cleanup(child, desc, self._claimants(desc))
        except ReleaseDeferred as e:  # the finalizer stays, and the status says why (review s39-b, finding 3)
            if applier.pending_worth_saying(desc, str(e)):
                await self._pending(desc, f"cleanup pending: {e}")
            raise
        log.info("cleaned up %s/%s in cluster %s: %s", desc["metadata"]["namespace"], desc["metadata"]["name"],
                 mc["spec"]["clusterId"], released)
        await self._hand_over(desc, released)
        self.carried.forget(desc)
        await applier.remove_finalizer(self.kube, desc)

    async def _apply(self, desc: Obj, child: ChildApi, prune_waits: str | None = None,
                     prune_only: bool = False) -> None:
        """Apply the Description; `prune_waits`: why what dropped out of it may not be deleted now (cleanup_wait),
        kept listed until a push after the cluster is heard from (Store.on_cluster, Store._after_report);
        `prune_only`: let go of what dropped out without applying the rest (drift correction off)."""
        meta = desc["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            outcome = await applier.apply_description(child, desc, self._claimants(desc), self.carried.previous(desc),
                                                      prune_waits, prune_only)
        except ApiException:
            self.secrets.pop(key[0], None)  # e.g. the agent rotated its token: read it again next time
            raise
        if outcome.phase != "Success":
            self.secrets.pop(key[0], None)
        await applier.report(self.kube, desc, outcome, known.CREATED_BY_HUB)
        await self._hand_over(desc, outcome.released)
        self.pushed[key] = (meta["uid"], meta.get("generation"), time.monotonic())
        self._retry_later(key, outcome.phase != "Success")

    def _claimants(self, desc: Obj) -> Claimants:
        """The cluster's other Descriptions, which may want what this one lets go of."""
        namespace = desc["metadata"]["namespace"]
        return Claimants(desc, lambda: [d for (ns, _), d in self.store.caches.descriptions.items() if ns == namespace])

    async def _hand_over(self, desc: Obj, released: Released) -> None:
        """Push at once the Descriptions that want what `desc` let go of (their refusal is over), and tell those
        it was handed to."""
        for claimant in released.claimants:
            self.store.enqueue("push", description_key(claimant), force=True)
        descriptions = self.store.caches.descriptions
        await applier.announce_released(self.kube, released, desc, lambda claimant: descriptions.get(
            description_key(claimant)), known.CREATED_BY_HUB)

    async def _pending(self, desc: Obj, reason: str) -> None:
        """Say in the Description's status why it waits. A refused write is said in the log (once for the same
        failure), as the Helm pusher does: it was suppressed without a word (review s39-b, finding 4)."""
        try:
            await applier.mark_pending(self.kube, desc, reason)
        except ApiException as e:
            key = (desc["metadata"]["namespace"], desc["metadata"]["name"])
            if e.status != 404:  # gone meanwhile: nobody to tell
                text = f"HTTP {e.status}: {error_text(e)}"
                log.log(self.status_failures.level(key, text), "Description %s/%s: its status could not say why it "
                        "waits (%s): %s", *key, reason, text)
