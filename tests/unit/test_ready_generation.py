"""A Subscription's Ready names the generation of the spec its bindings were planned from (audit s36)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from clusternet_hub.controller import Controller
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import DESC, SUB, deployed_controller, push_secret


async def test_ready_names_the_generation_it_was_planned_from() -> None:
    """Audit s36, finding 4: a report after a spec edit and before its reconcile recomputed Ready=True from the old
    bindings, with no generation, so `kubectl wait --for=condition=Ready` returned before the new cluster was
    bound. Now Ready carries the planned generation, and says False until the new one is planned."""
    c, parent, _ = await deployed_controller(push_secret())
    await c.pusher.push(DESC, force=True)
    c.store.on_description("MODIFIED", copy.deepcopy(parent.find("Description", *DESC)))
    await c.status.update(SUB)
    sub = copy.deepcopy(parent.objects[("Subscription", *SUB)])
    ready = sub["status"]["conditions"][0]
    generation = sub["metadata"].get("generation")
    assert ready["status"] == "True" and ready["observedGeneration"] == generation
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {"env": "staging"}}}]
    sub["metadata"]["generation"] = generation + 1
    parent.objects[("Subscription", *SUB)] = copy.deepcopy(sub)
    c.store.on_subscription("MODIFIED", sub)
    await c.status.update(SUB)  # a Description's report, before the reconcile
    ready = parent.objects[("Subscription", *SUB)]["status"]["conditions"][0]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "SpecChangePending", generation)
    await c.subscriptions.reconcile(SUB, force=False)
    ready = parent.objects[("Subscription", *SUB)]["status"]["conditions"][0]
    assert ready["observedGeneration"] == generation + 1 and ready["reason"] != "SpecChangePending"


async def deployed_and_reported() -> tuple[Controller, FakeKube, dict[str, Any], int]:
    """A Subscription deployed to its one cluster, the Description's Success reported, reconciled since: (the
    controller, the parent, a copy of the Subscription as stored, its generation)."""
    c, parent, _ = await deployed_controller(push_secret())
    await c.pusher.push(DESC, force=True)
    c.store.on_description("MODIFIED", copy.deepcopy(parent.find("Description", *DESC)))
    await c.subscriptions.reconcile(SUB, force=False)
    sub = copy.deepcopy(parent.objects[("Subscription", *SUB)])
    return c, parent, sub, sub["metadata"]["generation"]


async def test_ready_is_stamped_with_the_generation_planned_not_the_one_cached_at_the_write() -> None:
    """Review s36: the reconcile planned from generation N while an edit (N+1) arrived before its status write,
    which stamped N+1 on Ready=True with N's bindings."""
    c, parent, sub, generation = await deployed_and_reported()
    real_apply = c.subscriptions._apply_clusters

    async def edit_arrives_meanwhile(*args: Any, **kwargs: Any) -> list[str]:
        out = await real_apply(*args, **kwargs)
        edited = copy.deepcopy(sub)
        edited["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {"env": "nowhere"}}}]
        edited["metadata"].update(generation=generation + 1, resourceVersion="999")
        parent.objects[("Subscription", *SUB)] = copy.deepcopy(edited)
        c.store.on_subscription("MODIFIED", edited)
        return out

    c.subscriptions._apply_clusters = edit_arrives_meanwhile  # type: ignore[method-assign]
    await c.subscriptions.reconcile(SUB, force=True)
    ready = parent.objects[("Subscription", *SUB)]["status"]["conditions"][0]
    assert ready["observedGeneration"] == generation and ready["status"] == "False", ready


async def test_a_rewrite_in_flight_during_a_reconcile_does_not_put_the_old_ready_back() -> None:
    """Review s36, finding 3 (the related race): a report's rewrite (a `status` work item) computed before the
    reconcile's write and landing after it put back `SpecChangePending` for the generation before, which every
    later rewrite kept until the next reconcile. The two writes now take turns."""
    c, parent, sub, generation = await deployed_and_reported()
    sub["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {"env": "staging"}}}]
    sub["metadata"]["generation"] = generation + 1
    parent.objects[("Subscription", *SUB)] = copy.deepcopy(sub)
    c.store.on_subscription("MODIFIED", sub)
    real_patch, slow = parent.patch, [True]

    async def patch(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("subresource") == "status" and slow[0]:  # the rewrite's request, long on the wire
            slow[0] = False
            await asyncio.sleep(0.05)
        return await real_patch(*args, **kwargs)

    parent.patch = patch  # type: ignore[method-assign]
    rewrite = asyncio.create_task(c.status.update(SUB))  # computed now: generation + 1 is not planned yet
    await asyncio.sleep(0)
    await c.subscriptions.reconcile(SUB, force=False)
    await rewrite
    ready = parent.objects[("Subscription", *SUB)]["status"]["conditions"][0]
    assert ready["observedGeneration"] == generation + 1 and ready["reason"] != "SpecChangePending", ready
    await c.status.update(SUB)  # and the next report's rewrite keeps it, the scheduler's why included
    assert parent.objects[("Subscription", *SUB)]["status"]["conditions"][0] == ready
    assert c.status.writing == {}  # no lock kept once nobody holds or waits for it (review s37)

