"""The agent's main loop: settle options, register, then heartbeat (and re-register if credentials die).

Registration and heartbeats run in the foreground: their failure ends the agent (the CLI logs the traceback and
exits 1, the Deployment restarts it). The tunnel, the label request and deploying (with its two pullers) run
beside them under clusternet_agent.supervision: a failure is logged with its traceback and the task restarted,
so heartbeats never report Ready for an agent that silently stopped applying."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from clusternet_agent import deployercreds, heartbeat, identity, labels, predictor, probes, registration
from clusternet_agent.clusterview import ClusterView
from clusternet_agent.options import AgentOptions, OptionsError
from clusternet_agent.pauses import rest_of_step, sleep_or_stop
from clusternet_agent.registration import (
    ParentAccess,
    RegistrationError,
    ensure_registered,
    refresh_token,
    store,
    wait_while_refused,
)
from clusternet_agent.supervision import supervised
from clusternet_api import known
from clusternet_api.backoff import Backoff, jittered
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.leaderelection import LeaderElector, lease_client, run_while_leading
from clusternet_api.logs import error_text
from clusternet_api.redaction import redact_url

log = logging.getLogger(__name__)
TOKEN_LIFETIME = 24 * 3600
# A collection still running after max(2 collection periods, this) means the child's API server is not
# answering: a frozen or overloaded process keeps its connections open, and one request may wait 120 s (the
# Kube client's timeout), during which the last healthy observation was reported as current (a SIGSTOPped
# kube-apiserver in the sandbox stayed Ready True for 2 min). 30 s is three times the longest wait of a
# starting API server's Retry-After (10 s), which is not-ready anyway.
STALLED_MIN_SECONDS = 30.0
# Pauses before registering again after the parent rejected our token: 1 s doubling to 5 min, jittered. A cycle
# that lasted at least the cap was no loop and starts the pauses again from 1 s.
REREGISTER_FIRST_SECONDS = 1.0
REREGISTER_MAX_SECONDS = 300.0


# Pauses between registration attempts that failed: 1 s doubling to 30 s; a request the hub denied waits 60 s (or
# until it is deleted or decided anew: wait_while_refused).
REGISTER_FIRST_SECONDS, REGISTER_MAX_SECONDS, REGISTER_DENIED_SECONDS = 1.0, 30.0, 60.0


class CycleBackoff(Backoff):
    """Never a hot loop of re-registrations: a token the parent takes back at once (a cluster whose namespace
    an admin deleted sent the agent round ~7 times a second, every round a few requests to the parent)."""

    def __init__(self, first: float = REREGISTER_FIRST_SECONDS, cap: float = REREGISTER_MAX_SECONDS) -> None:
        super().__init__(first, cap)

    def after(self, lasted: float) -> float:
        """The pause after a registration that held for `lasted` seconds."""
        if lasted >= self.cap:
            self.reset()
        return self.next()


async def apply_bootstrap_secret(child: Kube, opts: AgentOptions) -> None:
    """Fill what flags/env left unset from clusternet-system/clusternet-agent-cluster-registration."""
    if opts.parent_url and opts.reg_token and (opts.parent_ca_file or opts.parent_ca_pem is not None):
        return
    try:
        secret = await child.get("v1", "Secret", known.AGENT_BOOTSTRAP_SECRET, opts.namespace)
    except ApiException as e:
        if e.status != 403 or not (opts.parent_url and opts.reg_token):
            raise
        log.warning("may not read the %s/%s Secret (HTTP 403), so its parentCA is not used either; the parent's "
                    "CA must come from --parent-ca-file or, with a bootstrap token, the parent's cluster-info",
                    opts.namespace, known.AGENT_BOOTSTRAP_SECRET)
        return
    if secret is not None:
        merge_bootstrap_secret(opts, secret_data(secret))


def secret_data(secret: Obj) -> dict[str, bytes]:
    """A Secret's data, decoded."""
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def merge_bootstrap_secret(opts: AgentOptions, data: Mapping[str, bytes]) -> None:
    """Take parentURL and regToken from the bootstrap Secret when flags/env left them unset, and its parentCA
    whenever --parent-ca-file is not given, wherever the URL and token came from. The CA stays in memory."""
    def text(key: str) -> str | None:
        return data.get(key, b"").decode("utf-8", "replace").strip() or None

    opts.parent_url = opts.parent_url or text("parentURL")
    opts.reg_token = opts.reg_token or text("regToken")
    ca = data.get("parentCA", b"").strip()
    if opts.parent_ca_file or opts.parent_ca_pem is not None or not ca:
        return  # an empty parentCA counts as absent: see AgentOptions.check_parent_ca
    if b"-----BEGIN CERTIFICATE-----" not in ca:
        raise OptionsError(f"parentCA in the {opts.namespace}/{known.AGENT_BOOTSTRAP_SECRET} Secret is not a "
                           "PEM certificate (-----BEGIN CERTIFICATE-----...); store the parent apiserver's CA "
                           "file as it is, e.g. kubectl create secret generic ... --from-file=parentCA=ca.crt")
    opts.parent_ca_pem = ca + b"\n"


