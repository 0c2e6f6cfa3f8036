"""A HelmRelease whose spec.targetNamespace or spec.releaseName changes: the release moves, nothing is orphaned.

The audit patched a deployed HelmChart's targetNamespace: a second release appeared at the new place, the first
stayed in every child for ever (also after the Subscription was deleted), and no status mentioned it. These run
the shared rules (releases.py) directly, then through the hub (Push) and the agent (Pull).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_agent.helmpuller import ReleasePuller
from clusternet_api import known, prunedfields
from clusternet_api.helm import releases
from clusternet_api.helm.stuck import PendingReleases
from clusternet_api.kube import ApiException
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import NS, cluster, namespace, push_secret, subscription, unsubscribe
from tests.unit.test_helm import (
    ACCESS,
    FEED,
    HELM_DESC,
    HR,
    Deployer,
    at_generation,
    chart,
    deploy,
    events,
    helm_controller,
    release,
)

OLD, NEW = {"namespace": "abc", "name": "mysql"}, {"namespace": "abc2", "name": "mysql"}


async def reconcile(helm: FakeHelm, hr: Obj, parent: FakeKube | None = None) -> releases.Outcome:
    """One reconcile, its status kept in `hr` as the caller would write it."""
    outcome = await releases.reconcile(helm, ACCESS, hr, releases.source_of(hr["spec"]),
                                       parent or FakeKube(namespace()), pending=PendingReleases())
    if outcome.status is not None:
        hr["status"] = {**(hr.get("status") or {}), **outcome.status}
    return outcome


def helm_calls(helm: FakeHelm) -> list[tuple[str, str]]:
    return [c for c in helm.calls if c[0] != "fetch"]


def released(status: Obj) -> Obj:
    return releases.released_of({"status": status})


def move_condition(status: Obj) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == releases.MOVE_CONDITION), None)


async def deployed_then_moved(helm: FakeHelm, **spec: Any) -> Obj:
    """A release deployed at abc/mysql, its HelmRelease then changed to `spec` (generation 2)."""
    hr = release()
    await reconcile(helm, hr)
    assert hr["status"]["targets"] == [OLD]
    return at_generation(hr, 2, **spec)


@pytest.mark.parametrize(("spec", "new"), [({"targetNamespace": "abc2"}, ("abc2", "mysql")),
                                           ({"releaseName": "mysql2"}, ("abc", "mysql2"))])
async def test_a_move_installs_at_the_new_target_then_uninstalls_the_old_release(spec: Obj,
                                                                                 new: tuple[str, str]) -> None:
    helm = FakeHelm()
    hr = await deployed_then_moved(helm, **spec)
    outcome = await reconcile(helm, hr)
    assert helm_calls(helm) == [("install", "abc/mysql"), ("install", "/".join(new)), ("uninstall", "abc/mysql")]
    assert set(helm.releases) == {new}
    assert hr["status"]["targets"] == [{"namespace": new[0], "name": new[1]}]
    assert released(hr["status"])["status"] == "True" and move_condition(hr["status"]) is None
    assert outcome.event is not None and outcome.event[1] == "Installed"
    assert outcome.moved == ("Normal", "PreviousReleaseRemoved",
                             f"uninstalled release abc/mysql (the release moved to {new[0]}/{new[1]})")
    assert not outcome.retry
    again = await reconcile(helm, hr)  # settled: nothing more to do or say
    assert (again.status, again.events()) == (None, []) and len(helm_calls(helm)) == 3


async def test_a_release_somebody_else_put_at_the_old_place_is_left_alone_and_forgotten() -> None:
    helm = FakeHelm()
    hr = await deployed_then_moved(helm, targetNamespace="abc2")
    helm.foreign("abc", "mysql")  # replaced by hand: no owner label
    outcome = await reconcile(helm, hr)
    assert helm_calls(helm) == [("install", "abc/mysql"), ("install", "abc2/mysql")]
    assert set(helm.releases) == {("abc", "mysql"), ("abc2", "mysql")}
    assert hr["status"]["targets"] == [NEW] and move_condition(hr["status"]) is None
    assert outcome.moved is not None and "abc/mysql was not installed by this HelmRelease: left in place" in (
        outcome.moved[2])


async def test_a_failed_install_at_the_new_target_keeps_the_old_release_and_deletion_removes_both() -> None:
    helm = FakeHelm()
    hr = await deployed_then_moved(helm, targetNamespace="abc2")
    helm.fail = "timed out waiting for the condition"
    outcome = await reconcile(helm, hr)
    assert helm_calls(helm) == [("install", "abc/mysql"), ("install", "abc2/mysql")]  # abc/mysql kept
    assert released(hr["status"])["reason"] == releases.REASON_FAILED and not outcome.retry
    assert hr["status"]["targets"] == [NEW, OLD]  # abc2 holds a failed release of ours
    condition = move_condition(hr["status"])
    assert condition is not None and condition["status"] == "False"
    assert condition["message"] == "previous release abc/mysql stays until release abc2/mysql runs this spec; it " \
                                   "is uninstalled then"
    done = await releases.uninstall(helm, ACCESS, hr)
    assert done == "uninstalled release abc2/mysql; uninstalled release abc/mysql"
    assert helm.releases == {}


async def test_an_old_release_that_cannot_be_uninstalled_is_said_and_tried_again_without_failing_the_new() -> None:
    helm = FakeHelm()
    hr = await deployed_then_moved(helm, targetNamespace="abc2")
    helm.failing_uninstalls[("abc", "mysql")] = "context deadline exceeded"
    outcome = await reconcile(helm, hr)
    assert released(hr["status"])["status"] == "True" and outcome.retry
    assert hr["status"]["targets"] == [NEW, OLD]
    message = ("uninstalling previous release abc/mysql failed (tried again): context deadline exceeded (the release "
               "moved to abc2/mysql)")
    condition = move_condition(hr["status"])
    assert condition is not None and (condition["status"], condition["message"]) == ("False", message)
    assert outcome.moved == ("Warning", "PreviousReleaseLeft", message)
    again = await reconcile(helm, hr)  # the same failure: tried, not announced again
    assert (again.status, again.moved, again.retry) == (None, None, True)
    assert helm_calls(helm).count(("uninstall", "abc/mysql")) == 2
    del helm.failing_uninstalls[("abc", "mysql")]
    done = await reconcile(helm, hr)
    assert done.moved is not None and done.moved[0] == "Normal" and not done.retry
    assert hr["status"]["targets"] == [NEW] and move_condition(hr["status"]) is None
    assert set(helm.releases) == {("abc2", "mysql")}


class ForbiddenNamespace(FakeKube):
    """An agent whose parent identity an older hub set up without `get` on its namespace."""

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if kind == "Namespace":
            raise ApiException(403, "Forbidden")
        return await super().get(api_version, kind, name, namespace)


@pytest.mark.parametrize(("parent", "why"), [
    (FakeKube(namespace() | {"metadata": {"name": NS, "deletionTimestamp": "now"}}), "is being deleted"),
    (FakeKube(), "is being deleted"),
    (ForbiddenNamespace(namespace()), "cannot tell whether cluster namespace"),
])
async def test_nothing_is_uninstalled_while_the_clusters_namespace_is_going_or_unknown(parent: FakeKube,
                                                                                       why: str) -> None:
    helm = FakeHelm()
    hr = await deployed_then_moved(helm, targetNamespace="abc2")
    await reconcile(helm, hr, parent)
    assert ("uninstall", "abc/mysql") not in helm.calls and ("abc", "mysql") in helm.releases
    assert hr["status"]["targets"] == [NEW, OLD]
    condition = move_condition(hr["status"])
    assert condition is not None and why in condition["message"]


# --- through the hub (Push) and the agent (Pull) ---------------------------------------------------------------


def moved_chart(parent: FakeKube) -> Obj:
    found = parent.find("HelmChart", "default", "mysql")
    assert found is not None
    moved = copy.deepcopy(found)
    moved["spec"]["targetNamespace"] = "abc2"
    return moved


async def test_push_a_moved_chart_moves_the_release_and_deleting_after_a_half_done_move_removes_both() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    helm.failing_uninstalls[("abc", "mysql")] = "connection reset by peer"
    c.store.on_helmchart("MODIFIED", moved_chart(parent))
    await deploy(c)
    hr = parent.find("HelmRelease", *HR)
    assert hr is not None and hr["spec"]["targetNamespace"] == "abc2"
    assert set(helm.releases) == {("abc", "mysql"), ("abc2", "mysql")}
    assert hr["status"]["targets"] == [NEW, OLD] and move_condition(hr["status"]) is not None
    assert released(hr["status"])["status"] == "True"  # the new release's status is not held back
    desc = parent.find("Description", *HELM_DESC)
    assert desc is not None and desc["status"]["phase"] == "Success"
    assert [e[1] for e in events(parent) if e[0] == HR[1]][-2:] == ["Installed", "PreviousReleaseLeft"]
    assert c.store.queue.waiting(("release", *HR))  # tried again
    helm.failing_uninstalls.clear()
    cached = c.store.caches.helmreleases[HR]
    unsubscribe(parent, c)  # an ordinary deletion
    c.store.on_helmrelease("MODIFIED", {**cached, "metadata": {**cached["metadata"], "deletionTimestamp": "now"}})
    await c.releases.push(HR)
    assert helm.releases == {}


async def test_push_a_completed_move_leaves_one_release_and_deletion_removes_it() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    c.store.on_helmchart("MODIFIED", moved_chart(parent))
    await deploy(c)
    assert set(helm.releases) == {("abc2", "mysql")}
    hr = parent.find("HelmRelease", *HR)
    assert hr is not None and hr["status"]["targets"] == [NEW]
    cached = c.store.caches.helmreleases[HR]
    unsubscribe(parent, c)  # an ordinary deletion
    c.store.on_helmrelease("MODIFIED", {**cached, "metadata": {**cached["metadata"], "deletionTimestamp": "now"}})
    await c.releases.push(HR)
    assert helm.releases == {}
    assert helm_calls(helm)[-1] == ("uninstall", "abc2/mysql")
    assert helm_calls(helm).count(("uninstall", "abc/mysql")) == 1  # at the move, forgotten since


PULL_MODE = {"spec": {"syncMode": "Pull"}, "status": {"appPusher": False}}


async def pull(agent: ReleasePuller, parent: FakeKube, **spec: Any) -> Obj:
    """Change the stored HelmRelease's spec (a new generation), let the agent process it, return it."""
    stored = parent.objects[("HelmRelease", NS, "r")]
    if spec:
        parent.objects[("HelmRelease", NS, "r")] = stored = stored | {
            "spec": stored["spec"] | spec, "metadata": stored["metadata"] | {
                "generation": stored["metadata"]["generation"] + 1}}
    await agent.process(stored, PULL_MODE)
    return parent.objects[("HelmRelease", NS, "r")]


