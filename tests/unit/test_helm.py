"""Helm feeds without a cluster: values layering, Helm Descriptions, HelmReleases, the release rules and status."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from typing import Any

import pytest

from clusternet_agent.helmpuller import ReleasePuller
from clusternet_api import known
from clusternet_api.credentials import Credentials
from clusternet_api.helm import messages, releases
from clusternet_api.helm.driver import ClusterAccess
from clusternet_api.helm.stuck import PendingReleases
from clusternet_api.kube import ApiException
from clusternet_api.rawobjects import decode_raw
from clusternet_core import helmrender, rendering
from clusternet_hub.controller import Controller
from clusternet_hub.controller.store import RELEASE_WAITS, TUNNEL_DOWN, Store
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import (
    NS,
    SUB,
    cluster,
    config_map_manifest,
    namespace,
    no_tunnel,
    push_secret,
    subscription,
    tunnel_cluster,
    unsubscribe,
)

BASE = rendering.base_name("app", subscription_namespace="default")
HELM_DESC = (NS, rendering.description_name(BASE, "Helm"))
FEED = {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart", "namespace": "default", "name": "mysql"}
HR = (NS, helmrender.release_name(HELM_DESC[1], "default", "mysql"))
ACCESS = ClusterAccess(server="https://child.example:6443", token="t")
PARENT = FakeKube()
"""The parent the release rules read (namespaceguard, before a previous target is uninstalled): no namespace."""


def chart(phase: str | None = "Found", **spec: Any) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart",
            "metadata": {"name": "mysql", "namespace": "default"},
            "spec": {"repo": "https://charts.example", "chart": "mysql", "version": "8.6.2",
                     "targetNamespace": "abc", **spec},
            **({"status": {"phase": phase, "reason": "checked"}} if phase else {})}


def override(kind: str, name: str, priority: int, value: Obj, namespace: str | None = None,
             chart_override: bool = False) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": kind,
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {}),
                         "creationTimestamp": "2026-12-03T10:00:00Z"},
            "spec": {"priority": priority, "feed": FEED, "overrides": [
                {"name": name, "type": "Helm", "value": json.dumps(value), "overrideChart": chart_override}]}}


# --- rendering ------------------------------------------------------------------------------------------


def test_values_layer_chart_object_then_globalizations_then_localizations_and_null_removes() -> None:
    c = chart(values={"a": 1, "b": {"x": 1, "y": 2}, "gone": True})
    glob = override("Globalization", "g", 100, {"b": {"x": 10}, "c": 3})
    loc = override("Localization", "l", 100, {"c": 30, "gone": None}, namespace=NS)
    result = helmrender.render_helm([FEED], {"apps.clusternet.io/v1alpha1/HelmChart/default/mysql": c}, cluster(),
                                    [glob], [loc])
    assert result.errors == []
    [item] = result.items
    assert item.values == {"a": 1, "b": {"x": 10, "y": 2}, "c": 30}
    assert [a.name for a in item.applied] == ["g", "l"]


def test_override_chart_patches_the_version_but_never_the_chart_or_target_namespace() -> None:
    patch = {"spec": {"version": "9.0.0", "chart": "other", "targetNamespace": "elsewhere"}}
    loc = override("Localization", "v", 100, patch, namespace=NS, chart_override=True)
    [item] = helmrender.render_helm([FEED], {"apps.clusternet.io/v1alpha1/HelmChart/default/mysql": chart()},
                                    cluster(), [], [loc]).items
    assert item.chart["spec"]["version"] == "9.0.0"
    assert (item.chart["spec"]["chart"], item.chart["spec"]["targetNamespace"]) == ("mysql", "abc")
    assert "status" not in item.chart


def test_a_chart_not_checked_or_not_found_waits_but_keeps_what_a_cluster_already_runs() -> None:
    key = "apps.clusternet.io/v1alpha1/HelmChart/default/mysql"
    waiting = helmrender.render_helm([FEED], {key: chart(phase=None)}, cluster(), [], [])
    assert waiting.errors == ["HelmChart default/mysql is waiting for its repository check"]
    assert helmrender.render_helm([FEED], {}, cluster(), [], []).errors == ["HelmChart default/mysql not found"]
    deployed = helmrender.render_helm([FEED], {key: chart()}, cluster(), [], [])
    existing = {"spec": deployed.spec()}
    missing = helmrender.render_helm([FEED], {key: chart("NotFound")}, cluster(), [], [], existing)
    assert [i.kept for i in missing.items] == [True] and missing.spec() == existing["spec"]
    assert missing.errors == ["HelmChart default/mysql is NotFound: checked; the deployed release is kept"]


# --- the hub: Subscription -> Helm Description -> HelmRelease -> install -> status ------------------------


async def helm_controller(*objects: Obj) -> tuple[Controller, FakeKube, FakeHelm]:
    parent, helm = FakeKube(namespace(), *objects), FakeHelm()
    # the child, which a release to a cluster reached directly asks first (ReleasePusher.unreachable)
    c = Controller(parent, {}, no_tunnel, helm=helm, connect=lambda *_: FakeKube())
    await c.store.prime(parent)
    c.store.queue.drain()
    return c, parent, helm


async def deploy(c: Controller) -> None:
    await c.subscriptions.reconcile(SUB, force=False)
    await c.helm_descriptions.sync(HELM_DESC)
    await c.releases.push(HR)
    await c.helm_descriptions.sync(HELM_DESC)


async def test_a_helm_feed_becomes_a_helm_description_a_helmrelease_and_an_installed_release() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(values={"k": "v"}), push_secret(),
                                            subscription(feeds=[FEED]))
    await deploy(c)
    desc = parent.find("Description", *HELM_DESC)
    assert desc["spec"]["charts"] == [{"namespace": "default", "name": "mysql"}]
    assert decode_raw(desc["spec"]["raw"]) == [{"k": "v"}]
    assert parent.find("Description", NS, rendering.description_name(BASE, "Generic")) is None
    hr = parent.find("HelmRelease", *HR)
    assert hr["metadata"]["ownerReferences"][0]["uid"] == desc["metadata"]["uid"]
    assert hr["spec"]["releaseName"] == "mysql" and hr["spec"]["targetNamespace"] == "abc"
    assert json.loads(base64.b64decode(hr["spec"]["overrides"])) == {"k": "v"}
    assert helm.releases[("abc", "mysql")].revision == 1
    assert hr["status"]["phase"] == "deployed" and hr["status"]["observedGeneration"] == hr["metadata"]["generation"]
    assert parent.find("Description", *HELM_DESC)["status"]["phase"] == "Success"


async def test_two_charts_never_share_one_helmrelease_and_the_description_says_why() -> None:
    """`foo-bar/baz` and `foo/bar-baz` give one name, <description>-foo-bar-baz (Clusternet's naming): both were
    written to it in turn, for ever, and each switch of its target uninstalled the other chart's release."""
    first, second = chart(), chart()
    first["metadata"] = {"name": "baz", "namespace": "foo-bar"}
    second["metadata"] = {"name": "bar-baz", "namespace": "foo"}
    second["spec"] = second["spec"] | {"chart": "mariadb"}
    feeds = [FEED | {"namespace": "foo-bar", "name": "baz"}, FEED | {"namespace": "foo", "name": "bar-baz"}]
    c, parent, helm = await helm_controller(cluster(), first, second, push_secret(), subscription(feeds=feeds))
    await c.subscriptions.reconcile(SUB, force=False)
    await c.helm_descriptions.sync(HELM_DESC)
    shared = (NS, helmrender.release_name(HELM_DESC[1], "foo-bar", "baz"))
    assert [w for w in parent.writes if w[1] == "HelmRelease"] == [("apply", "HelmRelease", "/".join(shared))]
    await c.releases.push(shared)
    await c.helm_descriptions.sync(HELM_DESC)  # nothing to write again: the first chart keeps the name
    assert [w for w in parent.writes if w[1] == "HelmRelease" and w[0] == "apply"] == [
        ("apply", "HelmRelease", "/".join(shared))]
    assert [verb for verb, _ in helm.calls if verb != "fetch"] == ["install"]
    status = parent.find("Description", *HELM_DESC)["status"]
    assert status["phase"] == "Failure" and status["reason"].startswith(
        f"HelmCharts foo-bar/baz, foo/bar-baz would share HelmRelease {shared[1]}")


async def test_a_values_only_change_upgrades_and_status_waits_for_the_child() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(values={"k": "v"}), push_secret(),
                                            subscription(feeds=[FEED]))
    await deploy(c)
    c.store.on_helmchart("MODIFIED", {**chart(values={"k": "w"}), "metadata": {"name": "mysql",
                                                                                 "namespace": "default"}})
    await c.subscriptions.reconcile(SUB, force=False)
    await c.helm_descriptions.sync(HELM_DESC)
    # the release's spec changed, the child has not installed it yet: not Success
    assert parent.find("Description", *HELM_DESC)["status"]["phase"] == "Pending"
    await c.releases.push(HR)
    await c.helm_descriptions.sync(HELM_DESC)
    assert helm.releases[("abc", "mysql")].revision == 2 and helm.releases[("abc", "mysql")].values == {"k": "w"}
    assert parent.find("Description", *HELM_DESC)["status"]["phase"] == "Success"


