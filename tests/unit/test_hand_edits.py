"""A Description's spec edited by someone other than the hub is not pushed before the hub plans again (review F8).

`kubectl edit` of a Description that drops an object from spec.raw used to be pushed at once, with pruning: the
object was deleted in the child, and re-created with a new UID when the hub's resync (up to 30 s later) wrote
its own spec back. The hub now plans the Subscription at once instead, and pushes what it writes back.
"""

from __future__ import annotations

import copy

from clusternet_api.rawobjects import encode_raw
from tests.unit.test_controller import DESC, SUB, deployed_controller, push_secret


async def test_a_hand_edit_is_planned_over_before_anything_is_pushed() -> None:
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    uid = child.find("ConfigMap", "default", "cfg")["metadata"]["uid"]
    child.writes.clear()
    edited = copy.deepcopy(parent.objects[("Description", *DESC)])
    edited["spec"]["raw"] = encode_raw([])  # the edit drops the ConfigMap
    edited["metadata"]["generation"] += 1
    parent.objects[("Description", *DESC)] = copy.deepcopy(edited)
    c.store.on_description("MODIFIED", edited)
    queued = c.store.queue.drain()
    assert (("sub", *SUB), True) in queued and not [k for k, _ in queued if k[0] == "push"], queued
    await c.subscriptions.reconcile(SUB, force=True)  # writes the hub's spec back, and pushes that
    assert parent.find("Description", *DESC)["spec"]["raw"] != edited["spec"]["raw"]
    assert any(k == ("push", *DESC) for k, _ in c.store.queue.drain())
    await c.pusher.push(DESC)
    assert child.find("ConfigMap", "default", "cfg")["metadata"]["uid"] == uid
    assert not [w for w in child.writes if w[0] == "delete"]


async def test_the_hubs_own_spec_changes_are_pushed_at_once() -> None:
    c, parent, _ = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    desc = copy.deepcopy(parent.objects[("Description", *DESC)])
    c.store.hub_writes({**desc, "spec": {**desc["spec"], "raw": encode_raw([])}})  # as a reconcile does first
    desc["spec"]["raw"] = encode_raw([])
    desc["metadata"]["generation"] += 1
    c.store.on_description("MODIFIED", desc)  # the watch brings the hub's write
    assert (("push", *DESC), False) in c.store.queue.drain()
