"""`clusternet-agent`: register this (child) cluster with a parent and report its health.

Flag names follow Clusternet's agent so existing Deployments and charts keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

import click

from clusternet_agent import probes
from clusternet_agent.agent import run_agent
from clusternet_agent.options import (
    CLUSTER_TYPES,
    SYNC_MODES,
    AgentOptions,
    OptionsError,
    parse_feature_gates,
    parse_labels,
)
from clusternet_api import __version__, eventloop, known
from clusternet_api.compatflags import (
    KLOG_INERT_FLAGS,
    InertFlag,
    feature_gates_option,
    inert_options,
    klog_level,
    log_format_option,
    report_inert,
)
from clusternet_api.componentflags import (
    client_limits,
    component_exits,
    component_options,
    go_bool_option,
    leader_election_config,
)
from clusternet_api.durations import parse_duration
from clusternet_api.logs import setup_logging

log = logging.getLogger("clusternet_agent.cli")

INERT_FLAGS = (
    # Go bool flags (`--flag` alone or `--flag=true|false`): with a value required, a bare one took the next flag
    # as its value, and `--use-metrics-server --cluster-sync-mode=Dual` registered a Pull cluster (audit s35)
    InertFlag("use-metrics-server", "heartbeats do not read metrics-server: podStatistics and resourceUsage are "
              "left out rather than estimated", takes_value=False),
    InertFlag("labels-aggregate-threshold", "node labels are not aggregated into cluster labels: labels come "
              "from --cluster-labels under the hub's policy"),
    InertFlag("labels-aggregate-prefix", "node labels are not aggregated into cluster labels: labels come "
              "from --cluster-labels under the hub's policy"),
    InertFlag("predictor-port", "the built-in predictor listens on no port: the hub asks it through the tunnel, "
              "and this agent answers in-process"),
    InertFlag("enable-tunnel-logging", "tunnel events are always logged at INFO/WARNING; use --log-level=DEBUG "
              "for more", takes_value=False),
    *KLOG_INERT_FLAGS,
)


@click.command(context_settings={"show_default": True})
@click.option("--kubeconfig", help="Child cluster kubeconfig (in-cluster config when unset)")
@click.option("--cluster-reg-parent-url", envvar="PARENT_URL", help="https:// URL of the parent apiserver")
@click.option("--cluster-reg-token", envvar="REG_TOKEN", help="Bootstrap or ServiceAccount token")
@click.option("--cluster-reg-name", help="Cluster name (random with the prefix when unset)")
@click.option("--cluster-reg-name-prefix", default=known.DEFAULT_CLUSTER_NAME_PREFIX)
@click.option("--cluster-reg-namespace", help="Dedicated namespace to request on the parent")
@click.option("--cluster-reg-type", type=click.Choice(CLUSTER_TYPES), default="StandardCluster")
@click.option("--cluster-sync-mode", type=click.Choice(SYNC_MODES), default="Pull")
@click.option("--cluster-labels", default="", help="k=v,k2=v2 labels for the ManagedCluster")
@click.option("--cluster-status-collect-frequency", default="20s")
@click.option("--cluster-status-update-frequency", default="3m")
@feature_gates_option("e.g. AppPusher=true,SocketConnection=true")
@click.option("--parent-ca-file", help="Pin the parent's CA for registration (else parentCA of the bootstrap "
              "Secret, else, for a bootstrap token, the CA the parent signs in kube-public/cluster-info)")
@go_bool_option("parent-insecure-skip-tls-verify",
                "Do not verify the parent's certificate during registration (not recommended)")
@click.option("--cluster-id", hidden=True, help="Override the cluster ID (simulated agents in benchmarks)")
@click.option("--apiserver-url", help="URL of this cluster's apiserver to report (default: as reached)")
@click.option("--tunnel-url", help="Hub tunnel URL (default: the parent URL, via the aggregated API)")
@click.option("--tunnel-ca-file", help="CA of the tunnel endpoint, trusted alone (default: the parent CA; with "
              "--tunnel-url, the parent CA and the system's CAs)")
@click.option("--tunnel-allowed-address", multiple=True,
              help="host:port the hub may reach through the tunnel besides this cluster's apiserver")
@click.option("--predictor-addr", help="URL of an external predictor to report (with the Predictor gate; default: "
              "the built-in one, answered through the tunnel)")
@go_bool_option("predictor-direct-access", "The hub asks --predictor-addr directly rather than through the tunnel")
@click.option("--description-resync-frequency", default="30s",
              help="How often pulled Descriptions are re-applied, putting back changes made by hand")
@click.option("--secure-port", default=10650, type=int,
              help="HTTPS port of /healthz, /readyz and /metrics (Clusternet's 10650); 0 turns them off")
@click.option("--bind-address", default="0.0.0.0", help="Address of /healthz, /readyz and /metrics")
@click.option("--tls-cert-file", help="Serving certificate for the secure port (self-signed when unset)")
@click.option("--tls-private-key-file", help="Key of --tls-cert-file")
@component_options("clusternet-agent")
@inert_options(INERT_FLAGS)
@click.option("-v", "--v", "verbosity", default=None,
              help="klog-style verbosity (Clusternet's charts pass it): 4 or more logs at DEBUG")
@click.option("--log-level", default="INFO")
@log_format_option()
@click.version_option(__version__)
@click.pass_context
def main(ctx: click.Context, /, **kw: Any) -> None:
    """The Clusternet agent for a child cluster."""
    setup_logging("clusternet-agent", klog_level(kw["log_level"], kw["verbosity"]), kw["log_format"] == "json")
    report_inert(ctx, INERT_FLAGS, log)
    try:
        opts = AgentOptions(
            kubeconfig=_s(kw["kubeconfig"]), parent_url=_s(kw["cluster_reg_parent_url"]),
            reg_token=_s(kw["cluster_reg_token"]), cluster_name=_s(kw["cluster_reg_name"]),
            cluster_name_prefix=str(kw["cluster_reg_name_prefix"]),
            cluster_namespace=_s(kw["cluster_reg_namespace"]), cluster_type=str(kw["cluster_reg_type"]),
            sync_mode=str(kw["cluster_sync_mode"]), cluster_labels=parse_labels(str(kw["cluster_labels"])),
            collect_frequency=parse_duration(str(kw["cluster_status_collect_frequency"])),
            update_frequency=parse_duration(str(kw["cluster_status_update_frequency"])),
            feature_gates=parse_feature_gates(str(kw["feature_gates"])),
            parent_ca_file=_s(kw["parent_ca_file"]),
            parent_insecure_skip_tls_verify=bool(kw["parent_insecure_skip_tls_verify"]),
            cluster_id=_s(kw["cluster_id"]), apiserver_url=_s(kw["apiserver_url"]),
            tunnel_url=_s(kw["tunnel_url"]), tunnel_ca_file=_s(kw["tunnel_ca_file"]),
            tunnel_allowed=tuple(kw["tunnel_allowed_address"]),
            resync_frequency=parse_duration(str(kw["description_resync_frequency"])),
            predictor_addr=_s(kw["predictor_addr"]), predictor_direct_access=bool(kw["predictor_direct_access"]))
        limits = client_limits(kw)
        opts.leader_election = leader_election_config(kw)
        opts.kube_api_qps, opts.kube_api_burst = limits.qps, limits.burst
        # Fail fast on flags; the parent URL and token may still come from the bootstrap Secret (checked later).
        if opts.parent_url:
            opts.validate()
        else:
            opts.validate_flags()
        opts.check_ca_files()
    except (OptionsError, ValueError, click.BadParameter) as e:
        click.echo(f"error: {e.format_message() if isinstance(e, click.ClickException) else e}", err=True)
        sys.exit(2)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        readiness = probes.Readiness(report_period=opts.update_frequency,
                                     tunnel_enabled=opts.gate(known.GATE_SOCKET_CONNECTION))
        server = None
        if kw["secure_port"]:
            server = await probes.serve(readiness, str(kw["bind_address"]), int(kw["secure_port"]),
                                        _s(kw["tls_cert_file"]), _s(kw["tls_private_key_file"]))
        try:
            await run_agent(opts, stop, readiness=readiness)
        finally:
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.cleanup()

    try:
        with component_exits(log):  # the child's kubeconfig; the agent's Lease
            eventloop.run(runner())
    except OptionsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Exception:
        # the foreground (registration, heartbeats) failed: logged, so the traceback is redacted and in the log's
        # format, then exit 1 for the Deployment to start the agent again (clusternet_agent.supervision)
        log.critical("clusternet-agent failed; exiting", exc_info=True)
        eventloop.exit_if_threads_remain(1, log)
        sys.exit(1)
    eventloop.exit_if_threads_remain(0, log)


def _s(value: str | bool | None) -> str | None:
    return str(value) if value else None