async def test_a_helmrelease_status_the_parent_refuses_is_said_once_and_helm_not_run_again(
        caplog: pytest.LogCaptureFixture) -> None:
    """The hub dropped every failed status write without a word (until 2026-12-06)."""
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    parent.fail[("patch/status", "HelmRelease")] = ApiException(500, "etcdserver: request timed out")
    with caplog.at_level(logging.DEBUG, logger="clusternet_hub.controller.helmpusher"):
        await deploy(c)
        await c.releases.push(HR, force=True)  # the next resync: the same refusal, at DEBUG
    said = [r for r in caplog.records if "its status could not be written" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG] and "HTTP 500" in said[0].getMessage()
    assert [verb for verb, _ in helm.calls].count("install") == 1  # the release runs its spec: nothing redone
    del parent.fail[("patch/status", "HelmRelease")]
    await c.releases.push(HR, force=True)
    assert parent.find("HelmRelease", *HR)["status"]["phase"] == "deployed"


async def test_a_long_helm_message_is_shortened_to_fit_the_condition() -> None:
    """The CRD caps a condition's message at 32768 characters: a longer one failed the status write every time."""
    helm = FakeHelm()
    helm.fail = "Error: resource Deployment/x not ready. " * 1000  # a wait timeout of a large chart
    outcome = await reconciled(helm, release())
    message = released(outcome.status)["message"]
    assert len(message) == messages.MAX_CONDITION_MESSAGE and "…" in message
    assert message.startswith("install of release abc/mysql") and message.endswith("not ready. ")


