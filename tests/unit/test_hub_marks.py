"""A hub that marks its unbindings (wanted.say_unwanted) says so on the ManagedCluster, and its Pull agent then never
takes a missing Base without the mark for an unbinding: the child's objects stay, the status says why, until the
Base comes back or the mark arrives (clusternet_agent.stillwanted). Before, the agent cleaned up after 120 s, which
a Subscription the hub refuses (no Base written back, no mark) or a Base deleted by hand while no hub leads
outlasted (the first-rule review's F3(b)). Agents of a hub that does not say so keep the grace
(test_still_wanted.py)."""

from __future__ import annotations

import copy
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from clusternet_agent import puller, stillwanted
from clusternet_api import applier, known, namespaceguard
from clusternet_api.kube import ApiException
from clusternet_hub import registration
from clusternet_hub.controller import pusher, wanted
from clusternet_hub.controller.pusher import CLEANUP_PENDING
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import DESC, NS, SUB, namespace, push_secret
from tests.unit.test_controller import cluster as controller_cluster
from tests.unit.test_helm import FEED, HR, chart, deploy, helm_controller
from tests.unit.test_helm import subscription as helm_subscription
from tests.unit.test_namespace_removal import PULL, pulled_description
from tests.unit.test_still_wanted import (
    BASE_NAME,
    CFG,
    GONE,
    base,
    counted_cleanups,
    deleted_by_someone_else,
    finalizers,
    installed_release,
    labelled,
    pull_mode,
    watched_puller,
)

PROMISED = copy.deepcopy(PULL)
PROMISED["metadata"]["annotations"] = {known.ANNOTATION_HUB_MARKS_UNBINDINGS: "true"}
KEY = (NS, f"{BASE_NAME}-generic")


def parent_of(*objects: Obj) -> FakeKube:
    """The Pull cluster, whose hub marks, and a deleting Description of BASE_NAME, the Base gone."""
    return FakeKube(namespace(), copy.deepcopy(PROMISED), labelled(pulled_description(), KEY[1]), *objects)


def set_mark(parent: FakeKube, kind: str, key: tuple[str, str], uid: str) -> None:
    parent.objects[(kind, *key)]["metadata"]["annotations"] = {known.ANNOTATION_NO_LONGER_WANTED: uid}


async def test_a_missing_base_is_no_unbinding_while_the_hub_has_not_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    parent, cleaned = parent_of(), counted_cleanups(monkeypatch)
    agent = watched_puller(parent, grace_seconds=0.0)  # a grace would have run out at once
    for _ in range(3):  # the first look and two resyncs
        await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)
    assert cleaned == [] and finalizers(parent, "Description", KEY) == [known.FINALIZER_APPS]
    assert parent.find("Description", *KEY)["status"]["reason"] == f"cleanup pending: {applier.AWAITING_HUB}"
    assert len([w for w in parent.writes if w[0] == "patch/status"]) == 1  # said once
    assert agent.grace.since == {} and not agent.grace.rechecks  # no grace runs
    set_mark(parent, "Description", KEY, "sub-uid")  # the hub's verdict, which its watch event brings
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=False)
    assert cleaned == [KEY[1]] and finalizers(parent, "Description", KEY) == []


async def test_the_status_says_nothing_while_the_hubs_mark_may_still_land(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an unbinding the mark lands within milliseconds of the agent's first look: no status write for that."""
    parent, cleaned = parent_of(), counted_cleanups(monkeypatch)
    now = time.time()
    parent.objects[("Description", *KEY)]["metadata"]["deletionTimestamp"] = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1))
    agent = watched_puller(parent, grace_seconds=0.0)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=False)
    assert cleaned == [] and not [w for w in parent.writes if w[0] == "patch/status"]
    deleting = parent.find("Description", *KEY)
    assert not stillwanted.overdue(deleting, now) and stillwanted.overdue(deleting, now + stillwanted.QUIET_SECONDS)
    assert stillwanted.overdue({"metadata": {"deletionTimestamp": "yesterday"}})


async def test_a_base_back_lets_the_waiting_description_go_without_touching_the_child(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parent, cleaned = parent_of(), counted_cleanups(monkeypatch)
    agent = watched_puller(parent, grace_seconds=0.0)
    agent.undecided = stillwanted.Undecided(0.0)  # every resync looks (spacing: below)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)
    parent.objects[("Base", NS, BASE_NAME)] = base(CFG)  # the Subscription fixed: the hub writes the Base back
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)
    assert cleaned == [] and finalizers(parent, "Description", KEY) == []


