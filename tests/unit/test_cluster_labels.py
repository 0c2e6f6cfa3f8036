"""The label policy: what a child may change on its ManagedCluster after registration, and what it is told; and
the agent asking for it again until the parent answers."""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
from typing import Any

import aiohttp
import pytest

from clusternet_agent import supervision
from clusternet_agent.labels import labels_patch, request_labels, verdict_of
from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_hub import registration
from clusternet_hub.clusterlabels import (
    FLAG,
    Refusal,
    allowed,
    describe,
    initial_from_request,
    parse_prefixes,
    plan,
    recorded_labels,
    valid_label,
    verdict,
)

CID = "5f6a0f2b-43ea-4a2b-9d8c-0a7d1e2c3b4a"
IDENTITY = registration.identity_labels(CID, "c1")


# --- prefixes -------------------------------------------------------------------------------------------------


def test_prefixes_parse_and_match_the_start_of_the_whole_key() -> None:
    assert parse_prefixes("") == ()
    assert parse_prefixes(" site.example.com/ , env,,") == ("site.example.com/", "env")
    prefixes = parse_prefixes("site.example.com/,env")
    assert allowed("site.example.com/rack", prefixes)
    assert allowed("env", prefixes) and allowed("env-tier", prefixes)
    assert not allowed("example.com/rack", prefixes)
    assert not allowed("team", prefixes)
    assert not allowed("anything", ())  # the default allows nothing


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("env", "dev", True), ("site.example.com/rack", "r-1", True), ("env", "", True),
    ("bad key", "v", False), ("env", "no spaces", False), ("Upper.Case/x", "v", False), ("/x", "v", False),
    ("k" * 64, "v", False), ("env", "v" * 64, False),
])
def test_label_syntax(key: str, value: str, ok: bool) -> None:
    assert valid_label(key, value) is ok


# --- the diff ---------------------------------------------------------------------------------------------------


def test_allowed_additions_changes_and_removals_are_applied_and_recorded() -> None:
    current = {**IDENTITY, "env": "dev", "zone": "a"}
    recorded = {"env": "dev", "zone": "a"}
    p = plan({"env": "prod", "tier": "gold"}, current, recorded, ("env", "tier", "zone"))
    assert p.labels_patch == {"env": "prod", "tier": "gold", "zone": None}
    assert p.from_request == {"env": "prod", "tier": "gold"}
    assert p.refused == ()


def test_without_prefixes_nothing_changes_after_registration() -> None:
    current = {**IDENTITY, "env": "dev", "zone": "a"}
    recorded = {"env": "dev", "zone": "a"}
    p = plan({"env": "prod", "secret-team": "yes"}, current, recorded, ())
    assert p.labels_patch == {}
    assert p.from_request == recorded  # the registration's labels stay, and stay the request's
    assert {(r.key, r.change, r.why) for r in p.refused} == {
        ("env", "change", "prefix"), ("secret-team", "add", "prefix"), ("zone", "remove", "prefix")}


def test_unchanged_request_is_a_no_op() -> None:
    p = plan({"env": "dev"}, {**IDENTITY, "env": "dev"}, {"env": "dev"}, ())
    assert p == type(p)({}, {"env": "dev"}, ())


def test_admin_labels_are_never_removed_or_overwritten() -> None:
    # `owner` and `env` were set by an admin on the ManagedCluster; `env` is even inside an allowed prefix
    current = {**IDENTITY, "owner": "platform", "env": "prod"}
    p = plan({"env": "dev"}, current, {}, ("env", "owner"))
    assert p.labels_patch == {}
    assert p.refused == (Refusal("env", "change", "dev", "admin"),)
    assert p.from_request == {}
    # the same value as the admin's is no conflict, but it stays the admin's: a later removal leaves it
    same = plan({"env": "prod"}, current, {}, ("env",))
    assert same.labels_patch == {} and same.refused == () and same.from_request == {}
    assert plan({}, current, same.from_request, ("env", "owner")).labels_patch == {}


def test_a_request_label_an_admin_changed_becomes_the_admins() -> None:
    current = {**IDENTITY, "env": "staging"}  # registered with env=dev, then an admin said staging
    p = plan({}, current, {"env": "dev"}, ("env",))
    assert p.labels_patch == {}  # not removed
    assert p.from_request == {}  # and no longer counted as the request's
    assert p.refused == ()


def test_a_request_label_an_admin_removed_is_not_put_back_silently() -> None:
    p = plan({"env": "dev"}, dict(IDENTITY), {"env": "dev"}, ())
    assert p.labels_patch == {} and p.from_request == {}
    assert p.refused == (Refusal("env", "add", "dev", "prefix"),)