async def test_a_failed_install_is_reported_with_helms_message_and_not_retried_until_a_change() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    helm.fail = 'ConfigMap "x" is invalid: data[bad key!]: Invalid value'
    await deploy(c)
    status = parent.find("Description", *HELM_DESC)["status"]
    assert status["phase"] == "Failure" and "data[bad key!]" in status["reason"]
    calls = len(helm.calls)
    await c.releases.push(HR, force=True)
    assert len(helm.calls) == calls


async def test_a_dead_repository_keeps_the_pushed_release_deployed_and_the_description_failed_until_it_is_back(
        ) -> None:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    helm.dead_repos.add("https://dead.example")

    async def set_repo(repo: str, version: str) -> None:
        """The HelmChart's repo changed (and the version: a release running its exact version is not fetched for);
        its status still says Found (its check comes later), as the audit saw."""
        c.store.on_helmchart("MODIFIED", parent.find("HelmChart", "default", "mysql") | {
            "spec": chart()["spec"] | {"repo": repo, "version": version}})
        await deploy(c)

    await set_repo("https://dead.example", "8.6.3")
    hr = parent.find("HelmRelease", *HR)
    assert (hr["status"]["phase"], hr["status"]["version"], hr["status"]["observedGeneration"]) == ("deployed", 1, 2)
    assert released(hr["status"])["reason"] == "ChartLocateFailure"
    status = parent.find("Description", *HELM_DESC)["status"]
    assert status["phase"] == "Failure" and status["reason"].endswith(
        "release abc/mysql stays at revision 1 (chart mysql-8.6.2, deployed)")
    await c.releases.push(HR)  # a retry: no second event
    assert [e[1] for e in events(parent) if e[0] == HR[1]] == ["Installed", "ChartLocateFailure"]
    await set_repo("https://charts.example", "8.6.2")
    hr = parent.find("HelmRelease", *HR)
    assert (hr["status"]["phase"], hr["status"]["version"], hr["status"]["observedGeneration"]) == ("deployed", 1, 3)
    assert released(hr["status"])["status"] == "True"
    assert parent.find("Description", *HELM_DESC)["status"]["phase"] == "Success"
    assert helm.releases[("abc", "mysql")].revision == 1


async def test_a_failed_atomic_upgrade_reports_the_rolled_back_release_and_is_not_tried_again() -> None:
    helm = FakeHelm()
    hr = release(upgradeAtomic=True)
    hr["status"] = (await reconciled(helm, hr)).status
    hr = at_generation(hr, 2, overrides=base64.b64encode(b'{"k": "v"}').decode())
    helm.fail = 'ConfigMap "x" is invalid: data[bad key!]: Invalid value'
    outcome = await reconciled(helm, hr)
    assert outcome.status is not None and outcome.event is not None and outcome.event[1] == "ReleaseFailed"
    # Helm rolled back: the child runs revision 3, deployed, which is revision 1's spec
    assert (outcome.status["phase"], outcome.status["version"]) == ("deployed", 3)
    assert released(outcome.status)["status"] == "False" and "bad key!" in released(outcome.status)["message"]
    hr["status"] = outcome.status
    calls = len(helm.calls)
    again = await reconciled(helm, hr)
    assert again.status is None and len(helm.calls) == calls  # no upgrade and roll back at every resync


async def test_deleting_the_subscription_uninstalls_then_lets_the_description_go() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    desc = parent.find("Description", *HELM_DESC)
    unsubscribe(parent, c)
    c.store.on_description("MODIFIED", {**desc, "metadata": {**desc["metadata"], "deletionTimestamp": "now"}})
    await c.helm_descriptions.sync(HELM_DESC)
    assert parent.find("HelmRelease", *HR) is None or ("delete", "HelmRelease", "/".join(HR)) in parent.writes
    hr = c.store.caches.helmreleases[HR]
    c.store.on_helmrelease("MODIFIED", {**hr, "metadata": {**hr["metadata"], "deletionTimestamp": "now"}})
    await c.releases.push(HR)
    assert ("abc", "mysql") not in helm.releases


async def test_an_offline_cluster_keeps_its_release_until_it_returns() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    c.store.caches.clusters[(NS, "child1")] = cluster(ready="Unknown")
    hr = c.store.caches.helmreleases[HR]
    unsubscribe(parent, c)  # an ordinary deletion
    c.store.on_helmrelease("MODIFIED", {**hr, "metadata": {**hr["metadata"], "deletionTimestamp": "now"}})
    await c.releases.push(HR)
    assert ("abc", "mysql") in helm.releases
    assert "offline" in parent.find("HelmRelease", *HR)["status"]["description"]


