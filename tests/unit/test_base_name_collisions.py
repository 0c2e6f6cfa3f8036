"""Subscriptions of one name in different namespaces whose 5-digit Base names collide (basenames.py).

`team-1978/app` and `team-3501/app` both hash to `app-e670c`: the review found each reconcile overwriting the
other's Description, each push pruning the other's objects, and a deletion of either taking the other's
workloads with the shared Base."""

from __future__ import annotations

import copy
from typing import Any

from clusternet_api import known
from clusternet_api.rawobjects import decode_raw
from clusternet_core import basenames, chartcredentials, helmrender, rendering, substatus
from clusternet_core import plan as planning
from clusternet_core.naming import manifest_labels, manifest_name
from tests.unit.fakekube import Obj
from tests.unit.test_controller import NS, cluster, primed
from tests.unit.test_helm import FEED, HELM_DESC, HR, chart, deploy, helm_controller, push_secret, subscription

HOLDER, NEWCOMER = ("team-1978", "app"), ("team-3501", "app")
SHORT = rendering.base_name("app", subscription_namespace="team-1978")
LONG = rendering.base_name("app", subscription_namespace="team-3501", digits=rendering.LONG_BASE_DIGITS)


def test_the_two_namespaces_do_collide_on_the_short_name() -> None:
    assert rendering.base_name("app", subscription_namespace="team-3501") == SHORT == "app-e670c"
    assert len(LONG) == len("app-") + 16


def sub(key: tuple[str, str], uid: str, **meta: Any) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
            "metadata": {"name": key[1], "namespace": key[0], "uid": uid, "finalizers": [known.FINALIZER_APPS],
                         "generation": 1, **meta},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"env": "prod"}}}],
                     "feeds": [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": key[0], "name": "cfg"}]}}


def manifest(namespace: str) -> Obj:
    template = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": namespace},
                "data": {"team": namespace}}
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": template,
            "metadata": {"name": manifest_name("configmaps", namespace, "cfg"), "namespace": known.RESERVED_NAMESPACE,
                         "labels": manifest_labels(template)}}


async def test_the_second_subscription_takes_the_long_name_and_neither_overwrites_the_other() -> None:
    c, parent, _ = await primed(cluster(), manifest("team-1978"), manifest("team-3501"),
                                sub(HOLDER, "u1"), sub(NEWCOMER, "u2"))
    await c.subscriptions.reconcile(HOLDER, force=False)
    await c.subscriptions.reconcile(NEWCOMER, force=False)
    for key, base, uid in ((HOLDER, SHORT, "u1"), (NEWCOMER, LONG, "u2")):
        desc = parent.find("Description", NS, rendering.description_name(base, "Generic"))
        assert desc is not None and desc["metadata"]["labels"][known.LABEL_SUBS_UID] == uid
        assert parent.find("Base", NS, base)["metadata"]["labels"][known.LABEL_SUBS_UID] == uid
        assert [o["metadata"]["namespace"] for o in decode_raw(desc["spec"]["raw"])] == [key[0]]
    parent.writes.clear()  # no flapping: each one's resync writes nothing
    await c.subscriptions.reconcile(HOLDER, force=False)
    await c.subscriptions.reconcile(NEWCOMER, force=False)
    assert [w for w in parent.writes if w[1] != "Subscription"] == []


def caches_with(*objects: Obj) -> planning.Caches:
    caches = planning.Caches(clusters={(NS, "child1"): cluster()})
    for ns in ("team-1978", "team-3501"):
        m = manifest(ns)
        caches.manifests[m["metadata"]["name"]] = m
    for obj in objects:
        target = caches.bases if obj["kind"] == "Base" else caches.descriptions
        target[planning.key_of(obj)] = obj
    return caches


def held(kind: str, name: str, owner: tuple[str, str], uid: str, **meta: Any) -> Obj:
    labels = {known.LABEL_SUBS_UID: uid, known.LABEL_SUBS_NAMESPACE: owner[0], known.LABEL_SUBS_NAME: owner[1]}
    return {"apiVersion": known.APPS_API_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": NS, "uid": f"{kind}-{name}", "labels": labels, **meta},
            "spec": {}}


def test_the_newcomer_keeps_its_long_name_after_the_holder_of_the_short_one_is_gone() -> None:
    """Moving back to the short name would delete its Base (and its objects) and redeploy them."""
    caches = caches_with(held("Base", LONG, NEWCOMER, "u2"))
    plan = planning.plan_subscription(sub(NEWCOMER, "u2"), caches, force=False)
    assert [c.base["metadata"]["name"] for c in plan.clusters] == [LONG] and plan.delete_bases == []


