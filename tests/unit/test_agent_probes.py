"""The agent's readiness verdict, klog verbosity and Clusternet's inert flags."""

from __future__ import annotations

import asyncio
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
    # a bare Go bool flag leaves the next flag alone
    assert CliRunner().invoke(cmd, ["--leader-elect", "--kube-api-qps=5"]).exit_code == 0
    assert (seen["compat_leader_elect"], seen["compat_kube_api_qps"]) == ("true", "5")


def test_every_upstream_agent_flag_has_a_reason() -> None:
    assert all(f.reason for f in INERT_FLAGS)
    # Clusternet's Go bool flags: a bare one took the next flag as its value (audit s35)
    bools = {f.name for f in INERT_FLAGS if not f.takes_value}
    assert bools == {"use-metrics-server", "enable-tunnel-logging"}
    assert {"use-metrics-server", "predictor-port"} <= {f.name for f in INERT_FLAGS}
    # leader election and client limits are acted on now (clusternet_api.componentflags)
    assert not {"leader-elect", "kube-api-qps", "kube-api-burst"} & {f.name for f in INERT_FLAGS}


async def test_a_standby_that_cannot_read_the_lease_is_not_ready_until_it_can() -> None:
    """A spare on a node cut off from the child's API server could not take over: it says so instead of looking
    ready. Through the real elector and client, against an API server answering 500, then serving again."""
    from clusternet_api.leaderelection import LeaderElector
    from tests.unit.test_leaderelection import CONFIG, LeaseAPI, lease_api

    api = LeaseAPI()
    async with lease_api(api) as kube:
        holder, standby = LeaderElector(kube, CONFIG, "holder"), LeaderElector(kube, CONFIG, "standby")
        assert await holder.try_acquire_or_renew()
        holding = asyncio.create_task(holder.hold())  # renewing: the standby never takes over here
        r = Readiness(report_period=10, standby="waiting for Lease clusternet-system/clusternet-hub",
                      standby_unreachable=lambda: standby.unreachable)
        stop = asyncio.Event()
        api.down = True
        waiting = asyncio.create_task(standby.acquire(stop))
        try:
            await asyncio.sleep(CONFIG.retry_period * 3)
            problems = r.problems()
            assert len(problems) == 1 and problems[0].startswith(
                "standby that could not take over: reading Lease clusternet-system/clusternet-hub failed: ")
            assert "500" in problems[0]
            api.down = False
            await asyncio.sleep(CONFIG.retry_period * 3)
            assert r.problems() == []
        finally:
            stop.set()
            assert await waiting is False
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