async def test_a_silent_cluster_gets_no_helm_upgrade_until_it_returns() -> None:
    """Audit s36, finding 2: an upgrade went to a cluster whose agent was dead (Ready=Unknown), and Helm deletes
    what the new chart drops; Generic prunes and Pull agents wait for the cluster, so Helm waits too."""
    c, parent, helm = await helm_controller(cluster(), chart(values={"k": "v"}), push_secret(),
                                            subscription(feeds=[FEED]))
    await deploy(c)
    assert helm.releases[("abc", "mysql")].revision == 1
    c.store.caches.clusters[(NS, "child1")] = cluster(ready="Unknown")
    hr = copy.deepcopy(c.store.caches.helmreleases[HR])
    hr["metadata"]["generation"] += 1
    hr["spec"]["overrides"] = base64.b64encode(json.dumps({"k": "w"}).encode()).decode()
    parent.objects[("HelmRelease", *HR)] = copy.deepcopy(hr)
    c.store.on_helmrelease("MODIFIED", hr)
    helm.calls.clear()
    await c.releases.push(HR)
    assert helm.calls == [] and helm.releases[("abc", "mysql")].revision == 1
    assert parent.find("HelmRelease", *HR)["status"]["description"] == RELEASE_WAITS["offline"]
    c.store.caches.clusters[(NS, "child1")] = cluster()
    c.store.on_helmrelease("MODIFIED", copy.deepcopy(parent.find("HelmRelease", *HR)))
    await c.releases.push(HR)
    assert helm.releases[("abc", "mysql")].revision == 2


async def test_a_tunnel_cluster_gets_no_helm_operation_while_its_tunnel_is_down() -> None:
    """Helm never dials the URL a tunnel cluster's agent advertised (Clusternet's useSocket rule, as pushes)."""
    c, parent, helm = await helm_controller(tunnel_cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    assert helm.releases == {}
    assert parent.find("HelmRelease", *HR)["status"]["description"] == TUNNEL_DOWN
    timer, _ = c.store.queue._later[("release", *HR)]  # a Generic push's backoff (2 s), not a chart's (5 s)
    assert timer.when() - asyncio.get_running_loop().time() <= 2.0
    unsubscribe(parent, c)  # its deletion neither: the release is uninstalled once the tunnel is back
    hr = c.store.caches.helmreleases[HR]
    c.store.on_helmrelease("MODIFIED", {**hr, "metadata": {**hr["metadata"], "deletionTimestamp": "now"}})
    await c.releases.push(HR)
    assert helm.calls == [] and parent.find("HelmRelease", *HR)["metadata"].get("finalizers")


async def test_a_chart_check_sets_found_or_not_found_with_the_reason() -> None:
    c, parent, _ = await helm_controller(chart(phase=None), chart(phase=None, version="1.0.0") | {
        "metadata": {"name": "missing", "namespace": "default"}})
    await c.charts.check(("default", "mysql"))
    await c.charts.check(("default", "missing"))
    assert parent.find("HelmChart", "default", "mysql")["status"]["phase"] == "Found"
    missing = parent.find("HelmChart", "default", "missing")["status"]
    assert missing["phase"] == "NotFound" and 'version "1.0.0" not found' in missing["reason"]


async def test_a_chart_has_one_recheck_scheduled_however_often_it_was_checked() -> None:
    """Checks no timer asked for (the first, one per spec change, a worker's retry after an error) each started a
    series of rechecks of their own, a repository download every RECHECK_FOUND for as long as the hub ran."""
    c, _, helm = await helm_controller(chart(phase=None))
    await c.charts.check(("default", "mysql"))  # created
    helm.dead_repos.add("https://charts.example")
    await c.charts.check(("default", "mysql"))  # its repository went away: NotFound, checked again sooner
    helm.dead_repos.clear()
    await c.charts.check(("default", "mysql"))  # its spec changed, say
    await c.charts.check(("default", "mysql"))  # a worker's retry
    assert list(c.store.queue._later) == [("chart", "default", "mysql")]
    for timer, _ in c.store.queue._later.values():
        timer.cancel()


# --- the release rules (shared by hub and agent) ---------------------------------------------------------


def events(kube: FakeKube) -> list[tuple[str, str, str]]:
    """(involved object's name, reason, message) of every event posted."""
    return [(e["involvedObject"]["name"], e["reason"], e["message"]) for (kind, _, _), e in kube.objects.items()
            if kind == "Event"]


async def test_a_chart_problem_is_an_event_on_the_helm_description_not_the_generic_one() -> None:
    cm_feed = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"}
    c, parent, _ = await helm_controller(cluster(), chart(), push_secret(), config_map_manifest(),
                                         subscription(feeds=[cm_feed, FEED]))
    await deploy(c)
    c.store.on_helmchart("MODIFIED", parent.find("HelmChart", "default", "mysql") | {
        "status": {"phase": "NotFound", "reason": "cannot reach https://charts.example"}})
    await c.subscriptions.reconcile(SUB, force=False)
    assert [e for e in events(parent) if e[1] == "RenderFailed"] == [
        (HELM_DESC[1], "RenderFailed",
         "HelmChart default/mysql is NotFound: cannot reach https://charts.example; the deployed release is kept")]
    await c.subscriptions.reconcile(SUB, force=True)  # the same errors again: no second event
    assert len([e for e in events(parent) if e[1] == "RenderFailed"]) == 1


async def test_render_failed_stays_while_clusters_report_in() -> None:
    """A status rewrite for Descriptions that reported in (no reconcile) kept flipping the Subscription back to
    ReleasesNotReady while the chart was still broken (found by the day-2 audit)."""
    c, parent, _ = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    c.store.on_helmchart("MODIFIED", parent.find("HelmChart", "default", "mysql") | {
        "status": {"phase": "NotFound", "reason": "cannot reach https://charts.example"}})
    await c.subscriptions.reconcile(SUB, force=False)

    def ready() -> Obj:
        sub = parent.find("Subscription", *SUB)
        assert sub is not None
        found: Obj = sub["status"]["conditions"][0]
        return found

    assert ready()["reason"] == "RenderFailed"
    c.store.caches.subscriptions[SUB] = parent.find("Subscription", *SUB)
    await c.status.update(SUB)  # what a Description's report triggers
    assert ready()["reason"] == "RenderFailed"
    c.store.on_helmchart("MODIFIED", parent.find("HelmChart", "default", "mysql") | {"status": {"phase": "Found"}})
    await c.subscriptions.reconcile(SUB, force=False)
    await c.status.update(SUB)
    assert ready()["reason"] != "RenderFailed"


async def reconciled(helm: FakeHelm, hr: Obj, pending: PendingReleases | None = None) -> releases.Outcome:
    """One reconcile of `hr` by a deployer that has seen nothing pending before (unless `pending` says what)."""
    return await releases.reconcile(helm, ACCESS, hr, releases.source_of(hr["spec"]), PARENT,
                                    pending=pending or PendingReleases())


def release(**spec: Any) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "HelmRelease",
            "metadata": {"name": "r", "namespace": NS, "generation": 1},
            "spec": {"repo": "https://charts.example", "chart": "mysql", "version": "8.6.2",
                     "targetNamespace": "abc", "releaseName": "mysql", **spec}}


