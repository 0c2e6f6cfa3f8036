"""The hub times heartbeats by its own clock (review 6, finding 7): when it saw a report arrive, never the
child's `lastObservedTime` against the hub's clock. Each test runs the hub's real entry points (the parent
probe, the watch handler, the health pass) once a second of a fake monotonic clock, against an agent that
reports every 2 s (grace: 6 s) until it dies."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.credentials import Credentials
from clusternet_api.timefmt import format_rfc3339
from clusternet_hub import operator
from tests.unit.fakekube import FakeKube

KEY = ("clusternet-x", "c")
MINUTES_10 = datetime.timedelta(minutes=10)


class Parent(FakeKube):
    """The parent's API server: up or down (its /readyz), holding the child's ManagedCluster."""

    up = True

    async def raw(self, method: str, path: str, *_: Any, **__: Any) -> tuple[int, Any]:
        return (200 if self.up else 0), {}

    def write_status(self, **status: Any) -> dict[str, Any]:
        mc = self.objects[("ManagedCluster", *KEY)]
        mc["status"] = {**mc["status"], **status}
        return self.touch("ManagedCluster", *KEY)


def run(monkeypatch: pytest.MonkeyPatch, seconds: int, *, skew: datetime.timedelta = datetime.timedelta(),
        alive: Callable[[int], bool] = lambda t: True, parent_up: Callable[[int], bool] = lambda t: True,
        hub_writes: Callable[[int], dict[str, Any] | None] = lambda t: None) -> tuple[Parent, int | None]:
    """`seconds` of a hub started at t=0 with the cluster registered long before. At each second t: the parent
    is up or not; a live agent reports at even t, stamping its own clock (the hub's plus `skew`); `hub_writes`
    may write other status fields (as the hub's tunnel bookkeeping does); the watch delivers what changed and
    the health pass runs. Returns the parent and the second of the first verdict (None: none given)."""
    start = datetime.datetime.now(datetime.UTC)
    clock = [0.0]
    monkeypatch.setattr(operator.time, "monotonic", lambda: clock[0])
    kube = Parent({"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ManagedCluster",
                   "metadata": {"name": "c", "namespace": "clusternet-x",
                                "creationTimestamp": format_rfc3339(start - datetime.timedelta(days=1))},
                   "spec": {},
                   "status": {"lastObservedTime": format_rfc3339(start + skew - datetime.timedelta(seconds=1)),
                              "heartbeatFrequencySeconds": 2, "readyz": True, "livez": True, "healthz": True,
                              "conditions": [{"type": "Ready", "status": "True", "reason": "ManagedClusterReady"}]}})
    ctx = operator.HubContext(options=operator.HubOptions(), creds=Credentials("https://parent", None, "t"))
    ctx.kube = kube  # type: ignore[assignment]

    async def scenario() -> int | None:
        await operator.track_cluster(type="MODIFIED", memo=ctx,  # type: ignore[arg-type]
                                     body=kube.objects[("ManagedCluster", *KEY)])
        for t in range(seconds):
            clock[0] = float(t)
            now = start + datetime.timedelta(seconds=t)
            kube.up = parent_up(t)
            written = None
            if kube.up and alive(t) and t % 2 == 0:
                written = kube.write_status(lastObservedTime=format_rfc3339(now + skew), readyz=True, livez=True,
                                            healthz=True, conditions=[{"type": "Ready", "status": "True",
                                                                       "reason": "ManagedClusterReady"}])
            if kube.up and (other := hub_writes(t)) is not None:
                written = kube.write_status(**other)
            if written is not None:
                await operator.track_cluster(type="MODIFIED", body=dict(written), memo=ctx)  # type: ignore[arg-type]
            if not await operator.probe_parent(ctx):
                continue
            before = len(kube.writes)
            await operator.check_health(ctx, now)
            if any(verb == "patch/status" for verb, _, _ in kube.writes[before:]):
                return t
        return None

    return kube, asyncio.run(scenario())


def test_a_live_cluster_whose_clock_is_behind_is_never_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's clock is 10 minutes behind the hub's, every report on time: its stamps look 10 minutes old.
    Compared with the hub's clock, the cluster turned Unknown and tainted before each report (and back after
    it); judged by the reports' arrival, it stays Ready and untainted."""
    kube, verdict = run(monkeypatch, 40, skew=-MINUTES_10)
    assert verdict is None
    assert kube.writes == []


def test_a_dead_cluster_whose_clock_was_ahead_is_judged_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's clock was 10 minutes ahead and its agent dies at t=10 (its last report): its last stamp lies
    10 minutes in the hub's future, which kept it Ready that long; judged by arrival, the verdict comes once the
    hub has heard nothing for more than the 6-s grace, at t=17."""
    kube, verdict = run(monkeypatch, 40, skew=MINUTES_10, alive=lambda t: t <= 10)
    assert verdict == 17
    mc = kube.objects[("ManagedCluster", *KEY)]
    assert [c["status"] for c in mc["status"]["conditions"]] == ["Unknown"]
    assert [t["key"] for t in mc["spec"]["taints"]] == [known.TAINT_UNSCHEDULABLE]


def test_the_hubs_own_status_writes_are_no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent dies at t=10; at t=12 and t=14 the hub itself writes the status (its SocketConnected mark when
    the tunnel ends): the resourceVersion moves, lastObservedTime does not, and the verdict still comes at
    t=17."""
    socket = {"conditions": [{"type": "Ready", "status": "True", "reason": "ManagedClusterReady"},
                             {"type": known.CONDITION_SOCKET, "status": "False", "reason": "TunnelDisconnected"}]}
    _, verdict = run(monkeypatch, 40, alive=lambda t: t <= 10, hub_writes=lambda t: socket if t in (12, 14) else None)
    assert verdict == 17


def test_a_parent_outage_judges_no_live_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent is down from t=10 to t=19 (no report can land), then the agents wait out its Retry-After
    (reports resume at t=28): the hub judges nothing before it has watched for 10 s + a grace period after the
    parent's return (test_outages expects no verdict after a parent outage)."""
    kube, verdict = run(monkeypatch, 60, parent_up=lambda t: not 10 <= t < 20, alive=lambda t: not 10 <= t < 28)
    assert verdict is None
    assert kube.writes == []


def test_a_started_hub_judges_a_silent_cluster_only_after_watching_a_grace_period(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub starting at t=0 next to a dead agent (its last report just before): the hub counts from its first
    contact with the parent, plus the 10 s a starting parent may make the agents wait: verdict at t=17."""
    _, verdict = run(monkeypatch, 40, alive=lambda t: False)
    assert verdict == 17


def test_a_cluster_back_from_a_verdict_is_logged_as_ready_again(caplog: pytest.LogCaptureFixture) -> None:
    """Audit 6: the hub warned when heartbeats stopped and said nothing when they came back."""
    ctx = operator.HubContext(options=operator.HubOptions(), creds=Credentials("https://parent", None, "t"))

    def mc(ready: str | None) -> dict[str, Any]:
        conditions = [{"type": "Ready", "status": ready}] if ready else []
        return {"metadata": {"name": KEY[1], "namespace": KEY[0]}, "status": {"conditions": conditions}}

    async def events(*states: str | None) -> None:
        for state in states:
            await operator.track_cluster(type="MODIFIED", body=mc(state), memo=ctx)  # type: ignore[arg-type]

    with caplog.at_level("INFO", logger="clusternet_hub.operator"):
        asyncio.run(events(None, "True", "True", "Unknown", "True"))
    assert [r.getMessage() for r in caplog.records if "Ready again" in r.getMessage()] == [
        "cluster clusternet-x/c: Ready again (was Unknown)"]  # not at its first Ready
