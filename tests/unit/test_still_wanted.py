"""A Description or HelmRelease deleted while its Subscription still wants it (the garbage collector after a Base
was deleted by hand, a restore with new UIDs, a person) is let go without touching the child: the hub re-creates it
under the same name and keeps the child's objects with their UIDs (controller/wanted.py). Every ordinary deletion
(Subscription deleted or re-created, cluster unbound, deployer or chart no longer fed) still cleans up, and a failed
read of the Subscription deletes nothing."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from clusternet_agent import helmpuller, puller, stillwanted
from clusternet_api import applier, known, ownership
from clusternet_api.kube import ApiException
from clusternet_api.listwatch import ListWatch
from clusternet_core import helmrender, rendering
from clusternet_hub.controller import wanted
from clusternet_hub.controller.pusher import CLEANUP_PENDING
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import DESC, NS, SUB, cluster, deployed_controller, namespace, push_secret
from tests.unit.test_helm import FEED, HR, Deployer, chart, deploy, helm_controller, subscription
from tests.unit.test_namespace_removal import PULL, pulled_description, pulled_release

GONE = "2026-01-01T00:00:00Z"


async def deleted_by_someone_else() -> tuple[Any, FakeKube, FakeKube]:
    """A pushed Description marked deleted by the garbage collector, its Subscription unchanged."""
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    assert child.find("ConfigMap", "default", "cfg") is not None
    desc = parent.find("Description", *DESC)
    desc["metadata"]["deletionTimestamp"] = GONE
    c.store.on_description("MODIFIED", copy.deepcopy(desc))
    child.writes.clear()
    return c, parent, child


def finalizers(parent: FakeKube, kind: str, key: tuple[str, str]) -> list[str]:
    found = parent.find(kind, *key)
    assert found is not None
    return list(found["metadata"].get("finalizers") or [])


async def test_a_description_deleted_while_its_subscription_wants_it_comes_back_and_keeps_the_childs_objects(
) -> None:
    c, parent, child = await deleted_by_someone_else()
    uid = child.find("ConfigMap", "default", "cfg")["metadata"]["uid"]
    await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS not in finalizers(parent, "Description", DESC)
    # the parent deletes it; the store brings its Subscription back at once, which writes it again
    gone = parent.objects.pop(("Description", *DESC))
    c.store.queue.drain()
    c.store.on_description("DELETED", gone)
    assert (("sub", *SUB), False) in c.store.queue.drain()
    await c.subscriptions.reconcile(SUB, force=False)
    again = parent.find("Description", *DESC)
    assert again is not None and again["metadata"]["uid"] != gone["metadata"]["uid"]
    await c.pusher.push(DESC)
    assert child.find("ConfigMap", "default", "cfg")["metadata"]["uid"] == uid  # adopted, never deleted
    assert not [w for w in child.writes if w[0] == "delete"]


def unbound(parent: FakeKube, c: Any) -> None:
    c.store.caches.clusters[(NS, "child1")] = cluster(env="dev")


def resubscribed(parent: FakeKube, c: Any) -> None:
    parent.objects[("Subscription", *SUB)]["metadata"]["uid"] = "another"


def unsubscribing(parent: FakeKube, c: Any) -> None:
    parent.objects[("Subscription", *SUB)]["metadata"]["deletionTimestamp"] = GONE


def unsubscribed(parent: FakeKube, c: Any) -> None:
    c.store.on_subscription("DELETED", parent.objects.pop(("Subscription", *SUB)))  # as the hub's watch tells it


def helm_only(parent: FakeKube, c: Any) -> None:
    parent.objects[("Subscription", *SUB)]["spec"]["feeds"] = [FEED]


def unlabelled(parent: FakeKube, c: Any) -> None:
    desc = c.store.caches.descriptions[DESC]
    desc["metadata"]["labels"] = {}


@pytest.mark.parametrize("change", [unbound, resubscribed, unsubscribing, unsubscribed, helm_only, unlabelled])
async def test_an_ordinary_deletion_still_cleans_up(change: Any) -> None:
    c, parent, child = await deleted_by_someone_else()
    change(parent, c)
    await c.pusher.push(DESC)
    assert child.writes == [("delete", "ConfigMap", "default/cfg")]
    assert known.FINALIZER_APPS not in finalizers(parent, "Description", DESC)


async def test_a_silent_cluster_holding_the_description_is_still_bound_whatever_the_status_says_yet() -> None:
    """F7: the cluster was silent and is back, still tainted NoSchedule (the hub lifts the taint after it sees
    the heartbeat), and the Subscription's status does not list it (a short-lived unbinding, undone, and the hub has
    not written the status again yet). The cluster holds the Description, so the Subscription binds it as the hub's
    plan does (clusternet_core.placement): let go, not cleaned up."""
    c, parent, child = await deleted_by_someone_else()
    silent = cluster(ready="True")
    silent["spec"]["taints"] = [{"key": known.TAINT_UNSCHEDULABLE, "value": "no heartbeat", "effect": "NoSchedule"}]
    c.store.caches.clusters[(NS, "child1")] = silent
    parent.objects[("Subscription", *SUB)]["status"] = {"bindingClusters": []}
    await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS not in finalizers(parent, "Description", DESC)


class Unreadable(FakeKube):
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if kind == "Subscription":
            raise ApiException(500, "etcd")
        return await super().get(api_version, kind, name, namespace)


async def test_a_subscription_that_cannot_be_read_deletes_nothing() -> None:
    c, parent, child = await deleted_by_someone_else()
    parent.__class__ = Unreadable
    with pytest.raises(ApiException):
        await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS in finalizers(parent, "Description", DESC)


async def helm_release_deleted() -> tuple[Any, FakeKube, Any]:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    assert ("abc", "mysql") in helm.releases
    hr = c.store.caches.helmreleases[HR]
    c.store.on_helmrelease("MODIFIED", {**hr, "metadata": {**hr["metadata"], "deletionTimestamp": GONE}})
    return c, parent, helm


async def test_a_helm_release_deleted_while_its_subscription_wants_it_stays_installed() -> None:
    c, parent, helm = await helm_release_deleted()
    calls = len(helm.calls)
    await c.releases.push(HR)
    assert ("abc", "mysql") in helm.releases and len(helm.calls) == calls
    assert known.FINALIZER_APPS not in finalizers(parent, "HelmRelease", HR)


async def test_a_helm_release_in_a_returning_cluster_not_yet_in_the_status_stays_installed() -> None:
    """F7, Helm: as for a Description (the release carries its Description's labels), the cluster holds it. The
    cluster is back (Ready) and the hub's taint not yet off: only this check stands before the uninstall."""
    c, parent, helm = await helm_release_deleted()
    back = cluster()
    back["spec"]["taints"] = [{"key": known.TAINT_UNSCHEDULABLE, "value": "no heartbeat", "effect": "NoSchedule"}]
    c.store.caches.clusters[(NS, "child1")] = back
    parent.objects[("Subscription", *SUB)]["status"] = {"bindingClusters": []}
    await c.releases.push(HR)
    assert ("abc", "mysql") in helm.releases
    assert known.FINALIZER_APPS not in finalizers(parent, "HelmRelease", HR)


async def test_a_helm_release_of_a_chart_no_longer_fed_is_uninstalled() -> None:
    c, parent, helm = await helm_release_deleted()
    other = {**FEED, "name": "postgres"}
    parent.objects[("Subscription", *SUB)]["spec"]["feeds"] = [other]
    await c.releases.push(HR)
    assert ("abc", "mysql") not in helm.releases


def test_wanted_names_follow_binding_and_feeds() -> None:
    sub = copy.deepcopy(subscription(feeds=[FEED, {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
                                                   "name": "cfg"}]))
    sub["metadata"]["uid"] = "u"
    short = {DESC[1], HR[1].rsplit("-default-mysql", 1)[0], HR[1]}
    long_base = rendering.base_name(sub["metadata"]["name"], subscription_namespace=sub["metadata"]["namespace"],
                                    digits=rendering.LONG_BASE_DIGITS)
    short_base = rendering.base_name(sub["metadata"]["name"], subscription_namespace=sub["metadata"]["namespace"])
    # and the same under the long Base name a collided Subscription has (clusternet_core.basenames)
    assert wanted.wanted_names(sub, cluster()) == short | {n.replace(short_base, long_base) for n in short}
    assert wanted.wanted_names(sub, cluster(env="dev")) == set()
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchExpressions": [{"key": "env", "operator": "Bad"}]}}]
    with pytest.raises(wanted.WantUnknown, match="is refused"):  # nobody's plan we can tell: nothing is decided
        wanted.wanted_names(sub, cluster())


async def test_a_refused_subscription_keeps_what_someone_else_deletes() -> None:
    """Review s31, F3: the refusal promises nothing is removed, yet an invalid selector made wanted_names empty and
    the hub cleaned up a Description deleted by hand (or by the garbage collector)."""
    c, parent, child = await deleted_by_someone_else()
    parent.objects[("Subscription", *SUB)]["spec"]["subscribers"] = [
        {"clusterAffinity": {"matchExpressions": [{"key": "env", "operator": "In"}]}}]  # In without values
    with pytest.raises(wanted.WantUnknown, match="nothing is cleaned up until it is fixed"):
        await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS in finalizers(parent, "Description", DESC)
    reason = parent.find("Description", *DESC)["status"]["reason"]  # said, not only logged (review s33)
    assert reason.startswith("cleanup pending: Subscription default/app is refused") and "is fixed" in reason


async def test_a_subscription_the_parent_says_is_gone_while_the_watch_holds_it_keeps_its_objects() -> None:
    """Review s31, F2: an HA parent's replica just started answers 404 for custom resources until its CRD handler
    catches up, and the hub took that for a deleted Subscription. A deleted Subscription keeps the hub's finalizer
    until its Bases are gone, so the watch sees it deleting first; gone while the watch holds it live is a doubt."""
    c, parent, child = await deleted_by_someone_else()
    del parent.objects[("Subscription", *SUB)]  # the watch has not said so (and may never: a cold replica)
    with pytest.raises(wanted.WantUnknown, match="until the two agree"):
        await c.pusher.push(DESC)
    assert child.writes == [] and known.FINALIZER_APPS in finalizers(parent, "Description", DESC)


# --- a Pull agent: it may read the Base, not the Subscription (clusternet_agent.stillwanted) -----------------------

BASE_NAME = rendering.base_name("app", subscription_namespace="default")
LABELS = {known.LABEL_SUBS_UID: "sub-uid", known.LABEL_SUBS_NAME: "app", known.LABEL_SUBS_NAMESPACE: "default"}
CFG = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"}


def base(*feeds: Obj, uid: str = "sub-uid") -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Base",
            "metadata": {"name": BASE_NAME, "namespace": NS, "labels": {**LABELS, known.LABEL_SUBS_UID: uid}},
            "spec": {"feeds": list(feeds)}}