async def test_a_release_somebody_else_installed_is_never_upgraded_or_removed() -> None:
    helm = FakeHelm()
    helm.foreign("abc", "mysql")
    hr = release()
    outcome = await reconciled(helm, hr)
    assert outcome.status is not None and outcome.status["phase"] == "failed"
    assert "not installed by this HelmRelease" in outcome.status["description"]
    assert "not installed by this HelmRelease" in await releases.uninstall(helm, ACCESS, hr)
    assert [verb for verb, _ in helm.calls] == []


async def test_an_unchanged_release_is_left_alone_and_a_missing_chart_is_retried() -> None:
    helm = FakeHelm()
    hr = release()
    first = await reconciled(helm, hr)
    hr["status"] = first.status
    again = await reconciled(helm, hr)
    assert again.status is None and [v for v, _ in helm.calls].count("install") == 1
    missing = release(version="9.9.9") | {"metadata": {"name": "other", "namespace": NS, "generation": 1}}
    missing["spec"]["releaseName"] = "other"
    outcome = await reconciled(helm, missing)
    assert outcome.retry and outcome.status is not None
    # nothing in the child: Clusternet's "failed", with the reason
    assert outcome.status["phase"] == "failed" and outcome.status["version"] is None
    assert outcome.status["description"].startswith(releases.FETCH_FAILED)
    assert released(outcome.status)["reason"] == "ChartLocateFailure"


def released(status: Obj | None) -> Obj:
    [condition] = (status or {})["conditions"]
    assert condition["type"] == "Released"
    return dict(condition)


def at_generation(hr: Obj, generation: int, **spec: Any) -> Obj:
    return {**hr, "metadata": {**hr["metadata"], "generation": generation}, "spec": {**hr["spec"], **spec}}


async def test_a_chart_that_cannot_be_fetched_leaves_the_deployed_release_reported_as_the_child_has_it() -> None:
    helm = FakeHelm()
    helm.dead_repos.add("https://dead.example")
    hr = release()
    hr["status"] = (await reconciled(helm, hr)).status
    installed = dict(hr["status"])
    hr = at_generation(hr, 2, repo="https://dead.example", version="8.6.3")  # an upgrade needs the repository
    outcome = await reconciled(helm, hr)
    assert outcome.status is not None and outcome.retry  # the repository may come back
    # what the child runs, as Helm keeps it: revision 1, deployed
    assert {k: outcome.status[k] for k in releases.HELM_FIELDS} == {k: installed[k] for k in releases.HELM_FIELDS}
    assert outcome.status["phase"] == "deployed" and outcome.status["observedGeneration"] == 2
    condition = released(outcome.status)
    assert (condition["status"], condition["reason"], condition["observedGeneration"]) == (
        "False", "ChartLocateFailure", 2)
    assert condition["message"] == ("cannot fetch chart mysql from https://dead.example: cannot reach chart repository "
                                    "https://dead.example: connection refused; release abc/mysql stays at revision 1 "
                                    "(chart mysql-8.6.2, deployed)")
    assert outcome.event == ("Warning", "ChartLocateFailure", condition["message"])
    # the Description: a Failure that says what the child still runs, not Success, not a failed release
    hr["status"] = outcome.status
    desc_hr = {**hr, "metadata": {**hr["metadata"], "name": "d-default-mysql",
                                  "annotations": {helmrender.ANNOTATION_DESCRIPTION_GENERATION: "1"}}}
    desc = {"metadata": {"name": "d", "generation": 1}, "spec": {"charts": [{"namespace": "default", "name": "mysql"}]}}
    assert helmrender.description_status(desc, [desc_hr]) == {
        "phase": "Failure", "reason": f"HelmRelease d-default-mysql: {condition['message']}", "observedGeneration": 1}
    # tried again: nothing new to write or announce, still retried
    again = await reconciled(helm, hr)
    assert (again.status, again.event, again.retry) == (None, None, True)
    assert [verb for verb, _ in helm.calls if verb != "fetch"] == ["install"]


