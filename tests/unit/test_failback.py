"""Failing back with the FailOver gate (failover.failback_split): once a silent cluster reports again, the clusters
that took its replicas on keep them until its own share is reported available there, so the feed never runs short
of the template's count while the split goes back. Only a cluster the status names failed over or failing back is
waited for: a scale-down with none is never held (review s46)."""

from __future__ import annotations

from typing import Any

from clusternet_api import known
from clusternet_api.rawobjects import encode_raw
from clusternet_core.failover import (
    FAILBACK_TIMEOUT,
    failback_split,
    failing_back_note,
    failover_events,
    failover_note,
)
from clusternet_core.placement import failback_wake, feed_ready
from clusternet_core.scheduling import schedule
from tests.unit.test_failover import DEPLOY, KEY, SILENT, cluster, dividing, split

FAILED_OVER = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [3, 3, 2]},
               "failedOverClusters": ["ns-c/c"]}
BACK = [cluster("a"), cluster("b"), cluster("c")]


def manifests() -> dict[str, Any]:
    """The Deployment's template, stored as `kubectl clusternet apply` does."""
    from clusternet_core.naming import manifest_labels, manifest_name

    template = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "web", "name": "web"},
                "spec": {"replicas": 6}}
    name = manifest_name("deployments", "web", "web")
    return {name: {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": template,
                   "metadata": {"name": name, "namespace": known.RESERVED_NAMESPACE,
                                "labels": manifest_labels(template)}}}


def ready_in(*clusters: str) -> Any:
    return lambda cluster_key, feed: cluster_key in clusters and feed == KEY


def test_the_others_keep_a_returning_clusters_share_until_it_is_available_there() -> None:
    result = schedule(dividing({}, FAILED_OVER), BACK, {KEY: 6}, fail_over=True, ready=ready_in("ns-a/a", "ns-b/b"))
    assert split(result) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 2}
    assert result.failing_back == ["ns-c/c"] and result.failed_over == []
    result = schedule(dividing({}, FAILED_OVER), BACK, {KEY: 6}, fail_over=True, ready=ready_in("ns-c/c"))
    assert split(result) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2} and result.failing_back == []


def test_without_the_gate_or_a_readiness_reading_the_usual_split_comes_back_at_once() -> None:
    assert split(schedule(dividing({}, FAILED_OVER), BACK, {KEY: 6}, ready=ready_in())) == {
        "ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2}
    assert split(schedule(dividing({}, FAILED_OVER), BACK, {KEY: 6}, fail_over=True)) == {
        "ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2}


def test_a_scale_down_while_failing_back_waits_for_the_returning_cluster_too() -> None:
    """Every share shrinks, c's too: until c runs what it has, the others keep theirs (else the feed could run 2 of
    3); then the new count applies."""
    result = schedule(dividing({}, FAILED_OVER), BACK, {KEY: 3}, fail_over=True, ready=ready_in())
    assert split(result) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 2} and result.failing_back == ["ns-c/c"]
    result = schedule(dividing({}, FAILED_OVER), BACK, {KEY: 3}, fail_over=True, ready=ready_in("ns-c/c"))
    assert split(result) == {"ns-a/a": 1, "ns-b/b": 1, "ns-c/c": 1}
    assert result.failing_back == ["ns-c/c"]  # until it runs its new share: nothing is held for it meanwhile


def test_a_scale_up_while_failing_back_is_not_held() -> None:
    """The new count is more than the failed-over split adds up to: no surplus to keep."""
    result = schedule(dividing({}, FAILED_OVER), BACK, {KEY: 9}, fail_over=True, ready=ready_in())
    assert split(result) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 3} and result.failing_back == ["ns-c/c"]