def labelled(obj: Obj, name: str) -> Obj:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(name=name, labels=dict(LABELS))
    return obj


async def pull_cleanup(monkeypatch: pytest.MonkeyPatch, *objects: Obj,
                       parent_class: type[FakeKube] = FakeKube) -> tuple[FakeKube, list[str]]:
    """A Pull agent handed a deleting Description of BASE_NAME; what it cleaned up."""
    parent = parent_class(namespace(), copy.deepcopy(PULL), labelled(pulled_description(), f"{BASE_NAME}-generic"),
                      *objects)
    cleaned: list[str] = []

    async def cleanup(child: Any, d: Obj, claimants: Any = None) -> Any:
        cleaned.append(d["metadata"]["name"])
        return ownership.Released()

    monkeypatch.setattr(applier, "cleanup", cleanup)
    agent = puller.Puller(parent, FakeKube(), NS, "child1", 30)  # type: ignore[arg-type]
    await agent.process(copy.deepcopy(parent.find("Description", NS, f"{BASE_NAME}-generic")), PULL, resync=True)
    return parent, cleaned


async def test_a_pull_agent_keeps_the_objects_of_a_description_its_base_still_wants(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parent, cleaned = await pull_cleanup(monkeypatch, base(CFG))
    assert cleaned == [] and finalizers(parent, "Description", (NS, f"{BASE_NAME}-generic")) == []


@pytest.mark.parametrize("found", [{"uid": "another"}, {"feeds": [FEED]}, {"deleting": True, "feeds": [FEED]}])
async def test_a_pull_agent_cleans_up_what_its_base_no_longer_wants(monkeypatch: pytest.MonkeyPatch,
                                                                      found: dict[str, Any] | None) -> None:
    objects = []
    if found is not None:
        obj = base(*found.get("feeds", [CFG]), uid=found.get("uid", "sub-uid"))
        if found.get("deleting"):
            obj["metadata"].update(deletionTimestamp=GONE, finalizers=["example.com/hold"])
        objects.append(obj)
    _, cleaned = await pull_cleanup(monkeypatch, *objects)
    assert cleaned == [f"{BASE_NAME}-generic"]


@pytest.mark.parametrize("finalizer", ["foregroundDeletion", "example.com/hold"])
async def test_a_pull_agent_keeps_what_a_base_deleted_by_hand_in_the_foreground_still_wants(
        monkeypatch: pytest.MonkeyPatch, finalizer: str) -> None:
    """The sixth audit: `kubectl delete base --cascade=foreground` keeps the Base (deleting) until the garbage
    collector has deleted its Descriptions; the agent took that for an unbinding and wiped the child's objects and
    Helm releases, which the hub then deployed again with new UIDs. The hub deletes Bases in the background only."""
    held = base(CFG)
    held["metadata"].update(deletionTimestamp=GONE, finalizers=[finalizer])
    parent, cleaned = await pull_cleanup(monkeypatch, held)
    assert cleaned == [] and finalizers(parent, "Description", (NS, f"{BASE_NAME}-generic")) == []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def deleting_description() -> FakeKube:
    """A parent holding the Pull cluster and a deleting Description of BASE_NAME, the Base gone."""
    return FakeKube(namespace(), copy.deepcopy(PULL), labelled(pulled_description(), f"{BASE_NAME}-generic"))


def counted_cleanups(monkeypatch: pytest.MonkeyPatch, failing: int = 0) -> list[str]:
    """The names of the Descriptions the agent cleans up from now on, the first `failing` attempts raising."""
    attempts: list[str] = []

    async def cleanup(child: Any, d: Obj, claimants: Any = None) -> Any:
        attempts.append(d["metadata"]["name"])
        if len(attempts) <= failing:
            raise ApiException(503, "the child is busy")
        return ownership.Released()

    monkeypatch.setattr(applier, "cleanup", cleanup)
    return attempts


def watched_puller(parent: FakeKube, grace_seconds: float) -> puller.Puller:
    """A Pull agent whose watch cache holds the namespace's Descriptions (the recheck reads it), and a short grace
    on the real clock."""
    agent = puller.Puller(parent, FakeKube(), NS, "child1", 30)  # type: ignore[arg-type]

    async def nothing(_: Any) -> None:
        return None

    agent.watch = ListWatch(parent, applier.DESC_API, "Description", NS, 30, nothing, nothing)  # type: ignore[arg-type]
    agent.watch.cache = {d["metadata"]["name"]: copy.deepcopy(d) for (kind, _, _), d in parent.objects.items()
                         if kind == "Description"}
    agent.grace = stillwanted.BaseGrace(seconds=grace_seconds)
    return agent


@pytest.mark.parametrize("comes_back", [True, False])
async def test_a_pull_agent_gives_a_missing_base_time_to_come_back(monkeypatch: pytest.MonkeyPatch,
                                                                    comes_back: bool) -> None:
    """A Base deleted by hand is gone when the agent first looks; the hub writes it back at once. The agent used to
    clean up if it looked first, and the hub then deployed everything anew (new UIDs). Now it looks again when the
    grace ends (no watch event needed) and lets the Description go if the Base is back, cleans up if not."""
    parent, cleaned = deleting_description(), counted_cleanups(monkeypatch)
    agent = watched_puller(parent, grace_seconds=0.2)
    key = (NS, f"{BASE_NAME}-generic")
    await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=True)
    assert cleaned == [] and finalizers(parent, "Description", key) == [known.FINALIZER_APPS]
    await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=True)  # a resync meanwhile
    assert cleaned == [] and len(agent.grace.rechecks) == 1  # one look at the grace's end, not one per look
    if comes_back:
        parent.objects[("Base", NS, BASE_NAME)] = base(CFG)  # the hub wrote it back
    await asyncio.gather(*agent.grace.rechecks)
    assert cleaned == ([] if comes_back else [key[1]])  # let go with the child untouched, or cleaned up
    assert finalizers(parent, "Description", key) == [] and agent.grace.since == {}


