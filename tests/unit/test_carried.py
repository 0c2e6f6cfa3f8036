"""What a released Description had deployed goes to its successor's first apply, and nowhere else."""

from __future__ import annotations

from typing import Any

from clusternet_api.carried import CarriedOver

DEPLOYED = [{"apiVersion": "v1", "kind": "Service", "namespace": "foo", "name": "svc"}]


def desc(uid: str, statuses: list[dict[str, Any]] | None = None, name: str = "app-generic") -> dict[str, Any]:
    return {"metadata": {"namespace": "clusternet-x", "name": name, "uid": uid},
            "status": {"manifestStatuses": statuses} if statuses is not None else {}}


def test_the_successor_gets_the_released_list_until_it_has_its_own() -> None:
    carried = CarriedOver()
    assert carried.previous(desc("new")) == []
    carried.keep(desc("old", DEPLOYED))
    assert carried.previous(desc("old")) == []  # the released one itself (a stale event): nothing carried
    assert carried.previous(desc("new")) == DEPLOYED
    assert carried.previous(desc("new")) == DEPLOYED  # a failed first apply tries again with it
    own = [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "foo", "name": "cm"}]
    assert carried.previous(desc("new", own)) == own  # its own list takes over, and the record goes
    assert carried.previous(desc("newer")) == []
    assert carried.previous(desc("new", [], name="other")) == []


def test_a_cleanup_forgets_and_the_records_are_bounded() -> None:
    carried = CarriedOver(max_records=2)
    carried.keep(desc("old", DEPLOYED))
    carried.forget(desc("new"))
    assert carried.previous(desc("new")) == []
    carried.keep(desc("old", []))  # nothing deployed: nothing to carry
    assert carried.previous(desc("new")) == []
    for name in ("a", "b", "c"):
        carried.keep(desc("old", DEPLOYED, name=name))
    assert [carried.previous(desc("new", name=n)) for n in ("a", "b", "c")] == [[], DEPLOYED, DEPLOYED]
