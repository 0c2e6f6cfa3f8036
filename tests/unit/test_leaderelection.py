"""Leader election on a Lease (clusternet_api.leaderelection) against an in-memory Lease API over HTTP."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

import clusternet_api.leaderelection as le
from clusternet_api.credentials import Credentials
from clusternet_api.kube import Kube
from clusternet_api.leaderelection import (
    LeaderElectionConfig,
    LeaderElector,
    LeadershipLost,
    lease_seconds,
    run_while_leading,
)

CONFIG = LeaderElectionConfig(lease_duration=1.0, renew_deadline=0.5, retry_period=0.1,
                              resource_name="clusternet-hub", resource_namespace="clusternet-system")
PATH = "/apis/coordination.k8s.io/v1/namespaces/clusternet-system/leases"
WORK_PATH = "/api/v1/namespaces/default/configmaps"  # what the leader's work writes


class LeaseAPI:
    """GET/POST/PUT of Leases with resourceVersion conflicts; namespaces can be missing."""

    def __init__(self, namespaces: tuple[str, ...] = ("clusternet-system",)) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.namespaces = set(namespaces)
        self.rv = 0
        self.down = False
        self.puts: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        if request.path == WORK_PATH:
            return web.json_response({}, status=201)
        if self.down:
            return web.json_response({"message": "down"}, status=500)
        if request.path == "/api/v1/namespaces" and request.method == "POST":
            body = await request.json()
            self.namespaces.add(body["metadata"]["name"])
            return web.json_response(body, status=201)
        ns = request.path.split("/")[5]
        name = request.path.split("/")[7] if request.path.count("/") >= 7 else None
        if request.method == "GET":
            lease = self.leases.get(name or "")
            return web.json_response(lease) if lease else web.json_response({"message": "nf"}, status=404)
        body = await request.json()
        if ns not in self.namespaces:
            return web.json_response({"message": f"namespaces {ns!r} not found"}, status=404)
        if request.method == "POST":
            if body["metadata"]["name"] in self.leases:
                return web.json_response({"message": "exists"}, status=409)
            return web.json_response(self._store(body), status=201)
        current = self.leases[name or ""]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return web.json_response({"message": "conflict"}, status=409)
        self.puts.append(copy.deepcopy(body["spec"]))
        return web.json_response(self._store(body))

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        body = json.loads(json.dumps(body))
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.leases[body["metadata"]["name"]] = body
        return body

    def steal(self, holder: str) -> None:
        lease = self.leases["clusternet-hub"]
        lease["spec"]["holderIdentity"] = holder
        self.rv += 1
        lease["metadata"]["resourceVersion"] = str(self.rv)

    @property
    def holder(self) -> str:
        return str(self.leases["clusternet-hub"]["spec"].get("holderIdentity") or "")


@asynccontextmanager
async def lease_api(api: LeaseAPI) -> AsyncIterator[Kube]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with Kube(Credentials(f"http://127.0.0.1:{runner.addresses[0][1]}")) as kube:
            yield kube
    finally:
        await runner.cleanup()


def test_config_is_checked_as_client_go_does() -> None:
    CONFIG.validate()
    with pytest.raises(ValueError, match="only 'leases'"):
        LeaderElectionConfig(resource_lock="endpointsleases", resource_name="x").validate()
    with pytest.raises(ValueError, match="greater than --leader-elect-renew-deadline"):
        LeaderElectionConfig(lease_duration=10, renew_deadline=10, resource_name="x").validate()
    with pytest.raises(ValueError, match=r"1\.2 x"):
        LeaderElectionConfig(renew_deadline=2, retry_period=2, resource_name="x").validate()


async def test_first_candidate_creates_the_lease_and_a_second_waits() -> None:
    api = LeaseAPI(namespaces=())  # the namespace is created on first use
    async with lease_api(api) as kube:
        a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
        assert await asyncio.wait_for(a.acquire(), 2)
        assert api.holder == "a" and api.leases["clusternet-hub"]["spec"]["leaseDurationSeconds"] == 1
        assert not await b.try_acquire_or_renew()
        holding = asyncio.create_task(a.hold())
        stop = asyncio.Event()
        waiting = asyncio.create_task(b.acquire(stop))
        await asyncio.sleep(1.5)  # a renews, so b never sees it expire
        assert not waiting.done() and api.holder == "a"
        assert len(api.puts) >= 5
        assert api.leases["clusternet-hub"]["spec"]["leaseTransitions"] == 0
        stop.set()
        assert await waiting is False
        holding.cancel()


async def test_standby_takes_over_after_expiry_on_its_own_clock() -> None:
    api = LeaseAPI()
    async with lease_api(api) as kube:
        a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
        assert await a.try_acquire_or_renew()
        # the holder's renewTime says "far future": irrelevant, only an observed change counts
        api.leases["clusternet-hub"]["spec"]["renewTime"] = "2999-01-01T00:00:00.000000Z"
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await asyncio.wait_for(b.acquire(), 3)  # a never renews (killed)
        assert 1.0 <= loop.time() - start < 1.6
        spec = api.leases["clusternet-hub"]["spec"]
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


async def test_leader_loses_when_another_holder_appears() -> None:
    api = LeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        stop = asyncio.Event()
        writes: list[str] = []

        async def work() -> None:
            while True:
                writes.append("w")
                await asyncio.sleep(0.01)

        running = asyncio.create_task(run_while_leading(a, stop, work))
        await asyncio.sleep(0.3)
        api.steal("b")  # a write a does not know about: its next renewal conflicts, then it sees b
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(running, 2)
        n = len(writes)
        await asyncio.sleep(0.1)
        assert len(writes) == n  # the work was cancelled: no more writes
        assert api.holder == "b" and not a.leading


async def test_leader_gives_up_when_renewals_fail_past_the_deadline() -> None:
    api = LeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        assert await a.try_acquire_or_renew()
        api.down = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(a.hold(), 2)
        # the renew deadline from the last renewal sent (as the write fence counts)
        assert CONFIG.renew_deadline - 0.05 <= loop.time() - start < 1.0
        assert not a.leading


async def test_the_fence_counts_the_time_a_suspended_machine_slept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit s36, HA F10: on the event loop's clock (CLOCK_MONOTONIC, stopped while a VM is suspended) a leader
    suspended past its lease woke believing its last renewal recent, and its writes went out. The election's clock
    is CLOCK_BOOTTIME, which goes on: the event loop's clock does not move here, and the fence still closes."""
    if le._BOOTTIME is None:
        pytest.skip("no CLOCK_BOOTTIME on this platform: time.monotonic() is used")
    slept = [0.0]
    real = time.clock_gettime
    monkeypatch.setattr(le.time, "clock_gettime",
                        lambda clock: real(clock) + (slept[0] if clock == le._BOOTTIME else 0.0))
    async with lease_api(LeaseAPI()) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        assert await a.try_acquire_or_renew()
        loop_time = asyncio.get_running_loop().time()
        a.fence()  # just renewed: writes pass
        slept[0] = 60.0  # suspended for a minute: boot time moved, the monotonic clock did not
        assert asyncio.get_running_loop().time() - loop_time < CONFIG.renew_deadline
        with pytest.raises(LeadershipLost):
            a.fence()