async def test_a_cleanup_that_fails_when_the_grace_ends_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-review N1: the look at the grace's end dropped whatever grace entry there was, a newer one included; a
    cleanup that failed then was never retried (every look started a grace the previous look's task dropped)."""
    parent, attempts = deleting_description(), counted_cleanups(monkeypatch, failing=1)
    agent = watched_puller(parent, grace_seconds=0.1)
    key = (NS, f"{BASE_NAME}-generic")
    await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=True)
    for _ in range(50):  # each look's task, and the grace a failed cleanup's next look starts
        if finalizers(parent, "Description", key) == []:
            break
        await asyncio.gather(*agent.grace.rechecks)
        await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=True)  # a resync
        await asyncio.sleep(0.02)
    assert len(attempts) == 2 and finalizers(parent, "Description", key) == []
    agent.grace.cancel()


async def test_a_recheck_after_the_puller_stopped_does_nothing() -> None:
    parent = deleting_description()
    agent = watched_puller(parent, grace_seconds=0.05)
    key = (NS, f"{BASE_NAME}-generic")
    await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=True)
    tasks = set(agent.grace.rechecks)
    agent.grace.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.1)
    assert finalizers(parent, "Description", key) == [known.FINALIZER_APPS]


async def test_a_pull_agent_cleans_up_once_a_missing_base_did_not_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    parent, cleaned = deleting_description(), counted_cleanups(monkeypatch)
    agent = puller.Puller(parent, FakeKube(), NS, "child1", 30)  # type: ignore[arg-type]
    agent.grace = stillwanted.BaseGrace(clock=clock)
    key = (NS, f"{BASE_NAME}-generic")
    await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=True)
    assert cleaned == []
    clock.now += stillwanted.BASE_GRACE_SECONDS
    await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=False)
    assert cleaned == [key[1]] and finalizers(parent, "Description", key) == []
    agent.grace.cancel()


