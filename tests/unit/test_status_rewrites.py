"""A report's status rewrite after a reconcile takes what that reconcile decided, once its status was written
(controller/status.py `decided`): not the cache's copy, which may hold the decision before, and not a decision
whose write failed; a refusal stands until the next reconcile (re-review s37)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_api.kube import ApiException
from tests.unit.test_ready_generation import SUB, deployed_and_reported


async def test_the_rewrite_after_an_overtaken_write_keeps_what_the_reconcile_decided() -> None:
    """Review s37, finding 3 and re-review s37, finding 2: the reconcile's status write is overtaken by another
    event of the Subscription (a label edit), so the cache keeps that event rather than the write's answer
    (write_back). A rewrite from the cache put SpecChangePending back, or, with the generation alone remembered,
    stamped it on the old bindings (Ready=True for a spec that binds no cluster)."""
    c, parent, sub, generation = await deployed_and_reported()
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {"env": "staging"}}}]  # binds no cluster
    sub["metadata"]["generation"] = generation + 1
    sub["metadata"]["resourceVersion"] = "500"
    parent.objects[("Subscription", *SUB)] = copy.deepcopy(sub)
    c.store.on_subscription("MODIFIED", copy.deepcopy(sub))
    labelled = copy.deepcopy(sub)
    labelled["metadata"].setdefault("labels", {})["team"] = "x"
    labelled["metadata"]["resourceVersion"] = "501"
    real_patch = parent.patch
    once = [True]

    async def patch(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("subresource") == "status" and once[0]:
            once[0] = False
            parent.objects[("Subscription", *SUB)]["metadata"].setdefault("labels", {})["team"] = "x"
            out = await real_patch(*args, **kwargs)
            c.store.on_subscription("MODIFIED", copy.deepcopy(labelled))  # the label's event, during the write
            return out
        return await real_patch(*args, **kwargs)

    parent.patch = patch  # type: ignore[method-assign]
    await c.subscriptions.reconcile(SUB, force=False)
    reconciled = copy.deepcopy(parent.objects[("Subscription", *SUB)]["status"])
    await c.status.update(SUB)  # a report's rewrite (the old cluster's Description reporting, say)
    after = parent.objects[("Subscription", *SUB)]["status"]
    assert after.get("bindingClusters") == reconciled.get("bindingClusters")
    ready = after["conditions"][0]
    assert ready["status"] == "False" and ready["reason"] != "SpecChangePending", ready
    assert ready["observedGeneration"] == generation + 1, ready


async def test_a_failed_reconcile_status_write_is_not_remembered_as_planned() -> None:
    c, parent, sub, generation = await deployed_and_reported()
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {"env": "staging"}}}]
    sub["metadata"]["generation"] = generation + 1
    sub["metadata"]["resourceVersion"] = "500"
    parent.objects[("Subscription", *SUB)] = copy.deepcopy(sub)
    c.store.on_subscription("MODIFIED", copy.deepcopy(sub))
    real_patch, once = parent.patch, [True]

    async def patch(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("subresource") == "status" and once[0]:
            once[0] = False
            raise ApiException(500, "etcdserver: request timed out")
        return await real_patch(*args, **kwargs)

    parent.patch = patch  # type: ignore[method-assign]
    with pytest.raises(ApiException):
        await c.subscriptions.reconcile(SUB, force=False)  # its status write failed: retried later
    await c.status.update(SUB)  # a report's rewrite, before the retry
    stored = parent.objects[("Subscription", *SUB)]
    ready = stored["status"]["conditions"][0]
    assert ready["observedGeneration"] == generation and ready["reason"] == "SpecChangePending", ready


async def test_a_report_after_an_invalid_edit_keeps_the_refusal() -> None:
    c, parent, sub, generation = await deployed_and_reported()
    ready = parent.objects[("Subscription", *SUB)]["status"]["conditions"][0]
    assert ready["status"] == "True", ready
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchExpressions": [
        {"key": "env", "operator": "Bogus", "values": ["x"]}]}}]
    sub["metadata"]["generation"] = generation + 1
    sub["metadata"]["resourceVersion"] = "600"
    parent.objects[("Subscription", *SUB)] = copy.deepcopy(sub)
    c.store.on_subscription("MODIFIED", copy.deepcopy(sub))
    await c.subscriptions.reconcile(SUB, force=False)
    ready = parent.objects[("Subscription", *SUB)]["status"]["conditions"][0]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "InvalidSubscription",
                                                                               generation + 1), ready
    await c.status.update(SUB)  # a Description's report comes in (the old deployment still runs)
    after = parent.objects[("Subscription", *SUB)]["status"]["conditions"][0]
    assert (after["status"], after["reason"]) == ("False", "InvalidSubscription"), after