async def register_until_done(child: Kube, opts: AgentOptions, cluster_id: str, key: bytes,
                              stop: asyncio.Event) -> ParentAccess | None:
    """Retry registration with capped, jittered backoff; errors are logged in words a person can act on."""
    backoff, refused_at = Backoff(REGISTER_FIRST_SECONDS, REGISTER_MAX_SECONDS), None
    while not stop.is_set():
        try:
            access = await ensure_registered(child, opts, cluster_id, key)
            probes.registration_attempts.labels("Approved").inc()
            return access
        except RegistrationError as e:
            probes.registration_attempts.labels("Failed").inc()
            pause = backoff.next() if e.retry else jittered(REGISTER_DENIED_SECONDS)
            log.error("registration failed: %s (retrying in %.0fs%s)", e, pause,
                      f", or once {e.request[0]} is deleted or decided anew" if e.request else "")
            refused_at = refused_at or (time.monotonic() if e.request else None)  # kept across other failures
            waiting = wait_while_refused(opts, e.request, pause, time.monotonic() - (refused_at or 0)) \
                if e.request else None
            if await sleep_or_stop(stop, pause, waiting):
                return None
    return None


async def resolve_managed_cluster(parent: Kube, access: ParentAccess) -> str:
    if access.managed_cluster:
        return access.managed_cluster
    found = await parent.list(heartbeat.MC_API, "ManagedCluster", namespace=access.namespace,
                              label_selector=f"{known.LABEL_CLUSTER_ID}={access.cluster_id}")
    if not found:
        raise LookupError(f"no ManagedCluster for cluster {access.cluster_id} in {access.namespace}")
    return str(found[0]["metadata"]["name"])


def collected(task: asyncio.Task[Obj], previous: Obj | None) -> Obj | None:
    """The observation a finished collection made. One that failed (the child's API server refused the
    connection or answered errors) is reported as the last observation with the API server down, so the
    parent learns that the child is unhealthy instead of reading its last healthy state again."""
    try:
        return task.result()
    except Exception as e:
        log.warning("collecting child status failed: %s", error_text(e))
        return heartbeat.unreachable(previous) if previous is not None else None


def start_collection(child: Kube, opts: AgentOptions, apiserver_url: str) -> asyncio.Task[Obj]:
    return asyncio.create_task(heartbeat.collect(
        child, apiserver_url=apiserver_url, heartbeat_seconds=int(opts.update_frequency),
        app_pusher=opts.gate(known.GATE_APP_PUSHER), use_socket=opts.gate(known.GATE_SOCKET_CONNECTION),
        predictor=predictor.status_fields(opts.gate(known.GATE_PREDICTOR), opts.predictor_addr,
                                          opts.predictor_direct_access)))


