"""Pure logic of registration, health, heartbeats, proxy headers, sealing and option parsing."""

from __future__ import annotations

import datetime
import logging

import pytest

from clusternet_agent.heartbeat import node_statistics, report, status_patch, sum_resources
from clusternet_agent.options import AgentOptions, OptionsError, parse_feature_gates, parse_labels
from clusternet_agent.registration import token_expiry
from clusternet_agent.tunnel import tunnel_url
from clusternet_api import known
from clusternet_api.durations import parse_duration
from clusternet_api.kube import ApiException
from clusternet_api.logs import RedactingFilter, redact
from clusternet_api.quantity import format_quantity, parse_quantity
from clusternet_api.sealing import generate_private_key, public_key_of
from clusternet_hub import health, registration, tokens
from clusternet_hub.proxy import ProxyError, upstream_headers

CID = "5f6a0f2b-43ea-4a2b-9d8c-0a7d1e2c3b4a"
NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.UTC)


AGENT_KEY = public_key_of(generate_private_key())


def crr(name: str = f"clusternet-{CID}", **spec: object) -> dict[str, object]:
    return {"metadata": {"name": name, "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: AGENT_KEY}},
            "spec": {"clusterId": CID, **spec}}


# --- hub: registration -------------------------------------------------------------------------------------


def test_valid_request_passes() -> None:
    assert registration.validate(crr(), allow_unsealed=False) is None


@pytest.mark.parametrize(("request_", "message"), [
    (crr(name="clusternet-other"), "does not match its clusterId"),
    (crr(clusterNamespace="kube-system"), "reserved"),
    (crr(clusterNamespace="Not_A_Namespace"), "not a valid namespace"),
    (crr(clusterName="Child_1"), "cannot name a ManagedCluster"),  # the create's 422 was retried for good
    (crr(clusterName="a" * 64), "cannot name a ManagedCluster"),
    ({"metadata": {"name": "clusternet-x"}, "spec": {"clusterId": "x"}}, "is not a UUID"),
])
def test_invalid_requests_are_explained(request_: dict[str, object], message: str) -> None:
    assert message in (registration.validate(request_, allow_unsealed=True) or "")


def test_a_cluster_name_valid_before_stays_valid() -> None:
    """Looser than Clusternet's agent (a DNS label): a dotted name a hand-made request was approved with before is
    not refused at the next look, which would revoke the cluster."""
    assert registration.validate(crr(clusterName="edge.child-1"), allow_unsealed=False) is None


def test_request_without_public_key_needs_opt_in() -> None:
    unsealed = {"metadata": {"name": f"clusternet-{CID}"}, "spec": {"clusterId": CID}}
    assert "--allow-unsealed-tokens" in (registration.validate(unsealed, allow_unsealed=False) or "")
    assert registration.validate(unsealed, allow_unsealed=True) is None


def test_dedicated_namespace_is_stable_and_honours_the_request() -> None:
    assert registration.dedicated_namespace_name(crr()) == registration.dedicated_namespace_name(crr())
    assert registration.dedicated_namespace_name(crr()).startswith("clusternet-")
    assert registration.dedicated_namespace_name(crr(clusterNamespace="team-a")) == "team-a"


def test_child_rbac_is_confined_to_its_own_objects() -> None:
    objs = registration.rbac_manifests(CID, "clusternet-abcde", "c1")
    cluster_role = objs[0]
    for rule in cluster_role["rules"]:  # only its own CRR, socket and namespace
        assert rule["resourceNames"] in ([f"clusternet-{CID}"], [CID], ["clusternet-abcde"])
        assert rule["resources"] != ["namespaces"] or rule["verbs"] == ["get"]
    role = next(o for o in objs if o["kind"] == "Role")
    assert role["metadata"]["namespace"] == "clusternet-abcde"
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if rule["resources"] == ["secrets"] and rule["verbs"] != ["create"]:
            assert rule["resourceNames"] in (["child-cluster-deployer"], ["clusternet-chart-pull-secrets"])
            if rule["resourceNames"] == ["clusternet-chart-pull-secrets"]:
                assert rule["verbs"] == ["get"]  # read only: the hub writes the chart credentials
        if "bases" in rule["resources"]:  # the agent only reads its Bases (audit s36: it could edit them)
            assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_token_refresh_is_due_at_half_life() -> None:
    issued = {"metadata": {"annotations": {known.ANNOTATION_TOKEN_ISSUED_AT: "2026-11-24T00:00:00Z"}}}
    assert not tokens.token_is_due(issued, 86400, NOW - datetime.timedelta(hours=1))
    assert tokens.token_is_due(issued, 86400, NOW)
    assert tokens.token_is_due({"metadata": {}}, 86400, NOW)


def test_an_issue_time_the_agent_wrote_cannot_put_off_its_refresh() -> None:
    """The agent may patch its own request, this annotation included (review of the revocation)."""
    def at(value: str) -> dict[str, object]:
        return {"metadata": {"annotations": {known.ANNOTATION_TOKEN_ISSUED_AT: value}}}

    assert tokens.token_is_due(at("2099-01-01T00:00:00Z"), 86400, NOW)
    assert tokens.token_is_due(at("not a time"), 86400, NOW)  # it raised at every refresh pass
    assert not tokens.token_is_due(at("2026-11-24T12:01:00Z"), 86400, NOW)  # another replica's clock
    # "now" written again and again: the issue time in the status, which only the hub writes, still says due
    postponed = {**at("2026-11-24T11:59:00Z"), "status": {"tokenIssuedAt": "2026-11-23T00:00:00Z"}}
    assert tokens.token_is_due(postponed, 86400, NOW)
    assert not tokens.token_is_due({**postponed, "status": {"tokenIssuedAt": "2026-11-24T11:00:00Z"}},
                                         86400, NOW)


def test_an_agent_cannot_make_the_hub_reissue_its_token_again_and_again() -> None:
    """The sixth audit: ten annotation writes in 12 s gave ten re-issues of about ten parent requests each."""
    just_issued = {"status": {"tokenIssuedAt": "2026-11-24T11:59:30Z"}}  # 30 s before NOW, by the hub
    for annotation in (None, "not a time", "2000-01-01T00:00:00Z", "2099-01-01T00:00:00Z"):
        crr = {"metadata": {"annotations": {known.ANNOTATION_TOKEN_ISSUED_AT: annotation} if annotation else {}},
               **just_issued}
        assert not tokens.token_is_due(crr, 86400, NOW), annotation
        assert tokens.token_is_due(crr, 86400, NOW + datetime.timedelta(seconds=tokens.REISSUE_FLOOR)), annotation


# --- hub: health -------------------------------------------------------------------------------------------


def mc(last: str | None, ready: str | None = "True", taints: list[dict[str, str]] | None = None,
       freq: int = 10) -> dict[str, object]:
    status: dict[str, object] = {"heartbeatFrequencySeconds": freq, "readyz": True, "livez": True, "healthz": True}
    if last:
        status["lastObservedTime"] = last
    if ready:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "ManagedClusterReady"}]
    return {"metadata": {"name": "c", "namespace": "n", "creationTimestamp": "2026-11-24T11:00:00Z"},
            "spec": {"taints": taints or []}, "status": status}