async def test_a_mark_for_another_subscription_is_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    parent, cleaned = parent_of(), counted_cleanups(monkeypatch)
    set_mark(parent, "Description", KEY, "an-earlier-subscription")
    agent = watched_puller(parent, grace_seconds=0.0)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)
    assert cleaned == [] and finalizers(parent, "Description", KEY) == [known.FINALIZER_APPS]


async def test_a_helm_release_stays_installed_until_the_hub_marks_it() -> None:
    parent, agent, helm = await installed_release(PROMISED, stillwanted.BaseGrace(seconds=0.0))
    for _ in range(2):
        await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PROMISED)
    assert ("abc", "mysql") in helm.releases and known.FINALIZER_APPS in finalizers(parent, "HelmRelease", HR)
    assert parent.find("HelmRelease", *HR)["status"]["description"] == (
        f"uninstall pending: {applier.AWAITING_HUB}")
    set_mark(parent, "HelmRelease", HR, "sub-uid")
    await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PROMISED)
    assert ("abc", "mysql") not in helm.releases and finalizers(parent, "HelmRelease", HR) == []


def cluster(name: str, promised: bool) -> Obj:
    mc = copy.deepcopy(PULL)
    mc["metadata"]["name"] = name
    if promised:
        mc["metadata"]["annotations"] = {known.ANNOTATION_HUB_MARKS_UNBINDINGS: "true"}
    return mc


class Failing(FakeKube):
    sick_tries = 0
    healed = False

    async def patch(self, api_version: str, kind: str, name: str, body: Obj, namespace: str | None = None,
                    **kwargs: object) -> Obj:
        if name == "sick":
            self.sick_tries += 1
        if name == "sick" and not self.healed:
            raise ApiException(500, "etcd")
        return await super().patch(api_version, kind, name, body, namespace, **kwargs)  # type: ignore[arg-type]


async def test_the_hub_says_it_marks_on_each_cluster_that_lacks_it(caplog: pytest.LogCaptureFixture) -> None:
    """Once per cluster approved before the promise existed; a cluster gone meanwhile or a failed write (a
    warning: its agent keeps its grace) stops nothing."""
    clusters = [cluster("old", False), cluster("new", True), cluster("gone", False), cluster("sick", False)]
    parent = Failing(*[c for c in clusters if c["metadata"]["name"] != "gone"])
    with caplog.at_level(logging.WARNING):
        await wanted.promise_marks(parent, [*clusters, cluster("later", False)], clock=lambda: 0.0)
    assert sorted(w[2] for w in parent.writes if w[0] == "patch") == [f"{NS}/{n}" for n in ("gone", "later", "old")]
    assert stillwanted.hub_marks(parent.find("ManagedCluster", NS, "old"))
    assert not stillwanted.hub_marks(parent.find("ManagedCluster", NS, "sick"))
    assert f"ManagedCluster {NS}/sick: cannot say that the hub marks its unbindings (HTTP 500)" in caplog.text
    caplog.clear()
    tries = []
    with caplog.at_level(logging.WARNING):  # tried again after 5 s, then 10, ...: said once while it lasts
        for now in (1.0, 5.0, 9.0, 15.0):
            await wanted.promise_marks(parent, [cluster("sick", False)], clock=lambda: now)  # noqa: B023
            tries.append(parent.sick_tries)
    assert tries == [1, 2, 2, 3] and "sick" not in caplog.text


async def test_a_cluster_that_refuses_the_promise_is_tried_less_and_less_and_forgotten_once_it_takes_it(
        caplog: pytest.LogCaptureFixture) -> None:
    parent = Failing(cluster("sick", False))
    tries = []
    with caplog.at_level(logging.WARNING):
        for now in (0.0, 5.0, 9.0, 15.0, 34.0, 35.0):  # tried after 5 s, then 10, then 20
            await wanted.promise_marks(parent, [cluster("sick", False)], clock=lambda: now)  # noqa: B023
            tries.append(parent.sick_tries)
        assert tries == [1, 2, 2, 3, 3, 4] and caplog.text.count("sick: cannot say") == 1
        parent.healed = True
        await wanted.promise_marks(parent, [cluster("sick", False)], clock=lambda: 75.0)
        assert parent.sick_tries == 5 and not wanted.refused
        parent.healed = False  # a new failure after a success: warned about, and tried again after 5 s
        for now in (76.0, 80.0, 81.0):
            await wanted.promise_marks(parent, [cluster("sick", False)], clock=lambda: now)  # noqa: B023
    assert parent.sick_tries == 7 and caplog.text.count("sick: cannot say") == 2
    await wanted.promise_marks(parent, [], clock=lambda: 90.0)
    assert not wanted.refused  # a cluster deleted while it refused is forgotten


