"""The Leases are never queued behind a component's own burst of requests (review 6, finding 1).

The hub renewed its leader Lease and its peer Lease through its one rate-limited client: at leader start kopf
resumes every approved registration at once (~6 requests each), so with ~100 clusters a renewal waited past the
renew deadline and the leader exited, and the standby did the same, for ever. Real `Kube` (with its limiter) and
`LeaderElector` against an in-memory Lease API over HTTP; small lease durations and a small --kube-api-qps make
the same queue in about 2 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.kube import Kube
from clusternet_api.leaderelection import LeaderElector, lease_client, run_while_leading
from clusternet_hub import registration, sockets
from tests.unit.test_leaderelection import CONFIG, WORK_PATH, LeaseAPI, lease_api

QPS, BURST = 20.0, 2
BURST_REQUESTS = 40  # a 2-s queue in a 20-QPS limiter: four renew deadlines of CONFIG


async def burst(kube: Kube) -> None:
    """What kopf's resume does to the main client at leader start, in small."""
    await asyncio.gather(*(kube.request("POST", WORK_PATH, {"kind": "ConfigMap"}) for _ in range(BURST_REQUESTS)))


async def test_a_renewal_on_the_limited_main_client_is_starved_by_a_burst() -> None:
    """The failure the Lease client exists for (what hub and agent did before): the renewal waits its turn."""
    async with lease_api(LeaseAPI()) as plain, Kube(plain.creds, qps=QPS, burst=BURST) as main:
        a = LeaderElector(main, CONFIG, "a")
        assert await a.try_acquire_or_renew()
        holding = asyncio.create_task(a.hold())
        bursting = asyncio.create_task(burst(main))
        await asyncio.wait_for(holding, 2)  # returned: leadership lost
        assert not a.leading
        await bursting


async def test_the_lease_client_renews_through_a_burst_of_the_main_client() -> None:
    api = LeaseAPI()
    async with lease_api(api) as plain, Kube(plain.creds, qps=QPS, burst=BURST) as main, \
            lease_client(plain.creds, "test") as leases:
        assert leases.limiter is None and leases.clusternet_limiter is None and leases.creds is plain.creds
        a = LeaderElector(leases, CONFIG, "a")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(run_while_leading(a, asyncio.Event(), lambda: burst(main)), 5)
        assert loop.time() - started > 3 * CONFIG.renew_deadline  # the burst did queue
        assert len(api.puts) >= 5 and api.holder == ""  # renewed throughout, released at the end