def test_fresh_heartbeat_changes_nothing() -> None:
    change = health.evaluate(mc("2026-11-24T11:59:50Z"), NOW, silence=10)
    assert change.status is None and change.taints is None


def test_silence_beyond_three_periods_turns_unknown_and_taints() -> None:
    change = health.evaluate(mc("2026-11-24T11:59:00Z"), NOW, silence=31)  # 31 s > 3 x 10 s
    assert change.status is not None
    assert change.status["readyz"] is False and change.status["livez"] is False
    cond = change.status["conditions"][-1]
    assert cond["status"] == "Unknown" and cond["reason"] == known.REASON_STATUS_UNKNOWN
    assert cond["message"].startswith("no heartbeat from the cluster agent for 31s")
    assert "2026-11-24T11:59:00Z" in cond["message"]  # the child's stamp, shown, not judged
    assert change.taints == [{"key": known.TAINT_UNSCHEDULABLE, "value": known.REASON_STATUS_UNKNOWN,
                              "effect": "NoSchedule", "timeAdded": "2026-11-24T12:00:00Z"}]


def test_the_childs_timestamp_is_shown_never_compared_with_the_hubs_clock() -> None:
    """The silence the hub observed decides; lastObservedTime is the child's clock (review 6, finding 7): an
    hour old by the hub's clock yet just arrived is fresh, and one an hour ahead after 31 s of silence is not."""
    assert health.evaluate(mc("2026-11-24T11:00:00Z"), NOW, silence=1).status is None
    assert health.evaluate(mc("2026-11-24T13:00:00Z"), NOW, silence=31).status is not None