def test_a_split_that_never_failed_over_is_not_held() -> None:
    """A weight change moves replicas from one cluster to another at once, as before: the split adds up to the
    template's count, so there is no surplus to keep."""
    usual = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [2, 2, 2]}}
    sub = dividing({}, usual, subscribers=[{"clusterAffinity": {"matchLabels": {"env": "prod"}}, "weight": 1},
                                           {"clusterAffinity": {"matchLabels": {"name": "c"}}, "weight": 4}])
    clusters = [cluster("a"), cluster("b"), {**cluster("c"), "metadata": {
        "namespace": "ns-c", "name": "c", "labels": {"env": "prod", "name": "c"}}}]
    result = schedule(sub, clusters, {KEY: 6}, fail_over=True, ready=ready_in())
    assert sum(result.replicas[KEY]) == 6 and result.failing_back == []


def test_while_one_cluster_is_still_silent_the_one_back_is_awaited_too() -> None:
    """b and c were silent; b is back, c is not: a keeps the 6 it ran until b runs its 3 again."""
    previous = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [6, 3, 2]},
                "failedOverClusters": ["ns-b/b", "ns-c/c"]}
    clusters = [cluster("a"), cluster("b"), cluster("c", SILENT)]
    result = schedule(dividing({}, previous), clusters, {KEY: 6}, fail_over=True, ready=ready_in())
    assert split(result) == {"ns-a/a": 6, "ns-b/b": 3, "ns-c/c": 2}
    assert result.failed_over == ["ns-c/c"] and result.failing_back == ["ns-b/b"]
    result = schedule(dividing({}, previous), clusters, {KEY: 6}, fail_over=True, ready=ready_in("ns-b/b"))
    assert split(result) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 2} and result.failing_back == []


def test_a_cluster_given_more_than_it_runs_is_awaited_even_if_its_old_share_is_available() -> None:
    """Its Description is rewritten with the new share first: what it reports is about the old one."""
    split_now = failback_split(6, ["a", "b", "c"], [1, 2, 3], {"a": 3, "b": 3, "c": 2}, (), {"c"},
                               lambda key, feed: True, KEY)
    assert split_now == ([3, 3, 3], ["c"])
    # the next reconcile reads c's report on its 3
    assert failback_split(6, ["a", "b", "c"], [1, 2, 3], {"a": 3, "b": 3, "c": 3}, (), {"c"},
                          lambda key, feed: key != "c", KEY) == ([3, 3, 3], ["c"])
    assert failback_split(6, ["a", "b", "c"], [1, 2, 3], {"a": 3, "b": 3, "c": 3}, (), {"c"},
                          lambda key, feed: True, KEY) == ([1, 2, 3], [])
    # no cluster back from silence: nothing held, whatever is not ready
    assert failback_split(6, ["a", "b", "c"], [1, 2, 3], {"a": 3, "b": 3, "c": 3}, (), (),
                          lambda key, feed: False, KEY) == ([1, 2, 3], [])


def test_the_note_and_the_events_of_failing_back_are_told_from_the_status_fields() -> None:
    assert failing_back_note([]) is None
    note = failing_back_note(["ns-c/c"])
    assert note == ("failing back: ns-c/c reports again; the other clusters give back the replicas they took on once "
                    "it runs its share (10 minutes at most)")
    over = failover_note(["ns-c/c"])
    assert over is not None
    silent, back, done = {"failedOverClusters": ["ns-c/c"]}, {"failingBackClusters": ["ns-c/c"]}, {}
    assert failover_events(done, silent) == [("Warning", "FailedOver", over.removeprefix("failed over: "))]
    assert failover_events(silent, silent) == []  # reports only
    assert failover_events(silent, back) == [("Normal", "FailingBack", note.removeprefix("failing back: "))]
    assert failover_events(back, back) == []
    [(kind, reason, _)] = failover_events(back, done)
    assert (kind, reason) == ("Normal", "FailedBack")
    assert failover_events(silent, done)[0][1] == "FailedBack"  # back and ready at the first reconcile
    # one still silent, one back: no new FailedOver
    both = {"failedOverClusters": ["ns-b/b"], "failingBackClusters": ["ns-c/c"]}
    assert [e[1] for e in failover_events({"failedOverClusters": ["ns-b/b", "ns-c/c"]}, both)] == ["FailingBack"]


