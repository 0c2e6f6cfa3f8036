"""What the hub's health pass writes, and to which copy: never a cluster back into the cache after its
deletion (the scheduler shares that cache), never over a write it has not read."""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.credentials import Credentials
from clusternet_api.kube import ApiException
from clusternet_hub import operator
from clusternet_hub.controller.store import Store
from tests.unit.fakekube import FakeKube

KEY = ("clusternet-x", "c")
NOW = datetime.datetime(2026, 12, 3, 19, 23, 0, tzinfo=datetime.UTC)
TAINT = {"key": known.TAINT_UNSCHEDULABLE, "value": known.REASON_STATUS_UNKNOWN, "effect": "NoSchedule"}
SILENT = "2026-12-03T19:22:53Z"  # the last report's stamp (the child's clock: shown, never judged)


def managed_cluster(last: str = SILENT, ready: str = "True", taints: list[dict[str, Any]] | None = None
                    ) -> dict[str, Any]:
    return {"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ManagedCluster",
            "metadata": {"name": "c", "namespace": "clusternet-x", "creationTimestamp": "2026-12-03T19:00:00Z"},
            "spec": {"taints": taints or []},
            "status": {"lastObservedTime": last, "heartbeatFrequencySeconds": 2,
                       "readyz": ready == "True", "livez": ready == "True", "healthz": ready == "True",
                       "conditions": [{"type": "Ready", "status": ready, "reason": "ManagedClusterReady"}]}}


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's monotonic clock stands at 300 s for the whole pass."""
    monkeypatch.setattr(operator.time, "monotonic", lambda: 300.0)


def hub(kube: FakeKube, heard: float = 293.0) -> operator.HubContext:
    """A hub that has watched the parent and the cluster for five minutes, its cache the parent's copy, the
    cluster's last report seen arriving at `heard` (7 s ago by default: past the 6-s grace)."""
    ctx = operator.HubContext(options=operator.HubOptions(), creds=Credentials("https://parent", None, "t"))
    ctx.kube = kube  # type: ignore[assignment]
    ctx.clusters[KEY] = copy.deepcopy(kube.objects[("ManagedCluster", *KEY)])
    ctx.observation.parent_reached(0.0)
    ctx.observation.first_seen[KEY] = 0.0
    ctx.observation.saw(KEY, ctx.clusters[KEY], heard)
    return ctx


class Parent(FakeKube):
    """A parent on which things happen while the health pass waits: `during_get` runs before the GET that
    confirms a verdict is answered, `before_patch` before the next PATCH lands, `after_patch` after a PATCH
    landed but before its answer comes back."""

    def __init__(self, *objects: Any) -> None:
        super().__init__(*objects)
        self.ctx: operator.HubContext | None = None
        self.during_get: Callable[[], Awaitable[None]] | None = None
        self.after_patch: Callable[[], Awaitable[None]] | None = None
        self.before_patch: Callable[[], Awaitable[None]] | None = None  # (once)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        if self.during_get is not None:
            await self.during_get()
        return await super().get(*args, **kwargs)

    async def patch(self, api_version: str, kind: str, name: str, body: Any, namespace: str | None = None,
                    **kwargs: Any) -> Any:
        """As the API server: a patch carrying a resourceVersion the object no longer has is 409 Conflict."""
        if self.before_patch is not None:
            before, self.before_patch = self.before_patch, None
            await before()
        version = (body.get("metadata") or {}).get("resourceVersion")
        stored = self.find(kind, namespace, name)
        if version and stored is not None and stored["metadata"]["resourceVersion"] != version:
            self.writes.append((f"conflict/{kwargs.get('subresource') or ''}", kind, f"{namespace}/{name}"))
            raise ApiException(409, "Conflict")
        written = await super().patch(api_version, kind, name, body, namespace, **kwargs)
        if self.after_patch is not None:
            await self.after_patch()
        return written

    async def delete_cluster(self) -> None:
        """The ManagedCluster is deleted and the hub's watch hands it the DELETED event."""
        gone = self.objects.pop(("ManagedCluster", *KEY))
        assert self.ctx is not None
        await operator.track_cluster(type="DELETED", body=gone, memo=self.ctx)  # type: ignore[arg-type]

    async def heartbeat(self, delivered: bool = True) -> None:
        """The agent reports (Ready=True, a new lastObservedTime) and the hub's watch hands it the event
        (unless not `delivered` yet)."""
        current = self.objects[("ManagedCluster", *KEY)]
        status = {**current["status"], "lastObservedTime": "2026-12-03T19:23:01Z", "readyz": True,
                  "livez": True, "healthz": True,
                  "conditions": [{"type": "Ready", "status": "True", "reason": "ManagedClusterReady"}]}
        self.objects[("ManagedCluster", *KEY)] = {**current, "status": status}
        reported = self.touch("ManagedCluster", *KEY)
        assert self.ctx is not None
        if delivered:
                await operator.track_cluster(type="MODIFIED", body=copy.deepcopy(reported),  # type: ignore[arg-type]
                                         memo=self.ctx)