async def test_a_leader_frozen_past_its_lease_writes_nothing_on_waking() -> None:
    """SIGSTOP then SIGCONT: the work's timers are all due at once, before any renewal can read the Lease. Its
    writes are refused without a round trip (fence), and the renewal gives up without trying (fourth audit)."""
    api = LeaseAPI()
    now = [0.0]
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a", clock=lambda: now[0])
        stop, write = asyncio.Event(), asyncio.Event()
        outcomes: list[str] = []

        async def work() -> None:
            while True:
                await write.wait()
                write.clear()
                try:
                    await kube.request("POST", WORK_PATH, {"kind": "ConfigMap"})
                    outcomes.append("sent")
                except LeadershipLost:
                    outcomes.append("fenced")

        running = asyncio.create_task(run_while_leading(a, stop, work))
        await asyncio.sleep(0.3)  # leading and renewing
        write.set()
        await asyncio.sleep(0.1)
        assert outcomes == ["sent"]
        renewals = len(api.puts)
        now[0] += CONFIG.lease_duration * 10  # frozen, as the monotonic clock sees it on waking
        write.set()
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(running, 2)
        assert outcomes == ["sent", "fenced"]
        assert api.requests.count(("POST", WORK_PATH)) == 1 and len(api.puts) == renewals  # neither went out
        assert not a.leading
        # the elector's own requests (and any work not run while leading) have no fence
        await kube.request("POST", WORK_PATH, {"kind": "ConfigMap"})