def test_nothing_is_held_for_a_cluster_that_never_went_silent() -> None:
    """Review s46: with the gate, a scale-down 6 -> 5 was held while a cluster's pod was not ready, with Ready saying
    "failing back" and FailingBack events for a failover that never happened."""
    usual = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [2, 2, 2]}}
    result = schedule(dividing({}, usual), BACK, {KEY: 5}, fail_over=True, ready=ready_in())
    assert sum(result.replicas[KEY]) == 5 and result.failing_back == []


def test_a_returning_cluster_whose_share_shrinks_is_still_waited_for() -> None:
    """Review s46: weights changed while failing back shrink c's share too; it keeps its 2 (held) and is awaited
    until it runs them, then the new split applies."""
    sub = dividing({}, FAILED_OVER, subscribers=[
        {"clusterAffinity": {"matchLabels": {"env": "prod"}}, "weight": 1},
        {"clusterAffinity": {"matchLabels": {"name": "a"}}, "weight": 2}])
    clusters = [{**cluster("a"), "metadata": {"namespace": "ns-a", "name": "a", "labels": {"env": "prod",
                                                                                          "name": "a"}}},
                cluster("b"), cluster("c")]
    held = schedule(sub, clusters, {KEY: 6}, fail_over=True, ready=ready_in())
    assert held.replicas[KEY] == [4, 3, 2] and held.failing_back == ["ns-c/c"]
    given = schedule(sub, clusters, {KEY: 6}, fail_over=True, ready=ready_in("ns-c/c"))
    assert given.replicas[KEY] == [4, 1, 1] and given.failing_back == ["ns-c/c"]  # its new share: once more


def test_a_cluster_failing_back_stays_awaited_in_the_next_reconciles() -> None:
    """The status names it failing back: the reconciles after the first still wait for it."""
    status = {**FAILED_OVER, "failingBackClusters": ["ns-c/c"]}
    del status["failedOverClusters"]
    result = schedule(dividing({}, status), BACK, {KEY: 6}, fail_over=True, ready=ready_in())
    assert split(result) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 2} and result.failing_back == ["ns-c/c"]


def description(status: dict[str, Any] | None, generation: int = 2, replicas: int = 2) -> dict[str, Any]:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "web", "name": "web"},
              "spec": {"replicas": replicas}}
    return {"metadata": {"namespace": "ns-c", "name": "app-c", "generation": generation,
                         "labels": {known.LABEL_SUBS_UID: "u1"}},
            "spec": {"deployer": "Generic", "raw": encode_raw([deploy])}, "status": status or {}}


def reported(available: int, generation: int = 2) -> dict[str, Any]:
    return {"phase": "Success", "observedGeneration": generation, "manifestStatuses": [
        {**DEPLOY, "group": "apps", "version": "v1", "generation": 5, "observedStatus": {
            "observedGeneration": 5, "replicas": 2, "updatedReplicas": 2, "availableReplicas": available}}]}


def test_ready_means_deployed_for_the_current_generation_and_reported_available() -> None:
    sub = {"metadata": {"uid": "u1"}, "spec": {"feeds": [DEPLOY]}}
    assert feed_ready(sub, {("ns-c", "app-c"): description(reported(2))})("ns-c/c", KEY)
    assert not feed_ready(sub, {("ns-c", "app-c"): description(reported(1))})("ns-c/c", KEY)  # 1 of 2 available
    assert not feed_ready(sub, {("ns-c", "app-c"): description(reported(2, generation=1))})("ns-c/c", KEY)  # stale
    assert not feed_ready(sub, {("ns-c", "app-c"): description(None)})("ns-c/c", KEY)  # not deployed yet
    assert not feed_ready(sub, {})("ns-c/c", KEY)  # no Description there
    other = {**description(reported(2)), "metadata": {**description(None)["metadata"],
                                                      "labels": {known.LABEL_SUBS_UID: "u2"}}}
    assert not feed_ready(sub, {("ns-c", "app-c"): other})("ns-c/c", KEY)  # another Subscription's