def parent(mc: dict[str, Any], heard: float = 293.0) -> tuple[Parent, operator.HubContext]:
    kube = Parent(mc)
    kube.ctx = hub(kube, heard)
    return kube, kube.ctx


def test_a_cluster_deleted_while_its_verdict_is_confirmed_stays_deleted() -> None:
    """The fresh GET finds nothing: the cluster was deleted during the pass and its DELETED event has been
    handled. The hub used to put its cached copy back (`get(...) or mc`), where nothing would ever remove it:
    the scheduler kept binding to it and every pass sent it a GET and a PATCH."""
    kube, ctx = parent(managed_cluster())
    kube.during_get = kube.delete_cluster
    asyncio.run(operator.check_health(ctx, NOW))
    assert KEY not in ctx.clusters
    assert kube.writes == []  # and no verdict is sent to a cluster that is gone


def test_a_cluster_deleted_while_its_verdict_is_written_stays_deleted() -> None:
    """Deleted (and the event handled) after the PATCH landed but before its answer came back: the answer is
    not put back into the cache either. (Already tainted: the status PATCH is the pass's last write.)"""
    kube, ctx = parent(managed_cluster(taints=[TAINT]))
    kube.after_patch = kube.delete_cluster
    asyncio.run(operator.check_health(ctx, NOW))
    assert kube.kinds_written() == ["patch/status ManagedCluster"]  # the verdict was written ...
    assert KEY not in ctx.clusters  # ... and the cluster is still gone from the cache


def test_the_answer_to_a_verdict_never_replaces_a_newer_watch_event() -> None:
    """The agent reported right after the verdict landed, and the watch delivered that report before the
    PATCH's answer came back: the cache keeps the report (the answer is older), so the next pass sees the
    cluster Ready and does not taint it."""
    kube, ctx = parent(managed_cluster(taints=[TAINT]))
    kube.after_patch = kube.heartbeat
    asyncio.run(operator.check_health(ctx, NOW))
    assert kube.kinds_written() == ["patch/status ManagedCluster"]
    assert ctx.clusters[KEY]["status"]["lastObservedTime"] == "2026-12-03T19:23:01Z"
    assert ctx.clusters[KEY] == kube.objects[("ManagedCluster", *KEY)]


