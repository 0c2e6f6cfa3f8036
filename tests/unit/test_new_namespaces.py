"""Objects applied into a Namespace the same apply created: no GET, and what was put there meanwhile is adopted.

A controller that fills new namespaces (Kyverno `generate`, OpenShift project templates) may write an object of
the feed's name between our Namespace and the object. The apply's answer says so (200, not 201 Created), and the
object is applied again as adopted: never deleted with the Description (review F7; the real API server's answers
are checked in tests/integration/test_populated_namespace.py).
"""

from __future__ import annotations

from clusternet_api import applier, ownership
from clusternet_api.kube import ApiException
from clusternet_api.ownership import ANNOTATION_ADOPTED, ANNOTATION_OWNED
from clusternet_api.rawobjects import encode_raw
from tests.unit.fakekube import FakeKube, Obj

NAMESPACE: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}}
POLICY: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "defaults", "namespace": "fresh"},
               "data": {"policy": "ours"}}
KEY = "clusternet-abc.app-generic"


class CountingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        self.gets.append(kind)
        return await super().get(api_version, kind, name, namespace)


def description() -> Obj:
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Description",
            "metadata": {"name": "app-generic", "namespace": "clusternet-abc", "uid": "d1", "generation": 1},
            "spec": {"deployer": "Generic", "raw": encode_raw([NAMESPACE, POLICY])}}


async def test_an_object_put_into_the_new_namespace_meanwhile_is_adopted() -> None:
    child = CountingKube()
    child.landed[("apply", "Namespace")] = lambda ns: child.objects.__setitem__(
        ("ConfigMap", "fresh", "defaults"), {"apiVersion": "v1", "kind": "ConfigMap", "data": {"policy": "deny"},
                                             "metadata": {"name": "defaults", "namespace": "fresh", "uid": "c1"}})
    outcome = await applier.apply_description(child, description())
    assert outcome.phase == "Success" and outcome.adopted == ["ConfigMap fresh/defaults"]
    assert [w for w in child.writes if w[1] == "ConfigMap"] == [("apply", "ConfigMap", "fresh/defaults")] * 2
    assert child.gets == ["Namespace"]  # no GET in the namespace it created
    last = child.bodies[-1]["metadata"]["annotations"]
    assert last.get(ANNOTATION_ADOPTED) == KEY and ANNOTATION_OWNED not in last


async def test_an_object_created_in_the_new_namespace_is_ours_in_one_write() -> None:
    child = FakeKube()
    outcome = await applier.apply_description(child, description())
    assert outcome.phase == "Success" and outcome.adopted == []
    assert [w for w in child.writes if w[1] == "ConfigMap"] == [("apply", "ConfigMap", "fresh/defaults")]
    assert child.find("ConfigMap", "fresh", "defaults")["metadata"]["annotations"][ANNOTATION_OWNED] == KEY


def populated_meanwhile_then_failing(child: FakeKube) -> None:
    """Someone's ConfigMap lands in the new namespace before ours (200, not 201), and the adopting write that
    follows fails (the API server going away)."""
    child.landed[("apply", "Namespace")] = lambda ns: child.objects.__setitem__(
        ("ConfigMap", "fresh", "defaults"), {"apiVersion": "v1", "kind": "ConfigMap", "data": {"policy": "deny"},
                                             "metadata": {"name": "defaults", "namespace": "fresh", "uid": "c1"}})
    child.landed[("apply", "ConfigMap")] = lambda cm: child.fail.__setitem__(("apply", "ConfigMap"),
                                                                            ApiException(503, "unavailable"))


async def test_a_failed_adopting_write_is_made_good_by_the_next_apply() -> None:
    """The first write left our "owned" mark on someone's object; the next apply reads it (the namespace is no
    longer new) and used to take the mark for the truth: the Description's cleanup would delete it."""
    child = FakeKube()
    populated_meanwhile_then_failing(child)
    outcome = await applier.apply_description(child, description())
    assert outcome.phase == "Failure" and outcome.adopted == []
    del child.fail[("apply", "ConfigMap")]
    outcome = await applier.apply_description(child, description())
    assert outcome.phase == "Success" and outcome.adopted == ["ConfigMap fresh/defaults"]
    last = child.bodies[-1]["metadata"]["annotations"]
    assert last.get(ANNOTATION_ADOPTED) == KEY and ANNOTATION_OWNED not in last
    assert not ownership.adoption_owed


async def test_a_cleanup_before_the_adoption_is_made_good_deletes_nothing() -> None:
    child = FakeKube()
    populated_meanwhile_then_failing(child)
    await applier.apply_description(child, description())
    del child.fail[("apply", "ConfigMap")]
    released = await applier.cleanup(child, description())
    cm = child.find("ConfigMap", "fresh", "defaults")
    assert cm is not None and cm["metadata"]["uid"] == "c1" and released.unadopted == ["ConfigMap fresh/defaults"]
    assert ANNOTATION_OWNED not in cm["metadata"].get("annotations", {}) and not ownership.adoption_owed
    assert ("delete", "ConfigMap", "fresh/defaults") not in child.writes  # not even one a precondition stops


async def test_an_owed_object_its_maker_deleted_is_ours_once_we_create_it() -> None:
    """Review s34, finding 3: the owed entry outlived the object, and an apply after ours adopted our own."""
    child = FakeKube()
    populated_meanwhile_then_failing(child)
    await applier.apply_description(child, description())
    del child.fail[("apply", "ConfigMap")]
    del child.objects[("ConfigMap", "fresh", "defaults")]  # its maker deleted it
    for _ in range(2):
        outcome = await applier.apply_description(child, description())
        assert outcome.phase == "Success" and outcome.adopted == []
    assert not ownership.adoption_owed
    released = await applier.cleanup(child, description())
    assert "ConfigMap fresh/defaults" in released.deleted


class LostAnswer(FakeKube):
    """The ConfigMap's write lands, but its answer never comes back (a timeout after the commit)."""

    async def apply_created(self, obj: Obj, field_manager: str, force: bool = True) -> tuple[Obj, bool]:
        answer = await super().apply_created(obj, field_manager, force)
        if obj["kind"] == "ConfigMap" and len([w for w in self.writes if w[1] == "ConfigMap"]) == 1:
            raise ApiException(504, "Timeout")
        return answer


async def test_a_write_into_the_new_namespace_whose_answer_was_lost_is_taken_as_ours() -> None:
    """It may have landed on someone's object as well as created ours, and nothing tells which. Taken as adopted
    (review s34, finding 4a), every object a child API server restart interrupted mid-push stayed undeleted after
    its Subscription went (test_faults); taken as ours, as before, it is deleted with its Description."""
    child = LostAnswer()
    assert (await applier.apply_description(child, description())).phase == "Failure"
    assert (await applier.apply_description(child, description())).adopted == []
    released = await applier.cleanup(child, description())
    assert "ConfigMap fresh/defaults" in released.deleted and not ownership.adoption_owed


async def test_an_adoption_owed_for_an_object_gone_since_goes_with_the_cleanup() -> None:
    """Re-review s34, finding 6: an entry whose object nobody writes again stayed in this process's memory."""
    child = FakeKube()
    populated_meanwhile_then_failing(child)
    assert (await applier.apply_description(child, description())).phase == "Failure"
    assert ownership.adoption_owed
    del child.objects[("ConfigMap", "fresh", "defaults")]
    await applier.cleanup(child, description())
    assert not ownership.adoption_owed
