"""The hub's kopf operator: thin handlers over registration.py and health.py.

The hub has its own kopf registry, persistence prefix and finalizer name, so a hub and several agents can
run in one process (tests) and never fight over each other's annotations.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf

from clusternet_api import applier, known
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.leaderelection import LeaderElectionConfig
from clusternet_api.logs import error_text
from clusternet_api.tunnel.http import StreamOpener
from clusternet_hub import clusterlabels, health, metrics, registration, removal, tokens
from clusternet_hub.controller import Controller
from clusternet_hub.controller.store import Store
from clusternet_hub.controller.wanted import promise_marks
from clusternet_hub.peers import PeerConfig
from clusternet_hub.sockets import SocketRegistry

HUB = kopf.OperatorRegistry()
PREFIX = "hub.clusternet.io"
log = logging.getLogger(__name__)


@dataclass
class HubOptions:
    kubeconfig: str | None = None
    token_ttl_seconds: int = 24 * 3600
    allow_unsealed_tokens: bool = False
    manual_approval: bool = False
    cluster_label_prefixes: tuple[str, ...] = ()
    """Label keys a child may add, change or remove after registration (clusterlabels.py); none by default."""
    health_check_interval: float = 5.0
    resync_interval: float = 30.0
    fail_over: bool = False
    """The FailOver gate (Clusternet's scheduler gate, shipped on in its chart): while a bound cluster is silent, the
    others divide its Dividing replicas (clusternet_core/failover.py). Off unless the gate says so."""
    threadiness: int = 8
    """Workers of the deployment controller (Clusternet's --threadiness, 10 there): Subscriptions, Descriptions
    and pushes handled at once. 8 here: 32 made a 1,000-cluster rollout slower on a saturated parent."""
    bind_address: str = "0.0.0.0"
    secure_port: int = 10443
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    requestheader_client_ca_file: str | None = None
    requestheader_allowed_names: tuple[str, ...] | None = None
    """None: the names of kube-system/extension-apiserver-authentication, or front-proxy-client with a CA file."""
    leader_election: LeaderElectionConfig = field(default_factory=lambda: LeaderElectionConfig(enabled=False))
    """Off unless asked for (the CLI's --leader-elect defaults to true, as Clusternet's)."""
    kube_api_qps: float = 0.0  # 0: no client-side limit (the CLI's default is Clusternet's 50)
    kube_api_burst: int = 0
    peers: PeerConfig | None = None
    """None (--peer-port=0): no forwarding between replicas; a cluster is reachable through its own replica only."""


@dataclass
class HubContext:
    """Shared state of one hub (passed to handlers as kopf's memo; shallow copies share the caches)."""

    options: HubOptions
    creds: Credentials
    kube: Kube | None = None
    clusters: dict[tuple[str, str], Obj] = field(default_factory=dict)
    cluster_ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Cluster ID (the hub-set label) -> (namespace, name) of its ManagedCluster: proxy and tunnel checks in O(1)."""
    observation: health.Observation = field(default_factory=health.Observation)
    approved: dict[str, Obj] = field(default_factory=dict)
    suspects: set[str] = field(default_factory=set)
    """Approved requests whose cluster may have been removed by an admin (removal.py); mutated in place only."""
    audited_at: float = field(default_factory=time.monotonic)
    """When the background pass last looked for approved requests without a ManagedCluster."""
    sockets: SocketRegistry | None = None
    controller: Controller | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None
    """Stops the server, tunnels and controller (once, however often called)."""
    logins: dict[str, int] = field(default_factory=dict)
    """How often kopf asked for credentials (shared by the shallow copies kopf hands to handlers)."""

    async def tunnel_opener(self, cluster_id: str) -> StreamOpener | None:
        """Opens streams to a cluster's API server through its tunnel, when the tunnel is up on this replica or
        another (for pushes)."""
        if self.sockets is None or not await self.sockets.reachable(cluster_id):
            return None
        return self.sockets.opener(cluster_id, known.TUNNEL_APISERVER_ADDRESS)

    def knows_cluster(self, cluster_id: str) -> bool:
        return cluster_id in self.cluster_ids

    def managed_cluster_of(self, cluster_id: str) -> tuple[str, str] | None:
        """(namespace, name) of the cluster's ManagedCluster as this replica's watch last saw it (leader only)."""
        return self.cluster_ids.get(cluster_id)

    @property
    def api(self) -> Kube:
        assert self.kube is not None, "hub API client used before start-up"
        return self.kube

    def approval_settings(self) -> registration.ApprovalSettings:
        return registration.ApprovalSettings(
            token_ttl_seconds=self.options.token_ttl_seconds,
            allow_unsealed_tokens=self.options.allow_unsealed_tokens,
            parent_ca_pem=self.creds.ca_pem)


@kopf.on.startup(registry=HUB)
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    # The annotations approval writes are no change anyone handles: kept in the diff base, each approval (and
    # token refresh) made kopf write the request once more only to record them (bench/registration.py's audit)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration",
        ignored_fields=[("metadata", "annotations", known.ANNOTATION_TOKEN_SEALING),
                        ("metadata", "annotations", known.ANNOTATION_TOKEN_ISSUED_AT)])
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 310
    settings.watching.connect_timeout = 30
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)
    # (kopf >= 1.45 handles an object's events as they come: no batch window to shorten)


@kopf.on.cleanup(registry=HUB)
async def stop_serving(memo: HubContext, **_: Any) -> None:
    """On SIGTERM kopf stops its own tasks, then cancels every other task after 5 s: end the tunnels, the
    server and the controller in order first, so in-flight requests fail cleanly and nothing is cut mid-write."""
    if memo.shutdown is not None:
        await memo.shutdown()


@kopf.on.login(registry=HUB)
async def login(memo: HubContext, **_: Any) -> kopf.ConnectionInfo:
    """kopf's own connection, with our credentials. With an exec plugin: its current credential and expiry, and
    a new one each time kopf asks again (after a 401 or past the expiry: kopf refuses one it has dropped)."""
    c, expiration = memo.creds, None
    if memo.kube is not None and c.exec_plugin is not None:
        c = await memo.kube.credentials(fresh=memo.logins.get("exec", 0) > 0)
        memo.logins["exec"] = memo.logins.get("exec", 0) + 1
        expires = memo.kube.credentials_expire
        expiration = datetime.datetime.fromtimestamp(expires, datetime.UTC) if expires is not None else None
    return kopf.ConnectionInfo(
        server=c.server, ca_data=c.ca_pem, token=c.token, insecure=c.insecure, expiration=expiration,
        certificate_data=c.cert_pem, private_key_data=c.key_pem, scheme="Bearer" if c.token else None,
        username=None if c.token else c.username, password=None if c.token else c.password, proxy_url=c.proxy_url)


# --- registration ---------------------------------------------------------------------------------------


async def reconcile_registration(crr: Obj, ctx: HubContext, resumed: bool = False, first_try: bool = True) -> None:
    """`resumed`: kopf's resume at leader start (every approved request at once); `first_try`: not a retry."""
    status = crr.get("status") or {}
    if status.get("result") == "Denied":
        if not known.denied_for_the_hub(crr):
            return
        verdict, said = registration.admin_verdict(crr)
        if verdict == "Denied":  # an admin's denial holds, whatever the mode, and says why instead of the hub's
            await removal.deny_by_admin(ctx.api, crr, said or "denied by a parent cluster administrator")
            return
        if registration.validate(crr, ctx.options.allow_unsealed_tokens):
            return
        if status.get("managedClusterName") and (gone := await removal.removed_meanwhile(ctx.api, crr)):
            await removal.revoke_removed(ctx.api, crr, *gone)
            return
        log.info("registration %s was denied only for a reason of the hub's (%s), which no longer holds: looking "
                 "at it again", crr["metadata"]["name"], status.get("errorMessage"))
    requested, crr = crr, registration.pinned(crr)  # the label policy reads the spec.clusterLabels agents write
    if status.get("result") == "Approved" and not tokens.token_is_due(
            crr, ctx.options.token_ttl_seconds):
        # whatever the cause: at leader start kopf says UPDATE, not RESUME, for a request whose spec changed
        # while no leader ran (its agent's clusterLabels), and the RBAC must be current then too; with the
        # digest current this costs no request
        if not await refresh_rbac_or_suspect(ctx, crr):
            return
        # resumed: the watch's copy spares a GET per cluster at leader start; a stale one makes the labels'
        # patch conflict, so a retry reads the API (the watch may lag behind for a while)
        cached = ctx.clusters.get((status.get("dedicatedNamespace") or "", status.get("managedClusterName") or ""))
        await clusterlabels.sync(ctx.api, requested, ctx.options.cluster_label_prefixes,
                                 cached if resumed and first_try else None)
        return
    if status.get("result") == "Approved":
        settled = await removal.settle(ctx.api, crr, ctx.approval_settings())
        if settled == "refused":  # a re-issue refused: said as the refusal below says it
            await refused(ctx, crr, registration.validate(crr, ctx.options.allow_unsealed_tokens) or "invalid")
        if settled != "intact":
            return  # a token refresh never re-creates what an admin deleted (it used to, at the token's half-life)
    problem = registration.validate(crr, ctx.options.allow_unsealed_tokens)
    if problem:
        if (written := await removal.refuse(ctx.api, crr, problem, ctx.options.allow_unsealed_tokens)) is not None:
            await refused(ctx, crr, written)
        return
    if ctx.options.manual_approval and status.get("result") != "Approved":
        verdict, message = registration.admin_verdict(crr)
        if verdict is None:  # `message`: an approval it carries was ignored, and why
            log.info("registration %s waits for manual approval%s", crr["metadata"]["name"],
                     f" ({message})" if message else "")
            await cluster_scoped_warning(ctx, crr, "AwaitingApproval", registration.awaiting_message(crr) + (
                f"; {message}" if message else ""))
            return
        if verdict == "Denied":
            await registration.deny(ctx.api, crr, message or "denied")
            metrics.registrations.labels("Denied").inc()
            return
    result = await registration.approve(ctx.api, crr, ctx.approval_settings())
    if status.get("result") != result["result"]:
        metrics.registrations.labels(result["result"]).inc()
    if result["result"] == "Approved":
        await clusterlabels.sync(ctx.api, {**requested, "status": result}, ctx.options.cluster_label_prefixes)


@kopf.on.resume(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "clusterregistrationrequests", registry=HUB)
@kopf.on.create(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "clusterregistrationrequests", registry=HUB)
@kopf.on.update(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "clusterregistrationrequests", registry=HUB,
                field="spec")
@kopf.on.update(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "clusterregistrationrequests", registry=HUB,
                field=("metadata", "annotations", known.ANNOTATION_APPROVAL))
@kopf.on.update(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "clusterregistrationrequests", registry=HUB,
                field=("metadata", "annotations", known.ANNOTATION_APPROVED_UID))
async def on_registration(body: kopf.Body, memo: HubContext, reason: str, retry: int = 0, **_: Any) -> None:
    try:
        await reconcile_registration(dict(body), memo, resumed=reason == kopf.Reason.RESUME, first_try=not retry)
    except ApiException as e:
        raise kopf.TemporaryError(f"registration of {body['metadata']['name']} hit HTTP {e.status}: "
                                  f"{e.reason}", delay=2) from e
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        # kopf would retry these after its default 60 s: at 1,000 registrations at once approvals timed out
        # against a saturated parent and then waited a minute each (bench/scale.py)
        raise kopf.TemporaryError(f"registration of {body['metadata']['name']} could not reach the parent: "
                                  f"{error_text(e)}", delay=2) from e


async def refused(ctx: HubContext, crr: Obj, problem: str) -> None:
    await cluster_scoped_warning(ctx, crr, "RegistrationDenied", problem)
    metrics.registrations.labels("Denied").inc()


async def cluster_scoped_warning(ctx: HubContext, crr: Obj, reason: str, message: str) -> None:
    """A Warning event on a ClusterRegistrationRequest that `kubectl describe clsrr` shows: kopf's own events of
    a cluster-scoped object name namespace `default` as the object's, so describe (which asks for events whose
    involvedObject has no namespace) showed none."""
    await applier.post_event(ctx.api, crr, "Warning", reason, message, known.CREATED_BY_HUB)


async def refresh_rbac_or_suspect(ctx: HubContext, crr: Obj) -> bool:
    """Re-apply a resumed request's RBAC; False when its namespace is gone (the background pass then looks)."""
    try:
        await registration.refresh_rbac(ctx.api, crr)
    except ApiException as e:
        if e.status != 404:
            raise
        ctx.suspects.add(crr["metadata"]["name"])
        return False
    return True


async def check_suspects(ctx: HubContext, now: float | None = None) -> None:
    """Settle the requests whose cluster may have been removed (removal.py). Once a resync interval, every
    approved request whose ManagedCluster the watch does not hold becomes one (a deletion while the hub was
    down); a failed look is logged and comes back with that audit."""
    now = time.monotonic() if now is None else now
    if now - ctx.audited_at >= ctx.options.resync_interval:
        ctx.audited_at = now
        ctx.suspects.update(removal.unknown_to_watch(ctx.approved, ctx.clusters))
    for name in sorted(ctx.suspects):
        ctx.suspects.discard(name)
        crr = ctx.approved.get(name)
        if crr is None:
            continue
        try:
            await removal.settle(ctx.api, crr, ctx.approval_settings())
        except Exception as e:
            log.warning("checking whether the cluster of %s was removed failed: %s", name, error_text(e))


# Event handlers only update in-memory caches and queues; being async, kopf runs them on the event loop
# instead of handing every event to a thread.
@kopf.on.event(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "clusterregistrationrequests", registry=HUB)
async def track_registration(type: str, body: kopf.Body, memo: HubContext, **_: Any) -> None:
    name = body["metadata"]["name"]
    if type == "DELETED" or (body.get("status") or {}).get("result") != "Approved":
        memo.approved.pop(name, None)
    else:
        memo.approved[name] = dict(body)


async def refresh_tokens(ctx: HubContext) -> None:
    """Re-issue sealed tokens at half their lifetime, so an agent that lost its token can re-read one."""
    for name, crr in list(ctx.approved.items()):
        if tokens.token_is_due(crr, ctx.options.token_ttl_seconds):
            try:
                await reconcile_registration(crr, ctx)
            except Exception:
                log.exception("refreshing the token of %s failed; will retry", name)


# --- cluster health -------------------------------------------------------------------------------------


@kopf.on.event(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "managedclusters", registry=HUB)
async def track_cluster(type: str, body: kopf.Body, memo: HubContext, **_: Any) -> None:
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    old = memo.clusters.get(key)
    cluster_id = (body["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID)
    if type == "DELETED":
        memo.suspects.update(removal.requests_of_cluster(memo.approved, *key))
        memo.clusters.pop(key, None)
        memo.observation.forget(key)
        if cluster_id and memo.cluster_ids.get(cluster_id) == key:
            del memo.cluster_ids[cluster_id]
    else:
        memo.clusters[key] = dict(body)
        memo.observation.saw(key, memo.clusters[key], time.monotonic())  # a heartbeat arrives (health.py)
        was = (health.ready_condition(old) or {}).get("status") if old is not None else None
        if was in ("False", "Unknown") and health.is_ready(memo.clusters[key]):
            log.info("cluster %s/%s: Ready again (was %s)", *key, was)  # the end of check_health's warning
        if cluster_id:
            memo.cluster_ids[cluster_id] = key
    if memo.controller is not None:
        memo.controller.store.on_cluster(type, dict(body), old)


async def check_health(ctx: HubContext, now: datetime.datetime | None = None) -> None:
    """One health pass: judge each cluster by how long the hub itself has heard no report (health.py; `now`, the
    wall clock, only dates what is written), confirm a verdict on a fresh read, and write it conditionally."""
    now = now or datetime.datetime.now(datetime.UTC)
    counts = {"True": 0, "False": 0, "Unknown": 0}
    for (ns, name), cached in list(ctx.clusters.items()):
        ctx.observation.saw((ns, name), cached, time.monotonic(), cached=True)  # (the watch's events did, sooner)
        silence = ctx.observation.silence((ns, name), time.monotonic())
        if silence is None:
            continue  # the parent is out of reach: no heartbeat could have arrived, nothing to judge
        mc = cached
        change = health.evaluate(mc, now, silence)
        api = known.CLUSTERS_API_VERSION
        try:
            if change.status is not None:  # a verdict: confirm it on a fresh read, not on the watch's cache
                started = time.monotonic()
                fresh = await ctx.api.get(api, "ManagedCluster", name, ns)
                if fresh is None:
                    continue  # deleted during the pass: its DELETED event drops it from the cache
                mc = fresh
                cached = keep_fresher(ctx, (ns, name), cached, mc)
                if stalled(ctx, "a ManagedCluster GET", time.monotonic() - started):
                    return
                ctx.observation.saw((ns, name), mc, time.monotonic())  # a report the watch has not delivered yet
                silence = ctx.observation.silence((ns, name), time.monotonic())
                if silence is None:
                    continue  # (the parent is lost only between passes)
                change = health.evaluate(mc, now, silence)
            # Each write is conditional on the copy it was computed from (the taints' on the verdict's answer):
            # a heartbeat that lands in between must win, not be overwritten with Unknown and then tainted
            if change.status is not None:
                mc = await ctx.api.patch(api, "ManagedCluster", name, {**as_read(mc), "status": change.status},
                                         ns, subresource="status")
                log.warning("cluster %s/%s: %s", ns, name, change.status["conditions"][-1]["message"])
                ctx.suspects.update(removal.requests_of_cluster(ctx.approved, ns, name))  # its token may be dead
            if change.taints is not None:
                mc = await ctx.api.patch(api, "ManagedCluster", name,
                                         {**as_read(mc), "spec": {"taints": change.taints}}, ns)
        except ApiException as e:
            if e.status == 409:
                log.info("cluster %s/%s changed while the hub judged its health: judged again next pass", ns, name)
            elif e.status != 404:
                log.warning("updating health of %s/%s failed with HTTP %s", ns, name, e.status)
            continue
        if change.status is not None or change.taints is not None:
            keep_fresher(ctx, (ns, name), cached, mc)
        ready = health.ready_condition(mc)
        counts[(ready or {}).get("status", "Unknown")] = counts.get((ready or {}).get("status", "Unknown"), 0) + 1
        last = health.parse_time((mc.get("status") or {}).get("lastObservedTime"))
        if last:
            metrics.heartbeat_age.observe((now - last).total_seconds())
    for state, n in counts.items():
        metrics.clusters.labels(state).set(n)


def as_read(mc: Obj) -> Obj:
    """A patch's precondition: the object is still as it was read (else the API server answers 409)."""
    version = mc["metadata"].get("resourceVersion")
    return {"metadata": {"resourceVersion": version}} if version else {}


def keep_fresher(ctx: HubContext, key: tuple[str, str], cached: Obj, fresher: Obj) -> Obj:
    """Put what the health pass read or wrote into the cache, only if the cache still holds the copy the pass
    started from: a cluster deleted meanwhile (its DELETED event handled) must not come back, for nothing would
    ever remove it again (the scheduler shares this cache), and a newer watch event must not be replaced by an
    older answer. Returns the copy the cache now holds as the pass's own.

    The controller hears of it as of a watch event: once the cache holds the hub's own write, the watch's copy of
    that write changes nothing it compares, and a recovered cluster's NoSchedule taint taken off (or a verdict)
    waited for the next resync to bind Subscriptions again (review 7)."""
    if ctx.clusters.get(key) is not cached:
        return cached
    ctx.clusters[key] = fresher
    if ctx.controller is not None and fresher is not cached:
        ctx.controller.store.on_cluster("MODIFIED", fresher, cached)
    return fresher


def stalled(ctx: HubContext, what: str, seconds: float) -> bool:
    """Whether `seconds` (how long the parent took to answer, or how late the hub woke) may have held a
    heartbeat back; if so every cluster's grace period starts again now (health.py)."""
    period = health.heartbeat_period(ctx.clusters.values())
    if seconds <= period:
        return False
    log.warning("%s took %.1f s, more than a heartbeat period (%.0f s): heartbeats may have been held as long, "
                "so no cluster is judged until the hub has watched them again for a grace period",
                what, seconds, period)
    ctx.observation.interrupted(time.monotonic())
    return True


async def probe_parent(ctx: HubContext) -> bool:
    """Whether the parent's API server is ready now; a lost parent restarts the heartbeat observation.

    /readyz, not /version: a starting kube-apiserver answers /version long before it serves (and stores)
    the agents' heartbeats."""
    started = time.monotonic()
    try:
        status, _ = await ctx.api.raw("GET", "/readyz")
    except (aiohttp.ClientError, OSError, TimeoutError):
        status = 0
    if 200 <= status < 300:
        ctx.observation.parent_back(time.monotonic())
        stalled(ctx, "the parent's /readyz", time.monotonic() - started)
        return True
    if ctx.observation.parent_since is not None:
        log.warning("the parent's API server is out of reach (%s): no cluster is judged by its heartbeats "
                    "until the hub has watched them again for a grace period", status or "no answer")
    ctx.observation.parent_lost()
    return False


async def background(ctx: HubContext) -> None:
    """Periodic work that is not tied to one event: health deadlines, token refresh, the promise to mark."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(ctx.options.health_check_interval)
        try:
            late = time.monotonic() - started - ctx.options.health_check_interval
            if not await probe_parent(ctx):
                continue
            stalled(ctx, "the hub's own loop (woken late)", late)
            await check_health(ctx)
            await refresh_tokens(ctx)
            await check_suspects(ctx)
            await promise_marks(ctx.api, list(ctx.clusters.values()))
        except Exception:
            log.exception("hub background pass failed; continuing")


# --- deployment pipeline: events only feed the controller's store and queue -----------------------------


def _apps_event(plural: str, on_event: Callable[[Store, str, Obj], None]) -> Any:
    async def handler(type: str, body: kopf.Body, memo: HubContext, **_: Any) -> None:
        if memo.controller is not None:  # (type is None for objects of the initial listing: handled as additions)
            on_event(memo.controller.store, "DELETED" if type == "DELETED" else "MODIFIED", dict(body))

    handler.__name__ = f"track_{plural}"
    return kopf.on.event(known.APPS_GROUP, known.APPS_VERSION, plural, registry=HUB)(handler)


for _plural, _on_event in (("subscriptions", Store.on_subscription), ("manifests", Store.on_manifest),
                           ("globalizations", Store.on_override), ("localizations", Store.on_override),
                           ("descriptions", Store.on_description), ("bases", Store.on_base),
                           ("feedinventories", Store.on_feed_inventory), ("helmcharts", Store.on_helmchart),
                           ("helmreleases", Store.on_helmrelease)):
    _apps_event(_plural, _on_event)
