"""A Subscription refused as a whole keeps its refusal's Ready, and the rest of its status keeps telling what the
clusters report (review s39-b, findings 1 and 2).

The refusal copied the status of its moment, and reports were not written while it stood: a cluster that went
silent or failed meanwhile was still counted as completed and available for as long as the refusal lasted. A hub
just started (or just leading) remembered no refusal, so a report's rewrite turned the refused Subscription's
Ready to True, which `kubectl wait` took for done."""

from __future__ import annotations

import copy
from typing import Any

from clusternet_hub.controller import Controller
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import DESC, SUB, no_tunnel
from tests.unit.test_ready_generation import deployed_and_reported

INVALID = [{"clusterAffinity": {"matchExpressions": [{"key": "env", "operator": "Bogus", "values": ["x"]}]}}]


def status(parent: FakeKube) -> dict[str, Any]:
    found: dict[str, Any] = parent.objects[("Subscription", *SUB)]["status"]
    return found


def ready(parent: FakeKube) -> tuple[str, str, int]:
    cond = status(parent)["conditions"][0]
    return cond["status"], cond["reason"], cond.get("observedGeneration")


def available(parent: FakeKube) -> Any:
    return status(parent)["aggregatedStatuses"][0]["feedStatusSummary"].get("available")


async def refused() -> tuple[Controller, FakeKube, int]:
    """Deployed and reported (Ready=True, 1 completed), then made invalid by the user: refused as a whole."""
    c, parent, sub, generation = await deployed_and_reported()
    assert ready(parent)[0] == "True" and status(parent)["completedReleases"] == 1 and available(parent) is True
    sub["spec"]["subscribers"] = INVALID
    sub["metadata"].update(generation=generation + 1, resourceVersion="600")
    parent.objects[("Subscription", *SUB)] = copy.deepcopy(sub)
    c.store.on_subscription("MODIFIED", copy.deepcopy(sub))
    await c.subscriptions.reconcile(SUB, force=False)
    assert ready(parent) == ("False", "InvalidSubscription", generation + 1)
    return c, parent, generation + 1


def report_failure(c: Controller, parent: FakeKube) -> None:
    desc = copy.deepcopy(parent.find("Description", *DESC))
    desc["status"] = {**desc["status"], "phase": "Failure", "reason": "apply failed: admission webhook denied"}
    parent.objects[("Description", *DESC)] = copy.deepcopy(desc)
    c.store.on_description("MODIFIED", desc)


async def test_a_report_during_a_refusal_is_written_under_the_refusals_ready() -> None:
    c, parent, generation = await refused()
    report_failure(c, parent)
    await c.status.update(SUB)  # the report's rewrite: not written at all before
    assert status(parent)["completedReleases"] == 0 and available(parent) is False
    assert ready(parent) == ("False", "InvalidSubscription", generation)
    report_failure(c, parent)
    await c.subscriptions.reconcile(SUB, force=False)  # a resync: it wrote the copy of the refusal's moment again
    assert status(parent)["completedReleases"] == 0 and available(parent) is False
    assert ready(parent) == ("False", "InvalidSubscription", generation)


async def test_a_new_hub_keeps_a_refusal_the_hub_before_wrote() -> None:
    """A restart or a new leader: a report's rewrite before the first reconcile, and one landing between that
    reconcile's read and its status write."""
    _, parent, generation = await refused()
    fresh = Controller(parent, {}, no_tunnel)
    await fresh.store.prime(parent)
    fresh.store.queue.drain()
    await fresh.status.update(SUB)  # the report first
    assert ready(parent) == ("False", "InvalidSubscription", generation)

    again = Controller(parent, {}, no_tunnel)
    await again.store.prime(parent)
    again.store.queue.drain()
    write = again.status.write

    async def report_lands_meanwhile(sub: dict[str, Any], cond: dict[str, Any]) -> None:
        await again.status.update(SUB)  # the `status` work item, on another worker
        await write(sub, cond)

    again.status.write = report_lands_meanwhile  # type: ignore[method-assign]
    await again.subscriptions.reconcile(SUB, force=False)
    assert ready(parent) == ("False", "InvalidSubscription", generation)
    await again.status.update(SUB)
    assert ready(parent) == ("False", "InvalidSubscription", generation)


async def test_a_refusal_lifted_is_followed_by_the_reports_ready() -> None:
    c, parent, generation = await refused()
    sub = copy.deepcopy(parent.objects[("Subscription", *SUB)])
    sub["spec"]["subscribers"] = [{"clusterAffinity": {}}]
    sub["metadata"].update(generation=generation + 1, resourceVersion="700")
    parent.objects[("Subscription", *SUB)] = copy.deepcopy(sub)
    c.store.on_subscription("MODIFIED", copy.deepcopy(sub))
    await c.subscriptions.reconcile(SUB, force=False)
    assert ready(parent)[1] != "InvalidSubscription"
