"""A Globalization whose clusterAffinity the CRD accepts but no selector code can evaluate never removes anything.

Found in review: `{key: env, operator: In}` without values (or `Exists` with values, an empty key) made the hub
leave that feed out of the render; with a second feed the Description no longer listed the object, and the next
push deleted it from the child (on the Helm side the HelmRelease went, uninstalling the release). Now such an
override refuses the Subscriptions of its feed, as a missing template does: clusters keep what they run, the
condition and an OverrideFailed event on the Globalization say which override and why.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_api import known
from clusternet_core import helmrender, refusals
from clusternet_core.naming import manifest_labels, manifest_name
from clusternet_core.overrides import selection_problem
from clusternet_core.scheduling import InvalidSelector, label_selector_matches
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import DESC, SUB, cluster, config_map_manifest, primed, push_secret, subscription
from tests.unit.test_helm import FEED as CHART_FEED
from tests.unit.test_helm import chart

CFG = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"}
CFG2 = {**CFG, "name": "cfg2"}
IN_WITHOUT_VALUES = {"matchExpressions": [{"key": "env", "operator": "In"}]}


def second_manifest() -> Obj:
    template = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg2", "namespace": "default"},
                "data": {"a": "b"}}
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": template,
            "metadata": {"name": manifest_name("configmaps", "default", "cfg2"), "namespace": known.RESERVED_NAMESPACE,
                         "labels": manifest_labels(template)}}


def globalization(affinity: Any, policy: str = "ApplyNow", feed: Obj = CFG) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Globalization",
            "metadata": {"name": "g1", "uid": "g1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"overridePolicy": policy, "clusterAffinity": affinity, "feed": feed,
                     "overrides": [{"name": "x", "type": "MergePatch", "value": '{"data":{"k":"2"}}'}]}}


def warnings(kube: FakeKube) -> list[tuple[str, str, str]]:
    return [(o["involvedObject"]["kind"], o["reason"], o["message"]) for (kind, _, _), o in kube.objects.items()
            if kind == "Event" and o["type"] == "Warning"]


@pytest.mark.parametrize(("affinity", "why"), [
    (IN_WITHOUT_VALUES, "operator In needs at least one value"),
    ({"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["a"]}]}, "operator Exists takes no values"),
    ({"matchExpressions": [{"key": "", "operator": "Exists"}]}, "has no key"),
])
def test_an_unusable_affinity_is_one_line_naming_the_globalization(affinity: Obj, why: str) -> None:
    problem = selection_problem(globalization(affinity))
    assert problem is not None and problem.startswith("Globalization g1: spec.clusterAffinity: ") and why in problem
    assert selection_problem(globalization({"matchLabels": {"env": "prod"}})) is None


def test_a_broken_selector_is_broken_for_every_cluster_not_only_those_its_labels_match() -> None:
    """Matching stopped at the first unmet requirement, so the same Globalization rendered for one cluster and
    failed for another."""
    selector = {"matchLabels": {"env": "dev"}, **IN_WITHOUT_VALUES}
    with pytest.raises(InvalidSelector, match="needs at least one value"):
        label_selector_matches(selector, {"env": "prod"})


async def test_an_unusable_globalization_refuses_the_subscription_and_the_child_keeps_both_objects() -> None:
    sub = subscription()
    sub["spec"]["feeds"].append(CFG2)
    c, parent, child = await primed(cluster(), config_map_manifest(), second_manifest(), sub, push_secret())
    await c.subscriptions.reconcile(SUB, force=False)
    c.store.queue.drain()
    await c.pusher.push(DESC)
    description = parent.find("Description", *DESC)
    await parent.create(globalization(IN_WITHOUT_VALUES))
    c.store.on_override("ADDED", parent.find("Globalization", "", "g1"))
    assert c.store.queue.drain() == [(("invalid", "", "g1"), False), (("sub", *SUB), False)]  # ApplyNow: unforced
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.kinds_written() == ["create Event", "patch/status Subscription"]
    assert parent.find("Description", *DESC) == description
    [ready] = parent.find("Subscription", *SUB)["status"]["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", refusals.REASON_INVALID_OVERRIDE)
    assert ready["message"].startswith("Globalization g1: spec.clusterAffinity: matchExpressions key 'env': "
                                       "operator In needs at least one value; the Subscription is refused")
    assert warnings(parent) == [("Subscription", refusals.REASON_INVALID_OVERRIDE, ready["message"])]
    c.store.on_description("MODIFIED", parent.find("Description", *DESC))
    child.writes.clear()
    await c.pusher.push(DESC, force=True)
    assert not [w for w in child.writes if w[0] == "delete"]
    assert child.find("ConfigMap", "default", "cfg") is not None and child.find("ConfigMap", "default", "cfg2")
    await c.status.update(SUB)  # what the Descriptions report never turns the refusal into Ready
    assert parent.find("Subscription", *SUB)["status"]["conditions"][0]["reason"] == refusals.REASON_INVALID_OVERRIDE


async def test_the_globalization_gets_an_override_failed_event_saying_why() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription(), globalization(IN_WITHOUT_VALUES))
    await c.process(("invalid", "", "g1"), False)
    [(kind, reason, message)] = warnings(parent)
    assert (kind, reason) == ("Globalization", "OverrideFailed")
    assert message.startswith("Globalization g1: spec.clusterAffinity: matchExpressions key 'env': operator In")
    assert "what they deployed stays" in message


async def test_fixing_the_globalization_lifts_the_refusal_and_an_apply_later_one_is_reported_too() -> None:
    broken = globalization(IN_WITHOUT_VALUES, policy="ApplyLater")
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)
    c.store.queue.drain()
    c.store.on_override("ADDED", broken)  # ApplyLater waits to apply, not to refuse: reconciled, not forced
    assert c.store.queue.drain() == [(("invalid", "", "g1"), False), (("sub", *SUB), False)]
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Subscription", *SUB)["status"]["conditions"][0]["reason"] == refusals.REASON_INVALID_OVERRIDE
    fixed = copy.deepcopy(broken)
    fixed["spec"]["clusterAffinity"] = {"matchLabels": {"env": "prod"}}
    c.store.on_override("MODIFIED", fixed)
    assert c.store.queue.drain() == [(("sub", *SUB), False)]
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Subscription", *SUB)["status"]["conditions"][0]["reason"] != refusals.REASON_INVALID_OVERRIDE


def test_the_helm_render_keeps_a_deployed_chart_whose_globalization_cannot_be_evaluated() -> None:
    """Defence in depth (the plan refuses first): a chart left out of the Helm Description loses its HelmRelease,
    which uninstalls the release."""
    redis = chart()
    redis["metadata"]["name"] = "redis"
    redis_feed = {**CHART_FEED, "name": "redis"}
    charts = {f"{known.APPS_API_VERSION}/HelmChart/default/{c['metadata']['name']}": c for c in (chart(), redis)}
    existing = {"spec": helmrender.render_helm([CHART_FEED, redis_feed], charts, cluster(), [], []).spec()}
    glob = globalization(IN_WITHOUT_VALUES, feed=CHART_FEED)
    again = helmrender.render_helm([CHART_FEED, redis_feed], charts, cluster(), [glob], [], existing)
    assert again.spec() == existing["spec"] and [i.kept for i in again.items] == [True, False]
    assert again.errors[0].endswith("operator In needs at least one value; the deployed release is kept")
