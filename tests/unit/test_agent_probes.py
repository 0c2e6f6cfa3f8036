"""The agent's readiness verdict, klog verbosity and Clusternet's inert flags."""

from __future__ import annotations

import logging

import click
import pytest
from click.testing import CliRunner

from clusternet_agent.cli import INERT_FLAGS
from clusternet_agent.probes import Readiness
from clusternet_api.compatflags import InertFlag, inert_options, klog_level, report_inert


def test_readiness_says_every_reason() -> None:
    r = Readiness(report_period=10, tunnel_enabled=True)
    assert r.problems(100.0) == ["not registered with the parent yet", "the tunnel to the hub is down"]
    r.registered = True
    assert r.problems(100.0)[0] == "no status report accepted by the parent yet"
    r.last_report, r.tunnel_connected = 90.0, True
    assert r.problems(100.0) == []
    assert r.problems(131.0) == ["last status report accepted 41s ago (more than 3 x the 10s period)"]


def test_readiness_ignores_the_tunnel_when_it_is_off() -> None:
    r = Readiness(report_period=10, registered=True, last_report=0.0)
    assert r.problems(5.0) == []


async def test_a_standby_replica_is_ready_and_says_so_until_it_leads() -> None:
    """Clusternet's chart runs 3 agent replicas: the 2 waiting for the Lease must count as ready, or the
    Deployment is never Available (Helm's --wait and `kubectl rollout status` hang). Once leading, the usual
    verdict applies."""
    from aiohttp.test_utils import TestClient, TestServer

    from clusternet_agent.probes import app

    r = Readiness(report_period=10, tunnel_enabled=True, standby="waiting for Lease clusternet-system/x")
    assert r.problems(100.0) == []
    client = TestClient(TestServer(app(r)))
    await client.start_server()
    try:
        resp = await client.get("/readyz")
        assert resp.status == 200 and await resp.text() == "ok: standby, waiting for Lease clusternet-system/x\n"
        r.standby = None  # it leads: not registered yet, no tunnel
        resp = await client.get("/readyz")
        assert resp.status == 503 and "not registered with the parent yet" in await resp.text()
    finally:
        await client.close()


@pytest.mark.parametrize(("level", "verbosity", "expected"), [
    ("INFO", None, "INFO"), ("INFO", "=4", "DEBUG"), ("WARNING", "2", "WARNING"), ("INFO", "5", "DEBUG")])
def test_klog_verbosity(level: str, verbosity: str | None, expected: str) -> None:
    assert klog_level(level, verbosity) == expected


def test_inert_flags_take_go_style_values_and_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    flags = (InertFlag("leader-elect", "one replica", takes_value=False), InertFlag("kube-api-qps", "no limit"))
    seen: dict[str, object] = {}

    @click.command()
    @inert_options(flags)
    @click.pass_context
    def cmd(ctx: click.Context, /, **kw: object) -> None:
        seen.update(kw)
        seen["given"] = report_inert(ctx, flags, logging.getLogger("t"))

    with caplog.at_level(logging.INFO):
        assert CliRunner().invoke(cmd, ["--leader-elect", "--kube-api-qps=50.0"]).exit_code == 0
    assert seen == {"compat_leader_elect": "true", "compat_kube_api_qps": "50.0",
                    "given": ["leader-elect", "kube-api-qps"]}
    assert "--kube-api-qps=50.0 is accepted for compatibility with Clusternet and has no effect here: no limit" \
        in caplog.text
    assert CliRunner().invoke(cmd, ["--leader-elect=false"]).exit_code == 0
    assert seen["compat_leader_elect"] == "false"


def test_every_upstream_agent_flag_has_a_reason() -> None:
    assert all(f.reason for f in INERT_FLAGS)
    assert {"use-metrics-server", "predictor-port"} <= {f.name for f in INERT_FLAGS}
    # leader election and client limits are acted on now (clusternet_api.componentflags)
    assert not {"leader-elect", "kube-api-qps", "kube-api-burst"} & {f.name for f in INERT_FLAGS}
