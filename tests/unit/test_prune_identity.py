"""Pruning compares objects, not the apiVersion they were written with, and deletes only what it looked at
(clusternet_api.applier and .ownership against an in-memory API server that, like a real one, keeps one object
whatever version it is read or written through)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_api import applier, known
from clusternet_api.ownership import ANNOTATION_OWNED, Released, ReleaseDeferred, object_key, release
from clusternet_api.rawobjects import encode_raw
from tests.unit.fakekube import FakeKube, Obj

NS = "clusternet-abc"
KEY = f"{NS}.app-generic"


def description(*objects: Obj, status: Obj | None = None, generation: int = 1) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Description",
            "metadata": {"name": "app-generic", "namespace": NS, "generation": generation, "uid": "uid-desc"},
            "spec": {"deployer": "Generic", "raw": encode_raw(objects)}, "status": status or {}}


def obj(api_version: str, kind: str, name: str = "web", namespace: str | None = "foo") -> Obj:
    meta: Obj = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": {"n": 1}}


async def migrate(old: Obj, new: Obj) -> tuple[FakeKube, applier.ApplyOutcome]:
    """Deploy `old`, then the same object under its new apiVersion, as a feed migration does."""
    child = FakeKube()
    first = await applier.apply_description(child, description(old))
    status = {"phase": "Success", "observedGeneration": 1, "manifestStatuses": first.statuses}
    child.writes.clear()
    return child, await applier.apply_description(child, description(new, status=status, generation=2))


@pytest.mark.parametrize(("old", "new"), [
    (obj("policy/v1beta1", "PodDisruptionBudget"), obj("policy/v1", "PodDisruptionBudget")),
    (obj("batch/v1beta1", "CronJob"), obj("batch/v1", "CronJob")),
    (obj("autoscaling/v2beta2", "HorizontalPodAutoscaler"), obj("autoscaling/v2", "HorizontalPodAutoscaler")),
    (obj("example.com/v1alpha1", "Widget"), obj("example.com/v1", "Widget")),
    (obj("extensions/v1beta1", "Ingress"), obj("networking.k8s.io/v1", "Ingress")),
    (obj("extensions/v1beta1", "Deployment"), obj("apps/v1", "Deployment")),
])
async def test_a_feed_moved_to_another_api_version_keeps_its_object(old: Obj, new: Obj) -> None:
    child, outcome = await migrate(old, new)
    assert child.find(new["kind"], "foo", "web") is not None
    assert [verb for verb, _, _ in child.writes] == ["apply"]
    assert outcome.phase == "Success" and outcome.released == Released()
    assert [(s["apiVersion"], s["name"]) for s in outcome.statuses] == [(new["apiVersion"], "web")]


def test_an_object_key_ignores_the_version_and_known_group_moves_but_not_other_groups() -> None:
    def key(api_version: str, kind: str) -> str:
        return object_key({"apiVersion": api_version, "kind": kind, "name": "web", "namespace": "foo"})

    assert key("policy/v1beta1", "PodDisruptionBudget") == key("policy/v1", "PodDisruptionBudget")
    assert key("extensions/v1beta1", "NetworkPolicy") == key("networking.k8s.io/v1", "NetworkPolicy")
    assert key("events.k8s.io/v1", "Event") == key("v1", "Event")
    assert key("a.example.com/v1", "Widget") != key("b.example.com/v1", "Widget")
    assert key("v1", "ConfigMap") != key("v1", "Secret")


class Aliased(FakeKube):
    """Serves one kind under two groups the deployer knows nothing of (an aggregated API's alias, say)."""

    @staticmethod
    def _key(o: Obj) -> tuple[str, str, str]:
        return ("Widget" if o["kind"] in ("Widget", "Gadget") else o["kind"], o["metadata"].get("namespace") or "",
                o["metadata"]["name"])

    def find(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        return super().find("Widget" if kind == "Gadget" else kind, namespace, name)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background", *, preconditions: dict[str, str] | None = None) -> bool:
        return await super().delete(api_version, "Widget" if kind == "Gadget" else kind, name, namespace,
                                    propagation, preconditions=preconditions)


async def test_nothing_the_same_apply_applied_is_pruned_whatever_name_it_had_before() -> None:
    child = Aliased()
    first = await applier.apply_description(child, description(obj("old.example.com/v1", "Gadget")))
    status = {"phase": "Success", "observedGeneration": 1, "manifestStatuses": first.statuses}
    child.writes.clear()
    outcome = await applier.apply_description(
        child, description(obj("new.example.com/v1", "Widget"), status=status, generation=2))
    assert child.find("Widget", "foo", "web") is not None
    assert [verb for verb, _, _ in child.writes] == ["apply"]
    assert outcome.released.deleted == [] and outcome.phase == "Success"


def mine(child: FakeKube) -> Obj:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "gone", "namespace": "foo", "annotations": {ANNOTATION_OWNED: KEY}}}
    child.objects[("ConfigMap", "foo", "gone")] = child._stored(cm, None)
    found = child.find("ConfigMap", "foo", "gone")
    assert found is not None
    return found