def test_identity_labels_and_invalid_labels_are_refused_whatever_the_prefixes() -> None:
    everything = ("", "clusters.clusternet.io/", "clusternet.io/")  # even a prefix matching every key
    requested = {known.LABEL_CLUSTER_ID: "someone-else", known.LABEL_CREATED_BY: "me", "bad key": "x"}
    p = plan(requested, dict(IDENTITY), {known.LABEL_CLUSTER_ID: CID}, everything)
    assert p.labels_patch == {}
    assert {(r.key, r.why) for r in p.refused} == {
        (known.LABEL_CLUSTER_ID, "reserved"), (known.LABEL_CREATED_BY, "reserved"), ("bad key", "invalid")}
    assert known.LABEL_CLUSTER_ID not in p.from_request


def test_registration_labels_are_recorded_without_identity() -> None:
    assert initial_from_request({"env": "dev", known.LABEL_CLUSTER_ID: "x"}) == {"env": "dev"}
    assert initial_from_request(None) == {}
    # audit s36: an invalid one failed the ManagedCluster's create (422), retried every 2 s for good
    assert initial_from_request({"env": "prod us", "bad key!": "v", "tier": "web"}) == {"tier": "web"}
    crr = {"metadata": {"name": f"clusternet-{CID}"},
           "spec": {"clusterId": CID, "clusterName": "c1", "clusterLabels": {"env": "dev",
                                                                             known.LABEL_CLUSTER_NAME: "evil"}}}
    mc = registration.managed_cluster_manifest(crr, "clusternet-abcde")
    assert mc["metadata"]["labels"] == {**IDENTITY, "env": "dev"}
    assert recorded_labels(mc) == {"env": "dev"}


def test_recorded_labels_tolerate_absence_and_garbage() -> None:
    assert recorded_labels({"metadata": {}}) == {}
    for text in ("not json", "[1]", ""):
        assert recorded_labels({"metadata": {"annotations": {known.ANNOTATION_LABELS_FROM_REQUEST: text}}}) == {}


# --- what the child and the admin are told ---------------------------------------------------------------------


def test_refusals_name_the_key_and_the_flag_that_would_allow_it() -> None:
    refused = [Refusal("secret-team", "add", "yes", "prefix"), Refusal("zone", "remove", None, "prefix"),
               Refusal("owner", "change", "me", "admin")]
    text = describe(refused, ("env",))
    assert "add secret-team=yes" in text and "remove zone" in text and "change owner=me" in text
    assert FLAG in text and "(env)" in text and "administrator" in text
    assert "(none)" in describe(refused[:1], ())
    v = verdict(3, refused, ())
    assert v["observedGeneration"] == 3 and v["message"] == describe(refused, ())
    assert v["refused"][0] == {"key": "secret-team", "change": "add", "value": "yes", "reason": "prefix"}
    assert verdict(4, [], ())["message"] == ""


def _crr(generation: int, annotation: Any) -> dict[str, Any]:
    annotations = {} if annotation is None else {known.ANNOTATION_LABELS_VERDICT: annotation}
    return {"metadata": {"generation": generation, "annotations": annotations}}


def test_agent_reads_only_a_current_verdict() -> None:
    current = json.dumps(verdict(2, [Refusal("team", "add", "x", "prefix")], ()))
    assert verdict_of(_crr(2, current))["refused"][0]["key"] == "team"  # type: ignore[index]
    assert verdict_of(_crr(3, current)) is None  # about an older spec
    assert verdict_of(_crr(2, None)) is None
    assert verdict_of(_crr(2, "{garbled")) is None


def test_agent_asks_for_exactly_its_flag() -> None:
    assert labels_patch({"env": "dev"}, {"env": "dev"}) is None
    assert labels_patch(None, {}) is None
    assert labels_patch(None, {"env": "dev"}) == {"env": "dev"}
    assert labels_patch({"env": "dev", "team": "a"}, {"env": "prod"}) == {"env": "prod", "team": None}


