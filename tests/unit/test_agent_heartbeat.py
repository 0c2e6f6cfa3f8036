"""The agent's heartbeat loop: reports go out on time whatever the child's API server does.

Found by tests/integration/test_faults.py: while a child's kube-apiserver restarted, the agent's collection
waited out the starting server's 503 + Retry-After (10 s), no heartbeat left meanwhile, and the hub judged
the agent gone (Ready Unknown after 3 periods); a collection that failed outright was followed by reports of
the last healthy observation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clusternet_agent import agent, heartbeat
from clusternet_agent.options import AgentOptions
from clusternet_agent.registration import ParentAccess
from clusternet_api.kube import Credentials, Kube
from clusternet_api.logs import error_text

HEALTHY = {"healthz": True, "livez": True, "readyz": True, "k8sVersion": "v1.20.2"}


async def run_loop(monkeypatch: pytest.MonkeyPatch, later: Any, seconds: float,
                   update_frequency: float = 0.1) -> list[dict[str, Any]]:
    """Run heartbeat_loop for `seconds` (reports due every `update_frequency`) with a first collection that
    succeeds and `later` for every one after it; the observations it reported, in order."""
    calls = 0

    async def collect(child: Kube, **_: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return dict(HEALTHY) if calls == 1 else await later()

    reports: list[dict[str, Any]] = []

    async def report(parent: Kube, namespace: str, name: str, observed: dict[str, Any],
                     tunnel_up: bool | None = None) -> dict[str, Any]:
        reports.append(dict(observed))
        return {}

    async def no_refresh(*_: Any) -> None:
        return None

    monkeypatch.setattr(heartbeat, "collect", collect)
    monkeypatch.setattr(heartbeat, "report", report)
    monkeypatch.setattr(agent, "refresh_token", no_refresh)
    opts = AgentOptions(collect_frequency=0.05, update_frequency=update_frequency)
    access = ParentAccess(Credentials(server="https://parent"), "ns", "mc", "id")
    stop = asyncio.Event()
    child = parent = Kube(Credentials(server="https://unused"))
    loop = asyncio.create_task(agent.heartbeat_loop(child, parent, opts, access, "https://child", stop, {}))
    await asyncio.sleep(seconds)
    stop.set()
    assert await asyncio.wait_for(loop, 1) == "stopped"
    return reports


LoopWithATunnel = tuple[asyncio.Task[str], asyncio.Event, asyncio.Event, dict[str, bool]]


def loop_with_a_tunnel(monkeypatch: pytest.MonkeyPatch, collect: Any, report: Any, collect_frequency: float,
                       update_frequency: float) -> LoopWithATunnel:
    """heartbeat_loop with `collect` and `report` in place, a ClusterView and a tunnel that is down: the loop, its
    stop event, the tunnel's came-up event and its state."""
    from clusternet_agent.clusterview import ClusterView

    async def no_refresh(*_: Any) -> None:
        return None

    monkeypatch.setattr(heartbeat, "collect", collect)
    monkeypatch.setattr(heartbeat, "report", report)
    monkeypatch.setattr(agent, "refresh_token", no_refresh)
    opts = AgentOptions(collect_frequency=collect_frequency, update_frequency=update_frequency)
    access = ParentAccess(Credentials(server="https://parent"), "ns", "mc", "id")
    stop, came_up, state = asyncio.Event(), asyncio.Event(), {"up": False}
    child = parent = Kube(Credentials(server="https://unused"))
    view = ClusterView(parent, "ns", "mc", max_age=1.5 * update_frequency)
    loop = asyncio.create_task(agent.heartbeat_loop(child, parent, opts, access, "https://child", stop, state,
                                                    view=view, tunnel_came_up=came_up))
    return loop, stop, came_up, state


async def test_a_collection_that_hangs_does_not_hold_up_the_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    hung = asyncio.Event()

    async def hang() -> dict[str, Any]:
        hung.set()
        await asyncio.Event().wait()  # a starting API server's Retry-After, waited out
        raise AssertionError("unreachable")

    reports = await run_loop(monkeypatch, hang, 1.0)
    assert hung.is_set()
    assert len(reports) >= 6  # one per 0.1 s period, not one and then silence
    assert all(r == HEALTHY for r in reports)  # not stalled long enough (30 s) to say it is wrong