async def test_a_pull_agent_that_cannot_read_the_base_cleans_up_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoBase(FakeKube):
        async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
            if kind == "Base":
                raise ApiException(500, "etcd")
            return await super().get(api_version, kind, name, namespace)

    with pytest.raises(ApiException):  # before any cleanup; Puller._safely logs it, the next resync reads again
        await pull_cleanup(monkeypatch, base(CFG), parent_class=NoBase)


async def test_a_pull_agent_keeps_a_helm_release_its_base_still_wants_and_uninstalls_one_it_does_not() -> None:
    for feeds, kept in (([FEED], True), ([CFG], False)):
        helm = FakeHelm()
        release = labelled(pulled_release(), HR[1])
        release["metadata"]["ownerReferences"] = [{"kind": "Description", "name": HR[1].rsplit("-default-", 1)[0]}]
        installed = copy.deepcopy(release)
        del installed["metadata"]["deletionTimestamp"]
        parent = FakeKube(namespace(), copy.deepcopy(PULL), installed, base(*feeds))
        agent = helmpuller.ReleasePuller(parent, Deployer(), NS, "child1", 30, helm)  # type: ignore[arg-type]
        await agent.process(copy.deepcopy(installed), PULL)
        assert ("abc", "mysql") in helm.releases
        parent.objects[("HelmRelease", NS, HR[1])]["metadata"]["deletionTimestamp"] = GONE
        await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PULL)
        assert (("abc", "mysql") in helm.releases) is kept


