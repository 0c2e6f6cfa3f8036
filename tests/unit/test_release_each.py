"""Letting go of what a Description no longer deploys, object by object (ownership.release_each).

Review s39-b, finding 3: a prune or cleanup the child refused (a 403 on a DELETE) escaped the apply, so the
Description kept saying Success with no event, and a cleanup stopped at the first refusal. Review s39-a, F2: an
object of ours not let go of in a pass (one 503 on its read) still sat in our Namespace when the Namespace was
judged right after, counted as someone else's: the Namespace was kept for good, our mark removed. F1: an object
that could not be read (401, 403, a cold API server's 404) counted as let go of, and the finalizer went."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clusternet_api import applier, pendingprunes
from clusternet_api.kube import ApiException
from clusternet_api.ownership import SAID_AT_MOST, ReleaseDeferred
from clusternet_api.pendingprunes import PRUNE_PENDING
from clusternet_core.rendering import encode_raw
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_cascadeguard import TEAM, cm, namespace_mark
from tests.unit.test_ownership import NS, deploy, description, stored

FORBIDDEN = ApiException(403, 'configmaps "b" is forbidden: User "deployer" cannot delete resource "configmaps"')


def fail_reads(child: FakeKube, error: ApiException, when: Callable[[str, str, str], bool]) -> None:
    """The child's GET of an object raises `error` when `when(api_version, kind, name)` holds."""
    real_get = child.get

    async def get(api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if when(api_version, kind, name):
            raise error
        return await real_get(api_version, kind, name, namespace)

    child.get = get  # type: ignore[method-assign]


def status(parent: FakeKube) -> Obj:
    found = stored(parent, "d1").get("status") or {}
    return found


async def test_a_prune_the_child_refuses_is_said_and_tried_again() -> None:
    """Said in the reason, and no Failure of what is deployed: a Failure is "not deployed", and a Description whose
    user turned drift correction off was then re-applied in full at every push, putting back hand edits (review
    s39)."""
    parent, child = FakeKube(description("d1", TEAM, cm("a"), cm("b"))), FakeKube()
    await deploy(parent, child, "d1")
    parent.objects[("Description", NS, "d1")]["spec"]["raw"] = encode_raw([TEAM, cm("a")])
    child.fail[("delete", "ConfigMap")] = FORBIDDEN
    await deploy(parent, child, "d1")
    said = status(parent)
    assert said["phase"] == "Success" and said["reason"].startswith(PRUNE_PENDING), said
    assert "ConfigMap team-a/b (no longer deployed; not let go of): the child cluster's RBAC refused it" in said[
        "reason"]
    assert applier.deployed(stored(parent, "d1")) and pendingprunes.prunes_pending(stored(parent, "d1"))
    assert child.find("ConfigMap", "team-a", "b") is not None
    del child.fail[("delete", "ConfigMap")]  # the child admin grants delete
    await deploy(parent, child, "d1")
    assert status(parent)["phase"] == "Success" and not status(parent).get("reason")
    assert child.find("ConfigMap", "team-a", "b") is None


async def test_many_refusals_are_counted_not_all_named() -> None:
    names = [f"c{i}" for i in range(12)]
    parent, child = FakeKube(description("d1", TEAM, *[cm(n) for n in names])), FakeKube()
    await deploy(parent, child, "d1")
    parent.objects[("Description", NS, "d1")]["spec"]["raw"] = encode_raw([TEAM])
    child.fail[("delete", "ConfigMap")] = FORBIDDEN
    await deploy(parent, child, "d1")
    reason = status(parent)["reason"]
    assert reason.count("RBAC refused it") == SAID_AT_MOST and "and 7 more" in reason, reason


async def test_a_cleanup_the_child_refuses_in_part_lets_go_of_the_rest_and_says_why() -> None:
    parent, child = FakeKube(description("d1", TEAM, cm("a"), cm("b"))), FakeKube()
    await deploy(parent, child, "d1")
    real_delete = child.delete

    async def refuse_b(api_version: str, kind: str, name: str, *args: object, **kwargs: object) -> bool:
        if name == "b":
            raise FORBIDDEN
        return await real_delete(api_version, kind, name, *args, **kwargs)  # type: ignore[arg-type]

    child.delete = refuse_b  # type: ignore[method-assign]
    with pytest.raises(ReleaseDeferred) as deferred:
        await applier.cleanup(child, stored(parent, "d1"))
    assert "ConfigMap team-a/b (no longer deployed; not let go of): the child cluster's RBAC refused it" in str(
        deferred.value) and "team-a/a" not in str(deferred.value)
    assert child.find("ConfigMap", "team-a", "a") is None  # the rest let go of all the same
    assert namespace_mark(child) == f"{NS}.d1"  # our Namespace waits for b, our mark kept


async def test_our_namespace_waits_for_an_object_of_ours_not_let_go_of_in_the_same_pass() -> None:
    parent, child = FakeKube(description("d1", TEAM, cm("a"))), FakeKube()
    await deploy(parent, child, "d1")
    real_get, busy = child.get, [True]

    async def once_busy(api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        if kind == "ConfigMap" and busy:
            busy.clear()
            raise ApiException(503, "Service Unavailable")  # the child's API server, busy for a moment
        return await real_get(api_version, kind, name, namespace)

    child.get = once_busy  # type: ignore[method-assign]
    with pytest.raises(ReleaseDeferred) as deferred:
        await applier.cleanup(child, stored(parent, "d1"))
    # the same words at every pass (the objects of each pass only in the log): written to the status once, not at
    # each pass of a flaky child, whose each new text came back as an event that ran the cleanup again at once
    assert str(deferred.value) == applier.CLEANUP_RETRIED
    assert namespace_mark(child) == f"{NS}.d1" and child.find("ConfigMap", "team-a", "a") is not None
    released = await applier.cleanup(child, stored(parent, "d1"))  # the retry
    assert sorted(released.deleted) == ["ConfigMap team-a/a", "Namespace team-a"], released
    assert child.find("Namespace", None, "team-a") is None


WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "team-a"}}
WIDGETS_CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Namespaced",
                        "versions": [{"name": "v1", "served": True, "storage": True}]},
               "status": {"conditions": [{"type": "Established", "status": "True"}]}}