def test_a_heartbeat_that_lands_before_the_verdict_wins(caplog: pytest.LogCaptureFixture) -> None:
    """The confirming GET still shows the silence; the agent's report lands before the verdict does. The
    verdict used to overwrite it (Ready=Unknown over a fresh Ready=True, probes false) and the next pass, seeing
    a fresh heartbeat but Ready=Unknown, tainted a live cluster until its next report, 3 min later by default.
    Conditional on the read, the verdict is refused (409) and nothing else is written this pass."""
    kube, ctx = parent(managed_cluster())
    kube.before_patch = kube.heartbeat
    with caplog.at_level(logging.INFO, logger="clusternet_hub.operator"):
        asyncio.run(operator.check_health(ctx, NOW))
    stored = kube.objects[("ManagedCluster", *KEY)]
    assert stored["status"]["conditions"][-1]["status"] == "True" and stored["status"]["readyz"] is True
    assert stored["spec"]["taints"] == []
    assert kube.kinds_written() == ["conflict/status ManagedCluster"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no verdict was given
    assert any("changed while the hub judged" in r.getMessage() for r in caplog.records)


def test_a_taint_added_meanwhile_is_not_dropped() -> None:
    """The agent reports the cluster not ready (fresh heartbeat, Ready=False): the hub taints it, computing the
    new taint list from its cache. An administrator's taint, added after the cache was filled and not yet seen
    by the watch, used to be dropped with the whole list; conditional on the cached copy, the patch is refused,
    and the next pass, from the watch's newer copy, keeps both."""
    kube, ctx = parent(managed_cluster(last="2026-12-03T19:22:59Z", ready="False"), heard=299.0)
    admin = {"key": "team", "value": "a", "effect": "NoSchedule"}
    kube.objects[("ManagedCluster", *KEY)]["spec"]["taints"] = [admin]
    kube.touch("ManagedCluster", *KEY)
    asyncio.run(operator.check_health(ctx, NOW))
    assert kube.objects[("ManagedCluster", *KEY)]["spec"]["taints"] == [admin]
    asyncio.run(operator.track_cluster(type="MODIFIED", memo=ctx,  # type: ignore[arg-type]
                                       body=copy.deepcopy(kube.objects[("ManagedCluster", *KEY)])))
    asyncio.run(operator.check_health(ctx, NOW))
    assert [t["key"] for t in kube.objects[("ManagedCluster", *KEY)]["spec"]["taints"]] == [
        "team", known.TAINT_UNSCHEDULABLE]


def test_a_verdict_and_its_taint_are_written_in_one_pass_each_on_the_copy_before_it() -> None:
    """Both writes carry a precondition: the verdict the confirming read's resourceVersion, the taint the
    verdict's answer's (the hub's own write moved it), so an undisturbed pass still writes both."""
    kube, ctx = parent(managed_cluster())
    read = kube.objects[("ManagedCluster", *KEY)]["metadata"]["resourceVersion"]
    asyncio.run(operator.check_health(ctx, NOW))
    assert kube.kinds_written() == ["patch/status ManagedCluster", "patch ManagedCluster"]
    verdict, taint = kube.bodies
    assert verdict["metadata"] == {"resourceVersion": read}
    assert taint["metadata"]["resourceVersion"] not in (None, read)
    stored = kube.objects[("ManagedCluster", *KEY)]
    assert stored["status"]["conditions"][-1]["status"] == "Unknown"
    assert [t["key"] for t in stored["spec"]["taints"]] == [known.TAINT_UNSCHEDULABLE]
    assert ctx.clusters[KEY] == stored


def test_the_controller_hears_of_a_taint_the_health_pass_took_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 7: the pass's answers went into the cache the controller shares, so the watch's copy of the hub's
    own write changed nothing the controller compares: Subscriptions waiting for a recovered cluster bound it
    only at the next resync."""
    monkeypatch.setattr(operator.time, "monotonic", lambda: 300.0)
    kube = Parent(managed_cluster(last="2026-12-03T19:23:01Z", ready="True", taints=[TAINT]))
    ctx = hub(kube, heard=299.0)
    store = Store(ctx.clusters)
    ctx.controller = types.SimpleNamespace(store=store)  # type: ignore[assignment]
    store.caches.subscriptions[("default", "s")] = {"metadata": {"name": "s", "namespace": "default"}, "spec": {}}
    asyncio.run(operator.check_health(ctx, NOW))
    assert not ctx.clusters[KEY]["spec"].get("taints")
    assert (("sub", "default", "s"), False) in store.queue.drain()