def test_never_reported_cluster_says_so() -> None:
    change = health.evaluate(mc(None, ready=None), NOW, silence=31)
    assert change.status is not None
    assert change.status["conditions"][-1]["reason"] == known.REASON_NEVER_UPDATED
    assert health.evaluate(mc(None, ready=None), NOW, silence=29) == health.HealthPatch(None, None)  # not yet


def test_recovered_cluster_loses_the_taint_and_keeps_others() -> None:
    other = {"key": "team", "value": "x", "effect": "NoSchedule"}
    taint = {"key": known.TAINT_UNSCHEDULABLE, "value": "x", "effect": "NoSchedule"}
    change = health.evaluate(mc("2026-11-24T11:59:55Z", taints=[other, taint]), NOW, silence=5)
    assert change.taints == [other]


def test_a_hub_judges_no_heartbeat_before_it_has_watched_for_a_grace_period() -> None:
    """A restarted hub, or one that just regained the parent, saw no heartbeat arrive yet: no verdict."""
    seen = health.Observation()
    key = ("n", "c")
    seen.parent_reached(1000.0)
    seen.saw(key, mc("2026-11-24T11:00:00Z"), 1000.0)  # an hour-old report, in the hub's first listing
    assert seen.silence(key, 1000.0) == 0
    assert seen.silence(key, 1020.0) == 20  # not yet (grace 30 s) ...
    assert seen.silence(key, 1031.0) == 31  # ... now


def test_only_a_new_report_is_a_heartbeat() -> None:
    """A report counts when lastObservedTime changes, whichever way the child's clock moved; a write that
    leaves it alone (the hub's verdict, its SocketConnected mark, its taints, a label) does not."""
    seen = health.Observation()
    key = ("n", "c")
    seen.parent_reached(1000.0)
    seen.saw(key, mc("2026-11-24T11:59:50Z"), 1000.0)
    seen.saw(key, mc("2026-11-24T11:59:50Z", ready="Unknown", taints=[{"key": "x"}]), 1020.0)
    assert seen.silence(key, 1031.0) == 31
    seen.saw(key, mc("2026-11-24T11:59:40Z"), 1031.0)  # a child clock stepped back still reports
    assert seen.silence(key, 1032.0) == 1
    seen.saw(key, mc(None), 1040.0)  # (a status cleared: also a change, as the hub cannot tell who cleared it)
    assert seen.silence(key, 1040.0) == 0


def test_observation_restarts_when_the_parent_was_lost() -> None:
    seen = health.Observation()
    key = ("n", "c")
    assert seen.silence(key, 1000.0) is None  # never reached the parent: nothing to judge
    seen.parent_reached(700.0)
    assert seen.silence(key, 1000.0) == 0  # first seen now
    assert seen.silence(key, 1600.0) == 600
    seen.parent_lost()
    assert seen.silence(key, 1600.0) is None
    seen.parent_reached(1600.0)
    seen.parent_reached(1660.0)  # still the same unbroken contact
    assert seen.silence(key, 1720.0) == 120
    seen.saw(key, mc("2026-11-24T11:59:50Z"), 1720.0)
    assert seen.silence(key, 1730.0) == 10
    seen.forget(key)
    assert seen.silence(key, 1780.0) == 0 and key not in seen.reports


# --- agent: heartbeat --------------------------------------------------------------------------------------


def node(ready: str | None, cpu: str, memory: str) -> dict[str, object]:
    conds = [{"type": "Ready", "status": ready}] if ready else []
    return {"status": {"conditions": conds, "capacity": {"cpu": cpu, "memory": memory, "ephemeral": "1"},
                       "allocatable": {"cpu": cpu, "memory": memory}}}


def test_node_statistics_and_capacity() -> None:
    nodes = [node("True", "2", "4Gi"), node("False", "500m", "1024Ki"), node("Unknown", "1", "1Gi"),
             node(None, "1", "1Gi")]
    assert node_statistics(nodes) == {"readyNodes": 1, "notReadyNodes": 1, "unknownNodes": 1, "lostNodes": 1}
    assert sum_resources(nodes, "capacity") == {"cpu": "4500m", "memory": "6292480Ki"}