async def test_clean_shutdown_releases_so_a_standby_takes_over_at_once() -> None:
    api = LeaseAPI()
    async with lease_api(api) as kube:
        a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
        stop = asyncio.Event()
        running = asyncio.create_task(run_while_leading(a, stop, stop.wait))
        await asyncio.sleep(0.2)
        assert api.holder == "a"
        stop.set()
        await asyncio.wait_for(running, 2)
        spec = api.leases["clusternet-hub"]["spec"]
        assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1
        assert await b.try_acquire_or_renew()  # no holder: no need to wait for expiry


async def test_leading_work_stopped_from_outside_releases_the_lease() -> None:
    """Audit s36 F6: the hub's Supervisor cancels run_while_leading when a replica-level task dies; the Lease was
    left held, so the standby waited out the whole lease duration instead of taking over at once."""
    api = LeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        running = asyncio.create_task(run_while_leading(a, asyncio.Event(), asyncio.Event().wait))
        await asyncio.sleep(0.2)
        assert api.holder == "a"
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert api.holder == "" and api.leases["clusternet-hub"]["spec"]["leaseDurationSeconds"] == 1


def test_the_lease_never_says_less_than_the_renew_deadline() -> None:
    """Audit s36 F7: 10.4 s against a 10.3-s renew deadline wrote 10 s, within the leader's fence; rounded up it is
    11. Review s36: what validated before still does (1.5 s / 1.2 s)."""
    for lease, renew, written in ((10.4, 10.3, 11), (1.5, 1.2, 2), (15, 10, 15)):
        config = LeaderElectionConfig(lease_duration=lease, renew_deadline=renew, retry_period=0.5, resource_name="x")
        config.validate()
        assert lease_seconds(config.lease_duration) == written > renew


async def test_release_after_a_renewal_we_did_not_see_still_releases() -> None:
    api = LeaseAPI()
    async with lease_api(api) as kube:
        a = LeaderElector(kube, CONFIG, "a")
        assert await a.try_acquire_or_renew()
        api.steal("a")  # a renewal cancelled by the shutdown that reached the API server: our copy is stale
        await a.release()
        assert api.holder == "" and api.leases["clusternet-hub"]["spec"]["leaseDurationSeconds"] == 1
        api.steal("b")  # someone else's Lease is never cleared
        a.leading, a._lease = True, copy.deepcopy(api.leases["clusternet-hub"])
        api.steal("b")
        await a.release()
        assert api.holder == "b"


async def test_racing_candidates_one_wins_by_resource_version() -> None:
    api = LeaseAPI()
    async with lease_api(api) as kube:
        first = LeaderElector(kube, CONFIG, "a")
        assert await first.try_acquire_or_renew()
        await first.release()
        candidates = [LeaderElector(kube, CONFIG, f"c{i}") for i in range(5)]
        results = await asyncio.gather(*(c.try_acquire_or_renew() for c in candidates))
        assert results.count(True) >= 1
        assert api.holder in {c.identity for c, won in zip(candidates, results, strict=True) if won}
        # only one write can be based on the released version: the others conflicted
        assert sum(results) == 1