async def installed_release(mc: Obj, grace: stillwanted.BaseGrace) -> tuple[FakeKube, helmpuller.ReleasePuller,
                                                                               FakeHelm]:
    """A Pull agent (its cluster `mc`, the parent's copy too) that installed the release of HR, whose Base is
    missing, and the HelmRelease then marked deleting."""
    helm = FakeHelm()
    release = labelled(pulled_release(), HR[1])
    release["metadata"]["ownerReferences"] = [{"kind": "Description", "name": HR[1].rsplit("-default-", 1)[0]}]
    installed = copy.deepcopy(release)
    del installed["metadata"]["deletionTimestamp"]
    parent = FakeKube(namespace(), copy.deepcopy(mc), installed)
    agent = helmpuller.ReleasePuller(parent, Deployer(), NS, "child1", 30, helm)  # type: ignore[arg-type]
    agent.grace = grace
    await agent.process(copy.deepcopy(installed), mc)
    assert ("abc", "mysql") in helm.releases
    parent.objects[("HelmRelease", NS, HR[1])]["metadata"]["deletionTimestamp"] = GONE
    return parent, agent, helm


async def test_a_pull_agent_keeps_a_helm_release_installed_while_its_missing_base_may_come_back() -> None:
    clock = Clock()
    parent, agent, helm = await installed_release(PULL, stillwanted.BaseGrace(clock=clock))
    await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PULL)
    assert ("abc", "mysql") in helm.releases and known.FINALIZER_APPS in finalizers(parent, "HelmRelease", HR)
    clock.now += stillwanted.BASE_GRACE_SECONDS  # no Base came back: an unbinding
    await agent.process(copy.deepcopy(parent.find("HelmRelease", *HR)), PULL)
    assert ("abc", "mysql") not in helm.releases
    agent.grace.cancel()