@pytest.mark.parametrize("error", [ApiException(401, "Unauthorized"), ApiException(403, "Forbidden"),
                                   ApiException(404, "Widget (example.com/v1) is not served by the API server now")])
async def test_an_object_that_cannot_be_read_is_not_counted_as_let_go_of(error: ApiException) -> None:
    """Review s39-a, F1: a 401 (the deployer's token refused), a 403 (its RBAC narrowed) or a cold API server's 404
    for a kind its CRD still serves was taken for "nothing of ours there": the cleanup ended, the Description's
    finalizer went, and the object stayed in the child, untracked."""
    parent, child = FakeKube(description("d1", WIDGET)), FakeKube(WIDGETS_CRD)
    await deploy(parent, child, "d1")
    fail_reads(child, error, lambda _, kind, __: kind == "Widget")
    with pytest.raises(ReleaseDeferred, match=r"Widget team-a/w \(cannot be read to let go of it\)"):
        await applier.cleanup(child, stored(parent, "d1"))
    assert child.find("Widget", "team-a", "w") is not None


async def test_an_object_whose_crd_is_gone_is_let_go_of() -> None:
    """A 404 for a kind no CRD serves any more: its objects went with the CRD; the cleanup does not wait on them."""
    parent, child = FakeKube(description("d1", WIDGET)), FakeKube(WIDGETS_CRD)
    await deploy(parent, child, "d1")
    del child.objects[("CustomResourceDefinition", "", "widgets.example.com")]
    del child.objects[("Widget", "team-a", "w")]
    fail_reads(child, ApiException(404, "Widget (example.com/v1) is not served by the API server now"),
               lambda *_: True)
    released = await applier.cleanup(child, stored(parent, "d1"))
    assert released.deleted == [] and not released.deferred


async def test_a_spec_object_never_deployed_that_cannot_be_read_does_not_hold_the_cleanup() -> None:
    """Review s39: the deployer may not read Secrets, so the Secret's apply failed and it never existed; the
    cleanup waited on it for ever (and held our Namespace), where the code before finished at once."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "team-a"}}
    parent, child = FakeKube(description("d1", TEAM, cm("a"), secret)), FakeKube()
    child.fail[("apply", "Secret")] = ApiException(403, "secrets is forbidden")
    await deploy(parent, child, "d1")
    assert status(parent)["phase"] == "Failure"
    fail_reads(child, ApiException(403, "secrets is forbidden"), lambda _, kind, __: kind == "Secret")
    released = await applier.cleanup(child, stored(parent, "d1"))
    assert sorted(released.deleted) == ["ConfigMap team-a/a", "Namespace team-a"], released


async def test_an_object_of_a_crd_no_longer_serving_its_version_is_not_counted_gone() -> None:
    """Review s39: the CRD stopped serving the version the object was deployed with, but still holds it (served
    under another version): a 404 for that version's path is no sign the object is gone."""
    parent, child = FakeKube(description("d1", WIDGET)), FakeKube(WIDGETS_CRD)
    await deploy(parent, child, "d1")
    crd = child.objects[("CustomResourceDefinition", "", "widgets.example.com")]
    crd["spec"]["versions"] = [{"name": "v2", "served": True, "storage": True}]
    fail_reads(child, ApiException(404, "Widget (example.com/v1) is not served by the API server now"),
               lambda *_: True)
    with pytest.raises(ReleaseDeferred):
        await applier.cleanup(child, stored(parent, "d1"))


async def test_an_object_whose_deployed_version_is_no_longer_served_is_let_go_of_where_it_is() -> None:
    """Re-review s39: a batch/v1beta1 CronJob after the child's upgrade to 1.25 (served as batch/v1 only) counted as
    gone; the Description's finalizer went and the CronJob kept running, untracked. It is looked for in the
    versions its group still serves, and deleted there."""
    cron = {"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "team-a"},
            "spec": {"schedule": "@daily"}}
    parent, child = FakeKube(description("d1", cron)), FakeKube()
    await deploy(parent, child, "d1")
    child.objects[("CronJob", "team-a", "nightly")]["apiVersion"] = "batch/v1"  # the child upgraded
    fail_reads(child, ApiException(404, "CronJob (batch/v1beta1) is not served by the API server now"),
               lambda api_version, *_: api_version == "batch/v1beta1")
    released = await applier.cleanup(child, stored(parent, "d1"))
    assert released.deleted == ["CronJob team-a/nightly"] and child.find("CronJob", "team-a", "nightly") is None