def test_a_rewrite_without_a_reconcile_keeps_saying_who_is_awaited() -> None:
    from clusternet_core import substatus
    from clusternet_core.plan import Caches

    status = {**FAILED_OVER, "failingBackClusters": ["ns-c/c"]}
    del status["failedOverClusters"]
    sub = {**dividing({}, status), "metadata": {"namespace": "default", "name": "app", "uid": "u1", "generation": 1}}
    caches = Caches(clusters={("ns-a", "a"): cluster("a"), ("ns-b", "b"): cluster("b"), ("ns-c", "c"): cluster("c")},
                    manifests=manifests())
    new, ready = substatus.subscription_status(sub, None, caches)
    assert new["failingBackClusters"] == ["ns-c/c"]
    assert str(failing_back_note(["ns-c/c"])) in ready.get("message", ""), ready


def test_a_reconcile_reads_the_returning_clusters_report_and_names_it_meanwhile() -> None:
    """plan_subscription with the gate: c's Description not yet reporting its 2 available keeps a and b at 3, and
    Ready's note names c; once it reports them, the usual split is planned."""
    from clusternet_core.plan import Caches, plan_subscription
    sub = {**dividing({}, FAILED_OVER), "metadata": {"namespace": "default", "name": "app", "uid": "u1",
                                                     "generation": 1, "finalizers": [known.FINALIZER_APPS]}}

    def planned(desc: dict[str, Any]) -> Any:
        caches = Caches(clusters={("ns-a", "a"): cluster("a"), ("ns-b", "b"): cluster("b"),
                                  ("ns-c", "c"): cluster("c")},
                        subscriptions={("default", "app"): sub}, manifests=manifests(),
                        descriptions={("ns-c", "app-c"): desc})
        return plan_subscription(sub, caches, force=False, fail_over=True).status

    waiting = planned(description(reported(1)))
    assert waiting.replicas == {KEY: [3, 3, 2]} and waiting.failing_back == ["ns-c/c"] and waiting.failed_over == []
    back = planned(description(reported(2)))
    assert back.replicas == {KEY: [2, 2, 2]} and back.failing_back == back.failed_over == []


def test_the_status_names_the_clusters_failed_over_and_drops_the_field_after() -> None:
    from clusternet_core import substatus
    from clusternet_core.plan import Caches, StatusInputs

    sub = {**dividing({}, {**FAILED_OVER, "failedOverClusters": ["ns-c/c"]}),
           "metadata": {"namespace": "default", "name": "app", "uid": "u1", "generation": 1}}
    caches = Caches(clusters={("ns-a", "a"): cluster("a"), ("ns-b", "b"): cluster("b"), ("ns-c", "c"): cluster("c")},
                    manifests=manifests())
    held = StatusInputs(FAILED_OVER["bindingClusters"], FAILED_OVER["replicas"], None, [], 1,
                        failed_over=["ns-b/b"], failing_back=["ns-c/c"])
    status, ready = substatus.subscription_status(sub, held, caches)
    assert status["failedOverClusters"] == ["ns-b/b"] and status["failingBackClusters"] == ["ns-c/c"]
    assert f"{failover_note(['ns-b/b'])}; {failing_back_note(['ns-c/c'])}" in ready["message"]
    status, _ = substatus.subscription_status(sub, StatusInputs(FAILED_OVER["bindingClusters"], {KEY: [2, 2, 2]},
                                                                None, [], 1), caches)
    assert "failedOverClusters" not in status and "failingBackClusters" not in status
    assert substatus.status_patch(sub["status"], status)["failedOverClusters"] is None  # removed on the server too


