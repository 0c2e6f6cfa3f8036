"""Kubernetes component-base flags that hub and agent act on, spelled as Clusternet's binaries take them:
--leader-elect* (clusternet_api.leaderelection) and --kube-api-qps / --kube-api-burst (clusternet_api.kube)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from clusternet_api import known
from clusternet_api.durations import parse_duration
from clusternet_api.execplugin import CredentialsError
from clusternet_api.fence import LeadershipLost
from clusternet_api.leaderelection import LeaderElectionConfig

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_QPS = 50.0  # Clusternet's defaults for every binary (its charts pass the same)
DEFAULT_BURST = 100


@dataclass(frozen=True)
class ClientLimits:
    qps: float = DEFAULT_QPS
    burst: int = DEFAULT_BURST


def _go_bool(value: object, flag: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "t"):
        return True
    if text in ("false", "0", "f"):
        return False
    raise click.BadParameter(f"--{flag}={value}: must be true or false")


def go_bool_option(name: str, help_text: str) -> Callable[[F], F]:
    """A switch of ours spelled as a Go bool flag: `--name` alone or `--name=true|false` (also 1/0, t/f, as
    strconv.ParseBool), default false; the command receives a bool. A click flag (is_flag) refused any value, and
    both charts render every extraArgs entry as `--name=value`, so setting one through a chart crash-looped the
    binary (audit s36)."""
    return click.option(f"--{name}", name.replace("-", "_"), is_flag=False, flag_value="true", default="false",
                        metavar="BOOL", help=help_text + " (true|false; alone: true)",
                        callback=lambda _ctx, _param, value: _go_bool(value, name))


def component_options(lease_name: str) -> Callable[[F], F]:
    """--leader-elect (Go bool: alone or =true|false, default true as Clusternet), its five settings, and the
    client's QPS and burst. `lease_name` is the default --leader-elect-resource-name."""
    options = [
        click.option("--leader-elect", "leader_elect", is_flag=False, flag_value="true", default="true",
                     help="Run the work only while holding a coordination.k8s.io Lease (true|false); replicas "
                          "that do not hold it wait"),
        click.option("--leader-elect-lease-duration", default="15s",
                     help="How long a standby waits after the last observed renewal before taking the Lease"),
        click.option("--leader-elect-renew-deadline", default="10s",
                     help="How long the leader keeps trying to renew before it stops leading (and exits)"),
        click.option("--leader-elect-retry-period", default="2s",
                     help="Between attempts to acquire or renew"),
        click.option("--leader-elect-resource-lock", default="leases", help="Only 'leases' is supported"),
        click.option("--leader-elect-resource-name", default=lease_name, help="Name of the Lease"),
        click.option("--leader-elect-resource-namespace", default=known.SYSTEM_NAMESPACE,
                     help="Namespace of the Lease (created when missing)"),
        click.option("--kube-api-qps", default=str(DEFAULT_QPS),
                     help="Requests per second to the API server, on average (watches not counted); "
                          "0 or negative: no limit"),
        click.option("--kube-api-burst", default=DEFAULT_BURST, type=int,
                     help="Requests to the API server at once, above the QPS"),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def leader_election_config(kw: Mapping[str, Any]) -> LeaderElectionConfig:
    """The config from component_options' values; click.BadParameter for a value that cannot work."""
    try:
        config = LeaderElectionConfig(
            enabled=_go_bool(kw["leader_elect"], "leader-elect"),
            lease_duration=parse_duration(str(kw["leader_elect_lease_duration"])),
            renew_deadline=parse_duration(str(kw["leader_elect_renew_deadline"])),
            retry_period=parse_duration(str(kw["leader_elect_retry_period"])),
            resource_lock=str(kw["leader_elect_resource_lock"]),
            resource_name=str(kw["leader_elect_resource_name"]),
            resource_namespace=str(kw["leader_elect_resource_namespace"]))
        if config.enabled:
            config.validate()
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    return config


def client_limits(kw: Mapping[str, Any]) -> ClientLimits:
    """The client-side limits, as client-go reads them: a negative QPS turns the limiter off (the idiom of
    controllers that leave fairness to the API server's Priority and Fairness; Clusternet's binaries accept it),
    its burst then unread. Where we differ: a QPS of 0 also means no limit here (client-go would take its default
    of 5), and a burst of 0 under a positive QPS means a burst of the QPS (client-go: 10)."""
    try:
        qps = float(kw["kube_api_qps"])
    except ValueError as e:
        raise click.BadParameter(f"--kube-api-qps={kw['kube_api_qps']}: not a number") from e
    burst = int(kw["kube_api_burst"])
    if qps < 0:
        return ClientLimits(qps=0.0, burst=0)
    if burst < 0:
        raise click.BadParameter(f"--kube-api-burst={burst}: must not be negative under --kube-api-qps={qps:g} "
                                 "(a negative --kube-api-qps turns the limit off)")
    return ClientLimits(qps=qps, burst=burst)


@contextlib.contextmanager
def component_exits(log: logging.Logger) -> Iterator[None]:
    """How hub and agent end on what no retry fixes: a kubeconfig's credentials failing (one line, as kubectl says
    it, exit 1), or the Lease lost (logged, exit 1, so the Deployment starts a clean replica, as Kubernetes'
    components do)."""
    try:
        yield
    except CredentialsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except LeadershipLost as e:
        log.error("leaderelection lost: %s; exiting", e)
        sys.exit(1)