async def test_a_prune_deletes_only_the_object_as_it_read_it() -> None:
    child = FakeKube()
    existing = mine(child)
    out = Released()
    await release(child, {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "namespace": "foo"}, KEY, None,
                  out)
    assert out.deleted == ["ConfigMap foo/gone"] and child.find("ConfigMap", "foo", "gone") is None
    assert child.bodies[-1] == {"preconditions": {"uid": existing["metadata"]["uid"],
                                                  "resourceVersion": existing["metadata"]["resourceVersion"]}}


class HandedOverMeanwhile(FakeKube):
    """Between each GET and the DELETE, someone else rewrites the object's mark (the other deployer handing it
    over, during a push/pull switch): the DELETE's resourceVersion no longer matches."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        found = await super().get(api_version, kind, name, namespace)
        if found is not None and self.times > 0:
            self.times -= 1
            old = self.objects[(kind, namespace or "", name)]
            changed = copy.deepcopy(old)
            changed["metadata"]["annotations"][ANNOTATION_OWNED] = KEY if self.times else f"{NS}.other-generic"
            self.objects[(kind, namespace or "", name)] = self._stored(changed, old)
        return found


async def test_a_prune_that_finds_the_object_changed_since_it_looked_deletes_nothing_now_and_looks_again() -> None:
    child = HandedOverMeanwhile(times=1)
    mine(child)
    status = {"phase": "Success", "observedGeneration": 1, "manifestStatuses": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "namespace": "foo", "observedStatus": {}}]}
    outcome = await applier.apply_description(child, description(status=status, generation=2))
    # it looked again at once: handed over to another Description meanwhile, so not ours to delete any more
    cm = child.find("ConfigMap", "foo", "gone")
    assert cm is not None and cm["metadata"]["annotations"][ANNOTATION_OWNED] == f"{NS}.other-generic"
    assert outcome.phase == "Success" and outcome.released.deleted == []


async def test_a_prune_kept_changing_under_it_is_deferred_to_the_next_apply_not_a_failure() -> None:
    child = HandedOverMeanwhile(times=100)  # always changed, always still ours
    mine(child)
    entry: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "namespace": "foo",
                             "observedStatus": {}}
    status = {"phase": "Success", "observedGeneration": 1, "manifestStatuses": [entry]}
    outcome = await applier.apply_description(child, description(status=status, generation=2))
    assert child.find("ConfigMap", "foo", "gone") is not None
    assert outcome.phase == "Success" and outcome.released.deleted == []
    assert outcome.statuses == [entry]  # still listed: the next apply looks at it again
    assert "ConfigMap foo/gone" in str(outcome.reason)
    child.times = 0
    outcome = await applier.apply_description(child, description(status={**status}, generation=2))
    assert child.find("ConfigMap", "foo", "gone") is None and outcome.statuses == []
    assert outcome.released.deleted == ["ConfigMap foo/gone"]


async def test_a_cleanup_whose_delete_kept_conflicting_raises_so_the_finalizer_stays() -> None:
    child = HandedOverMeanwhile(times=100)
    mine(child)
    with pytest.raises(ReleaseDeferred, match="kept changing while being deleted"):  # which ones: in the log
        await applier.cleanup(child, description(obj("v1", "ConfigMap", name="gone")))
    assert child.find("ConfigMap", "foo", "gone") is not None


def test_what_a_cleanup_did_reads_as_one_line_for_people() -> None:
    """Audit 6: cleanup log lines showed the dataclass's repr."""
    out = Released(deleted=["ConfigMap app/a", "Service app/b"], handed_over={"ns.other": ["Secret app/c"]},
                   kept={"Namespace app": "holds ConfigMap app/mine"})
    assert str(out) == ("deleted ConfigMap app/a, Service app/b; handed over Secret app/c to ns.other; "
                        "kept Namespace app (holds ConfigMap app/mine)")
    assert str(Released()) == "deleted nothing"
