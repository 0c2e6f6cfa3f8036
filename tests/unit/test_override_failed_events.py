"""OverrideFailed events: where `kubectl describe loc|glob` finds them, and one per failure.

The sixth audit applied a Localization whose JSON patch named a path the template lacks: `kubectl describe loc`
said `Events: <none>` (the event carried no involvedObject.uid, which kubectl selects on), and each failure had
two identical events (the ApplyNow override's forced reconcile reported it, then the next, unforced, one wrote
the kept Description with the error and reported it again).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_hub.controller.writerefusals import WritesRefused
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import NS, SUB, cluster, config_map_manifest, primed, subscription

CFG = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg"}


def broken(kind: str, name: str, namespace: str | None = None) -> Obj:
    """An ApplyNow override whose `replace` names a path the ConfigMap template does not have."""
    return {"apiVersion": known.APPS_API_VERSION, "kind": kind,
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {}),
                         "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {"overridePolicy": "ApplyNow", "priority": 700, "feed": CFG,
                     **({} if namespace else {"clusterAffinity": {"matchLabels": {"env": "prod"}}}),
                     "overrides": [{"name": "missing-path", "type": "JSONPatch", "value": json.dumps(
                         [{"op": "replace", "path": "/data/nosuch/0/x", "value": "x"}])}]}}


def override_failed(parent: FakeKube) -> list[Obj]:
    return [e for (kind, _, _), e in parent.objects.items() if kind == "Event" and e["reason"] == "OverrideFailed"]


async def test_a_failed_localization_gets_one_event_that_kubectl_describe_selects() -> None:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)  # deployed without the override
    loc = await parent.create(broken("Localization", "bad-path", NS))
    c.store.queue.drain()
    c.store.on_override("MODIFIED", loc)  # ApplyNow: its Subscriptions are reconciled, as queued
    for (_, *key), force in c.store.queue.drain():
        await c.subscriptions.reconcile(tuple(key), force=force)  # type: ignore[arg-type]
    for _ in range(2):  # then the resync's and any other reconcile: the same failure, no new event
        await c.subscriptions.reconcile(SUB, force=False)
    [event] = override_failed(parent)
    # kubectl describe's selector: involvedObject.name, .namespace, .kind and .uid, events of the namespace
    assert event["involvedObject"] == {"apiVersion": known.APPS_API_VERSION, "kind": "Localization",
                                       "name": "bad-path", "namespace": NS, "uid": loc["metadata"]["uid"]}
    assert event["metadata"]["namespace"] == NS
    assert "/data/nosuch/0/x" in event["message"]


async def test_a_globalization_failing_in_two_clusters_gets_one_event_without_a_namespace() -> None:
    second = cluster()
    second["metadata"] |= {"name": "child2", "namespace": "clusternet-def", "uid": "mc2"}
    second["spec"] = {**second["spec"], "clusterId": "def"}
    c, parent, _ = await primed(cluster(), second, config_map_manifest(), subscription(),
                                broken("Globalization", "bad-glob"))
    await c.subscriptions.reconcile(SUB, force=True)
    await c.subscriptions.reconcile(SUB, force=False)
    [event] = override_failed(parent)
    glob = parent.find("Globalization", None, "bad-glob")
    assert glob is not None
    # a cluster-scoped object: kubectl lists the events of every namespace with involvedObject.namespace=""
    assert event["involvedObject"]["uid"] == glob["metadata"]["uid"]
    assert (event["involvedObject"]["kind"], event["involvedObject"]["namespace"]) == ("Globalization", "")
    assert event["metadata"]["namespace"] == "default"


async def test_a_globalizations_event_is_posted_although_the_cluster_it_was_kept_for_refuses_writes() -> None:
    """Review 7: the failure is announced on the first cluster's plan only, and a refusal of that cluster's
    writes skipped its announcement for good (the retries found it reported in Ready, or the annotation)."""
    second = cluster()
    second["metadata"] |= {"name": "child2", "namespace": "clusternet-def", "uid": "mc2"}
    second["spec"] = {**second["spec"], "clusterId": "def"}
    c, parent, _ = await primed(cluster(), second, config_map_manifest(), subscription(),
                                broken("Globalization", "bad-glob"))
    apply = parent.apply

    async def refusing(obj: Obj, *args: Any, **kwargs: Any) -> Obj:
        if obj["metadata"].get("namespace") == NS:  # the first cluster's namespace is terminating
            raise ApiException(403, f"namespace {NS} is being terminated")
        return await apply(obj, *args, **kwargs)

    parent.apply = refusing  # type: ignore[method-assign]
    for force in (True, False, False):
        with contextlib.suppress(WritesRefused):
            await c.subscriptions.reconcile(SUB, force=force)
    assert len(override_failed(parent)) == 1
