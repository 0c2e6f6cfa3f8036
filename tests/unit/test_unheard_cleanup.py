"""A hub cleans up in a cluster only once it has seen the cluster report since it started (review F9).

A starting hub reads each ManagedCluster as the last agent report left it. If the agent died while no hub ran,
that copy still says Ready=True, and health judges nobody for a grace period after the start. A cluster reached
through its API server directly (no tunnel to go down with its agent) would then have its pending cleanups run
while nothing reports from it. The hub now waits for a report to arrive: lastObservedTime must change while it
watches (health.Observation.heard). The wait is said in the status, and what waited is pushed once the report
comes (Store._after_report).
"""

from __future__ import annotations

import copy

from clusternet_hub.controller import Controller
from clusternet_hub.controller.helmpusher import UNINSTALL_PENDING
from clusternet_hub.controller.pusher import UNHEARD_PENDING, cleanup_wait
from clusternet_hub.controller.store import Store
from clusternet_hub.health import Observation
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import DESC, NS, cluster, deployed_controller, push_secret, unsubscribe
from tests.unit.test_helm import FEED, HR, chart, deploy, helm_controller, subscription

MC = (NS, "child1")


def reported(stamp: str) -> Obj:
    mc = cluster()
    mc["status"]["lastObservedTime"] = stamp
    return mc


def started_hub(c: Controller) -> Observation:
    """The hub has just started: it has read the cluster once (Ready=True, as the dead agent left it)."""
    observation = Observation()
    c.store.heard = observation.heard
    first = reported("2026-12-06T06:00:00Z")
    observation.saw(MC, first, 0.0)
    c.store.caches.clusters[MC] = first
    return observation


def heartbeat(c: Controller, observation: Observation, stamp: str) -> None:
    """The watch delivers a report, as the hub's cluster tracking hands it on (operator.track_cluster)."""
    old = c.store.caches.clusters[MC]
    new = reported(stamp)
    observation.saw(MC, new, 1.0)
    c.store.caches.clusters[MC] = new
    c.store.on_cluster("MODIFIED", copy.deepcopy(new), old)


def test_a_first_copy_is_no_report_a_changed_stamp_is() -> None:
    observation = Observation()
    observation.saw(MC, reported("t1"), 0.0)
    observation.saw(MC, reported("t1"), 1.0)  # the same copy again (a re-list, a health read)
    assert not observation.heard(MC)
    observation.saw(MC, cluster(), 2.0)  # a copy without a stamp (pruned, or a hub's write)
    assert not observation.heard(MC)
    observation.saw(MC, reported("t2"), 3.0)
    assert observation.heard(MC)
    observation.forget(MC)  # the ManagedCluster was deleted: a new one starts unheard
    observation.saw(MC, reported("t3"), 4.0)
    assert not observation.heard(MC)


def test_a_parent_out_of_reach_or_stalled_makes_every_cluster_unheard_again() -> None:
    """The agent may die unseen while the parent is away, as while no hub runs."""
    for lose in (Observation.parent_lost, lambda o: o.interrupted(5.0)):
        observation = Observation()
        observation.saw(MC, reported("t1"), 0.0)
        observation.saw(MC, reported("t2"), 1.0)
        assert observation.heard(MC)
        lose(observation)
        observation.saw(MC, reported("t2"), 6.0)  # the copy read on its return, unchanged
        assert not observation.heard(MC)
        observation.saw(MC, reported("t3"), 7.0)
        assert observation.heard(MC)
        lose(observation)
        observation.saw(MC, reported("t4"), 8.0)  # written while the hub was cut off: the agent may be dead since
        assert not observation.heard(MC)
        observation.saw(MC, reported("t5"), 9.0)
        assert observation.heard(MC)


def test_the_health_pass_cached_copy_after_a_stall_leaves_the_rebase_to_the_next_report() -> None:
    """Audit s36: the health pass right after a stall saw the watch's cached copy and used up the rebase, so a
    report written during the stall and delivered afterwards counted as heard."""
    observation = Observation()
    observation.saw(MC, reported("t1"), 0.0)
    observation.saw(MC, reported("t2"), 1.0)
    observation.interrupted(5.0)
    observation.saw(MC, reported("t2"), 6.0, cached=True)  # the health pass, from the watch's cache
    observation.saw(MC, reported("t3"), 7.0)  # written during the stall, delivered now
    assert not observation.heard(MC)
    observation.saw(MC, reported("t4"), 8.0)
    assert observation.heard(MC)


async def deleted_after_restart() -> tuple[Controller, FakeKube, FakeKube, Observation]:
    c, parent, child = await deployed_controller(push_secret())
    await c.pusher.push(DESC)
    observation = started_hub(c)
    desc = parent.find("Description", *DESC)
    desc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    unsubscribe(parent, c)  # an ordinary deletion: nothing wants it any more
    c.store.on_description("MODIFIED", desc)
    child.writes.clear()
    c.store.queue.drain()
    await c.pusher.push(DESC)
    return c, parent, child, observation


async def test_a_cleanup_waits_for_the_first_report_since_the_hub_started_then_runs_at_once() -> None:
    c, parent, child, observation = await deleted_after_restart()
    assert child.writes == [] and child.find("ConfigMap", "default", "cfg") is not None
    assert parent.find("Description", *DESC)["status"]["reason"] == UNHEARD_PENDING
    heartbeat(c, observation, "2026-12-06T06:00:00Z")  # the same stamp: still no report
    assert c.store.queue.drain() == []
    heartbeat(c, observation, "2026-12-06T06:00:10Z")
    assert (("push", *DESC), True) in c.store.queue.drain()  # not at the next resync or retry
    await c.pusher.push(DESC, force=True)
    assert child.writes == [("delete", "ConfigMap", "default/cfg")]
    assert parent.find("Description", *DESC)["metadata"].get("finalizers") in (None, [])


async def test_an_uninstall_waits_for_the_first_report_since_the_hub_started() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    await deploy(c)
    observation = started_hub(c)
    hr = parent.find("HelmRelease", *HR)
    hr["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    unsubscribe(parent, c)
    c.store.on_helmrelease("MODIFIED", copy.deepcopy(hr))
    c.store.queue.drain()
    await c.releases.push(HR)
    assert ("abc", "mysql") in helm.releases
    assert parent.find("HelmRelease", *HR)["status"]["description"] == UNINSTALL_PENDING["unheard"]
    heartbeat(c, observation, "2026-12-06T06:00:10Z")
    assert (("release", *HR), True) in c.store.queue.drain()
    await c.releases.push(HR)
    assert ("abc", "mysql") not in helm.releases


def test_a_tunnel_cluster_needs_no_report_first() -> None:
    """Its cleanups go through its agent's live tunnel or wait (TUNNEL_DOWN): the tunnel is the sign of life."""
    store = Store({}, heard=lambda key: False)
    direct, tunnel = cluster(), cluster()
    tunnel["status"]["useSocket"] = True
    assert cleanup_wait(store, direct) == "unheard" and store.awaiting_report == {NS}
    assert cleanup_wait(store, tunnel) is None
    assert cleanup_wait(store, cluster(ready="Unknown")) == "offline"