async def test_a_release_running_its_pinned_spec_is_not_failed_by_a_dead_repository() -> None:
    """A restarted deployer (no chart cache) while the repository is down, or a registry rate-limiting pulls:
    the child runs the spec's exact version of its chart with its values, so nothing is fetched and the release
    stays Released=True (it turned False, and its Description Failure, at every resync until 2026-12-06)."""
    helm = FakeHelm()
    hr = release()
    hr["status"] = (await reconciled(helm, hr)).status
    helm.dead_repos |= {"https://charts.example", "https://mirror.example"}
    outcome = await reconciled(helm, hr)
    assert (outcome.status, outcome.event, outcome.retry) == (None, None, False)  # nothing new to say
    fresh = await reconciled(helm, {k: v for k, v in hr.items() if k != "status"})  # as if never reported
    assert fresh.status is not None and released(fresh.status)["status"] == "True" and fresh.event is None
    assert [verb for verb, _ in helm.calls] == ["fetch", "install"]
    # a constraint may resolve to a newer version: the repository is asked, and its silence reported
    ranged = await reconciled(helm, at_generation(hr, 2, version="~8.6"))
    assert ranged.status is not None and released(ranged.status)["reason"] == "ChartLocateFailure"
    # so is another repository, at the same version: a mistyped mirror is reported now (review s35)
    moved = await reconciled(helm, at_generation(hr, 2, repo="https://mirror.example"))
    assert moved.status is not None and released(moved.status)["reason"] == "ChartLocateFailure"


async def test_a_fetch_without_the_charts_credentials_says_they_were_missing() -> None:
    """Two private charts to one Pull cluster, or a first reconcile before the hub's copy: the repository's
    'refused anonymous access' read as if no chartPullSecret were set (audit s35)."""
    helm = FakeHelm()
    helm.dead_repos.add("https://charts.example")
    outcome = await reconciled(helm, release(chartPullSecret={"name": "creds", "namespace": "default"}))
    assert released(outcome.status)["message"].endswith(
        f"did not have to send (in Pull mode the hub copies them into Secret {known.CHART_PULL_SECRET} of the "
        "cluster's namespace; retried)")
    plain = await reconciled(helm, release())
    assert "chartPullSecret" not in released(plain.status)["message"]


async def test_another_chart_at_the_same_version_is_upgraded() -> None:
    """Clusternet's ReleaseNeedsUpgrade compares the chart's name too: `chart` changed in a HelmChart whose version
    stays 0.1.0 (`helm create`'s) was never deployed here, and Released=True named the old chart."""
    helm = FakeHelm(charts=(("mysql", "8.6.2"), ("mariadb", "8.6.2")))
    hr = release()
    hr["status"] = (await reconciled(helm, hr)).status
    outcome = await reconciled(helm, at_generation(hr, 2, chart="mariadb"))
    assert ("upgrade", "abc/mysql") in helm.calls and helm.releases[("abc", "mysql")].chart_name == "mariadb"
    assert outcome.status is not None and "(chart mariadb-8.6.2)" in released(outcome.status)["message"]


def test_clusternets_helm_options_map_as_clusternet_maps_them() -> None:
    """As Clusternet's InstallRelease/UpgradeRelease: `atomic` for installs, `upgradeAtomic` alone for upgrades,
    `replace` on install, `force` on upgrade, `skipCRDs` and `waitForJob` on both."""
    hr = release(atomic=True, waitForJob=True, skipCRDs=True, replace=True, force=True)
    install, upgrade = releases.options_of(hr), releases.options_of(hr, upgrade=True)
    assert (install.atomic, install.replace, install.force, install.skip_crds, install.wait_for_jobs) == (
        True, True, False, True, True)
    assert (upgrade.upgrade_atomic, upgrade.replace, upgrade.force, upgrade.skip_crds, upgrade.wait_for_jobs) == (
        False, False, True, True, True)
    assert releases.options_of(release(upgradeAtomic=True), upgrade=True).upgrade_atomic


