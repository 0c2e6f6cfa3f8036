"""Objects that existed before a Description: re-applying what it took over (clusternet_api.applier against an
in-memory API server)."""

from __future__ import annotations

import copy

from clusternet_api import applier, known
from clusternet_api.rawobjects import encode_raw
from tests.unit.fakekube import FakeKube, Obj, merge

NS = "clusternet-abc"
KEEPME = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keepme", "namespace": "pre"},
          "data": {"a": "from-parent"}}


class ApiServer120(FakeKube):
    """Server-side apply as kube-apiserver 1.20 answers it, as far as drift detection can tell: an apply that
    changes nothing keeps the resourceVersion, but the apply after one that took fields over from another
    manager (`kubectl create`) rewrites that manager's managedFields entry: a new resourceVersion, no other
    change (seen against the real one; applier.changed)."""

    async def apply(self, obj: Obj, field_manager: str, force: bool = True) -> Obj:
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
            return copy.deepcopy(old)
        self.objects[self._key(obj)] = stored = self._stored(merged, old)
        return copy.deepcopy(stored)


def description(name: str, *objects: Obj) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Description",
            "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": f"uid-{name}"},
            "spec": {"deployer": "Generic", "raw": encode_raw(objects)}}


def by_hand(obj: Obj, **data: str) -> Obj:
    """The object as `kubectl create` made it, before any Description."""
    return {**copy.deepcopy(obj), "data": data}


async def deploy(parent: FakeKube, child: FakeKube, name: str) -> applier.ApplyOutcome:
    """What a push or a pull does: the Description as the parent has it applied, the outcome reported."""
    desc = parent.find("Description", NS, name)
    assert desc is not None
    outcome = await applier.apply_description(child, copy.deepcopy(desc))
    await applier.report(parent, desc, outcome, "test")
    return outcome


def events(parent: FakeKube, reason: str) -> list[str]:
    return [o["message"] for (kind, _, _), o in parent.objects.items() if kind == "Event" and o["reason"] == reason]


async def test_re_applying_an_object_made_by_hand_is_no_drift_until_someone_changes_it() -> None:
    parent, child = FakeKube(description("d1", KEEPME)), ApiServer120(by_hand(KEEPME, a="1"))
    for _ in range(4):  # the first takes it over, the second only rewrites managedFields (a new resourceVersion)
        assert (await deploy(parent, child, "d1")).drifted == []
    assert events(parent, "DriftCorrected") == []
    child.objects[("ConfigMap", "pre", "keepme")]["data"] = {"a": "edited"}  # someone else's change is drift
    assert (await deploy(parent, child, "d1")).drifted == ["ConfigMap pre/keepme (changed)"]
    del child.objects[("ConfigMap", "pre", "keepme")]
    assert (await deploy(parent, child, "d1")).drifted == ["ConfigMap pre/keepme (deleted)"]