async def test_a_collection_that_never_ends_reports_the_child_api_server_down(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGSTOPped kube-apiserver keeps its connections open and answers nothing: the sandbox showed it
    Ready True, with fresh heartbeats, for the 2 min one request may wait. Past the stall limit, the reports
    say it is down, and the change goes out at once rather than at the next report period."""
    monkeypatch.setattr(agent, "STALLED_MIN_SECONDS", 0.3)

    async def frozen() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    reports = await run_loop(monkeypatch, frozen, 1.0, update_frequency=60)
    assert reports == [HEALTHY, {**HEALTHY, "healthz": False, "livez": False, "readyz": False}]


async def test_a_change_of_health_is_reported_before_the_period_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused() -> dict[str, Any]:
        raise OSError("Connect call failed ('127.0.0.1', 6443)")

    reports = await run_loop(monkeypatch, refused, 0.5, update_frequency=60)
    assert reports == [HEALTHY, {**HEALTHY, "healthz": False, "livez": False, "readyz": False}]


def test_an_exception_without_a_message_is_described_by_its_type() -> None:
    assert error_text(TimeoutError()) == "TimeoutError"
    assert error_text(OSError("refused")) == "refused"


async def test_a_failed_collection_reports_the_child_api_server_down(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused() -> dict[str, Any]:
        raise OSError("Connect call failed ('127.0.0.1', 6443)")

    reports = await run_loop(monkeypatch, refused, 0.5)
    assert reports[0] == HEALTHY
    assert reports[-1] == {**HEALTHY, "healthz": False, "livez": False, "readyz": False}
    assert heartbeat.status_patch(reports[-1], None)["conditions"][0]["status"] == "False"


async def test_the_first_report_uses_the_collection_made_while_registering(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new cluster's first report (the one that makes it Ready) does not wait for a collection after the
    approval: the one started while the agent registered is reported, and no second one is needed for it."""
    calls = 0

    async def collect(child: Kube, **_: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return dict(HEALTHY)

    monkeypatch.setattr(heartbeat, "collect", collect)
    opts = AgentOptions(collect_frequency=60, update_frequency=60)
    child = Kube(Credentials(server="https://unused"))
    early = agent.EarlyCollection(child, opts, "https://child")
    await asyncio.sleep(0)  # registration in progress: the collection runs meanwhile
    first = await early.fresh()
    assert first is not None and await first == HEALTHY and calls == 1


async def test_a_collection_older_than_a_period_is_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered after a long wait (approved by hand hours later): the early observation is discarded."""
    async def collect(child: Kube, **_: Any) -> dict[str, Any]:
        return dict(HEALTHY)

    monkeypatch.setattr(heartbeat, "collect", collect)
    early = agent.EarlyCollection(Kube(Credentials(server="https://unused")),
                                  AgentOptions(collect_frequency=0.01, update_frequency=60), "https://child")
    await asyncio.sleep(0.05)
    assert await early.fresh() is None


async def test_a_tunnel_up_that_the_last_report_wrote_down_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/scale.py, 2026-12-07: a restarted agent's first report read its tunnel's state before the websocket's
    101 came in and wrote SocketConnected=False over the hub's True; the next look was a collection period later
    (20 s at Clusternet's defaults), all that time the cluster showed its tunnel down. The tunnel coming up now
    ends the pause; a drop does not (the hub marks it), nor a coming up the last report already said."""
    reported: list[bool | None] = []
    written = asyncio.Event()

    async def collect(child: Kube, **_: Any) -> dict[str, Any]:
        return dict(HEALTHY)

    async def report(parent: Kube, namespace: str, name: str, observed: dict[str, Any],
                     tunnel_up: Any = None) -> dict[str, Any]:
        up = tunnel_up() if callable(tunnel_up) else tunnel_up
        reported.append(up)
        written.set()
        return {"status": {"conditions": [{"type": "SocketConnected", "status": "True" if up else "False"}]}}

    loop, stop, came_up, state = loop_with_a_tunnel(monkeypatch, collect, report, 60, 180)
    await asyncio.wait_for(written.wait(), 1)
    assert reported == [False]  # the first report, before the 101
    written.clear()
    state["up"] = True
    came_up.set()
    await asyncio.wait_for(written.wait(), 1)  # not 60 s later
    assert reported == [False, True]
    state["up"] = False  # a drop: the hub marks it; no report before the step ends
    await asyncio.sleep(0.05)
    state["up"] = True
    came_up.set()  # up again, as the last report said: nothing to put right
    await asyncio.sleep(0.05)
    assert reported == [False, True] and not came_up.is_set()
    stop.set()
    assert await asyncio.wait_for(loop, 1) == "stopped"


async def test_the_health_a_tunnel_wake_up_reported_is_not_reported_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s43: the report the tunnel's coming up made did not count as having reported the health it carried.
    After a step's report of a health change had failed, the wake-up's report wrote the change, and the next step
    wrote it once more."""
    down = {**HEALTHY, "healthz": False, "livez": False, "readyz": False}
    observations = iter([dict(HEALTHY)])
    reported: list[tuple[bool, bool | None]] = []  # (healthz, tunnel up) of each report, failed ones too
    written = asyncio.Event()

    async def collect(child: Kube, **_: Any) -> dict[str, Any]:
        return next(observations, dict(down))

    async def report(parent: Kube, namespace: str, name: str, observed: dict[str, Any],
                     tunnel_up: Any = None) -> dict[str, Any]:
        up = tunnel_up() if callable(tunnel_up) else tunnel_up
        reported.append((observed["healthz"], up))
        written.set()
        if len(reported) == 2:
            raise ConnectionError("the parent did not answer")  # the step's report of the change fails
        return {"status": {"conditions": [{"type": "SocketConnected", "status": "True" if up else "False"}]}}

    loop, stop, came_up, state = loop_with_a_tunnel(monkeypatch, collect, report, 0.05, 60)
    while len(reported) < 2:
        await asyncio.wait_for(written.wait(), 1)
        written.clear()
    assert reported == [(True, False), (False, False)]  # the first report, then the change's, which failed
    state["up"] = True
    came_up.set()
    await asyncio.wait_for(written.wait(), 1)
    assert reported[2] == (False, True)  # the wake-up wrote the change along with the tunnel
    await asyncio.sleep(0.3)  # six steps, the health unchanged since the wake-up's report
    stop.set()
    assert await asyncio.wait_for(loop, 1) == "stopped"
    assert reported == [(True, False), (False, False), (False, True)]