def test_a_cluster_where_both_names_are_held_by_others_is_refused_and_nothing_is_written_or_removed() -> None:
    other = ("team-x", "app")
    caches = caches_with(held("Base", SHORT, HOLDER, "u1"), held("Base", LONG, other, "u9"))
    newcomer = sub(NEWCOMER, "u2")
    plan = planning.plan_subscription(newcomer, caches, force=False)
    [cluster_plan] = plan.clusters
    assert not cluster_plan.apply_base and cluster_plan.description is None
    assert cluster_plan.helm_description is None and cluster_plan.delete_descriptions == []
    assert plan.delete_bases == []
    assert plan.status is not None
    _, ready = substatus.subscription_status(newcomer, plan.status, caches)
    assert ready["reason"] == basenames.REASON_NAME_CONFLICT and "team-1978/app" in ready["message"], ready


def test_a_subscription_does_not_delete_its_base_when_a_description_under_it_is_anothers() -> None:
    """A hub before this fix let the two share a Base: its Description may still say the other Subscription,
    and the garbage collector would remove it (and its cleanup the other's objects) with the Base."""
    deleting = sub(NEWCOMER, "u2", deletionTimestamp="2026-12-05T00:00:00Z")
    caches = caches_with(held("Base", SHORT, NEWCOMER, "u2"),
                         held("Description", rendering.description_name(SHORT, "Generic"), HOLDER, "u1"))
    assert planning.plan_subscription(deleting, caches, force=False).delete_bases == []
    mine = caches_with(held("Base", SHORT, NEWCOMER, "u2"),
                       held("Description", rendering.description_name(SHORT, "Generic"), NEWCOMER, "u2"))
    assert [planning.key_of(b) for b in planning.plan_subscription(deleting, mine, force=False).delete_bases] == [
        (NS, SHORT)]


def test_a_subscription_created_again_under_its_name_is_the_same_claimant() -> None:
    """Its predecessor's Base (another uid) is the same Subscription's: no fallback name for a re-creation."""
    caches = caches_with(held("Base", SHORT, HOLDER, "old-uid"))
    plan = planning.plan_subscription(sub(HOLDER, "new-uid"), caches, force=False)
    assert [c.base["metadata"]["name"] for c in plan.clusters] == [SHORT]


async def test_a_helm_description_leaves_a_release_of_another_subscription_in_place() -> None:
    c, parent, _ = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    desc = parent.find("Description", *HELM_DESC)
    theirs = copy.deepcopy(parent.find("HelmRelease", *HR))
    theirs["metadata"]["name"] = HR[1] + "-theirs"
    theirs["metadata"]["labels"] = {**theirs["metadata"]["labels"], known.LABEL_SUBS_NAMESPACE: "team-x",
                                    known.LABEL_SUBS_UID: "u9"}
    theirs["metadata"].pop("uid", None)
    theirs = await parent.apply(theirs, "test")
    c.store.on_helmrelease("ADDED", theirs)
    assert theirs["metadata"]["ownerReferences"][0]["uid"] == desc["metadata"]["uid"]
    mine = copy.deepcopy(theirs)
    mine["metadata"] |= {"name": HR[1] + "-mine", "labels": parent.find("HelmRelease", *HR)["metadata"]["labels"]}
    mine["metadata"].pop("uid", None)
    c.store.on_helmrelease("ADDED", await parent.apply(mine, "test"))
    parent.writes.clear()
    await c.helm_descriptions.sync(HELM_DESC)
    deleted = [w[2] for w in parent.writes if w[0] == "delete"]
    assert deleted == [f"{NS}/{HR[1]}-mine"], parent.writes


def test_a_release_under_a_long_named_helm_description_finds_its_chart() -> None:
    """chartcredentials derives Description names from the Subscription: the fallback form counts too."""
    helm_sub = sub(NEWCOMER, "u2")
    helm_sub["spec"]["feeds"] = [FEED]
    description = rendering.description_name(LONG, "Helm")
    caches = caches_with(held("Description", description, NEWCOMER, "u2"))
    caches.subscriptions[NEWCOMER] = helm_sub
    caches.helmcharts[(FEED["namespace"], FEED["name"])] = chart()
    release = helmrender.release_name(description, FEED["namespace"], FEED["name"])
    assert chartcredentials.release_chart(NS, release, caches) is not None


def test_a_description_no_longer_fed_is_deleted_once_not_at_every_reconcile() -> None:
    """Only a Generic feed left: the `-helm` Description goes; one already being deleted is not deleted again."""
    helm = rendering.description_name(SHORT, "Helm")
    for meta, expected in (({}, [helm]), ({"deletionTimestamp": "2026-12-05T10:00:00Z"}, [])):
        caches = caches_with(held("Base", SHORT, HOLDER, "u1"), held("Description", helm, HOLDER, "u1", **meta))
        [cluster_plan] = planning.plan_subscription(sub(HOLDER, "u1"), caches, force=False).clusters
        assert [d["metadata"]["name"] for d in cluster_plan.delete_descriptions] == expected
