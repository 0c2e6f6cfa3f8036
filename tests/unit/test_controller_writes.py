"""Which writes the hub can skip: unchanged Bases and Descriptions, Descriptions already deployed."""

from __future__ import annotations

import copy

import pytest

from clusternet_api import applier, known
from clusternet_api.kube import Obj
from clusternet_core.plan import ANNOTATION_INPUTS_HASH, ANNOTATION_RENDER_ERRORS, needs_apply
from clusternet_hub.controller.store import Store

OWNER = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Base", "name": "app-1", "uid": "u1",
         "controller": True, "blockOwnerDeletion": True}


def description_body() -> Obj:
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Description",
            "metadata": {"name": "app-1-generic", "namespace": "clusternet-abc",
                         "labels": {known.LABEL_SUBS_NAME: "app"},
                         "annotations": {ANNOTATION_INPUTS_HASH: "h1", ANNOTATION_RENDER_ERRORS: ""},
                         "finalizers": [known.FINALIZER_APPS], "ownerReferences": [OWNER]},
            "spec": {"deployer": "Generic", "raw": ["e30="]}}


def stored(body: Obj) -> Obj:
    """The object as the parent returns it: the body plus what the server and others add."""
    obj = copy.deepcopy(body)
    meta = obj["metadata"]
    meta.update(uid="d1", resourceVersion="7", generation=1)
    meta["labels"]["team"] = "someone-else"
    meta["annotations"]["note"] = "added by a person"
    meta["finalizers"].append("example.com/other")
    obj["status"] = {"phase": "Success"}
    return obj


def test_nothing_to_write_when_the_stored_object_holds_all_the_hub_wants() -> None:
    body = description_body()
    assert not needs_apply(stored(body), body)


def test_a_missing_object_or_any_change_of_the_hubs_intent_is_written() -> None:
    body = description_body()
    assert needs_apply(None, body)
    for change in (lambda o: o["spec"]["raw"].append("e30="),
                   lambda o: o["metadata"]["labels"].update({known.LABEL_SUBS_NAME: "other"}),
                   lambda o: o["metadata"]["annotations"].update({ANNOTATION_INPUTS_HASH: "h0"}),
                   lambda o: o["metadata"]["finalizers"].clear(),
                   lambda o: o["metadata"].update(ownerReferences=[{**OWNER, "uid": "old-base"}])):
        existing = stored(body)
        change(existing)
        assert needs_apply(existing, body)


def test_an_annotation_the_hub_stopped_setting_is_a_change() -> None:
    """Drift correction switched back on: the opt-out annotation must be removed, so it is written."""
    body = description_body()
    existing = stored(body)
    existing["metadata"]["annotations"][applier.ANNOTATION_DRIFT_CORRECTION] = "false"
    assert needs_apply(existing, body)


def test_a_description_is_deployed_only_with_success_for_its_current_generation() -> None:
    desc = {"metadata": {"generation": 3}, "status": {"phase": "Success", "observedGeneration": 3}}
    assert applier.deployed(desc)
    assert not applier.deployed({**desc, "status": {"phase": "Success", "observedGeneration": 2}})
    assert not applier.deployed({**desc, "status": {"phase": "Failure", "observedGeneration": 3}})
    assert not applier.deployed({**desc, "status": {"phase": "Success"}})
    assert not applier.deployed({"metadata": {"generation": 1}})


def test_the_status_written_names_the_generation_it_reports_on() -> None:
    outcome = applier.ApplyOutcome("Success", None, statuses=[{"kind": "ConfigMap", "name": "a"}])
    assert outcome.status_patch(4) == {"phase": "Success", "reason": None, "observedGeneration": 4,
                                       "manifestStatuses": [{"kind": "ConfigMap", "name": "a"}]}


def test_a_base_deleted_by_someone_else_brings_its_subscription_back() -> None:
    d = Store({})
    sub = {"metadata": {"name": "app", "namespace": "default", "uid": "s1"}}
    d.caches.subscriptions[("default", "app")] = sub
    base = {"metadata": {"name": "app-1", "namespace": "clusternet-abc", "labels": {
        known.LABEL_SUBS_NAME: "app", known.LABEL_SUBS_NAMESPACE: "default"}}}
    d.on_base("MODIFIED", base)
    assert d.caches.bases[("clusternet-abc", "app-1")] is base and not d.queue.drain()
    d.on_base("DELETED", base)
    assert ("clusternet-abc", "app-1") not in d.caches.bases
    assert d.queue.drain() == [(("sub", "default", "app"), False)]
    # ... but not while the Subscription itself is being deleted (its Bases go on purpose)
    sub["metadata"]["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    d.on_base("MODIFIED", base)
    d.on_base("DELETED", base)
    assert not d.queue.drain()


async def test_an_unchanged_status_is_not_written_again() -> None:
    writes: list[tuple[str, object]] = []

    class Parent:
        async def patch(self, *args: object, **kwargs: object) -> Obj:
            writes.append(("patch", args[3]))
            return {}

        async def create(self, obj: Obj, namespace: str | None = None) -> Obj:
            writes.append(("event", obj.get("reason")))
            return {}

    outcome = applier.ApplyOutcome("Success", None, statuses=[{"kind": "ConfigMap", "name": "a"}])
    desc: Obj = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Description",
                 "metadata": {"name": "d", "namespace": "ns", "generation": 2, "uid": "u"}}
    await applier.report(Parent(), desc, outcome, "test")  # type: ignore[arg-type]
    assert [w[0] for w in writes] == ["patch", "event"]
    desc["status"] = {"phase": "Success", "observedGeneration": 2,
                      "manifestStatuses": [{"kind": "ConfigMap", "name": "a"}]}  # what that patch stored
    writes.clear()
    await applier.report(Parent(), desc, outcome, "test")  # type: ignore[arg-type]
    assert writes == []  # a resync that changed nothing writes nothing
    desc["metadata"]["generation"] = 3
    await applier.report(Parent(), desc, outcome, "test")  # type: ignore[arg-type]
    assert [w[0] for w in writes] == ["patch"]


async def test_a_parent_dropping_observed_generation_is_said_once(caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s31, F6: a Description CRD older than observedGeneration (or Clusternet's) prunes it, and a Success
    then counts for whatever generation the child applied, without a word."""
    from clusternet_api import prunedfields
    from tests.unit.fakekube import FakeKube

    class Pruning(FakeKube):
        async def patch(self, api_version: str, kind: str, name: str, body: object, namespace: str | None = None,
                        *, subresource: str | None = None,
                        content_type: str = "application/merge-patch+json") -> Obj:
            assert isinstance(body, dict)
            if subresource == "status":
                body = {"status": {k: v for k, v in body["status"].items() if k != "observedGeneration"}}
            return await super().patch(api_version, kind, name, body, namespace, subresource=subresource,
                                       content_type=content_type)

    monkeypatch.setattr(prunedfields, "_warned", set())
    desc = {**description_body(), "metadata": {**description_body()["metadata"], "generation": 2, "uid": "d1"}}
    parent = Pruning(copy.deepcopy(desc))
    outcome = applier.ApplyOutcome("Success", None, statuses=[])
    for _ in range(2):
        await applier.report(parent, parent.find("Description", "clusternet-abc", "app-1-generic") or {}, outcome,
                             known.CREATED_BY_HUB)
    assert caplog.text.count("Description CRD has no status.observedGeneration") == 1