async def test_pull_a_move_and_a_deletion_after_a_half_done_move_behave_as_in_push() -> None:
    helm = FakeHelm()
    hr = release() | {"apiVersion": known.APPS_API_VERSION, "kind": "HelmRelease"}
    hr["metadata"]["finalizers"] = [known.FINALIZER_APPS]
    live = {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
            "metadata": {"name": "child2", "namespace": NS}, **PULL_MODE}  # read before the uninstall
    parent = FakeKube(namespace(), live, hr)
    agent = ReleasePuller(parent, Deployer(), NS, "child2", 30, helm)  # type: ignore[arg-type]
    await pull(agent, parent)
    moved = await pull(agent, parent, targetNamespace="abc2")
    assert set(helm.releases) == {("abc2", "mysql")} and moved["status"]["targets"] == [NEW]
    assert [e[1] for e in events(parent)] == ["Installed", "Installed", "PreviousReleaseRemoved"]
    helm.fail = "timed out waiting for the condition"
    half = await pull(agent, parent, targetNamespace="abc3")
    assert half["status"]["targets"] == [{"namespace": "abc3", "name": "mysql"}, NEW]
    assert set(helm.releases) == {("abc2", "mysql"), ("abc3", "mysql")}
    parent.objects[("HelmRelease", NS, "r")] = half | {"metadata": half["metadata"] | {"deletionTimestamp": "now"}}
    await pull(agent, parent)
    assert helm.releases == {}
    gone = parent.find("HelmRelease", NS, "r")
    assert gone is None or known.FINALIZER_APPS not in (gone["metadata"].get("finalizers") or [])


def test_a_parent_that_prunes_status_targets_is_said_once(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The third audit upgraded the hub before the CRDs: moves then orphaned old releases without a word."""
    monkeypatch.setattr(prunedfields, "_warned", set())
    sent = {"targets": [{"namespace": "b", "name": "r"}]}
    releases.warn_if_targets_pruned(sent, {"status": sent})
    assert "status.targets" not in caplog.text
    releases.warn_if_targets_pruned(sent, {"status": {"phase": "deployed"}})
    releases.warn_if_targets_pruned(sent, {"status": {}})
    assert caplog.text.count("has no status.targets") == 1