def test_the_agents_names_are_the_hubs() -> None:
    """The agent spells Clusternet's names out (it does not import the hub's pipeline): the same answer."""
    generic, helm_desc = (rendering.description_name(BASE_NAME, d) for d in ("Generic", "Helm"))
    assert stillwanted.wanted_names(base(CFG, FEED)) == {generic, helm_desc,
                                                         helmrender.release_name(helm_desc, "default", "mysql")}
    assert stillwanted.base_name_of({"kind": "Description", "metadata": {"name": generic}}) == BASE_NAME
    assert stillwanted.base_name_of({"kind": "HelmRelease", "metadata": {
        "name": HR[1], "ownerReferences": [{"kind": "Description", "name": helm_desc}]}}) == BASE_NAME
    assert stillwanted.base_name_of({"kind": "HelmRelease", "metadata": {"name": HR[1]}}) is None


# --- the hub's verdict, written for a Pull agent (wanted.say_unwanted; the first-rule review s31, F5) ---------------

def pull_mode(c: Any) -> None:
    mc = copy.deepcopy(c.store.caches.clusters[(NS, "child1")])
    mc["spec"]["syncMode"] = "Pull"
    mc["status"]["appPusher"] = False
    c.store.caches.clusters[(NS, "child1")] = mc


def mark(parent: FakeKube, kind: str, key: tuple[str, str]) -> str | None:
    found = parent.find(kind, *key)
    assert found is not None
    return (found["metadata"].get("annotations") or {}).get(known.ANNOTATION_NO_LONGER_WANTED)


@pytest.mark.parametrize("change", [unbound, resubscribed, unsubscribing, unsubscribed, helm_only])
async def test_the_hub_marks_what_a_pull_agent_should_clean_up(change: Any) -> None:
    c, parent, child = await deleted_by_someone_else()
    change(parent, c)
    pull_mode(c)
    await c.pusher.push(DESC)
    uid = c.store.caches.descriptions[DESC]["metadata"]["labels"][known.LABEL_SUBS_UID]
    assert mark(parent, "Description", DESC) == uid
    assert child.writes == [] and known.FINALIZER_APPS in finalizers(parent, "Description", DESC)  # the agent's job
    writes = len(parent.writes)
    await c.pusher.push(DESC)  # before the watch brings the mark back: the cache holds the marked copy already
    c.store.on_description("MODIFIED", copy.deepcopy(parent.find("Description", *DESC)))
    await c.pusher.push(DESC)
    assert not [w for w in parent.writes[writes:] if w[0] == "patch"]  # said once