async def test_the_promise_is_written_a_few_at_a_time_and_not_on_a_cluster_being_deleted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wanted, "PROMISES_PER_PASS", 2)
    clusters = [cluster(f"c{i}", False) for i in range(4)]
    clusters[0]["metadata"]["deletionTimestamp"] = GONE
    parent = FakeKube(*clusters)
    await wanted.promise_marks(parent, clusters)
    assert len(parent.writes) == 2 and f"{NS}/c0" not in {w[2] for w in parent.writes}
    await wanted.promise_marks(parent, [parent.find("ManagedCluster", NS, f"c{i}") for i in range(4)])
    assert sorted(w[2] for w in parent.writes) == [f"{NS}/c1", f"{NS}/c2", f"{NS}/c3"]


def test_a_new_cluster_is_told_at_approval() -> None:
    crr = {"metadata": {"name": "clusternet-abc"}, "spec": {"clusterId": "abc", "clusterName": "c1"}}
    mc = registration.managed_cluster_manifest(crr, "clusternet-abc")
    assert stillwanted.hub_marks(mc)


@pytest.mark.parametrize("meanwhile", ["written again", "gone"])
async def test_a_mark_is_taken_back_from_the_object_judged_only(meanwhile: str) -> None:
    """take_back_mark patches on the object's uid: a Description written again under the same name since (its
    own, newer mark or none) is left alone (422), one gone is nothing to take back (404); neither raises."""
    marked = labelled(pulled_description(), KEY[1])
    marked["metadata"].update(uid="judged", annotations={known.ANNOTATION_NO_LONGER_WANTED: "sub-uid"})
    now = copy.deepcopy(marked)
    now["metadata"]["uid"] = "written-again"
    parent = FakeKube(*([now] if meanwhile == "written again" else []))
    await wanted.take_back_mark(parent, marked)
    if meanwhile == "written again":
        assert parent.find("Description", *KEY)["metadata"]["annotations"] == {
            known.ANNOTATION_NO_LONGER_WANTED: "sub-uid"}
    await wanted.take_back_mark(parent, now if meanwhile == "written again" else marked)
    if meanwhile == "written again":  # its own uid: taken back
        assert not (parent.find("Description", *KEY)["metadata"].get("annotations") or {})


async def hub_and_agent_in_turn(c: Any, parent: FakeKube, mc: Obj) -> tuple[list[str], int]:
    """The hub's push on each event of the deleting Description, the Pull agent's look on each event, four rounds:
    the status's reason after each round, and how many status writes were made in all."""
    agent = puller.Puller(parent, FakeKube(), NS, "child1", 30)  # type: ignore[arg-type]
    reasons, before = [], len(parent.writes)
    for _ in range(4):
        await c.pusher.push(DESC)
        c.store.on_description("MODIFIED", copy.deepcopy(parent.find("Description", *DESC)))
        await agent.process(copy.deepcopy(parent.find("Description", *DESC)), copy.deepcopy(mc), resync=False)
        c.store.on_description("MODIFIED", copy.deepcopy(parent.find("Description", *DESC)))
        reasons.append(parent.find("Description", *DESC)["status"]["reason"])
    return reasons, len([w for w in parent.writes[before:] if w[0] == "patch/status"])