async def test_replace_crds_is_said_to_be_unsupported_where_the_release_is_reported() -> None:
    helm = FakeHelm()
    outcome = await reconciled(helm, release(replaceCRDs=True))
    assert released(outcome.status)["message"].endswith(messages.REPLACE_CRDS_UNSUPPORTED)
    skipped = await reconciled(FakeHelm(), release(replaceCRDs=True, skipCRDs=True))  # nothing to replace then
    assert "replaceCRDs" not in released(skipped.status)["message"]


class Deployer:
    async def credentials(self) -> Credentials:
        return Credentials(server="https://child.example:6443", token="t")


async def test_a_dead_repository_keeps_the_pulled_release_deployed_in_its_status() -> None:
    """Pull mode: the agent writes the same status, with one event, and keeps trying."""
    helm = FakeHelm()
    helm.dead_repos.add("https://dead.example")
    parent = FakeKube(release() | {"apiVersion": known.APPS_API_VERSION, "kind": "HelmRelease"})
    agent = ReleasePuller(parent, Deployer(), NS, "child2", 30, helm)  # type: ignore[arg-type]
    pull_mode = {"spec": {"syncMode": "Pull"}, "status": {"appPusher": False}}

    async def process(**spec: Any) -> Obj:
        stored = parent.find("HelmRelease", NS, "r")
        assert stored is not None
        hr = stored | {"spec": stored["spec"] | spec} if spec else stored
        parent.objects[("HelmRelease", NS, "r")] = hr | {"metadata": hr["metadata"] | {
            "generation": hr["metadata"]["generation"] + (1 if spec else 0)}}
        await agent.process(parent.objects[("HelmRelease", NS, "r")], pull_mode)
        return parent.objects[("HelmRelease", NS, "r")]["status"]

    await process()
    status = await process(repo="https://dead.example", version="8.6.3")
    assert (status["phase"], status["version"], status["observedGeneration"]) == ("deployed", 1, 2)
    assert released(status)["reason"] == "ChartLocateFailure" and "stays at revision 1" in released(status)["message"]
    await process()  # the next resync: tried again, nothing new to say
    assert [c for c in helm.calls if c[0] == "fetch"] == [("fetch", "mysql@8.6.2")] + [("fetch", "mysql@8.6.3")] * 2
    assert [e[1] for e in events(parent)] == ["Installed", "ChartLocateFailure"]
    status = await process(repo="https://charts.example", version="8.6.2")
    assert (status["phase"], status["version"], released(status)["status"]) == ("deployed", 1, "True")
    assert helm.releases[("abc", "mysql")].revision == 1


async def test_the_deployed_spec_back_after_a_fetch_failure_is_no_upgrade() -> None:
    helm = FakeHelm()
    helm.dead_repos.add("https://dead.example")
    hr = release()
    hr["status"] = (await reconciled(helm, hr)).status
    hr = at_generation(hr, 2, repo="https://dead.example", version="8.6.3")
    hr["status"] = (await reconciled(helm, hr)).status
    assert released(hr["status"])["reason"] == "ChartLocateFailure"
    hr = at_generation(hr, 3, repo="https://charts.example", version="8.6.2")
    outcome = await reconciled(helm, hr)
    assert outcome.status is not None and outcome.event is None
    assert (outcome.status["phase"], outcome.status["version"], outcome.status["observedGeneration"]) == (
        "deployed", 1, 3)
    assert released(outcome.status)["status"] == "True"
    assert [verb for verb, _ in helm.calls if verb != "fetch"] == ["install"]
    assert helm.releases[("abc", "mysql")].revision == 1


async def test_a_release_being_uninstalled_by_hand_is_waited_for_then_installed_again() -> None:
    """The CI once saw the upgrade of an `uninstalling` release fail ("has no deployed releases"); that failure,
    reported, stopped every retry, so the release never came back."""
    helm = FakeHelm()
    hr = release()
    hr["status"] = (await reconciled(helm, hr)).status
    helm.relabel("abc", "mysql", status="uninstalling", description="Deletion in progress (or silently failed)")
    during = await reconciled(helm, hr)
    assert during.status is not None and during.status["phase"] == "uninstalling" and not during.retry
    assert [verb for verb, _ in helm.calls if verb != "fetch"] == ["install"]
    hr["status"] = during.status
    del helm.releases[("abc", "mysql")]
    after = await reconciled(helm, hr)
    assert after.status is not None and after.status["phase"] == "deployed"
    assert [verb for verb, _ in helm.calls if verb != "fetch"] == ["install", "install"]


async def test_a_release_uninstalled_with_its_history_kept_is_purged_and_installed_afresh() -> None:
    helm = FakeHelm()
    hr = release()
    hr["status"] = (await reconciled(helm, hr)).status
    helm.relabel("abc", "mysql", status="uninstalled", description="Uninstallation complete")
    outcome = await reconciled(helm, hr)
    assert outcome.status is not None and outcome.status["phase"] == "deployed" and outcome.status["version"] == 1
    assert [verb for verb, _ in helm.calls if verb != "fetch"] == ["install", "uninstall", "install"]