def test_status_patch_keeps_conditions_of_others_and_the_transition_time() -> None:
    current = {"status": {"conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Custom", "status": "True"}]}}
    observed = {"healthz": True, "livez": True, "readyz": True}
    patch = status_patch(observed, current, tunnel_up=True)
    types = {c["type"]: c for c in patch["conditions"]}
    assert types["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert "Custom" in types and types[known.CONDITION_SOCKET]["status"] == "True"
    assert status_patch({"healthz": False, "livez": True, "readyz": False}, None)["conditions"][0]["status"] == "False"
    # a tunnel still connecting (state unknown: None) writes no SocketConnected, and keeps the hub's
    hub_marked = {"status": {"conditions": [{"type": known.CONDITION_SOCKET, "status": "True"}]}}
    kept = status_patch(observed, hub_marked, tunnel_up=None)["conditions"]
    assert [c for c in kept if c["type"] == known.CONDITION_SOCKET] == [{"type": known.CONDITION_SOCKET,
                                                                         "status": "True"}]


class RacingParent:
    """A parent on which the hub marks the tunnel connected between the agent's read and its write."""

    def __init__(self, tunnel: dict[str, bool]) -> None:
        self.tunnel, self.rv, self.patches = tunnel, 1, 0
        self.conditions: list[dict[str, object]] = []
        self.cached: list[bool] = []

    async def get(self, *_: object, cached: bool = False) -> dict[str, object]:
        self.cached.append(cached)
        return {"metadata": {"resourceVersion": str(self.rv)}, "status": {"conditions": list(self.conditions)}}

    async def patch(self, _api: str, _kind: str, _name: str, body: dict, *_: object, **__: object) -> dict:  # type: ignore[type-arg]
        self.patches += 1
        if self.patches == 1:  # the tunnel came up and the hub wrote SocketConnected=True meanwhile
            self.tunnel["up"], self.rv = True, self.rv + 1
            self.conditions = [{"type": known.CONDITION_SOCKET, "status": "True"}]
        if body["metadata"]["resourceVersion"] != str(self.rv):
            raise ApiException(409, "conflict")
        self.conditions = body["status"]["conditions"]
        return {}


async def test_report_never_writes_a_stale_tunnel_state_over_the_hubs() -> None:
    tunnel = {"up": False}
    parent = RacingParent(tunnel)
    await report(parent, "ns", "mc", {"healthz": True, "livez": True, "readyz": True},  # type: ignore[arg-type]
                 lambda: tunnel["up"])
    socket = next(c for c in parent.conditions if c["type"] == known.CONDITION_SOCKET)
    assert parent.patches == 2 and socket["status"] == "True"
    assert parent.cached == [True, False]  # the watch cache first; after a conflict, storage


# --- proxy headers -----------------------------------------------------------------------------------------


def test_direct_bearer_token_passes_to_the_child() -> None:
    out = upstream_headers({"Authorization": "Bearer child", "Host": "hub", "Accept": "a/b"}, False)
    assert dict(out) == {"Authorization": "Bearer child", "Accept": "a/b"}


def test_clusternet_impersonation_becomes_the_child_token() -> None:
    out = upstream_headers({"Authorization": "Bearer parent", "Impersonate-User": "clusternet",
                            "Impersonate-Extra-Clusternet-Token": "child",
                            "Impersonate-Extra-Clusternet-Impersonate-User": "alice"}, False)
    assert dict(out) == {"Authorization": "Bearer child", "Impersonate-User": "alice"}


def test_repeated_extras_become_repeated_child_headers() -> None:
    """`kubectl clusternet --clusternet-as-group a --clusternet-as-group b`: the aggregation layer sends one
    X-Remote-Extra header per value, and the child must get every group."""
    out = upstream_headers([("X-Remote-User", "clusternet"), ("X-Remote-Extra-Clusternet-Token", "child"),
                            ("X-Remote-Extra-Clusternet-Impersonate-User", "alice"),
                            ("X-Remote-Extra-Clusternet-Impersonate-Group", "a"),
                            ("X-Remote-Extra-Clusternet-Impersonate-Group", "b"),
                            ("X-Remote-Extra-Clusternet-Impersonate-Uid", "42")], True)
    assert sorted(out) == [("Authorization", "Bearer child"), ("Impersonate-Group", "a"),
                           ("Impersonate-Group", "b"), ("Impersonate-Uid", "42"), ("Impersonate-User", "alice")]


def test_front_proxy_extras_are_trusted_only_from_the_front_proxy() -> None:
    headers = {"X-Remote-User": "clusternet", "X-Remote-Extra-Clusternet-Token": "child"}
    assert upstream_headers(headers, True) == [("Authorization", "Bearer child")]
    with pytest.raises(ProxyError) as e:
        upstream_headers(headers, False)
    assert e.value.status == 401


# --- agent options, tokens, tunnel URL ---------------------------------------------------------------------


def test_options_refuse_what_would_fail_later() -> None:
    with pytest.raises(OptionsError, match="https"):
        AgentOptions(parent_url="http://parent:6443").validate()
    with pytest.raises(OptionsError, match="AppPusher"):
        AgentOptions(parent_url="https://parent:6443", sync_mode="Push").validate()
    with pytest.raises(OptionsError, match="bootstrap token"):
        AgentOptions(parent_url="https://parent:6443", reg_token="not a token").validate()
    AgentOptions(parent_url="https://parent:6443", reg_token="07401b.f395accd246ae52d").validate()


def test_labels_and_gates_parse_like_clusternet() -> None:
    assert parse_labels("env=dev, team=a") == {"env": "dev", "team": "a"}
    assert parse_feature_gates("AppPusher=true,SocketConnection=false") == {
        "AppPusher": True, "SocketConnection": False}
    for bad, parser in (("env", parse_labels), ("Nope=true", parse_feature_gates),
                        ("AppPusher=yes", parse_feature_gates)):
        with pytest.raises(OptionsError):
            parser(bad)


def test_tunnel_url_defaults_to_the_parent() -> None:
    assert tunnel_url("https://parent:6443", CID) == \
        f"wss://parent:6443/apis/proxies.clusternet.io/v1alpha1/sockets/{CID}"
    assert tunnel_url("https://parent:6443", CID, "https://hub:10443") == \
        f"wss://hub:10443/apis/proxies.clusternet.io/v1alpha1/sockets/{CID}"


def test_a_plain_http_tunnel_url_is_refused() -> None:
    """The agent dialled ws:// with its parent token in the header, though the parent URL refuses http (audit s35)."""
    token = "abcdef.0123456789abcdef"
    for url in ("http://hub:8080", "ws://hub:8080", "hub:8080"):
        with pytest.raises(OptionsError, match="--tunnel-url must be an https://"):
            AgentOptions(parent_url="https://parent:6443", reg_token=token, tunnel_url=url).validate()
    AgentOptions(parent_url="https://parent:6443", reg_token=token, tunnel_url="https://hub:10443").validate()


def test_token_expiry_reads_the_jwt() -> None:
    import base64
    import json

    payload = base64.urlsafe_b64encode(json.dumps({"exp": 1234}).encode()).decode().rstrip("=")
    assert token_expiry(f"h.{payload}.s") == 1234
    assert token_expiry("07401b.f395accd246ae52d") is None


async def test_a_refresh_never_asks_for_a_longer_token_than_the_hub_issued() -> None:
    """Every refresh asked for 24 h: a hub's --agent-token-ttl=1h gave agents 24-hour tokens (audit s35)."""
    import base64
    import json
    import time
    from typing import Any

    from clusternet_agent import registration as agent_registration
    from clusternet_api.kube import Credentials

    def jwt(claims: dict[str, Any]) -> str:
        return "h." + base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=") + ".s"

    class Parent:
        def __init__(self) -> None:
            self.bodies: list[Any] = []

        async def raw(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
            self.bodies.append(body)
            return 201, {"status": {"token": "fresh"}}

    now = time.time()
    for issued, expected in ((3600, 3600), (86400 * 7, 86400), (300, 600)):
        token = jwt({"iat": now - issued + 100, "exp": now + 100})  # due: 100 s left
        access = agent_registration.ParentAccess(Credentials("https://parent", token=token), "ns", "mc", "cid")
        parent = Parent()
        assert await agent_registration.refresh_token(access, parent, 86400) == "fresh"  # type: ignore[arg-type]
        assert parent.bodies[0]["spec"]["expirationSeconds"] == expected


# --- redaction, durations, quantities ---------------------------------------------------------------------


def test_tokens_are_redacted_from_any_log_record(caplog: pytest.LogCaptureFixture) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZw"
    assert "eyJ" not in redact(f"token {jwt}")
    assert "f395accd246ae52d" not in redact("using 07401b.f395accd246ae52d")
    assert "abc" not in redact("Authorization: Bearer abcdefghijkl")
    logger = logging.getLogger("test-redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test-redaction"):
        logger.info("got %s", jwt)
    assert jwt not in caplog.text and "[REDACTED]" in caplog.text


@pytest.mark.parametrize(("text", "seconds"), [("20s", 20), ("3m", 180), ("1h30m", 5400), ("500ms", 0.5),
                                               ("2", 2)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_is_explained() -> None:
    with pytest.raises(ValueError, match="20s, 3m"):
        parse_duration("3 minutes")


def test_quantities_round_trip() -> None:
    assert format_quantity(parse_quantity("1500m") + parse_quantity("1")) == "2500m"
    assert format_quantity(parse_quantity("1Gi")) == "1048576Ki"
    assert format_quantity(parse_quantity("3")) == "3"


IGNORED = (f"its {known.ANNOTATION_APPROVAL} annotation is ignored: it does not name this request's uid in "
           f"{known.ANNOTATION_APPROVED_UID}, so its own requester may have written it at creation")


@pytest.mark.parametrize(("annotations", "expected"), [
    ({}, (None, None)),
    ({known.ANNOTATION_APPROVAL: "Approved", known.ANNOTATION_APPROVED_UID: "uid-1"}, ("Approved", None)),
    ({known.ANNOTATION_APPROVAL: "approved ", known.ANNOTATION_APPROVED_UID: " uid-1"}, ("Approved", None)),
    # the sixth audit: the registration token created its request already approved (no uid known then)
    ({known.ANNOTATION_APPROVAL: "Approved"}, (None, IGNORED)),
    ({known.ANNOTATION_APPROVAL: "Approved", known.ANNOTATION_APPROVED_UID: "uid-of-another"}, (None, IGNORED)),
    ({known.ANNOTATION_APPROVAL: "Denied"}, ("Denied", "denied by a parent cluster administrator")),
    ({known.ANNOTATION_APPROVAL: "Denied", known.ANNOTATION_DENIAL_REASON: "unknown site"},
     ("Denied", "denied by a parent cluster administrator: unknown site")),
    ({known.ANNOTATION_APPROVAL: "maybe"}, (None, None)),
])
def test_admin_verdict(annotations: dict[str, str], expected: tuple[str | None, str | None]) -> None:
    request_ = crr()
    request_["metadata"]["uid"] = "uid-1"  # type: ignore[index]
    request_["metadata"]["annotations"] = {**request_["metadata"].get("annotations", {}), **annotations}
    assert registration.admin_verdict(request_) == expected


def test_awaiting_message_tells_the_admin_what_to_run() -> None:
    message = registration.awaiting_message(crr())
    assert f"kubectl clusternet approve clusternet-{CID}" in message and "deny" in message


async def test_rbac_roles_are_written_before_bindings_and_a_binding_waits_for_its_role(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `bind`, the apiserver answers a binding with 404 (role not found) until the role it refers to has
    reached its RBAC cache; the hub's own ServiceAccount (deploy/hub) sees that on every first registration."""
    from typing import Any, cast

    from clusternet_api.kube import ApiException, Kube

    monkeypatch.setattr(registration, "BINDING_RETRY_SECONDS", 0)
    applied: list[str] = []
    refused: dict[str, int] = {"RoleBinding": 2}

    class Api:
        async def apply(self, obj: dict[str, Any], field_manager: str) -> dict[str, Any]:
            if refused.get(obj["kind"]):
                refused[obj["kind"]] -= 1
                raise ApiException(404, 'roles.rbac.authorization.k8s.io "clusternet-managedcluster-role" not found')
            applied.append(obj["kind"])
            return obj

    await registration.apply_rbac(cast(Kube, Api()), registration.rbac_manifests(CID, "clusternet-abcde", "c1"))
    assert sorted(applied[:2]) == ["ClusterRole", "Role"]
    assert sorted(applied[2:]) == ["ClusterRoleBinding", "RoleBinding"]
    refused["ClusterRoleBinding"] = registration.BINDING_RETRIES
    with pytest.raises(ApiException):
        await registration.apply_rbac(cast(Kube, Api()), registration.rbac_manifests(CID, "clusternet-abcde", "c1"))


class FakeParent:
    """Just enough of a parent for registration.approve: objects by (kind, namespace, name)."""

    def __init__(self, *objects: dict[str, object]) -> None:
        self.objects = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o  # type: ignore[index,union-attr]
                        for o in objects}

    async def list(self, api: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None, *, cached: bool = False) -> list[dict[str, object]]:
        key, _, value = (label_selector or "").partition("=")
        return [o for (k, _, _), o in self.objects.items()
                if k == kind and (not key or (o["metadata"].get("labels") or {}).get(key) == value)]  # type: ignore[union-attr,index]

    async def get(self, api: str, kind: str, name: str, namespace: str | None = None, *,
                  cached: bool = False) -> dict[str, object] | None:
        return self.objects.get((kind, namespace, name))  # type: ignore[return-value]

    async def create_or_get(self, obj: dict) -> tuple[dict, bool]:  # type: ignore[type-arg]
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if key in self.objects:
            return self.objects[key], False  # type: ignore[return-value]
        self.objects[key] = obj
        return obj, True

    async def apply(self, obj: dict, field_manager: str) -> dict:  # type: ignore[type-arg]
        return (await self.create_or_get(obj))[0]

    async def raw(self, *_: object, **__: object) -> tuple[int, object]:
        return 201, {"status": {"token": "t"}}

    async def patch(self, *_: object, **__: object) -> dict[str, object]:
        return {}

    async def delete(self, *_: object, **__: object) -> bool:
        return True


async def test_a_derived_namespace_taken_by_another_cluster_gives_the_longer_form() -> None:
    request = crr()
    taken = registration.dedicated_namespace_name(request)
    parent = FakeParent({"kind": "Namespace", "metadata": {"name": taken, "labels": {
        known.LABEL_CLUSTER_ID: "another-cluster"}}})
    settings = registration.ApprovalSettings(allow_unsealed_tokens=True)
    request["metadata"]["annotations"] = {}  # type: ignore[index]
    result = await registration.approve(parent, request, settings)  # type: ignore[arg-type]
    assert result["result"] == "Approved"
    assert result["dedicatedNamespace"] == registration.dedicated_namespace_name(request, registration.LONG_DIGITS)
    again = await registration.approve(parent, request, settings)  # type: ignore[arg-type]
    assert again["dedicatedNamespace"] == result["dedicatedNamespace"]  # idempotent: the earlier one is found


async def test_the_namespace_of_an_earlier_registration_wins_and_the_new_one_is_removed() -> None:
    request = crr()
    cluster_id = request["spec"]["clusterId"]  # type: ignore[index]
    labels = {known.LABEL_CLUSTER_ID: cluster_id}
    parent = FakeParent({"kind": "Namespace", "metadata": {"name": "team-a", "labels": labels}},
                        {"kind": "ManagedCluster", "metadata": {"name": "old", "namespace": "team-a",
                                                                "labels": labels}})
    deleted: list[str] = []

    async def delete(api: str, kind: str, name: str, *_: object, **__: object) -> bool:
        deleted.append(name)
        return True

    parent.delete = delete  # type: ignore[method-assign]
    request["metadata"]["annotations"] = {}  # type: ignore[index]
    result = await registration.approve(parent, request, registration.ApprovalSettings(  # type: ignore[arg-type]
        allow_unsealed_tokens=True))
    assert (result["dedicatedNamespace"], result["managedClusterName"]) == ("team-a", "old")
    assert deleted == [registration.dedicated_namespace_name(request)]  # the namespace it had just made


async def test_the_annotations_approval_writes_are_no_change_for_kopf() -> None:
    """kopf records the last handled state of a request; the token annotations approval writes are left out of
    it, so recording them costs no extra write per approval, while the admin's approval annotation stays in
    (its change runs the handler)."""
    import kopf

    from clusternet_hub import operator

    settings = kopf.OperatorSettings()
    await operator.configure(settings=settings)
    storage = settings.persistence.diffbase_storage
    annotations = {known.ANNOTATION_TOKEN_ISSUED_AT: "2026-12-03T00:00:00Z", known.ANNOTATION_TOKEN_SEALING: "x",
                   known.ANNOTATION_APPROVAL: "Approved"}
    body = kopf.Body({"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ClusterRegistrationRequest",
                      "metadata": {"name": "r", "annotations": annotations}, "spec": {"clusterId": "c"}})
    essence = storage.build(body=body)
    assert essence["metadata"]["annotations"] == {known.ANNOTATION_APPROVAL: "Approved"}
    assert essence["spec"] == {"clusterId": "c"}