def test_reports_count_one_heartbeat_period_after_the_return_and_the_wait_ends_after_the_timeout() -> None:
    """The report the hub holds may be from before the silence (review s46): it counts only once the cluster has
    been heard again for one of its heartbeat periods; after FAILBACK_TIMEOUT the others stop waiting."""
    sub = {"metadata": {"uid": "u1"}, "spec": {"feeds": [DEPLOY]}}
    descs = {("ns-c", "app-c"): description(reported(2))}
    clusters = {("ns-c", "c"): {**cluster("c"), "status": {"heartbeatFrequencySeconds": 20}}}
    assert not feed_ready(sub, descs, clusters, lambda key: 5.0)("ns-c/c", KEY)
    assert feed_ready(sub, descs, clusters, lambda key: 25.0)("ns-c/c", KEY)
    assert not feed_ready(sub, {("ns-c", "app-c"): description(reported(1))}, clusters, lambda key: 25.0)(
        "ns-c/c", KEY)
    assert feed_ready(sub, {("ns-c", "app-c"): description(reported(1))}, clusters,
                      lambda key: FAILBACK_TIMEOUT)("ns-c/c", KEY)
    # no period stated: Clusternet's default of 3 minutes
    assert not feed_ready(sub, descs, {}, lambda key: 170.0)("ns-c/c", KEY)


def test_a_description_being_deleted_is_not_the_one_read() -> None:
    sub = {"metadata": {"uid": "u1"}, "spec": {"feeds": [DEPLOY]}}
    old = description(reported(2))
    old["metadata"] = {**old["metadata"], "name": "app-c-old", "deletionTimestamp": "2026-12-07T00:00:00Z"}
    assert not feed_ready(sub, {("ns-c", "app-c"): description(reported(1)), ("ns-c", "app-c-old"): old})(
        "ns-c/c", KEY)


def test_a_cluster_awaited_while_nothing_is_held_stays_awaited() -> None:
    """Re-review s46: c, back and not running its share, was dropped from the status at a reconcile where nothing
    shrank (b silent meanwhile); when b came back, only b was waited for, and the feed ran 4 of 6."""
    back_c = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {KEY: [3, 3, 2]},
              "failingBackClusters": ["ns-c/c"]}
    b_silent = schedule(dividing({}, back_c), [cluster("a"), cluster("b", SILENT), cluster("c")], {KEY: 6},
                        fail_over=True, ready=ready_in())
    assert split(b_silent) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 3}
    assert b_silent.failed_over == ["ns-b/b"] and b_silent.failing_back == ["ns-c/c"]
    written = {"bindingClusters": back_c["bindingClusters"], "replicas": {KEY: [3, 3, 3]},
               "failedOverClusters": ["ns-b/b"], "failingBackClusters": ["ns-c/c"]}
    b_back = schedule(dividing({}, written), BACK, {KEY: 6}, fail_over=True, ready=ready_in("ns-b/b"))
    assert split(b_back) == {"ns-a/a": 3, "ns-b/b": 3, "ns-c/c": 3} and b_back.failing_back == ["ns-c/c"]
    done = schedule(dividing({}, written), BACK, {KEY: 6}, fail_over=True, ready=ready_in("ns-b/b", "ns-c/c"))
    assert split(done) == {"ns-a/a": 2, "ns-b/b": 2, "ns-c/c": 2}


def test_the_hub_wakes_when_a_returning_clusters_reports_start_to_count_and_when_the_wait_ends() -> None:
    """Nothing else brings the Subscription back at those two moments but a report or the 30-s resync (s46 note):
    failback_wake says when, the soonest of every awaited cluster's."""
    clusters = {("ns-c", "c"): {**cluster("c"), "status": {"heartbeatFrequencySeconds": 20}}}
    back = {"ns-c/c": 5.0, "ns-d/d": 100.0}
    assert failback_wake(["ns-c/c"], clusters, back.__getitem__) == 15.0  # its reports count in 15 s
    back["ns-c/c"] = 25.0
    assert failback_wake(["ns-c/c"], clusters, back.__getitem__) == FAILBACK_TIMEOUT - 25.0
    assert failback_wake(["ns-c/c", "ns-d/d"], clusters, back.__getitem__) == 80.0  # d: 3 minutes by default
    back["ns-c/c"] = FAILBACK_TIMEOUT
    assert failback_wake(["ns-c/c"], clusters, back.__getitem__) is None  # nothing left to wait for
    assert failback_wake([], clusters, back.__getitem__) is None
