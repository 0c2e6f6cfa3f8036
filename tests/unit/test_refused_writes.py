"""A Base or Description the parent refuses fails only its cluster, and the Subscription says so.

Found in review: one refused write (413 for a big raw, 403 in a terminating cluster namespace, 422) failed the
whole reconcile: the other clusters got nothing, stale Bases stayed, no condition or event appeared, and the
work came back every 2 s for ever.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_hub.controller.workqueue import Backoff
from clusternet_hub.controller.writerefusals import (
    REASON_WRITE_REFUSED,
    WriteRefused,
    WritesRefused,
    explain,
    refusal_lines,
)
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import BASE, DESC, SUB, cluster, config_map_manifest, primed, subscription

NS2 = "clusternet-def"
DESC2 = (NS2, DESC[1])
TOO_LARGE = ApiException(413, "Request entity too large: limit is 3145728")


def second_cluster(env: str = "prod", n: int = 2) -> Obj:
    mc = cluster(env=env)
    mc["metadata"] |= {"name": f"child{n}", "namespace": f"clusternet-{'def' if n == 2 else n}", "uid": f"mc{n}",
                       "labels": {"env": env, known.LABEL_CLUSTER_NAME: f"child{n}"}}
    mc["spec"] = {**mc["spec"], "clusterId": f"id{n}"}
    return mc


def ready_of(parent: FakeKube) -> Obj:
    [ready] = parent.find("Subscription", *SUB)["status"]["conditions"]
    return ready


def warnings(kube: FakeKube) -> list[tuple[str, str]]:
    return [(o["reason"], o["message"]) for (kind, _, _), o in kube.objects.items()
            if kind == "Event" and o["type"] == "Warning"]


async def test_a_refused_description_fails_only_its_cluster_and_the_condition_names_it() -> None:
    c, parent, _ = await primed(cluster(), second_cluster(), config_map_manifest(), subscription())
    await c.subscriptions.reconcile(SUB, force=False)  # both clusters deployed
    stale_ns = "clusternet-3"
    stale = {**parent.find("Base", *BASE), "metadata": {**parent.find("Base", *BASE)["metadata"],
                                                        "namespace": stale_ns, "uid": "b3"}}
    parent.objects[("Base", stale_ns, BASE[1])] = stale  # a cluster no longer bound
    c.store.caches.bases[(stale_ns, BASE[1])] = stale
    c.store.on_manifest("MODIFIED", config_map_manifest("2"))
    parent.fail[("apply", "Description", NS2)] = TOO_LARGE
    with pytest.raises(WritesRefused):  # the work item fails, so that it is retried
        await c.subscriptions.reconcile(SUB, force=False)
    assert ("apply", "Description", "/".join(DESC)) in parent.writes  # the other cluster got its new objects
    assert ("delete", "Base", f"{stale_ns}/{BASE[1]}") in parent.writes  # stale Bases still go
    ready = ready_of(parent)
    assert (ready["status"], ready["reason"]) == ("False", REASON_WRITE_REFUSED)
    assert ready["message"] == (
        f"the parent refused Description {DESC[1]} for cluster {NS2}/child2 (413 request entity too large: its "
        "objects exceed the API server's request limit: Request entity too large: limit is 3145728; retrying "
        "will not heal this, changing the Subscription, its feeds or their overrides can)")
    assert warnings(parent) == [(REASON_WRITE_REFUSED, ready["message"])]
    await c.status.update(SUB)  # the other cluster's reports never hide the refusal
    assert ready_of(parent)["reason"] == REASON_WRITE_REFUSED
    del parent.fail[("apply", "Description", NS2)]
    await c.subscriptions.reconcile(SUB, force=False)
    assert ready_of(parent)["reason"] != REASON_WRITE_REFUSED and SUB not in c.status.refused_writes


async def test_a_terminating_cluster_namespace_refusing_the_base_is_said_and_retried() -> None:
    c, parent, _ = await primed(cluster(), second_cluster(), config_map_manifest(), subscription())
    parent.fail[("apply", "Base", NS2)] = ApiException(
        403, f"base \"x\" is forbidden: unable to create new content in namespace {NS2} because it is being "
             "terminated")
    with pytest.raises(WritesRefused, match=f"the parent refused Base {BASE[1]} for cluster {NS2}/child2 "
                       r"\(HTTP 403: "):
        await c.subscriptions.reconcile(SUB, force=False)
    assert parent.find("Description", *DESC) is not None and parent.find("Description", *DESC2) is None
    assert "being terminated; retrying)" in ready_of(parent)["message"]


def test_the_same_refusal_in_many_clusters_is_one_line() -> None:
    def refused(n: int, status: int = 413) -> tuple[str, WriteRefused]:
        return f"clusternet-{n}/child{n}", WriteRefused("Description", "app-generic", ApiException(status, "no"))

    lines = refusal_lines([refused(n) for n in range(1, 8)] + [refused(9, 422)])
    assert lines == [
        "the parent refused Description app-generic for cluster clusternet-9/child9 (422 invalid: no; retrying "
        "will not heal this, changing the Subscription, its feeds or their overrides can)",
        "the parent refused Description app-generic for clusters clusternet-1/child1, clusternet-2/child2, "
        "clusternet-3/child3, clusternet-4/child4, clusternet-5/child5 and 2 more (413 request entity too large: "
        "its objects exceed the API server's request limit: no; retrying will not heal this, changing the "
        "Subscription, its feeds or their overrides can)"]


async def test_refused_writes_are_retried_with_growing_delays_until_they_succeed() -> None:
    c, _, _ = await primed()
    calls: list[Any] = []

    async def refusing(item: Any, force: bool) -> None:
        calls.append(item)
        if len(calls) <= 2:
            raise WritesRefused("the parent refused ...")

    c.process = refusing  # type: ignore[method-assign]
    c.retries = Backoff(0.1, 1.0)
    item = ("sub", *SUB)
    c.store.enqueue("sub", SUB)
    worker = asyncio.create_task(c._worker())
    await asyncio.sleep(0.05)  # failed at once, back after 0.1 s
    assert len(calls) == 1 and c.retries.current(item) == 0.1
    await asyncio.sleep(0.15)  # failed again at 0.1 s, back after 0.2 s
    assert len(calls) == 2 and c.retries.current(item) == 0.2
    await asyncio.sleep(0.25)
    worker.cancel()
    assert len(calls) == 3 and c.retries.current(item) is None



def test_a_description_too_large_for_etcd_is_said_to_be_lasting() -> None:
    """kube-apiserver takes up to 3 MiB in a request, etcd 1.5 MiB: between the two the answer is a 500 (the
    day-2 audit: 'rpc error: code = ResourceExhausted desc = trying to send message larger than max')."""
    error = ApiException(500, "rpc error: code = ResourceExhausted desc = trying to send message larger than max "
                              "(2402508 vs. 2097152)")
    assert "retrying will not heal this" in explain(error) and "split the feeds" in explain(error)
    assert explain(ApiException(500, "etcdserver: leader changed")).endswith("; retrying")