async def test_the_hub_and_a_waiting_agent_do_not_overwrite_each_others_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s33, finding 1: a Pull cluster not Ready while its agent runs (its API server fails the agent's probes),
    a refused Subscription, its Base deleted by hand. The hub wrote "offline", the agent "hub decides", and each
    write's watch event brought the other's again, without end. The agent's reason now stands."""
    cleaned = counted_cleanups(monkeypatch)
    c, parent, _ = await deleted_by_someone_else()
    pull_mode(c)
    parent.objects[("Subscription", *SUB)]["spec"]["subscribers"] = [{"clusterAffinity": {
        "matchExpressions": [{"key": "env", "operator": "Bogus"}]}}]  # refused: the hub cannot mark
    mc = c.store.caches.clusters[(NS, "child1")]
    mc["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    mc["metadata"].setdefault("annotations", {})[known.ANNOTATION_HUB_MARKS_UNBINDINGS] = "true"
    parent.objects[("ManagedCluster", NS, "child1")] = copy.deepcopy(mc)
    for key in [k for k in parent.objects if k[0] == "Base"]:
        del parent.objects[key]
    reasons, writes = await hub_and_agent_in_turn(c, parent, mc)
    assert cleaned == [] and writes == 2  # the hub's "offline", then the agent's, which stands
    assert reasons == [f"cleanup pending: {applier.AWAITING_HUB}"] * 4
    # re-review s33, finding 1: once the hub has marked it (the Subscription fixed to bind other clusters), the
    # agent's "not marked" is no longer true: the hub's reason, the cluster offline, is
    parent.objects[("Subscription", *SUB)]["spec"]["subscribers"] = [{"clusterAffinity": {
        "matchLabels": {"env": "elsewhere"}}}]
    await c.pusher.push(DESC)
    assert parent.find("Description", *DESC)["status"]["reason"] == CLEANUP_PENDING
    assert parent.find("Description", *DESC)["metadata"]["annotations"][known.ANNOTATION_NO_LONGER_WANTED]


async def test_the_hub_leaves_the_agents_other_waiting_reason_alone_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-review s33, finding 6: the same fight with the agent's other reason, that it may not read its cluster's
    namespace (HTTP 403: a ClusterRole trimmed by hand), whatever the Subscription says."""
    cleaned = counted_cleanups(monkeypatch)
    c, parent, _ = await deleted_by_someone_else()
    pull_mode(c)
    mc = c.store.caches.clusters[(NS, "child1")]
    mc["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    parent.objects[("ManagedCluster", NS, "child1")] = copy.deepcopy(mc)

    async def refused(*_: object) -> bool:
        raise namespaceguard.NamespaceUnknown(NS, ApiException(403, "namespaces is forbidden"))

    monkeypatch.setattr(puller, "namespaceguard", SimpleNamespace(  # the agent's only: the hub reads it fine
        release_if_removed=refused, NamespaceUnknown=namespaceguard.NamespaceUnknown))
    reasons, writes = await hub_and_agent_in_turn(c, parent, mc)
    assert cleaned == [] and writes == 2
    assert {r.split(" (HTTP")[0] for r in reasons} == {
        f"cleanup pending: cannot tell whether cluster namespace {NS} is being deleted"}
    assert not pusher.agents_reason_stands({"status": {"reason": CLEANUP_PENDING}, "metadata": {}}, mc)
    assert not pusher.agents_reason_stands({"status": {"reason": "apply failed: boom"}, "metadata": {}}, mc)
    # review s34, finding 5: once its heartbeats stop (Unknown) the agent says nothing more: "offline" is truer
    mc["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    await c.pusher.push(DESC)
    assert parent.find("Description", *DESC)["status"]["reason"] == CLEANUP_PENDING


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bump(parent: FakeKube, key: tuple[str, str]) -> None:
    """A write to the object we do not make through FakeKube (the hub's): a resourceVersion of its own."""
    obj = parent.objects[("Description", *key)]
    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"].get("resourceVersion") or 0) + 1000)


async def test_resyncs_look_at_a_waiting_object_now_and_then_and_its_events_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s33, finding 2: each look is 3 GETs, and the wait can last days; the grace it replaced ended after
    120 s. Once its status is due, resyncs look once in UNDECIDED_RESYNCS periods, or when the object changed."""
    parent, cleaned, clock = parent_of(), counted_cleanups(monkeypatch), Clock()
    agent = watched_puller(parent, grace_seconds=0.0)
    agent.undecided = stillwanted.Undecided(stillwanted.UNDECIDED_RESYNCS * 30, clock=clock)

    async def look(resync: bool) -> None:
        await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=resync)

    counted = CountedGets(parent)
    await look(resync=True)  # overdue: the status says why (a write: a new resourceVersion)
    await look(resync=False)  # that write's own event
    assert counted.n == 6  # Namespace, ManagedCluster, Base, twice
    for _ in range(stillwanted.UNDECIDED_RESYNCS - 1):
        clock.now += 30
        await look(resync=True)
    assert counted.n == 6  # resting
    parent.objects[("Base", NS, BASE_NAME)] = base(CFG)  # written back: no event of the Description
    clock.now += 30
    await look(resync=True)  # due: finds the Base, lets the Description go without touching the child
    assert counted.n == 9 and cleaned == [] and finalizers(parent, "Description", KEY) == []
    assert agent.undecided.last == {}


@pytest.mark.parametrize("seen_by", ["event", "resync"])
async def test_the_hubs_mark_is_looked_at_at_once_even_while_resting(monkeypatch: pytest.MonkeyPatch,
                                                                    seen_by: str) -> None:
    """Its event, or (re-review s33, finding 3) a resync that finds the object changed: the mark's event may have
    failed to be handled, or a re-list brought it."""
    parent, cleaned, clock = parent_of(), counted_cleanups(monkeypatch), Clock()
    agent = watched_puller(parent, grace_seconds=0.0)
    agent.undecided = stillwanted.Undecided(150, clock=clock)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=False)  # its status
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)  # resting
    assert agent.undecided.resting(parent.find("Description", *KEY))
    set_mark(parent, "Description", KEY, "sub-uid")
    bump(parent, KEY)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=seen_by == "resync")
    assert cleaned == [KEY[1]] and agent.undecided.last == {}


async def test_the_waiting_status_is_said_once_and_not_before_it_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-review s33, findings 2 and 5: another writer's reason (the hub's, while its view of the cluster's mode
    differs from this agent's) is not written over at each of its events; and before QUIET_SECONDS resyncs do not
    rest, so the status comes at the first look after it is due."""
    parent, cleaned, clock = parent_of(), counted_cleanups(monkeypatch), Clock()
    now = time.time()
    parent.objects[("Description", *KEY)]["metadata"]["deletionTimestamp"] = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1))
    agent = watched_puller(parent, grace_seconds=0.0)
    agent.undecided = stillwanted.Undecided(150, clock=clock)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)
    assert not agent.undecided.resting(parent.find("Description", *KEY))  # not due yet: the next resync looks
    parent.objects[("Description", *KEY)]["metadata"]["deletionTimestamp"] = GONE  # now due
    writes = len(parent.writes)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=True)
    assert len(parent.writes) == writes + 1  # said
    parent.objects[("Description", *KEY)]["status"]["reason"] = "cleanup pending: the hub's own reason"
    bump(parent, KEY)
    await agent.process(copy.deepcopy(parent.find("Description", *KEY)), PROMISED, resync=False)  # its event
    assert len(parent.writes) == writes + 1 and cleaned == []  # not said again


