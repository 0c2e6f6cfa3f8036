"""The hub never blames clusters for its own or the parent's stall (health.py: a stall counts as an outage)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from clusternet_api.credentials import Credentials
from clusternet_hub import health, operator
from tests.unit.fakekube import FakeKube

STALE = datetime.datetime(2026, 12, 3, 19, 23, 0, tzinfo=datetime.UTC)


def managed_cluster(last: str) -> dict[str, Any]:
    return {"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ManagedCluster",
            "metadata": {"name": "c", "namespace": "clusternet-x", "creationTimestamp": "2026-12-03T19:00:00Z"},
            "status": {"lastObservedTime": last, "heartbeatFrequencySeconds": 2,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "ManagedClusterReady"}]}}


class SlowKube(FakeKube):
    """A parent whose reads take `delay` seconds of the hub's monotonic clock (its etcd stuck on a disk)."""

    def __init__(self, clock: list[float], delay: float, *objects: Any) -> None:
        super().__init__(*objects)
        self.clock, self.delay = clock, delay

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        self.clock[0] += self.delay
        return await super().get(*args, **kwargs)


def hub(kube: FakeKube, mc: dict[str, Any], clock: float) -> operator.HubContext:
    """A hub that has watched the parent and the cluster for five minutes (hub's monotonic clock `clock`), the
    cluster's last report arriving 7 s ago: its 6-s grace is over."""
    ctx = operator.HubContext(options=operator.HubOptions(), creds=Credentials("https://parent", None, "t"))
    ctx.kube = kube  # type: ignore[assignment]
    ctx.clusters[("clusternet-x", "c")] = mc
    ctx.observation.parent_reached(clock - 300)
    ctx.observation.first_seen[("clusternet-x", "c")] = clock - 300
    ctx.observation.saw(("clusternet-x", "c"), mc, clock - 7)
    return ctx


@pytest.mark.parametrize(("delay", "judged"), [(0.5, True), (11.0, False)])
def test_a_verdict_confirmed_by_a_stalled_read_is_not_given(monkeypatch: pytest.MonkeyPatch, delay: float,
                                                            judged: bool) -> None:
    """No report for 7 s (grace 6 s). Read back in 0.5 s, the cluster is Unknown; read back in 11 s
    (the agents' writes were held just as long), nothing is judged and every grace period starts again."""
    clock = [1000.0]
    monkeypatch.setattr(operator.time, "monotonic", lambda: clock[0])
    mc = managed_cluster("2026-12-03T19:22:53Z")
    kube = SlowKube(clock, delay, mc)
    ctx = hub(kube, mc, clock[0])
    asyncio.run(operator.check_health(ctx, STALE))
    assert bool(kube.writes) is judged
    restarted = ctx.observation.parent_since is not None and ctx.observation.parent_since > 1000.0
    assert restarted is not judged  # the stall restarted the observation


def test_a_hub_woken_late_restarts_its_observation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Longer than a heartbeat period late (a frozen machine freezes the agents too): the observation restarts;
    a little late: it goes on."""
    monkeypatch.setattr(operator.time, "monotonic", lambda: 1000.0)
    mc = managed_cluster("2026-12-03T19:22:53Z")
    ctx = hub(FakeKube(mc), mc, 1000.0)
    assert not operator.stalled(ctx, "the hub's own loop", 1.5)
    assert ctx.observation.parent_since == 700.0
    assert operator.stalled(ctx, "the hub's own loop", 2.5)
    assert ctx.observation.parent_since == 1000.0


def test_the_stall_threshold_is_the_fastest_heartbeat_period() -> None:
    assert health.heartbeat_period([]) == health.DEFAULT_HEARTBEAT_SECONDS
    fast, slow = managed_cluster("2026-12-03T19:22:53Z"), {"status": {"heartbeatFrequencySeconds": 60}}
    assert health.heartbeat_period([slow, fast]) == 2


def test_a_parent_back_from_an_outage_allows_for_the_retry_after_it_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    """A starting parent answers the agents' heartbeats 503 with a Retry-After (up to MAX_RETRY_AFTER, 10 s):
    judged a 6-s grace after its return, every cluster was marked Unknown while every agent was waiting it out
    (test_faults, once in CI)."""

    class Parent(FakeKube):
        status = 0

        async def raw(self, method: str, path: str, *_: Any, **__: Any) -> tuple[int, Any]:
            return self.status, {}

    clock = [1000.0]
    monkeypatch.setattr(operator.time, "monotonic", lambda: clock[0])
    mc = managed_cluster("2026-12-03T19:22:53Z")
    parent = Parent(mc)
    ctx = hub(parent, mc, clock[0])
    assert not asyncio.run(operator.probe_parent(ctx))  # out of reach: nothing is judged
    assert ctx.observation.silence(("clusternet-x", "c"), clock[0]) is None
    parent.status = 200
    assert asyncio.run(operator.probe_parent(ctx))
    assert ctx.observation.parent_since == 1010.0
    clock[0] = 1015.0  # 6 s of grace not over yet
    asyncio.run(operator.check_health(ctx, STALE))
    assert parent.writes == []
    clock[0] = 1017.0
    asyncio.run(operator.check_health(ctx, STALE))
    assert parent.kinds_written() == ["patch/status ManagedCluster", "patch ManagedCluster"]