async def test_a_chart_error_shared_by_every_cluster_is_said_once_in_the_subscription_condition() -> None:
    second = cluster()
    second["metadata"] |= {"name": "child2", "namespace": "clusternet-def", "uid": "mc2"}
    second["spec"] = {**second["spec"], "clusterId": "def"}
    c, parent, _ = await helm_controller(cluster(), second, chart("NotFound"), push_secret(),
                                         subscription(feeds=[FEED]))
    await c.subscriptions.reconcile(SUB, force=False)
    ready = next(x for x in parent.find("Subscription", *SUB)["status"]["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"].count("HelmChart default/mysql is NotFound") == 1, ready


async def test_a_helm_override_that_fails_gets_an_override_failed_event_on_itself() -> None:
    """As a generic override does: the audit found a failed Helm-type override reported only on the
    Description and the Subscription, not on the Localization the user has to fix."""
    bad = override("Localization", "bad-values", 100, {}, namespace=NS)
    bad["spec"]["overrides"][0]["value"] = "[1, 2"  # not YAML/JSON
    c, parent, _ = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]), bad)
    await c.subscriptions.reconcile(SUB, force=False)
    failed = [e for e in events(parent) if e[1] == "OverrideFailed"]
    assert [e[0] for e in failed] == ["bad-values"], events(parent)
    await c.subscriptions.reconcile(SUB, force=True)  # the same errors again: no second event
    assert len([e for e in events(parent) if e[1] == "OverrideFailed"]) == 1


def test_a_found_for_an_older_spec_keeps_what_clusters_run_until_the_new_spec_is_checked() -> None:
    """The audit patched a HelmChart's repository to a dead URL: the old spec's Found let the dead URL reach
    every HelmRelease before the check of the new spec ran."""
    key = "apps.clusternet.io/v1alpha1/HelmChart/default/mysql"
    checked = chart()
    checked["metadata"]["generation"] = 1
    checked["status"]["observedGeneration"] = 1
    existing = {"spec": helmrender.render_helm([FEED], {key: checked}, cluster(), [], []).spec()}
    edited = chart(repo="http://dead.example")
    edited["metadata"]["generation"] = 2
    edited["status"]["observedGeneration"] = 1
    waiting = helmrender.render_helm([FEED], {key: edited}, cluster(), [], [], existing)
    assert waiting.spec() == existing["spec"] and [i.kept for i in waiting.items] == [True]
    assert waiting.errors == ["HelmChart default/mysql is waiting for its repository check; the deployed release "
                              "is kept"]
    edited["status"]["observedGeneration"] = 2  # checked: Found for this spec
    [item] = helmrender.render_helm([FEED], {key: edited}, cluster(), [], [], existing).items
    assert item.chart["spec"]["repo"] == "http://dead.example" and not item.kept


def test_a_check_of_a_new_spec_re_renders_even_when_the_phase_stays() -> None:
    c = Store({})
    sub = subscription(feeds=[FEED])
    c.caches.subscriptions[SUB] = sub
    found = chart()
    found["metadata"]["generation"] = 1
    found["status"]["observedGeneration"] = 1
    c.on_helmchart("MODIFIED", found)
    c.queue.drain()
    again = copy.deepcopy(found)
    again["status"]["reason"] = "rechecked"
    c.on_helmchart("MODIFIED", again)  # same phase, same generation: nothing to re-render
    assert not c.queue.drain()
    edited = copy.deepcopy(again)  # a new spec: generation 2, its check not made yet
    edited["spec"]["version"] = "9.9.9"
    edited["metadata"]["generation"] = 2
    c.on_helmchart("MODIFIED", edited)
    c.queue.drain()
    newer = copy.deepcopy(edited)  # the check of generation 2: Found, as before
    newer["status"]["observedGeneration"] = 2
    c.on_helmchart("MODIFIED", newer)
    assert (("sub", *SUB), False) in c.queue.drain()


async def test_a_new_version_waits_for_its_check_and_then_reaches_the_cluster() -> None:
    """Found for the old spec, then Found for the new one: the second render must not keep the first's
    result because the phase reads the same (found by the Helm integration test's version change)."""
    checked = chart()
    checked["metadata"] |= {"generation": 1}
    checked["status"]["observedGeneration"] = 1
    c, parent, _ = await helm_controller(cluster(), checked, push_secret(), subscription(feeds=[FEED]))
    await c.subscriptions.reconcile(SUB, force=False)
    assert deployed_version(parent) == "8.6.2"
    bumped = copy.deepcopy(parent.find("HelmChart", "default", "mysql"))
    bumped["spec"]["version"] = "9.9.9"
    bumped["metadata"]["generation"] = 2
    c.store.on_helmchart("MODIFIED", bumped)
    await c.subscriptions.reconcile(SUB, force=False)
    assert deployed_version(parent) == "8.6.2"  # not checked yet: the cluster keeps what it runs
    checked_again = copy.deepcopy(bumped)
    checked_again["status"]["observedGeneration"] = 2
    c.store.on_helmchart("MODIFIED", checked_again)
    await c.subscriptions.reconcile(SUB, force=False)
    assert deployed_version(parent) == "9.9.9"


def deployed_version(parent: FakeKube) -> str:
    """The chart version the cluster's Helm Description deploys."""
    [(chart_body, _)] = helmrender.existing_entries(parent.find("Description", *HELM_DESC)).values()
    return str(chart_body["spec"]["version"])
