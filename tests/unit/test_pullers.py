"""The agent's pullers' ListWatch callbacks: a resync with nothing to do asks the parent nothing (no GET of the
ManagedCluster); otherwise the same decisions as before (deployable_by_hub, Helm Descriptions skipped, drift
correction on resync, its opt-out, deletions)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from clusternet_agent import helmpuller, puller
from clusternet_api import applier, known, ownership
from clusternet_api.kube import Obj

OnList = Callable[[list[Obj]], Awaitable[None]]
OnEvent = Callable[[Obj], Awaitable[None]]

PULL = {"metadata": {"name": "c1", "namespace": "ns"}, "spec": {"syncMode": "Pull"}, "status": {"appPusher": False}}
DUAL = {"metadata": {"name": "c1", "namespace": "ns"}, "spec": {"syncMode": "Dual"}, "status": {"appPusher": True}}


class Parent:
    """Serves the ManagedCluster and counts the GETs of it; its namespace is live (namespaceguard)."""

    def __init__(self, mc: Obj | None) -> None:
        self.mc, self.gets = mc, 0

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if kind == "Namespace":
            return {"metadata": {"name": name}}
        assert kind == "ManagedCluster"
        self.gets += 1
        return self.mc


class Captured:
    """Stands in for ListWatch: keeps the callbacks, runs nothing."""

    on_list: OnList
    on_event: OnEvent
    cached: list[Obj] = []

    def __init__(self, *args: Any) -> None:
        Captured.on_list, Captured.on_event, Captured.cached = args[5], args[6], []

    def objects(self) -> list[Obj]:
        return self.cached

    async def run(self) -> None:
        return None


def desc(name: str, deployed: bool = False, helm: bool = False, drift: bool = True,
         deleting: bool = False, finalizer: bool = True) -> Obj:
    meta: Obj = {"name": name, "namespace": "ns", "generation": 2, "resourceVersion": "7",
                 "finalizers": [known.FINALIZER_APPS] if finalizer else []}
    if not drift:
        meta["annotations"] = {known.ANNOTATION_DRIFT_CORRECTION: "false"}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Description", "metadata": meta,
            "spec": {"deployer": "Helm" if helm else "Generic"},
            "status": {"phase": "Success", "observedGeneration": 2} if deployed else {}}


@pytest.fixture
def callbacks(monkeypatch: pytest.MonkeyPatch) -> type[Captured]:
    monkeypatch.setattr(puller, "ListWatch", Captured)
    monkeypatch.setattr(helmpuller, "ListWatch", Captured)
    return Captured


async def description_puller(mc: Obj | None, monkeypatch: pytest.MonkeyPatch
                             ) -> tuple[Parent, list[tuple[str, str]], type[Captured]]:
    """A Puller whose applying and cleaning up are recorded as (what, name)."""
    parent = Parent(mc)
    done: list[tuple[str, str]] = []

    async def apply(child: Any, d: Obj, claimants: Any = None, previous: Any = None, **_: Any) -> Any:
        done.append(("apply", d["metadata"]["name"]))
        raise RuntimeError("recorded; not reported")  # _safely logs it

    async def cleanup(child: Any, d: Obj, claimants: ownership.Claimants) -> ownership.Released:
        done.append(("cleanup", d["metadata"]["name"]))
        # what it lets go of, a Description of the namespace wants
        wanting = {ownership.owner_key(o) for o in claimants.others() if "wants" in o["metadata"]["name"]}
        return ownership.Released(claimants=wanting)

    async def remove_finalizer(parent: Any, d: Obj) -> None:
        done.append(("unfinalize", d["metadata"]["name"]))

    monkeypatch.setattr(applier, "apply_description", apply)
    monkeypatch.setattr(applier, "cleanup", cleanup)
    monkeypatch.setattr(applier, "remove_finalizer", remove_finalizer)
    await puller.Puller(parent, None, "ns", "c1", 30).run()  # type: ignore[arg-type]
    return parent, done, Captured


async def test_a_description_resync_with_nothing_to_do_asks_the_parent_nothing(
        callbacks: type[Captured], monkeypatch: pytest.MonkeyPatch) -> None:
    parent, done, cb = await description_puller(PULL, monkeypatch)
    await cb.on_list([])
    await cb.on_list([desc("helm", helm=True), desc("kept", deployed=True, drift=False),
                      desc("gone", deleting=True, finalizer=False)])
    # between resyncs: a deployed one changing (our own status report, say)
    await cb.on_event({"type": "MODIFIED", "object": desc("d", deployed=True)})
    await cb.on_event({"type": "DELETED", "object": desc("d")})
    assert parent.gets == 0 and done == []


async def test_a_description_resync_in_pull_mode_re_applies_what_may_have_drifted(
        callbacks: type[Captured], monkeypatch: pytest.MonkeyPatch) -> None:
    parent, done, cb = await description_puller(PULL, monkeypatch)
    await cb.on_list([desc("helm", helm=True), desc("drifts", deployed=True), desc("kept", deployed=True, drift=False),
                      desc("new"), desc("deleting", deleting=True)])
    # once for the whole resync, and once more before the cleanup: a deletion never rests on a copy (namespaceguard)
    assert parent.gets == 2
    assert done == [("apply", "drifts"), ("apply", "new"), ("cleanup", "deleting"), ("unfinalize", "deleting")]
    done.clear()
    await cb.on_event({"type": "MODIFIED", "object": desc("changed")})  # a new generation, not deployed yet
    assert parent.gets == 3 and done == [("apply", "changed")]


async def test_what_a_deleted_description_lets_go_of_is_applied_at_once_by_the_description_that_wants_it(
        callbacks: type[Captured], monkeypatch: pytest.MonkeyPatch) -> None:
    """Not at its next resync (30 s by default): the object would be missing, or its refusal stand, until then."""
    _, done, cb = await description_puller(PULL, monkeypatch)
    cb.cached = [desc("deleting", deleting=True), desc("wants-it"), desc("other", deployed=True)]
    await cb.on_event({"type": "MODIFIED", "object": desc("deleting", deleting=True)})
    assert done == [("cleanup", "deleting"), ("apply", "wants-it"), ("unfinalize", "deleting")]


async def test_a_description_resync_does_nothing_where_the_hub_deploys(
        callbacks: type[Captured], monkeypatch: pytest.MonkeyPatch) -> None:
    for mc in (DUAL, None):
        parent, done, cb = await description_puller(mc, monkeypatch)
        await cb.on_list([desc("drifts", deployed=True), desc("new"), desc("deleting", deleting=True)])
        await cb.on_event({"type": "ADDED", "object": desc("new")})
        assert parent.gets == 2 and done == []


async def test_a_helm_resync_without_releases_asks_the_parent_nothing(
        callbacks: type[Captured], monkeypatch: pytest.MonkeyPatch) -> None:
    parent = Parent(PULL)
    seen: list[tuple[str, Obj | None]] = []
    releases = helmpuller.ReleasePuller(parent, None, "ns", "c1", 30, None)  # type: ignore[arg-type]

    async def process(hr: Obj, mc: Obj | None, resync: bool = False) -> None:
        seen.append((hr["metadata"]["name"], mc))

    monkeypatch.setattr(releases, "process", process)
    await releases.run()
    await callbacks.on_list([])
    assert parent.gets == 0 and seen == []
    await callbacks.on_list([{"metadata": {"name": "r1"}}, {"metadata": {"name": "r2"}}])
    assert parent.gets == 1 and seen == [("r1", PULL), ("r2", PULL)]  # every release, every resync


async def test_the_heartbeats_copy_of_the_cluster_spares_the_pullers_a_read() -> None:
    from clusternet_agent.clusterview import ClusterView

    class Parent:
        gets = 0

        async def get(self, *_: Any) -> dict[str, Any]:
            Parent.gets += 1
            return {"metadata": {"name": "c1"}, "spec": {"syncMode": "Dual"}, "status": {"appPusher": True}}

    now = [0.0]
    view = ClusterView(Parent(), "ns", "c1", max_age=270.0, clock=lambda: now[0])  # type: ignore[arg-type]
    view.saw({"metadata": {"name": "c1"}, "spec": {"syncMode": "Pull"}, "status": {}})  # a heartbeat's answer
    for _ in range(9):  # 30-s resyncs within one and a half report periods: no read of the parent
        assert (await view.get() or {})["spec"]["syncMode"] == "Pull"
        now[0] += 30
    assert Parent.gets == 0 and view.reads == 0
    now[0] += 30  # heartbeats stopped refreshing it: the pullers ask the parent themselves
    assert (await view.get() or {})["spec"]["syncMode"] == "Dual"
    assert Parent.gets == 1


def test_a_tunnel_state_the_last_report_did_not_carry_makes_a_report_due() -> None:
    from clusternet_agent.clusterview import ClusterView

    view = ClusterView(None, "ns", "c1", max_age=270.0)  # type: ignore[arg-type]
    assert not view.tunnel_unreported(True)  # nothing reported yet
    view.saw({"status": {"conditions": [{"type": "SocketConnected", "status": "False"}]}})
    assert view.tunnel_unreported(True)  # the 101 came in after the report read the state
    assert not view.tunnel_unreported(False) and not view.tunnel_unreported(None)
    view.saw({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})  # no tunnel (gate off)
    assert not view.tunnel_unreported(True)