async def test_the_agents_lease_is_renewed_while_its_work_saturates_the_child_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's work (pullers applying, status collection) goes through its rate-limited child client; the
    Lease does not."""
    from clusternet_agent import agent, identity
    from clusternet_agent.options import AgentOptions

    async def nothing(*_: object) -> None:
        return None

    async def key(*_: object) -> bytes:
        return b"k"

    async def register(child: Kube, *_: object) -> None:
        await burst(child)  # then stop, as if registration ended the run
        return None

    monkeypatch.setattr(agent, "apply_bootstrap_secret", nothing)
    monkeypatch.setattr(identity, "ensure_namespace", nothing)
    monkeypatch.setattr(identity, "load_or_create_key", key)
    monkeypatch.setattr(agent, "register_until_done", register)
    api = LeaseAPI()
    async with lease_api(api) as plain:
        opts = AgentOptions(parent_url="https://parent.example", reg_token="abcdef.0123456789abcdef",
                            parent_insecure_skip_tls_verify=True, cluster_id="cid", leader_election=CONFIG,
                            kube_api_qps=QPS, kube_api_burst=BURST)
        await asyncio.wait_for(agent.run_agent(opts, asyncio.Event(), child_creds=plain.creds), 5)  # no LeadershipLost
    assert api.requests.count(("POST", WORK_PATH)) == BURST_REQUESTS
    assert len(api.puts) >= 5 and api.holder == ""


async def test_the_hubs_leader_and_peer_leases_do_not_queue_behind_kopfs_resume_burst(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """run_hub as it is, its servers, controllers and kopf replaced: kopf's stand-in bursts through the hub's
    client while it leads."""
    from clusternet_hub import cli, kopfhooks
    from clusternet_hub.controller.store import Store
    from clusternet_hub.operator import HubContext, HubOptions
    from clusternet_hub.peers import PeerConfig

    peer_clients: list[Kube] = []

    async def forever(*_: object) -> None:
        await asyncio.Event().wait()

    class Serving:
        allowed_names: tuple[str, ...] = ()

        def __init__(self, *_: object) -> None:
            self.run = forever

        async def start(self) -> None:
            return None

        def peer_trust(self) -> bytes:
            return b""

        def peer_server_name(self) -> str | None:
            return None

    class Runner:
        async def cleanup(self) -> None:
            return None

    async def start(*_: object) -> Runner:
        return Runner()

    class Peers:
        def __init__(self, kube: Kube, *_: object) -> None:
            peer_clients.append(kube)
            self.run = forever

        async def start(self) -> None:
            return None

        async def close(self) -> None:
            return None

    class Controller:
        def __init__(self, *_: object, **__: object) -> None:
            self.run = forever
            self.store = Store({})

    async def operator(*, memo: HubContext, **_: Any) -> None:
        assert memo.kube is not None
        await burst(memo.kube)

    api = LeaseAPI()
    async with lease_api(api) as plain:
        monkeypatch.setattr(cli.Credentials, "load", staticmethod(lambda _: plain.creds))
        monkeypatch.setattr(cli.serving, "Serving", Serving)
        monkeypatch.setattr(cli.server, "build_app", lambda *_: None)
        monkeypatch.setattr(cli.server, "start", start)
        monkeypatch.setattr(cli, "peer_app", lambda *_: None)
        monkeypatch.setattr(cli, "Peers", Peers)
        monkeypatch.setattr(cli, "Controller", Controller)
        monkeypatch.setattr(cli, "background", forever)
        monkeypatch.setattr(kopfhooks, "install", lambda seed=None: None)
        monkeypatch.setattr(cli.kopf, "operator", operator)
        options = HubOptions(leader_election=CONFIG, kube_api_qps=QPS, kube_api_burst=BURST,
                             peers=PeerConfig(0, "127.0.0.1", "token"))
        await asyncio.wait_for(cli.run_hub(options, asyncio.Event()), 5)  # no LeadershipLost
    assert api.requests.count(("POST", WORK_PATH)) == BURST_REQUESTS
    assert len(api.puts) >= 5 and api.holder == ""
    assert [k.limiter for k in peer_clients] == [None]  # the peer Lease's renewals are not rate-limited either


async def test_resumed_rbac_refreshes_take_the_approval_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf resumes every approved request at once when a leader starts; their RBAC refreshes are taken a few at
    a time, as approvals are, instead of all queueing in the client's limiter together."""
    slots = 3
    monkeypatch.setattr(registration, "_approvals", asyncio.Semaphore(slots))
    busy: dict[str, int] = {}
    most = [0]
    cluster_of_namespace: dict[str, str] = {}

    class SlowKube:
        async def _call(self, cluster: str) -> None:
            busy[cluster] = busy.get(cluster, 0) + 1
            most[0] = max(most[0], sum(1 for n in busy.values() if n))
            await asyncio.sleep(0.01)
            busy[cluster] -= 1

        async def apply(self, obj: dict[str, Any], field_manager: str) -> dict[str, Any]:
            await self._call(obj["metadata"]["labels"][known.LABEL_CLUSTER_ID])
            return obj

        async def get(self, api_version: str, kind: str, name: str, namespace: str) -> None:
            await self._call(cluster_of_namespace[namespace])

        async def patch(self, *_: Any, **__: Any) -> dict[str, Any]:  # status.rbacDigest
            return {}

    crrs = []
    for i in range(12):
        cluster_id = f"00000000-0000-0000-0000-{i:012d}"
        cluster_of_namespace[f"ns-{i}"] = cluster_id
        crrs.append({"metadata": {"name": f"clusternet-{cluster_id}"}, "spec": {"clusterId": cluster_id},
                     "status": {"result": "Approved", "dedicatedNamespace": f"ns-{i}", "managedClusterName": f"c{i}"}})
    kube = SlowKube()
    await asyncio.gather(*(registration.refresh_rbac(kube, crr) for crr in crrs))  # type: ignore[arg-type]
    assert most[0] == slots  # before: all 12 at once


async def test_token_reviews_are_bounded_and_waiters_reuse_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reconnect storm's TokenReviews go a few at a time; agents waiting with a token just reviewed reuse it."""
    monkeypatch.setattr(sockets, "REVIEWS_AT_ONCE", 2)
    in_flight, most, reviewed = [0], [0], []

    class ReviewingKube:
        async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
            reviewed.append(obj["spec"]["token"])
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            await asyncio.sleep(0.01)
            in_flight[0] -= 1
            return {"status": {"authenticated": True, "user": {"username": f"user-{obj['spec']['token']}"}}}

    registry = sockets.SocketRegistry(ReviewingKube())  # type: ignore[arg-type]
    names = await asyncio.gather(*(registry._username_for_token(f"t{i}") for i in range(10)))
    assert names == [f"user-t{i}" for i in range(10)] and most[0] == 2  # before: 10 at once
    reviewed.clear()
    same = await asyncio.gather(*(registry._username_for_token("again") for _ in range(10)))
    assert same == ["user-again"] * 10 and reviewed == ["again", "again"]  # the 8 that waited asked nobody
    assert await registry._username_for_token("t3") == "user-t3" and reviewed == ["again", "again"]  # cached
