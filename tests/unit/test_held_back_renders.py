"""A render with failed overrides is not written (heldback.py).

The review's repro: a Localization moves a ConfigMap (Deployment, in the report) to another namespace and sets a
field in the same override; the template drops that field, the `replace` fails, the whole override is skipped,
and the object rendered back at the template's namespace: the deployer applied it there and pruned the moved one.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from clusternet_api import known
from clusternet_api.rawobjects import decode_raw
from tests.unit.fakekube import Obj
from tests.unit.test_controller import DESC, NS, SUB, cluster, config_map_manifest, primed, subscription
from tests.unit.test_helm import (
    FEED,
    HELM_DESC,
    chart,
    deploy,
    events,
    helm_controller,
    override,
    push_secret,
)
from tests.unit.test_helm import subscription as helm_subscription


def moving_localization() -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Localization",
            "metadata": {"name": "move", "namespace": NS, "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {"overridePolicy": "ApplyNow", "priority": 500,
                     "feed": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"},
                     "overrides": [{"name": "move", "type": "JSONPatch", "value": json.dumps([
                         {"op": "replace", "path": "/metadata/namespace", "value": "prod-eu"},
                         {"op": "replace", "path": "/data/k", "value": "eu"}])}]}}


def without_k() -> Obj:
    """The template after its owner dropped `data.k`: the Localization's `replace` of it fails."""
    manifest = copy.deepcopy(config_map_manifest())
    manifest["template"]["data"] = {"other": "1"}
    return manifest


def placed(desc: Obj | None) -> list[tuple[str, Any]]:
    assert desc is not None
    return [(o["metadata"]["namespace"], o["data"]) for o in decode_raw(desc["spec"]["raw"])]


def ready(parent: Any) -> Obj:
    found: Obj = next(x for x in parent.find("Subscription", *SUB)["status"]["conditions"] if x["type"] == "Ready")
    return found


async def test_a_failed_override_keeps_the_deployed_description_instead_of_moving_the_object_back() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription(), moving_localization())
    await c.subscriptions.reconcile(SUB, force=False)
    assert placed(parent.find("Description", *DESC)) == [("prod-eu", {"k": "eu"})]
    c.store.on_manifest("MODIFIED", without_k())
    parent.writes.clear()
    await c.subscriptions.reconcile(SUB, force=False)
    assert [w for w in parent.writes if w[1] == "Description"] == []
    assert placed(parent.find("Description", *DESC)) == [("prod-eu", {"k": "eu"})]
    condition = ready(parent)
    assert condition["reason"] == "RenderFailed" and "/data/k does not exist" in condition["message"], condition
    assert f"{DESC[0]}/{DESC[1]} keeps what it deploys" in condition["message"]
    assert [e[0] for e in events(parent) if e[1] == "OverrideFailed"] == ["move"]
    # a resync renders again (the kept Description records its old inputs): same failure, no second event
    await c.subscriptions.reconcile(SUB, force=False)
    assert [w for w in parent.writes if w[1] == "Description"] == []
    assert len([e for e in events(parent) if e[1] == "OverrideFailed"]) == 1
    # the template gets its field back: the override applies, and the new render is written
    c.store.on_manifest("MODIFIED", config_map_manifest("3"))
    await c.subscriptions.reconcile(SUB, force=False)
    assert placed(parent.find("Description", *DESC)) == [("prod-eu", {"k": "eu"})]
    assert ready(parent)["reason"] != "RenderFailed"


async def test_a_cluster_without_a_description_gets_none_while_its_overrides_fail() -> None:
    c, parent, _ = await primed(cluster(), without_k(), subscription(), moving_localization())
    await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Description", *DESC) is None
    assert "is not created until its overrides apply" in ready(parent)["message"]


async def test_a_failed_helm_override_keeps_the_deployed_values() -> None:
    """A failed Helm-type override reverted its values: an upgrade that can remove chart resources."""
    values = override("Localization", "values", 100, {"replicas": 3}, namespace=NS)
    c, parent, _ = await helm_controller(cluster(), chart(values={"replicas": 1}), push_secret(),
                                         helm_subscription(feeds=[FEED]), values)
    await deploy(c)
    before = parent.find("Description", *HELM_DESC)
    assert decode_raw(before["spec"]["raw"]) == [{"replicas": 3}]
    broken = copy.deepcopy(values)
    broken["spec"]["overrides"][0]["value"] = "[1, 2"  # not YAML/JSON
    c.store.caches.localizations[(NS, "values")] = broken
    await c.subscriptions.reconcile(SUB, force=True)  # as an ApplyNow change does
    assert parent.find("Description", *HELM_DESC)["spec"] == before["spec"]
    assert "keeps what it deploys" in ready(parent)["message"]
