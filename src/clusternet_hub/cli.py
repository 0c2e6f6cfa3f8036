"""`clusternet-hub`: run the hub operator and its server against the parent cluster."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

import click
import kopf

from clusternet_api import __version__, eventloop
from clusternet_api.compatflags import feature_gates_option, inert_options, klog_level, log_format_option, report_inert
from clusternet_api.componentflags import (
    client_limits,
    component_exits,
    component_options,
    go_bool_option,
    leader_election_config,
)
from clusternet_api.kube import Credentials, Kube
from clusternet_api.leaderelection import LeaderElector, lease_client, run_while_leading
from clusternet_api.logs import setup_logging
from clusternet_hub import compat, kopfhooks, server, serving
from clusternet_hub.clusterlabels import parse_prefixes
from clusternet_hub.controller import Controller
from clusternet_hub.operator import HUB, HubContext, HubOptions, background
from clusternet_hub.peers import PeerConfig, Peers, default_advertise_address
from clusternet_hub.peerserver import peer_app
from clusternet_hub.predictor import Predictor
from clusternet_hub.proxy import Proxy
from clusternet_hub.shadow import ShadowAPI
from clusternet_hub.sockets import SocketRegistry
from clusternet_hub.supervision import ComponentDied, Supervisor

log = logging.getLogger(__name__)
# At SIGTERM: how long the controllers may take to end once cancelled, and then the worker threads (Helm calls
# in flight). Kubernetes' default terminationGracePeriodSeconds is 30 s; agents reconnect to a replica that
# is still up only once their tunnel is closed, so the tunnels must not wait behind a slow Helm call.
SHUTDOWN_GRACE_SECONDS = 5.0


async def run_hub(options: HubOptions, stop: asyncio.Event | None = None,
                  ready: threading.Event | None = None) -> None:
    """Run until `stop` is set: server, background checks and the kopf operator, in one event loop.

    With leader election, every replica serves (tunnels, proxy, shadow API) and only the Lease holder runs the
    controllers (kopf's handlers, health checks, the deployment pipeline); losing the Lease raises
    LeadershipLost after cancelling them, and the CLI exits so that the Deployment restarts the replica clean.

    The Leases (ours as the leader, and each replica's peer Lease) go through a client of their own, which the
    --kube-api-qps limiter does not slow: on the main one, kopf's resume of every approved registration at leader
    start queued the renewals past their deadline (clusternet_api.leaderelection)."""
    creds = Credentials.load(options.kubeconfig)
    ctx = HubContext(options=options, creds=creds)
    stop = stop or asyncio.Event()
    user_agent = f"clusternet-hub/{__version__}"
    async with Kube(creds, user_agent=user_agent, qps=options.kube_api_qps, burst=options.kube_api_burst) as kube, \
            lease_client(creds, user_agent) as leases:
        ctx.kube = kube
        ctx.sockets = SocketRegistry(kube)
        ctx.sockets.managed_cluster_of = ctx.managed_cluster_of
        predictor = Predictor(ctx.sockets)
        ctx.controller = Controller(kube, ctx.clusters, ctx.tunnel_opener, options.resync_interval,
                                    workers=options.threadiness, heard=ctx.observation.heard,
                                    fail_over=options.fail_over, predict=predictor.ask)
        proxy = Proxy(ctx.sockets, ctx.knows_cluster)
        tls = serving.Serving(kube, serving.ServingSettings(
            tls_cert_file=options.tls_cert_file, tls_key_file=options.tls_key_file,
            client_ca_file=options.requestheader_client_ca_file,
            allowed_names=options.requestheader_allowed_names))
        app = server.build_app(ctx.sockets, proxy, tls.allowed_names, ShadowAPI(kube))
        context = await tls.start()
        runner = await server.start(app, options.bind_address, options.secure_port, context)
        log.info("hub serving on %s:%s", options.bind_address, options.secure_port)
        replica = Supervisor()  # what every replica runs; a crash of one ends the hub (supervision.py)
        background_tasks = [replica.start("the serving certificate check", tls.run())]
        peers, peer_runner = None, None
        if options.peers is not None:
            peers = ctx.sockets.peers = Peers(leases, options.peers, tls.peer_trust, tls.peer_server_name)
            # listening before our Lease announces us: a peer that dialled us in between was refused, and
            # skipped us as down for RENEW_SECONDS
            peer_runner = await server.start(peer_app(peers, ctx.sockets.has_tunnel, ctx.sockets.open_local,
                                                      ctx.sockets.verify),
                                             options.bind_address, options.peers.port, context)
            if options.bind_address not in ("0.0.0.0", "::", "", options.peers.advertise_address):
                log.warning("the other hub replicas dial %s (--peer-advertise-address) but this replica listens "
                            "on %s (--bind-address): they cannot reach it unless both name the same host",
                            options.peers.advertise_address, options.bind_address)
            await peers.start()
            background_tasks.append(replica.start("the peer Lease renewal", peers.run()))
        controllers: list[asyncio.Task[None]] = []

        async def stop_components() -> None:
            tasks = [*controllers, *background_tasks]
            for task in tasks:
                task.cancel()
            # a crash was logged when it happened; a task still running after the grace is waiting on a Helm
            # call, which finishes on a worker thread, not on cancellation: the tunnels are closed regardless
            _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS) if tasks else (set(), set())
            if late:
                log.warning("stopping without waiting for %s", ", ".join(sorted(t.get_name() for t in late)))
            assert ctx.sockets is not None
            await ctx.sockets.close(wait_marks=False)  # their marks are written once the Lease is released
            await runner.cleanup()
            await proxy.close()
            await predictor.close()

        async def finish() -> None:
            """After the Lease's release and kopf's end: the tunnels' marks, which ask the peers whether an agent
            moved (the peers closed first, each mark's question failed with a traceback: CI, test_hub_ha), then
            the peers."""
            assert ctx.sockets is not None
            try:
                await ctx.sockets.finish_marks()
            finally:
                if peer_runner is not None and peers is not None:
                    await peer_runner.cleanup()
                    await peers.close()

        stopping: list[asyncio.Future[None]] = []

        def shutdown() -> asyncio.Future[None]:
            if not stopping:
                # kopf takes SIGTERM with its own handler, so our stop flag may be unset: set it, or kopf's
                # waiter on it counts as a hung task and the exit waits 5 s for it
                if stop is not None:
                    stop.set()
                stopping.append(asyncio.ensure_future(stop_components()))
            return stopping[0]

        ctx.shutdown = shutdown  # kopf's cleanup handler calls it (operator.py), before kopf's final sweep

        async def lead() -> None:
            assert ctx.controller is not None
            leading = Supervisor()  # a crash ends kopf and the leadership (the Lease is released)
            controllers.append(leading.start("the hub's health checks", background(ctx)))
            controllers.append(leading.start("the deployment controller", ctx.controller.run()))
            # a restarting parent's 404s do not end kopf's watches, which call deleted what prime listed and their
            # first listing lacks; kopf's patches are fenced
            kopfhooks.install(ctx.controller.store.seed)
            try:
                await leading.run(kopf.operator(registry=HUB, memo=ctx, standalone=True, clusterwide=True,
                                                stop_flag=stop, ready_flag=ready))
            finally:  # fencing: leadership lost cancels this first, so nothing of ours writes afterwards
                for task in controllers:
                    task.cancel()
                kopfhooks.install()  # no later kopf in this process waits for this controller's prime

        try:
            if options.leader_election.enabled:
                elector = LeaderElector(leases, options.leader_election)
                await replica.run(run_while_leading(elector, stop, lead))
            else:
                await replica.run(lead())
        finally:
            try:
                await shutdown()
            finally:  # its tunnels' marks, held by the close inside kopf's cleanup, outside kopf and the Lease
                await finish()


@click.command(context_settings={"show_default": True})
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Parent cluster kubeconfig (in-cluster when unset)")
@click.option("--bind-address", default="0.0.0.0", help="Address of the hub's HTTPS server")
@click.option("--secure-port", default=10443, type=int, help="Port of the hub's HTTPS server")
@click.option("--tls-cert-file", help="Serving certificate, re-read when it changes (unset: the hub keeps its own "
              "CA and certificate in Secret clusternet-system/clusternet-hub-serving and puts the CA into its "
              "APIService's caBundle)")
@click.option("--tls-private-key-file", help="Serving key")
@click.option("--requestheader-client-ca-file", help="CA of the front proxy (aggregated API requests); unset: "
              "read from ConfigMap kube-system/extension-apiserver-authentication, as aggregated API servers do")
@click.option("--requestheader-allowed-names", default="front-proxy-client",
              help="Comma-separated common names accepted as the front proxy (unset, with the CA read from "
                   "extension-apiserver-authentication: the names listed there; empty: any)")
@click.option("--agent-token-ttl", default="24h", help="Lifetime of the tokens issued to agents")
@go_bool_option("allow-unsealed-tokens", "Approve requests without an agent public key (token returned in plain text)")
@click.option("--cluster-approval", type=click.Choice(["Automatic", "Manual"]), default="Automatic",
              help="Manual: new clusters wait until an admin runs `kubectl clusternet approve|deny`")
@click.option("--cluster-label-prefixes", default="",
              help="Comma-separated label-key prefixes a child may add, change or remove on its ManagedCluster "
                   "after registration, through its request's spec.clusterLabels (default: none)")
@click.option("--health-check-interval", default=5.0, type=float, help="Seconds between health checks")
@click.option("--resync-interval", default=30.0, type=float,
              help="Seconds between full reconciles of Subscriptions and re-applies of pushed Descriptions")
@click.option("--threadiness", default=8, type=click.IntRange(min=1),
              help="Workers of the deployment controller: Subscriptions, Descriptions and pushes handled at once")
@feature_gates_option("Clusternet's gates, e.g. SocketConnection=true,ShadowAPI=true")
@click.option("--peer-port", default=8123, type=int, help="Port on which hub replicas reach each other's tunnels "
              "(0: no forwarding between replicas)")
@click.option("--peer-advertise-address", default="", help="Address the other replicas dial for this one (unset: "
              "the address of the interface that routes outwards, the pod IP in a pod)")
@click.option("--peer-token", default="", help="Token replicas present to each other (unset: a random one kept in "
              "Secret clusternet-system/clusternet-hub-peer)")
@component_options("clusternet-hub")
@inert_options(compat.INERT_FLAGS)
@click.option("-v", "--v", "verbosity", default=None, help="klog-style verbosity: 4 or more logs at DEBUG")
@click.option("--log-level", default="INFO")
@log_format_option()
@click.version_option(__version__)
@click.pass_context
def main(click_ctx: click.Context, /, kubeconfig: str | None, bind_address: str, secure_port: int,
         tls_cert_file: str | None, tls_private_key_file: str | None, requestheader_client_ca_file: str | None,
         requestheader_allowed_names: str, agent_token_ttl: str,
         allow_unsealed_tokens: bool, cluster_approval: str, cluster_label_prefixes: str,
         health_check_interval: float, resync_interval: float, threadiness: int, feature_gates: str, peer_port: int,
         peer_advertise_address: str, peer_token: str, verbosity: str | None,
         log_level: str, log_format: str, **rest: object) -> None:
    """The Clusternet hub: approves cluster registrations and keeps cluster health honest."""
    from clusternet_api.durations import parse_duration

    setup_logging("clusternet-hub", klog_level(log_level, verbosity), log_format == "json")
    report_inert(click_ctx, compat.INERT_FLAGS, logging.getLogger("clusternet_hub.cli"))
    try:
        gates = compat.report_gates(feature_gates)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    election, limits = leader_election_config(rest), client_limits(rest)
    options = HubOptions(
        kubeconfig=kubeconfig, token_ttl_seconds=int(parse_duration(agent_token_ttl)),
        allow_unsealed_tokens=allow_unsealed_tokens, manual_approval=cluster_approval == "Manual",
        cluster_label_prefixes=parse_prefixes(cluster_label_prefixes),
        health_check_interval=health_check_interval, fail_over=gates.get("FailOver", False),
        resync_interval=resync_interval, threadiness=threadiness,
        bind_address=bind_address, secure_port=secure_port, tls_cert_file=tls_cert_file,
        tls_key_file=tls_private_key_file, requestheader_client_ca_file=requestheader_client_ca_file,
        requestheader_allowed_names=None if click_ctx.get_parameter_source("requestheader_allowed_names") ==
        click.core.ParameterSource.DEFAULT else tuple(n for n in requestheader_allowed_names.split(",") if n),
        leader_election=election, kube_api_qps=limits.qps, kube_api_burst=limits.burst,
        peers=PeerConfig(peer_port, peer_advertise_address or default_advertise_address(), peer_token or None)
        if peer_port else None)
    with component_exits(log):  # the parent's kubeconfig; the hub's Lease
        try:
            _run_until_signalled(lambda stop: run_hub(options, stop))
        except ComponentDied as e:  # its traceback is logged already
            log.error("%s", e)
            eventloop.exit_if_threads_remain(1, log)
            sys.exit(1)
        eventloop.exit_if_threads_remain(0, log)


def _run_until_signalled(factory: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await factory(stop)

    eventloop.run(runner())
