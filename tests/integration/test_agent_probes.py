"""The agent's own /healthz, /readyz and /metrics, and the arguments Clusternet's charts pass to both binaries.

The endpoints serve HTTPS with a self-signed certificate unless one is given; like the kubelet's probes,
these requests do not verify it.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from clusternet_testing.helpers import wait_for
from clusternet_testing.processes import Proc, flag_value

pytestmark = pytest.mark.integration

# Clusternet's agent chart (clusternet/charts 1.0.0) renders these from its default values.
UPSTREAM_CHART_ARGS = [
    "--cluster-sync-mode=Dual", "--feature-gates=SocketConnection=true,AppPusher=true,Recovery=true,Predictor=true",
    "--leader-elect=true", "--kube-api-qps=50.0", "--kube-api-burst=100", "--use-metrics-server=false",
    "--predictor-direct-access=false", "--predictor-port=8080", "-v=4",
]


# Clusternet's hub chart: its default values rendered (the secure port stays the test's own).
UPSTREAM_HUB_CHART_ARGS = [
    "--feature-gates=SocketConnection=true,ShadowAPI=true", "--anonymous-auth-supported=true",
    "--leader-elect=true", "--leader-elect-resource-namespace=clusternet-system",
    "--reserved-namespace=clusternet-reserved", "--peer-port=8123", "--peer-advertise-address=127.0.0.1",
    "--kube-api-qps=50", "--kube-api-burst=100", "-v=4",
]


def get(agent: Proc, path: str) -> tuple[int, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    url = f"https://127.0.0.1:{flag_value(agent, 'secure-port')}{path}"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()
    except OSError as e:
        return 0, str(e)


@contextlib.contextmanager
def replaced(original: Proc, name: str, extra: list[str]) -> Iterator[Proc]:
    """`original` stopped and run again with `extra` arguments for the block, then restored."""
    original.stop()
    proc = Proc(name, [*original.args, *extra], original.log.with_name(f"{name}.log"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        original.start()


def metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[-1])


def test_probes_and_metrics_tell_what_the_agent_is_doing(hub_and_agents: dict[str, Any]) -> None:
    pusher, hub = hub_and_agents["pusher"], hub_and_agents["hub"]
    assert get(pusher, "/healthz") == (200, "ok")
    wait_for(lambda: get(pusher, "/readyz") == (200, "ok"), timeout=20, what="agent /readyz 200")
    _, metrics = get(pusher, "/metrics")
    assert 'clusternet_agent_registration_attempts_total{result="Approved"}' in metrics
    assert "clusternet_agent_tunnel_up 1.0" in metrics
    assert metric(metrics, "clusternet_agent_heartbeat_duration_seconds_count") >= 1

    before, stopping = len(pusher.output), time.monotonic()
    assert hub.stop(timeout=30) == 0  # the tunnel goes down: not ready, and it says why
    assert time.monotonic() - stopping < 10  # not held up by its tunnels' handlers (the third audit: 31 s)
    try:
        wait_for(lambda: "tunnel to the hub closed (hub shutting down)" in pusher.output[before:], timeout=5,
                 what="the agent told by the hub, not by its keepalive")
        _, body = wait_for(lambda: (r := get(pusher, "/readyz"))[0] == 503 and r, timeout=20,
                                what="agent /readyz 503 while the hub is down")
        assert "the tunnel to the hub is down" in body
        assert get(pusher, "/healthz")[0] == 200  # alive all the same: no restart for a hub outage
    finally:
        hub.start()
    wait_for(lambda: get(pusher, "/readyz") == (200, "ok"), timeout=60, what="agent /readyz 200 after the hub returns")
    _, metrics = get(pusher, "/metrics")
    assert metric(metrics, "clusternet_agent_tunnel_connects_total") >= 2


def test_agent_starts_with_clusternet_chart_arguments(hub_and_agents: dict[str, Any]) -> None:
    """Every flag the upstream chart passes is accepted; the inert ones say so in one line each."""
    pusher: Proc = hub_and_agents["pusher"]
    with replaced(pusher, "agent-chart", UPSTREAM_CHART_ARGS) as chart:
        wait_for(lambda: get(chart, "/readyz") == (200, "ok"), timeout=60, what="the chart-configured agent ready")
        out = chart.output
        for flag in ("use-metrics-server", "predictor-port"):
            assert f"--{flag}=" in out and "has no effect here" in out, flag
        # acted on: the chart's replica holds the agent's Lease in the child before it registers
        assert "acquired Lease clusternet-system/clusternet-agent" in out
        assert " DEBUG " in out  # -v=4 means debug logging, as with klog
        assert "Traceback" not in out
    wait_for(lambda: get(pusher, "/readyz") == (200, "ok"), timeout=60, what="the original agent ready again")


def test_hub_starts_with_clusternet_chart_arguments(hub_and_agents: dict[str, Any]) -> None:
    """The hub takes the upstream hub chart's arguments; agents reconnect to it and turn ready."""
    hub: Proc = hub_and_agents["hub"]
    pusher: Proc = hub_and_agents["pusher"]
    with replaced(hub, "hub-chart", UPSTREAM_HUB_CHART_ARGS) as chart:
        # the agent's own tunnel first: the original hub now stops at once, and the agent may still say ready
        # from before it noticed
        wait_for(lambda: "connected its tunnel" in chart.output, timeout=60, what="a tunnel to the chart's hub")
        wait_for(lambda: get(pusher, "/readyz") == (200, "ok"), timeout=60, what="the agent ready with the chart's hub")
        # --leader-elect=true is acted on (every replica serves tunnels at once; the Lease may come a moment later)
        wait_for(lambda: "acquired Lease clusternet-system/clusternet-hub" in chart.output, timeout=30,
                 what="the chart's hub leading")
        out = chart.output
        for flag in ("reserved-namespace", "anonymous-auth-supported"):
            assert f"--{flag}=" in out, flag
        assert "serves peers on https://127.0.0.1:8123" in out  # --peer-port and --peer-advertise-address acted on
        assert "ShadowAPI" not in out  # the hub serves the shadow API (an active gate): nothing to say about it
        assert " DEBUG " in out and "Traceback" not in out
    wait_for(lambda: get(pusher, "/readyz") == (200, "ok"), timeout=60, what="the agent ready with the original hub")