def test_flags_become_a_config_with_kubernetes_defaults() -> None:
    import click
    from click.testing import CliRunner

    from clusternet_api.componentflags import client_limits, component_options, leader_election_config

    seen: dict[str, Any] = {}

    @click.command()
    @component_options("clusternet-agent")
    def cmd(**kw: Any) -> None:
        seen["config"], seen["limits"] = leader_election_config(kw), client_limits(kw)

    assert CliRunner().invoke(cmd, []).exit_code == 0
    assert seen["config"] == LeaderElectionConfig(enabled=True, lease_duration=15, renew_deadline=10, retry_period=2,
                                                  resource_name="clusternet-agent")
    assert (seen["limits"].qps, seen["limits"].burst) == (50.0, 100)
    assert CliRunner().invoke(cmd, ["--leader-elect", "--kube-api-qps=5", "--kube-api-burst=7"]).exit_code == 0
    assert seen["config"].enabled and (seen["limits"].qps, seen["limits"].burst) == (5.0, 7)
    assert CliRunner().invoke(cmd, ["--leader-elect=false", "--leader-elect-resource-lock=endpoints"]).exit_code == 0
    assert not seen["config"].enabled  # nothing checked when off
    # client-go's "no client-side limit" (Clusternet's binaries take it): the burst is then unread
    assert CliRunner().invoke(cmd, ["--kube-api-qps=-1", "--kube-api-burst=-1"]).exit_code == 0
    assert (seen["limits"].qps, seen["limits"].burst) == (0.0, 0)
    result = CliRunner().invoke(cmd, ["--kube-api-qps=5", "--kube-api-burst=-1"])
    assert result.exit_code == 2 and "--kube-api-burst=-1: must not be negative" in result.output
    result = CliRunner().invoke(cmd, ["--leader-elect-resource-lock=endpoints"])
    assert result.exit_code == 2 and "only 'leases' is supported" in result.output
    result = CliRunner().invoke(cmd, ["--leader-elect=maybe"])
    assert result.exit_code == 2 and "must be true or false" in result.output


async def test_an_agent_replica_waits_while_another_holds_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the Lease holder registers: a second agent replica does nothing but wait, then takes over."""
    from clusternet_agent import agent, identity
    from clusternet_agent.options import AgentOptions

    api = LeaseAPI()
    config = LeaderElectionConfig(lease_duration=1.0, renew_deadline=0.5, retry_period=0.1,
                                  resource_name="clusternet-hub", resource_namespace="clusternet-system")
    registered: list[str] = []

    async def nothing(*_: object) -> None:
        return None

    async def register(*_: object) -> None:
        registered.append("now")  # and stop as if registration ended the run
        return None

    async def fixed_id(*_: object) -> str:
        return "cid"

    async def key(*_: object) -> bytes:
        return b"k"

    monkeypatch.setattr(agent, "apply_bootstrap_secret", nothing)
    monkeypatch.setattr(identity, "ensure_namespace", nothing)
    monkeypatch.setattr(identity, "load_or_create_key", key)
    monkeypatch.setattr(agent, "register_until_done", register)
    async with lease_api(api) as kube:
        other = LeaderElector(kube, config, "other-replica")
        assert await other.try_acquire_or_renew()
        holding = asyncio.create_task(other.hold())
        opts = AgentOptions(parent_url="https://parent.example", reg_token="abcdef.0123456789abcdef",
                            parent_insecure_skip_tls_verify=True, cluster_id="cid", leader_election=config)
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run_agent(opts, stop, child_creds=kube.creds))
        await asyncio.sleep(1.5)
        assert registered == [] and not running.done()  # the holder keeps renewing: this replica waits
        holding.cancel()  # the other replica dies without releasing
        await asyncio.wait_for(running, 3)  # it takes over, registers (our stub returns: run over), releases
        assert registered == ["now"]
        assert api.holder == ""  # released on the way out


def test_a_replicas_own_bookkeeping_started_from_leader_work_has_no_fence() -> None:
    """SocketRegistry._record runs in fence.unfenced(): the shutdown kopf's cleanup handler starts (leader work)
    closes the tunnels, and their SocketConnected marks were refused by the fence (fourth audit)."""
    from clusternet_api import fence

    def lost() -> None:
        raise LeadershipLost("lease expired")

    token = fence.WRITE_FENCE.set(lost)
    try:
        with pytest.raises(LeadershipLost):
            fence.check("PATCH")
        assert fence.unfenced().run(fence.current) is None
        fence.unfenced().run(fence.check, "PATCH")  # no fence there: nothing raised
        fence.check("GET")  # reads are never fenced
    finally:
        fence.WRITE_FENCE.reset(token)