def test_an_object_no_longer_looked_at_is_forgotten() -> None:
    clock = Clock()
    undecided = stillwanted.Undecided(10, clock=clock)
    gone, waiting = ({"metadata": {"uid": uid, "name": uid}} for uid in ("gone", "waiting"))
    undecided.looked(gone)
    for _ in range(3):
        clock.now += 10
        undecided.looked(waiting)
    assert list(undecided.last) == ["waiting"] and not undecided.resting(gone)


class CountedGets:
    """Counts the GETs `parent` answers from now on."""

    def __init__(self, parent: FakeKube) -> None:
        self.n = 0
        original = parent.get

        async def get(*args: object, **kwargs: object) -> Obj | None:
            self.n += 1
            return await original(*args, **kwargs)  # type: ignore[arg-type]

        parent.get = get  # type: ignore[method-assign]


async def test_a_pushed_helm_release_that_cannot_be_judged_says_why_it_stays_installed() -> None:
    """Push mode: a refused Subscription, a HelmRelease deleted by someone else. Nothing is uninstalled, the push is
    retried, and the status says why: it used to be a warning in the hub's log only (review s33)."""
    c, parent, helm = await helm_controller(controller_cluster(), chart(), push_secret(),
                                            helm_subscription(feeds=[FEED]))
    await deploy(c)
    hr = parent.find("HelmRelease", *HR)
    hr["metadata"]["deletionTimestamp"] = GONE
    parent.objects[("Subscription", *SUB)]["spec"]["subscribers"] = [
        {"clusterAffinity": {"matchExpressions": [{"key": "env", "operator": "In"}]}}]  # In without values
    c.store.on_helmrelease("MODIFIED", copy.deepcopy(hr))
    with pytest.raises(wanted.WantUnknown):
        await c.releases.push(HR)
    assert helm.releases and known.FINALIZER_APPS in finalizers(parent, "HelmRelease", HR)
    assert parent.find("HelmRelease", *HR)["status"]["description"].startswith(
        "uninstall pending: Subscription default/app is refused")


async def test_a_waiting_helm_release_rests_between_looks_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-review s33, finding 8: the HelmRelease twin of the spacing above."""
    clock = Clock()
    parent, agent, helm = await installed_release(PROMISED, stillwanted.BaseGrace(seconds=0.0))
    agent.undecided = stillwanted.Undecided(150, clock=clock)
    for resync in (True, False):  # the look that says why, then that write's own event
        await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PROMISED, resync=resync)
    counted = CountedGets(parent)
    clock.now += 60
    await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PROMISED, resync=True)
    assert counted.n == 0 and ("abc", "mysql") in helm.releases  # resting
    set_mark(parent, "HelmRelease", HR, "sub-uid")
    parent.objects[("HelmRelease", *HR)]["metadata"]["resourceVersion"] = "changed"
    await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PROMISED, resync=True)
    assert ("abc", "mysql") not in helm.releases and finalizers(parent, "HelmRelease", HR) == []
