"""The agent's own health: `/healthz`, `/readyz` and `/metrics` on its secure port (Clusternet's 10650).

`/healthz` answers while the process serves at all (a liveness probe restarts a wedged agent). `/readyz` is
stricter and says why it fails: the agent must be registered, its last status report to the parent must be
younger than 3 x the report period (the same grace the hub gives it before marking the cluster Unknown),
and, with SocketConnection on, its tunnel must be up. A replica waiting for the agent's Lease is ready
(`ok: standby, ...`): it is there to take over, and a Deployment of 3 would otherwise never be Available; unless
its last attempt to read the Lease failed, since it could not take over then.
Clusternet's agent serves only `/healthz` and always answers ok there, so an agent that cannot reach its parent
looks healthy; ours tells Kubernetes (and the person reading `kubectl describe pod`) what is wrong.

Metrics are process-wide Prometheus counters in their own registry (simulated agents in benchmarks share
one process and add up, which is what a bench wants to read).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from clusternet_api.pki import serving_context

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
registration_attempts = Counter("clusternet_agent_registration_attempts_total",
                                "Registration attempts, by result (Approved, Failed)", ["result"], registry=REGISTRY)
heartbeat_seconds = Histogram("clusternet_agent_heartbeat_duration_seconds",
                              "Time to write one status report to the parent",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
heartbeat_failures = Counter("clusternet_agent_heartbeat_failures_total",
                             "Status reports the parent did not accept or could not be sent", registry=REGISTRY)
tunnel_up = Gauge("clusternet_agent_tunnel_up", "1 while the tunnel to the hub is connected", registry=REGISTRY)
tunnel_connects = Counter("clusternet_agent_tunnel_connects_total", "Tunnel connections established (first and "
                          "every reconnect)", registry=REGISTRY)
pull_apply_seconds = Histogram("clusternet_agent_pull_apply_duration_seconds",
                               "Time to apply one Description in Pull mode",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
pull_apply_errors = Counter("clusternet_agent_pull_apply_errors_total",
                            "Descriptions whose apply raised or did not succeed in Pull mode", registry=REGISTRY)

GRACE_MULTIPLIER = 3
"""Reports missed before /readyz fails: the hub's grace for a silent cluster (clusternet_hub.health)."""


@dataclass
class Readiness:
    """What /readyz judges, updated by the agent's loops."""

    report_period: float
    tunnel_enabled: bool = False
    registered: bool = False
    last_report: float | None = None
    """time.monotonic() of the last status report the parent accepted."""
    tunnel_connected: bool = False
    standby: str | None = None
    """Set while this replica waits for the agent's Lease (what it waits for): such a replica is ready, as a
    standby hub replica is, so that a Deployment of several agent replicas (Clusternet's chart runs 3) is
    Available and rolls out; only the holder's readiness says whether the cluster is served."""
    standby_unreachable: Callable[[], str | None] | None = None
    """Why this standby could not take over now (its last attempt to read the Lease failed: the child's API
    server out of its reach), None when it could. A standby that could not is not ready: a replica on a node cut
    off from the API server would otherwise look like a working spare."""

    def reported(self) -> None:
        self.last_report = time.monotonic()

    def set_tunnel(self, up: bool) -> None:
        if up and not self.tunnel_connected:
            tunnel_connects.inc()
        self.tunnel_connected = up
        tunnel_up.set(1 if up else 0)

    def problems(self, now: float | None = None) -> list[str]:
        """Why the agent is not ready; empty when it is (a standby is unless it cannot reach the Lease)."""
        now = time.monotonic() if now is None else now
        found: list[str] = []
        if self.standby is not None:
            why = self.standby_unreachable() if self.standby_unreachable is not None else None
            return [f"standby that could not take over: {why}"] if why else found
        if not self.registered:
            found.append("not registered with the parent yet")
        elif self.last_report is None:
            found.append("no status report accepted by the parent yet")
        elif now - self.last_report > GRACE_MULTIPLIER * self.report_period:
            found.append(f"last status report accepted {now - self.last_report:.0f}s ago "
                         f"(more than {GRACE_MULTIPLIER} x the {self.report_period:.0f}s period)")
        if self.tunnel_enabled and not self.tunnel_connected:
            found.append("the tunnel to the hub is down")
        return found


def app(readiness: Readiness) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        problems = readiness.problems()
        if problems:
            return web.Response(status=503, text="not ready: " + "; ".join(problems) + "\n")
        if readiness.standby is not None:
            return web.Response(text=f"ok: standby, {readiness.standby}\n")
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/livez", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/metrics", metrics)
    return application


async def serve(readiness: Readiness, bind_address: str, port: int, cert_file: str | None = None,
                key_file: str | None = None) -> web.AppRunner:
    """Start the endpoints; the caller cleans the returned runner up. Without a certificate, a self-signed
    one (kubelet probes do not verify it; Clusternet's agent does the same through the generic apiserver)."""
    runner = web.AppRunner(app(readiness), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, bind_address, port, ssl_context=serving_context(cert_file, key_file, "clusternet-agent"))
    await site.start()
    log.info("serving /healthz, /readyz and /metrics on https://%s:%s", bind_address, port)
    return runner
