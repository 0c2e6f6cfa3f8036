"""The parent's objects the hub deletes after a look are deleted only as they were looked at (review F8).

Each DELETE carries the uid (and the resourceVersion where the decision read something that changes) of the object
judged; an object deleted and created again, or written, between the look and the DELETE (FakeKube.meanwhile) is
a 409 for the API server, and never becomes a delete of the newer object.
"""

from __future__ import annotations

from clusternet_api.preconditions import Deleted, delete_as_read, preconditions
from tests.unit.fakekube import FakeKube, Obj


def deletes(kube: FakeKube, kind: str) -> list[Obj | None]:
    """What each DELETE of `kind` sent (its preconditions), in order."""
    return [body for (verb, k, _), body in zip(kube.writes, kube.bodies, strict=True) if (verb, k) == ("delete", kind)]


def as_read(obj: Obj | None, unchanged: bool) -> Obj:
    assert obj is not None
    return {"preconditions": preconditions(obj, unchanged=unchanged)}


async def test_a_delete_as_read_says_deleted_gone_or_changed() -> None:
    kube = FakeKube({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}})
    read = kube.find("ConfigMap", "n", "c")
    assert read is not None
    kube.touch("ConfigMap", "n", "c")
    assert await delete_as_read(kube, "v1", "ConfigMap", read, unchanged=True) is Deleted.CHANGED
    assert kube.find("ConfigMap", "n", "c") is not None
    assert await delete_as_read(kube, "v1", "ConfigMap", read, unchanged=False) is Deleted.DONE
    assert await delete_as_read(kube, "v1", "ConfigMap", read, unchanged=False) is Deleted.GONE