async def test_the_hub_marks_nothing_its_subscription_still_wants_or_cannot_tell(
        caplog: pytest.LogCaptureFixture) -> None:
    c, parent, _ = await deleted_by_someone_else()  # a Base deleted by hand: the Subscription still binds it
    pull_mode(c)
    await c.pusher.push(DESC)
    assert mark(parent, "Description", DESC) is None
    parent.objects[("Subscription", *SUB)]["spec"]["subscribers"] = [{"clusterAffinity": {
        "matchExpressions": [{"key": "env", "operator": "Bogus"}]}}]  # refused: nothing can be told
    c.store.caches.clusters[(NS, "child1")]["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    await c.pusher.push(DESC)  # a warning, and the rest of the push goes on: the offline cluster's status
    assert mark(parent, "Description", DESC) is None
    assert "cannot tell its cluster's agent whether to clean up" in caplog.text
    assert parent.find("Description", *DESC)["status"]["reason"] == CLEANUP_PENDING
    caplog.clear()
    await c.pusher.push(DESC)  # the next resync: judged again, but said once while it lasts
    assert "cannot tell" not in caplog.text
    refused = parent.objects[("Subscription", *SUB)]["spec"]["subscribers"]
    parent.objects[("Subscription", *SUB)]["spec"]["subscribers"] = [{"clusterAffinity": {}}]
    await c.pusher.push(DESC)  # judged: no failure, forgotten
    parent.objects[("Subscription", *SUB)]["spec"]["subscribers"] = refused
    await c.pusher.push(DESC)  # the same failure after a success: said again
    assert "cannot tell its cluster's agent whether to clean up" in caplog.text


async def test_the_mark_lands_on_the_object_judged_only() -> None:
    """A Description of the same name written again since the hub read the deleting one is not marked (uid)."""
    c, parent, _ = await deleted_by_someone_else()
    unsubscribed(parent, c)
    pull_mode(c)
    parent.objects[("Description", *DESC)]["metadata"]["uid"] = "written-again"
    await c.pusher.push(DESC)
    assert mark(parent, "Description", DESC) is None


async def test_the_hub_marks_a_pull_clusters_helm_release_its_subscription_no_longer_wants() -> None:
    c, parent, _ = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    pull_mode(c)
    hr = parent.find("HelmRelease", *HR)
    hr["metadata"]["deletionTimestamp"] = GONE
    unsubscribed(parent, c)
    c.store.on_helmrelease("MODIFIED", copy.deepcopy(hr))
    await c.releases.push(HR)
    assert mark(parent, "HelmRelease", HR) == hr["metadata"]["labels"][known.LABEL_SUBS_UID]


@pytest.mark.parametrize("marked", [None, "another-uid", "sub-uid"])
async def test_a_pull_agent_cleans_up_at_once_what_the_hub_marked(monkeypatch: pytest.MonkeyPatch,
                                                                 marked: str | None) -> None:
    """The Base is gone: marked with its Subscription's uid, an unbinding (no grace); else the grace runs."""
    parent, cleaned = deleting_description(), counted_cleanups(monkeypatch)
    key = (NS, f"{BASE_NAME}-generic")
    if marked:
        parent.objects[("Description", *key)]["metadata"]["annotations"] = {known.ANNOTATION_NO_LONGER_WANTED: marked}
    agent = watched_puller(parent, grace_seconds=stillwanted.BASE_GRACE_SECONDS)
    await agent.process(copy.deepcopy(parent.find("Description", *key)), PULL, resync=False)
    assert cleaned == ([key[1]] if marked == "sub-uid" else [])
    agent.grace.cancel()


async def test_a_marked_object_whose_base_is_back_and_wants_it_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's verdict is about a missing Base: a Base written again (an affinity typo undone) wins."""
    parent, cleaned = await pull_cleanup(monkeypatch, base(CFG), parent_class=Marked)
    assert cleaned == [] and finalizers(parent, "Description", (NS, f"{BASE_NAME}-generic")) == []


class Marked(FakeKube):
    """A parent whose Descriptions all carry the hub's mark for sub-uid."""

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        found = await super().get(api_version, kind, name, namespace)
        if found is not None and kind == "Description":
            found["metadata"]["annotations"] = {known.ANNOTATION_NO_LONGER_WANTED: "sub-uid"}
        return found