class EarlyCollection:
    """The first observation of the child, made while the agent registers: a new cluster's first report (the
    one that makes it Ready) then need not wait for five requests to its API server after the approval
    (bench/registration.py: 20 agents on one child). Used only if it began less than a collection period
    before the registration ended (a request approved by hand may wait for hours)."""

    def __init__(self, child: Kube, opts: AgentOptions, apiserver_url: str) -> None:
        self.period = opts.collect_frequency
        self.started = time.monotonic()
        self.task = start_collection(child, opts, apiserver_url)

    async def fresh(self) -> asyncio.Task[Obj] | None:
        if time.monotonic() - self.started > self.period:
            await self.discard()
            return None
        return self.task

    async def discard(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


def healthy(observed: Obj | None) -> bool:
    """What the Ready condition says for an observation (Clusternet's rule: livez and readyz, or healthz)."""
    return observed is not None and bool((observed["livez"] and observed["readyz"]) or observed["healthz"])


def stalled_after(opts: AgentOptions) -> float:
    return max(2 * opts.collect_frequency, STALLED_MIN_SECONDS)


async def heartbeat_loop(child: Kube, parent: Kube, opts: AgentOptions, access: ParentAccess,
                         apiserver_url: str, stop: asyncio.Event, tunnel_state: dict[str, bool],
                         reported: asyncio.Event | None = None, readiness: probes.Readiness | None = None,
                         also: Sequence[Kube] = (), view: ClusterView | None = None,
                         first: asyncio.Task[Obj] | None = None, tunnel_came_up: asyncio.Event | None = None) -> str:
    """Collect and report until stopped ("stopped") or until the parent rejects us ("reregister").

    Reports never wait for a collection in progress: a kube-apiserver that is starting answers 503 with
    Retry-After (which Kube waits out, up to 10 s each time), and an agent silent for three heartbeat periods
    is judged gone by the hub (Ready Unknown) when it is the child's API server that is down. The report goes
    out on time with the last observation; the collection's result is used once it is in. A collection that
    has not ended after `stalled_after` is itself an observation: the API server does not answer, and it is
    reported down. A change of health is reported at once, not at the next report period (Clusternet waits
    for it, up to 3 min with its defaults): a few writes per outage, for a Ready condition that is current.

    `reported` is set after the first report attempt, so work that can wait starts after it. A refreshed
    parent token is set on `parent` and on the clients in `also`. `first`: a collection already under way
    (made while the hub approved), so the first report need not wait for one. `tunnel_came_up` (set by the
    tunnel when it comes up) ends a pause early when the last report wrote SocketConnected=False over the hub's
    True (the report read the tunnel's state before the websocket's 101 came in): it is put right at once, not a
    collection period later (bench/scale.py, 2026-12-07: a restarted agent's cluster showed its tunnel down for
    20 s while it was up). Only coming up wakes it: the hub marks a tunnel that drops itself, and a thousand
    agents reporting at every cut would double the parent's writes in a reconnect storm."""
    name = view.name if view is not None else await resolve_managed_cluster(parent, access)
    observed: Obj | None = None
    since_report = opts.update_frequency  # report right away
    reported_health: bool | None = None
    step = min(opts.collect_frequency, opts.update_frequency)
    collecting: asyncio.Task[Obj] | None = first
    began = time.monotonic()

    async def report(observed: Obj, since: float) -> str:
        """One report of `observed`; once written, the period and the health last reported start from it, whichever
        of the step's report or the tunnel's wake-up made it (the wake-up's left the health as it was: after a
        failed step report, the next step reported the same health again)."""
        nonlocal since_report, reported_health
        outcome = await report_once(child, (parent, *also), opts, access, name, observed, tunnel_state, readiness,
                                    view)
        if outcome == "reported":
            since_report, reported_health = since, healthy(observed)
        return outcome

    try:
        while True:
            tick = time.monotonic()
            if collecting is None:
                collecting, began = start_collection(child, opts, apiserver_url), tick
            await asyncio.wait({collecting}, timeout=step)
            if collecting.done():
                observed, collecting = collected(collecting, observed), None
            elif healthy(observed) and time.monotonic() - began > stalled_after(opts):
                assert observed is not None
                log.warning("the child's API server has not answered a status collection for %.0fs; "
                            "reporting it down", time.monotonic() - began)
                observed = heartbeat.unreachable(observed)
            due = since_report >= opts.update_frequency or (
                reported_health is not None and healthy(observed) != reported_health) or (
                view is not None and view.tunnel_unreported(tunnel_state.get("up")))
            if observed is not None and due and await report(observed, 0.0) == "reregister":
                return "reregister"
            if reported is not None:
                reported.set()
            while (woke := await rest_of_step(stop, tick + step, tunnel_came_up)) == "tunnel":
                if observed is None or view is None or not view.tunnel_unreported(tunnel_state.get("up")):
                    continue
                # counted from now: `step` is added when the step ends
                if await report(observed, tick - time.monotonic()) == "reregister":
                    return "reregister"
            if woke == "stopped":
                return "stopped"
            since_report += step
    finally:
        if collecting is not None:
            collecting.cancel()
            with contextlib.suppress(BaseException):
                await collecting


async def report_once(child: Kube, parents: tuple[Kube, ...], opts: AgentOptions, access: ParentAccess, name: str,
                      observed: Obj, tunnel_state: dict[str, bool], readiness: probes.Readiness | None,
                      view: ClusterView | None = None) -> str:
    """One heartbeat through parents[0] (refreshing the parent token of all `parents` first when it is due):
    "reported", "failed" or "reregister"."""
    started = time.monotonic()
    parent = parents[0]
    try:
        new_token = await refresh_token(access, parent, TOKEN_LIFETIME)
        if new_token:
            access.creds = access.creds.with_token(new_token)
            for client in parents:
                client.set_token(new_token)
            await store(child, opts, access)
            log.info("refreshed the parent token")
        written = await heartbeat.report(parent, access.namespace, name, observed, lambda: tunnel_state.get("up"))
        if view is not None:
            view.saw(written)
    except ApiException as e:
        probes.heartbeat_failures.inc()
        if e.status == 401:
            log.warning("the parent no longer accepts our token; registering again")
            return "reregister"
        log.warning("reporting status to the parent failed with HTTP %s", e.status)
        return "failed"
    except LookupError as e:  # our ManagedCluster is gone: removed by an admin, if our request says so
        probes.heartbeat_failures.inc()
        if view is not None:
            view.forget()  # the pullers ask the parent again, not the copy of a cluster that is gone
        if await removed(parent, access):
            return "reregister"  # registration reads the request, says so once, and waits
        log.warning("reporting status to the parent failed: %s; retrying, since our registration request does "
                    "not say the cluster was removed (a parent API server that has just started answers so until "
                    "it serves its custom resources; an admin's removal shows on the request within seconds)", e)
        return "failed"
    except Exception as e:
        probes.heartbeat_failures.inc()
        log.warning("reporting status to the parent failed: %s", e)
        return "failed"
    probes.heartbeat_seconds.observe(time.monotonic() - started)
    if readiness is not None:
        readiness.reported()
    return "reported"


async def removed(parent: Kube, access: ParentAccess) -> bool:
    """Has the hub marked our registration request removed (Denied after approval: clusternet_hub.removal)?
    Asked when our ManagedCluster is missing, so that an agent restarted after an admin deleted it says why at
    once, instead of warning that it does not exist at every report until its token is refused."""
    try:
        crr = await parent.get(registration.CRR_API, "ClusterRegistrationRequest", f"clusternet-{access.cluster_id}")
    except Exception as e:
        log.debug("reading our registration request failed: %s", error_text(e))
        return False
    return ((crr or {}).get("status") or {}).get("result") == "Denied"


async def run_agent(opts: AgentOptions, stop: asyncio.Event | None = None,
                    child_creds: Credentials | None = None, readiness: probes.Readiness | None = None) -> None:
    """Run the agent until `stop` is set; `readiness` (what /readyz judges) is kept up to date when given."""
    stop = stop or asyncio.Event()
    child_creds = child_creds or Credentials.load(opts.kubeconfig)
    qps, burst = opts.kube_api_qps, opts.kube_api_burst
    async with Kube(child_creds, user_agent="clusternet-agent", qps=qps, burst=burst) as child:
        await apply_bootstrap_secret(child, opts)
        opts.validate()
        opts.check_parent_ca()
        await identity.ensure_namespace(child, opts.namespace)

        async def work() -> None:
            if readiness is not None:
                readiness.standby = None  # leading (or not electing): judged on registration, reports, tunnel
            cluster_id = opts.cluster_id or await identity.cluster_id(child)
            key = await identity.load_or_create_key(child, opts.namespace)
            log.info("cluster ID %s, parent %s, sync mode %s", cluster_id, redact_url(opts.parent_url or ""),
                     opts.sync_mode)
            apiserver_url = opts.apiserver_url or child_creds.server
            cycles = CycleBackoff()
            while not stop.is_set():
                early = EarlyCollection(child, opts, apiserver_url)
                try:
                    access = await register_until_done(child, opts, cluster_id, key, stop)
                except BaseException:
                    await early.discard()
                    raise
                if access is None:
                    await early.discard()
                    return
                if readiness is not None:
                    readiness.registered = True
                registered_at = time.monotonic()
                tunnel_state: dict[str, bool] = {}
                tunnel_came_up = asyncio.Event()
                tasks = [t for t in [start_tunnel(opts, access, child_creds, apiserver_url, tunnel_state,
                                                  readiness, tunnel_came_up, child)] if t]
                try:
                    # heartbeats get their own unthrottled client, as the kubelet's do: a puller busy writing
                    # statuses must not hold back the report that keeps the cluster Ready on the parent
                    async with Kube(access.creds, user_agent="clusternet-agent", qps=qps,
                                    burst=burst) as parent, \
                            Kube(access.creds, user_agent="clusternet-agent-heartbeat", connections=2) as beat:
                        # the first report makes the cluster Ready on the parent: deploying waits for it, so a
                        # freshly registered cluster does not queue its heartbeat behind the deployer's set-up
                        reported = asyncio.Event()
                        view = ClusterView(parent, access.namespace, await resolve_managed_cluster(parent, access),
                                           max_age=1.5 * opts.update_frequency)
                        # labels go through our own registration request and the hub's policy (labels.py)
                        tasks.append(asyncio.create_task(supervised("the cluster label request", functools.partial(
                            labels.request_labels, parent, cluster_id, opts.cluster_labels))))
                        if opts.deploys:
                            tasks.append(asyncio.create_task(supervised("deploying", functools.partial(
                                deploying, child, parent, opts, access, apiserver_url, after=reported, view=view),
                                forever=True)))
                        outcome = await heartbeat_loop(child, beat, opts, access, apiserver_url, stop,
                                                       tunnel_state, reported, readiness, also=(parent,),
                                                       view=view, first=await early.fresh(),
                                                       tunnel_came_up=tunnel_came_up)
                finally:
                    for task in tasks:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if outcome == "stopped":
                    return
                pause = cycles.after(time.monotonic() - registered_at)
                log.info("registering again in %.1fs", pause)
                if await sleep_or_stop(stop, pause):
                    return

        # Only the holder of the Lease registers, heartbeats, holds the tunnel and applies; a second replica
        # waits, and a leader that loses the Lease stops all of it (LeadershipLost: the CLI exits). The Lease has
        # a client of its own, without the --kube-api-qps limiter: on `child`, its renewals queued behind the
        # pullers' applies and status reads and could outlive the renew deadline (clusternet_api.leaderelection).
        if opts.leader_election is not None and opts.leader_election.enabled:
            if readiness is not None:  # ready as a standby until it leads (probes.Readiness.standby)
                election = opts.leader_election
                readiness.standby = f"waiting for Lease {election.resource_namespace}/{election.resource_name}"
            async with lease_client(child_creds, "clusternet-agent") as leases:
                elector = LeaderElector(leases, opts.leader_election)
                if readiness is not None:
                    readiness.standby_unreachable = lambda: elector.unreachable
                await run_while_leading(elector, stop, work)
        else:
            await work()


async def deploying(child: Kube, parent: Kube, opts: AgentOptions, access: ParentAccess,
                    apiserver_url: str, after: asyncio.Event | None = None, view: ClusterView | None = None) -> None:
    """Pull Descriptions and HelmReleases, and keep the hub's push credentials fresh (or withdrawn) per AppPusher.
    Runs, and runs its pullers, under `supervised`; the deployer token's refresh never ends it
    (deployercreds.retrying)."""
    if after is not None:
        await after.wait()
    # Imported once the first report is written: no part of registering, and 48 ms of an agent's one event loop
    # idle (76 ms where it compiles its modules), more under load (python -X importtime; py-spy of a process agent
    # in bench/registration.py). Imported before that wait they held the loop between the approval and the report
    # that makes the cluster Ready.
    from clusternet_agent import helmpuller, puller
    from clusternet_api.helm import default_driver

    name = view.name if view is not None else await resolve_managed_cluster(parent, access)
    creds = await deployercreds.retrying(child, opts.namespace, "getting")
    async with Kube(creds, user_agent="clusternet-agent-deployer", qps=opts.kube_api_qps,
                    burst=opts.kube_api_burst) as deployer:
        # one Helm driver for every restart of the HelmRelease puller: a driver per restart left its worker
        # threads and cache directory behind each time
        driver = default_driver()
        pull = asyncio.create_task(supervised("the Description puller", lambda: puller.Puller(
            parent, deployer, access.namespace, name, opts.resync_frequency, view).run(), forever=True))
        helm = asyncio.create_task(supervised("the HelmRelease puller", lambda: helmpuller.ReleasePuller(
            parent, deployer, access.namespace, name, opts.resync_frequency, driver, view).run(),
            forever=True))
        try:
            while True:
                await deployercreds.publish_until(time.monotonic() + deployercreds.DEPLOYER_REFRESH_SECONDS, parent,
                                                  access.namespace, creds, apiserver_url,
                                                  opts.gate(known.GATE_APP_PUSHER))
                creds = await deployercreds.retrying(child, opts.namespace, "refreshing")
                if creds.token:
                    deployer.set_token(creds.token)
        finally:
            for task in (pull, helm):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            driver.close()


def start_tunnel(opts: AgentOptions, access: ParentAccess, child_creds: Credentials, apiserver_url: str,
                 state: dict[str, bool], readiness: probes.Readiness | None = None,
                 came_up: asyncio.Event | None = None, child: Kube | None = None) -> asyncio.Task[None] | None:
    """The websocket tunnel to the hub, when the SocketConnection gate is on; `came_up` is set each time it comes
    up (heartbeat_loop). With the Predictor gate, the hub asks the predictor through it (predictor.py): the
    built-in one, reading the child through `child`, or the external one the agent dials."""
    if not opts.gate(known.GATE_SOCKET_CONNECTION):
        return None
    from clusternet_agent import tunnel  # websockets: imported once registered, as the pullers are

    assert opts.parent_url
    url = tunnel.tunnel_url(opts.parent_url, access.cluster_id, opts.tunnel_url)
    ca = Path(opts.tunnel_ca_file).read_bytes() if opts.tunnel_ca_file else access.creds.ca_pem
    tls = tunnel.trusting(ca, system_cas=bool(opts.tunnel_url) and not opts.tunnel_ca_file)
    predicting = opts.gate(known.GATE_PREDICTOR)
    builtin = predictor.BuiltinPredictor(child) if predicting and not opts.predictor_addr and child else None
    external = predictor.tunnel_target(opts.predictor_addr, opts.predictor_direct_access) if predicting else None
    dialer = tunnel.StreamDialer(apiserver_url, child_creds.ca_pem, opts.tunnel_allowed,
                                 apiserver_system_cas=bool(opts.apiserver_url),
                                 predictor=builtin.connect if builtin else None, plain=(external,) if external else ())
    state.pop("up", None)  # connecting: no SocketConnected is reported until the first attempt says up or down

    def on_state(up: bool) -> None:
        state["up"] = up
        if readiness is not None:
            readiness.set_tunnel(up)
        if up and came_up is not None:
            came_up.set()

    async def hold() -> None:
        try:
            await tunnel.run_tunnel(url, lambda: access.creds.token or "", tls, dialer, on_state)
        finally:  # a tunnel that failed is down until it is up again, not up as last seen
            on_state(False)
            if builtin is not None:
                await builtin.close()

    return asyncio.create_task(supervised("the tunnel to the hub", hold, forever=True))
