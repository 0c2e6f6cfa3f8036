"""Adopting objects that existed before, letting them go, and handing an object from one Description to another
(clusternet_api.applier and .ownership against in-memory API servers)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet_api import applier, known
from clusternet_api.kube import ApiException
from clusternet_api.ownership import ANNOTATION_ADOPTED, ANNOTATION_OWNED, Claimants
from clusternet_api.rawobjects import encode_raw
from tests.unit.fakekube import FakeKube, Obj, merge

NS = "clusternet-abc"
KEEPME = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keepme", "namespace": "pre"},
          "data": {"a": "from-parent"}}
SHARED = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": "pre"},
          "data": {"b": "c"}}


class ApiServer120(FakeKube):
    """Server-side apply as kube-apiserver 1.20 answers it, as far as drift detection can tell: an apply that
    changes nothing keeps the resourceVersion, but the apply after one that took fields over from another
    manager (`kubectl create`) rewrites that manager's managedFields entry: a new resourceVersion, no other
    change (seen against the real one; applier.changed). Applies into a namespace the same apply created go
    through apply_created (the applier skips their GET), so that is the one overridden, as in FakeKube."""

    async def apply(self, obj: Obj, field_manager: str, force: bool = True) -> Obj:
        return (await self.apply_created(obj, field_manager, force))[0]

    async def apply_created(self, obj: Obj, field_manager: str, force: bool = True) -> tuple[Obj, bool]:
        meta = obj["metadata"]
        self._record("apply", obj["kind"], meta.get("namespace"), meta["name"], obj)
        old = self.objects.get(self._key(obj))
        merged = merge(old or {}, obj)
        if old is None:
            merged["metadata"]["managedFields"] = "ours"
        elif merged != old:
            merged["metadata"]["managedFields"] = "taken over" if old["metadata"].get("managedFields") is None \
                else "ours"
        elif old["metadata"].get("managedFields") == "taken over":
            merged["metadata"]["managedFields"] = "taken over, rewritten"
        else:
            return copy.deepcopy(old), False
        self.objects[self._key(obj)] = stored = self._stored(merged, old)
        return copy.deepcopy(stored), old is None


def description(name: str, *objects: Obj, created: str = "2026-01-01T00:00:00Z") -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Description",
            "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": f"uid-{name}",
                         "creationTimestamp": created, "finalizers": [known.FINALIZER_APPS]},
            "spec": {"deployer": "Generic", "raw": encode_raw(objects)}}


def by_hand(obj: Obj, **data: str) -> Obj:
    """The object as `kubectl create` made it, before any Description."""
    return {**copy.deepcopy(obj), "data": data}


def stored(parent: FakeKube, name: str) -> Obj:
    """The Description as the parent has it now."""
    desc = parent.find("Description", NS, name)
    assert desc is not None
    return copy.deepcopy(desc)


async def deploy(parent: FakeKube, child: FakeKube, name: str, *others: str) -> applier.ApplyOutcome:
    """What a push or a pull does: the Description as the parent has it applied, the outcome reported."""
    desc = stored(parent, name)
    wanting = [stored(parent, o) for o in others]
    outcome = await applier.apply_description(child, desc, Claimants(desc, lambda: wanting))
    await applier.report(parent, desc, outcome, "test")
    return outcome


def events(parent: FakeKube, reason: str) -> list[str]:
    return [o["message"] for (kind, _, _), o in parent.objects.items() if kind == "Event" and o["reason"] == reason]


def marks(child: FakeKube, name: str) -> dict[str, Any]:
    cm = child.find("ConfigMap", "pre", name)
    assert cm is not None
    annotations = cm["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k in (ANNOTATION_OWNED, ANNOTATION_ADOPTED)}


async def test_an_object_made_by_hand_is_adopted_with_one_event_and_its_re_applies_are_no_drift() -> None:
    parent, child = FakeKube(description("d1", KEEPME)), ApiServer120(by_hand(KEEPME, a="1"))
    outcome = await deploy(parent, child, "d1")
    assert outcome.adopted == ["ConfigMap pre/keepme"] and outcome.drifted == []
    assert child.find("ConfigMap", "pre", "keepme")["data"] == {"a": "from-parent"}  # overwritten, as Clusternet
    assert marks(child, "keepme") == {ANNOTATION_ADOPTED: f"{NS}.d1"}
    for _ in range(3):  # resyncs: the second apply only rewrites managedFields (a new resourceVersion)
        outcome = await deploy(parent, child, "d1")
        assert outcome.adopted == [] and outcome.drifted == []
    assert len(events(parent, "Adopted")) == 1 and "ConfigMap pre/keepme" in events(parent, "Adopted")[0]
    assert events(parent, "DriftCorrected") == []
    child.objects[("ConfigMap", "pre", "keepme")]["data"] = {"a": "edited"}  # someone else's change is drift
    assert (await deploy(parent, child, "d1")).drifted == ["ConfigMap pre/keepme (changed)"]
    del child.objects[("ConfigMap", "pre", "keepme")]
    assert (await deploy(parent, child, "d1")).drifted == ["ConfigMap pre/keepme (deleted)"]


async def test_cleanup_leaves_an_adopted_object_as_it_is_without_our_mark() -> None:
    parent, child = FakeKube(description("d1", KEEPME)), FakeKube(by_hand(KEEPME, a="1"))
    await deploy(parent, child, "d1")
    desc = stored(parent, "d1")
    released = await applier.cleanup(child, desc)
    assert released.unadopted == ["ConfigMap pre/keepme"] and released.deleted == []
    cm = child.find("ConfigMap", "pre", "keepme")
    assert cm["data"] == {"a": "from-parent"} and marks(child, "keepme") == {}
    assert child.writes[-1][0] == "patch"  # a guarded JSON patch: not an apply, which would drop our data keys


async def test_cleanup_leaves_alone_an_object_another_description_adopted_meanwhile() -> None:
    parent, child = FakeKube(description("d1", KEEPME)), FakeKube(by_hand(KEEPME, a="1"))
    await deploy(parent, child, "d1")
    desc = stored(parent, "d1")
    child.objects[("ConfigMap", "pre", "keepme")]["metadata"]["annotations"][ANNOTATION_ADOPTED] = "other.d9"
    writes = len(child.writes)
    released = await applier.cleanup(child, desc)
    assert released.unadopted == [] and len(child.writes) == writes
    assert marks(child, "keepme") == {ANNOTATION_ADOPTED: "other.d9"}


async def test_an_object_another_description_adopted_is_refused_not_made_ours() -> None:
    """Taking it over would mark what someone made by hand as created by us, and delete it with us."""
    parent = FakeKube(description("d1", KEEPME), description("d2", KEEPME))
    child = FakeKube(by_hand(KEEPME, a="1"))
    await deploy(parent, child, "d1")
    outcome = await deploy(parent, child, "d2")
    assert outcome.phase == "Failure" and f"already adopted by Description {NS}.d1" in str(outcome.reason)
    assert marks(child, "keepme") == {ANNOTATION_ADOPTED: f"{NS}.d1"}


async def test_the_object_of_a_deleted_description_passes_to_the_one_refused_it_and_is_deleted_with_that_one(
) -> None:
    parent = FakeKube(description("d1", SHARED), description("d2", SHARED, created="2026-01-02T00:00:00Z"),
                      description("d3", SHARED, created="2025-12-31T00:00:00Z"))
    child = FakeKube()
    await deploy(parent, child, "d1")
    refused = await deploy(parent, child, "d2")
    assert refused.phase == "Failure" and "two subscriptions deploy the same object" in str(refused.reason)
    uid = child.find("ConfigMap", "pre", "shared")["metadata"]["uid"]
    d1, d2, d3 = (stored(parent, n) for n in ("d1", "d2", "d3"))
    # d3 is older but never reported the conflict; d2 did: d2 gets it
    released = await applier.cleanup(child, d1, Claimants(d1, lambda: [d3, d2]))
    assert released.handed_over == {f"{NS}.d2": ["ConfigMap pre/shared"]} and released.deleted == []
    assert released.claimants == {f"{NS}.d2"}
    assert child.find("ConfigMap", "pre", "shared")["metadata"]["uid"] == uid  # never missing
    assert marks(child, "shared") == {ANNOTATION_OWNED: f"{NS}.d2"}
    assert (await deploy(parent, child, "d2")).phase == "Success"
    released = await applier.cleanup(child, d2)
    assert released.deleted == ["ConfigMap pre/shared"] and child.find("ConfigMap", "pre", "shared") is None


async def test_an_object_dropped_from_the_feeds_passes_to_a_description_that_wants_it() -> None:
    parent = FakeKube(description("d1", SHARED, KEEPME), description("d2", SHARED))
    child = FakeKube()
    await deploy(parent, child, "d1")
    await deploy(parent, child, "d2")
    parent.objects[("Description", NS, "d1")]["spec"]["raw"] = encode_raw([KEEPME])
    outcome = await deploy(parent, child, "d1", "d2")
    assert outcome.released.handed_over == {f"{NS}.d2": ["ConfigMap pre/shared"]}
    assert marks(child, "shared") == {ANNOTATION_OWNED: f"{NS}.d2"}


async def test_deleting_descriptions_claim_nothing_and_ours_is_deleted() -> None:
    d1, d2 = description("d1", SHARED), description("d2", SHARED)
    d2["metadata"]["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    parent, child = FakeKube(d1, d2), FakeKube()
    await deploy(parent, child, "d1")
    released = await applier.cleanup(child, d1, Claimants(d1, lambda: [d2]))
    assert released.deleted == ["ConfigMap pre/shared"] and released.claimants == set()


async def test_a_template_cannot_bring_its_own_ownership_marks() -> None:
    copied = merge(SHARED, {"metadata": {"annotations": {ANNOTATION_OWNED: "elsewhere.dx"}}})
    prepared = applier.prepare(copied, f"{NS}.d1", adopted=True)
    assert prepared["metadata"]["annotations"] == {ANNOTATION_ADOPTED: f"{NS}.d1"}


class Restarting(FakeKube):
    """A child API server that cannot answer reads for now (restarting, overloaded)."""

    down = True

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if self.down and name == "keepme":  # its aggregated API, say, not answering yet
            raise ApiException(503, "the server is currently unable to handle the request")
        return await super().get(api_version, kind, name, namespace)


async def test_an_object_the_child_cannot_read_now_is_left_for_the_next_look_not_counted_let_go() -> None:
    """The cleanup took it as done: the Description lost its finalizer, the prune its status entry, and the
    object kept running untracked (audit s35)."""
    parent, child = FakeKube(description("d1", KEEPME)), Restarting()
    child.down = False
    await deploy(parent, child, "d1")
    child.down = True
    with pytest.raises(applier.ReleaseDeferred, match="could not be read now"):
        await applier.cleanup(child, stored(parent, "d1"))
    pruned = stored(parent, "d1") | {"spec": {"deployer": "Generic", "raw": encode_raw([SHARED])}}
    outcome = await applier.apply_description(child, pruned)
    assert any(s["name"] == "keepme" for s in outcome.statuses) and "unreadable now" in (outcome.reason or "")
    child.down = False
    released = await applier.cleanup(child, stored(parent, "d1"))
    assert released.deleted == ["ConfigMap pre/keepme"] and child.find("ConfigMap", "pre", "keepme") is None