class Parent:
    """The agent's own ClusterRegistrationRequest on a parent that raises `failures` in turn first; the hub
    answers a patch at once, applying everything."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.asked = 0
        self.crr: dict[str, Any] = {"metadata": {"name": f"clusternet-{CID}", "generation": 1},
                                    "spec": {"clusterLabels": {"env": "dev"}}}

    async def get(self, api_version: str, kind: str, name: str) -> dict[str, Any]:
        self.asked += 1
        if self.failures:
            raise self.failures.pop(0)
        return copy.deepcopy(self.crr)

    async def patch(self, api_version: str, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        labels = {**self.crr["spec"]["clusterLabels"], **body["spec"]["clusterLabels"]}
        self.crr["spec"]["clusterLabels"] = {k: v for k, v in labels.items() if v is not None}
        self.crr["metadata"]["generation"] += 1
        self.crr["metadata"]["annotations"] = {
            known.ANNOTATION_LABELS_VERDICT: json.dumps(verdict(self.crr["metadata"]["generation"], [], ()))}
        return copy.deepcopy(self.crr)


async def ask(parent: Parent, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the agent runs it: supervised, restarted at once here."""
    monkeypatch.setattr(supervision, "RESTART_FIRST_SECONDS", 0.0)
    run = functools.partial(request_labels, parent, CID, {"env": "prod"})  # type: ignore[arg-type]
    await asyncio.wait_for(supervision.supervised("the cluster label request", run), 5)


@pytest.mark.parametrize("failure", [ApiException(503, "the server is currently unable to handle the request"),
                                     ApiException(429, "too many requests"),
                                     aiohttp.ClientConnectionError("connection refused"), TimeoutError()])
async def test_labels_are_asked_again_after_a_failure_that_may_pass(
        failure: Exception, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A parent restarting when the agent started: the failure was logged and dropped, and new --cluster-labels
    were never asked for in this registration (review 6, finding 10)."""
    parent = Parent(failure)
    with caplog.at_level(logging.INFO):
        await ask(parent, monkeypatch)
    assert parent.crr["spec"]["clusterLabels"] == {"env": "prod"}
    assert parent.asked == 2
    assert "the cluster label request failed; starting it again" in caplog.text
    assert "the parent applied the requested cluster labels" in caplog.text


async def test_an_old_hub_that_forbids_the_request_is_told_once_not_asked_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    parent = Parent(ApiException(403, "clusterregistrationrequests is forbidden"), ApiException(422, "invalid"))
    with caplog.at_level(logging.WARNING):
        await ask(parent, monkeypatch)
        await ask(parent, monkeypatch)  # another refusal asking again would not change: one warning too
    assert parent.crr["spec"]["clusterLabels"] == {"env": "dev"} and parent.asked == 2
    messages = [r.getMessage() for r in caplog.records]
    assert "the hub may be older than this agent" in messages[0]
    assert messages[1] == "asking the parent for cluster labels failed with HTTP 422"
    assert len(messages) == 2  # nothing restarted


# --- the child's rights and the pinned request ---------------------------------------------------------------


def test_child_may_write_only_the_status_of_its_managed_cluster_and_patch_only_its_own_request() -> None:
    objs = registration.rbac_manifests(CID, "clusternet-abcde", "c1")
    crr_rules = [r for r in objs[0]["rules"] if r["resources"] == ["clusterregistrationrequests"]]
    assert crr_rules == [{"apiGroups": [known.CLUSTERS_GROUP], "resources": ["clusterregistrationrequests"],
                          "resourceNames": [f"clusternet-{CID}"], "verbs": ["get", "patch"]}]
    role = next(o for o in objs if o["kind"] == "Role")
    verbs = {r["resources"][0]: set(r["verbs"]) for r in role["rules"] if r["apiGroups"] == [known.CLUSTERS_GROUP]}
    assert verbs["managedclusters"] == {"get", "list", "watch"}
    assert {"patch", "update"} <= verbs["managedclusters/status"]


def test_an_approved_request_is_pinned_to_what_was_approved() -> None:
    approved = {"metadata": {"name": f"clusternet-{CID}", "generation": 5},
                "spec": {"clusterId": "00000000-0000-4000-8000-000000000000", "clusterName": "elsewhere",
                         "clusterNamespace": "kube-system", "syncMode": "Push", "clusterType": "EdgeCluster",
                         "clusterLabels": {"team": "theirs"}},
                "status": {"result": "Approved", "dedicatedNamespace": "clusternet-abcde", "managedClusterName": "c1"}}
    view = registration.pinned(approved)
    assert view["spec"]["clusterId"] == CID
    assert registration.dedicated_namespace_name(view) == "clusternet-abcde"
    assert registration.cluster_name(view) == "c1"
    assert "clusterLabels" not in view["spec"]
    assert registration.validate(view, allow_unsealed=True) is None  # a tampered spec denies nothing
    assert approved["spec"]["clusterNamespace"] == "kube-system"  # the original is left as it was
    pending = {**approved, "status": {}}
    assert registration.pinned(pending) is pending
