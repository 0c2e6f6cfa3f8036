"""Agent start-up: the bootstrap Secret (parentCA whatever the source of URL/token) and name/label checks."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast

import pytest

from clusternet_agent.agent import apply_bootstrap_secret, merge_bootstrap_secret, secret_data
from clusternet_agent.options import (
    AgentOptions,
    OptionsError,
    check_cluster_name,
    check_cluster_name_prefix,
    check_cluster_namespace,
    check_label,
    parse_labels,
)
from clusternet_agent.registration import bootstrap_credentials
from clusternet_api import known
from clusternet_api.kube import ApiException, Kube

URL = "https://parent.example.com:6443"
TOKEN = "07401b.f395accd246ae52d"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def bootstrap_secret(**data: bytes) -> dict[str, Any]:
    return {"metadata": {"name": known.AGENT_BOOTSTRAP_SECRET, "namespace": known.SYSTEM_NAMESPACE},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


class FakeChild:
    """Just enough of Kube for apply_bootstrap_secret: one Secret, or an HTTP error."""

    def __init__(self, secret: dict[str, Any] | None, status: int | None = None) -> None:
        self.secret, self.status, self.gets = secret, status, 0

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        self.gets += 1
        assert (api_version, kind, name, namespace) == (
            "v1", "Secret", known.AGENT_BOOTSTRAP_SECRET, known.SYSTEM_NAMESPACE)
        if self.status:
            raise ApiException(self.status, "forbidden")
        return self.secret


def apply(child: FakeChild, opts: AgentOptions) -> None:
    asyncio.run(apply_bootstrap_secret(cast(Kube, child), opts))


# --- defect 1: parentCA of the bootstrap Secret --------------------------------------------------------------


def test_secret_ca_is_pinned_even_when_url_and_token_come_from_flags() -> None:
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN)
    child = FakeChild(bootstrap_secret(parentURL=b"https://other:6443", regToken=b"aaaaaa.bbbbbbbbbbbbbbbb",
                                       parentCA=CA))
    apply(child, opts)
    assert child.gets == 1
    assert (opts.parent_url, opts.reg_token) == (URL, TOKEN)  # flags win
    assert opts.parent_ca_pem == CA
    assert opts.parent_ca_file is None  # kept in memory: no temporary file left behind
    assert bootstrap_credentials(opts).ca_pem == CA


def test_secret_fills_url_token_and_ca_when_flags_are_unset() -> None:
    opts = AgentOptions()
    merge_bootstrap_secret(opts, secret_data(bootstrap_secret(
        parentURL=URL.encode() + b"\n", regToken=TOKEN.encode() + b"\n", parentCA=CA)))
    assert (opts.parent_url, opts.reg_token, opts.parent_ca_pem) == (URL, TOKEN, CA)
    opts.validate()


def test_parent_ca_file_wins_over_the_secret(tmp_path: Any) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nfromfile\n-----END CERTIFICATE-----\n")
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN, parent_ca_file=str(ca_file))
    child = FakeChild(bootstrap_secret(parentCA=CA))
    apply(child, opts)
    assert child.gets == 0  # nothing left to learn from the Secret
    assert opts.parent_ca_pem is None
    assert bootstrap_credentials(opts).ca_pem == ca_file.read_bytes()


@pytest.mark.parametrize("data", [{}, {"parentCA": b""}, {"parentCA": b" \n"}])
def test_no_or_empty_parent_ca_means_none_given(data: dict[str, bytes]) -> None:
    """No CA from the Secret: a bootstrap token goes on to discover it (test_discovery.py), a ServiceAccount
    token stops; neither ever uses an unverified connection to register."""
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN)
    apply(FakeChild(bootstrap_secret(**data)), opts)
    assert opts.parent_ca_pem is None
    opts.check_parent_ca()
    jwt = AgentOptions(parent_url=URL, reg_token="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    apply(FakeChild(bootstrap_secret(**data)), jwt)
    with pytest.raises(OptionsError, match="ServiceAccount token cannot discover it"):
        jwt.check_parent_ca()


def test_missing_secret_changes_nothing() -> None:
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN)
    apply(FakeChild(None), opts)
    assert (opts.parent_url, opts.reg_token, opts.parent_ca_pem) == (URL, TOKEN, None)


def test_unreadable_secret_is_tolerated_only_when_flags_gave_url_and_token() -> None:
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN)
    apply(FakeChild(None, status=403), opts)
    assert opts.parent_ca_pem is None
    with pytest.raises(ApiException):
        apply(FakeChild(None, status=403), AgentOptions())


def test_a_secret_ca_that_is_not_pem_fails_fast() -> None:
    with pytest.raises(OptionsError, match="is not a PEM certificate"):
        merge_bootstrap_secret(AgentOptions(parent_url=URL, reg_token=TOKEN),
                               {"parentCA": base64.b64encode(CA)})


# --- defect 2: cluster name, prefix, namespace and labels ----------------------------------------------------


@pytest.mark.parametrize("name", ["child1", "a", "0", "prod-eu-1", "x" * 30])
def test_valid_cluster_names(name: str) -> None:
    check_cluster_name(name)
    AgentOptions(parent_url=URL, reg_token=TOKEN, cluster_name=name).validate()


@pytest.mark.parametrize(("name", "message"), [
    ("Child1", "not a valid cluster name"),
    ("child_1", "not a valid cluster name"),
    ("child.1", "not a valid cluster name"),
    ("-child", "not a valid cluster name"),
    ("child-", "not a valid cluster name"),
    ("chi ld", "not a valid cluster name"),
    ("x" * 31, "31 characters long; at most 30"),
])
def test_invalid_cluster_names_fail_fast_saying_what_is_allowed(name: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message) as e:
        AgentOptions(parent_url=URL, reg_token=TOKEN, cluster_name=name).validate()
    assert "--cluster-reg-name" in str(e.value)
    if "valid" in message:
        assert "lowercase letters, digits and '-'" in str(e.value)


def test_names_are_checked_before_the_bootstrap_secret_is_read() -> None:
    with pytest.raises(OptionsError, match="--cluster-reg-name"):
        AgentOptions(cluster_name="My_Cluster").validate_flags()  # no parent URL yet: still refused


def test_prefix_must_leave_room_for_the_random_suffix() -> None:
    check_cluster_name_prefix("clusternet-cluster")
    check_cluster_name_prefix("x" * 24)
    with pytest.raises(OptionsError, match="at most 24"):
        check_cluster_name_prefix("x" * 25)
    for bad in ("Cluster", "my_cluster", "", "-c"):
        with pytest.raises(OptionsError, match="--cluster-reg-name-prefix"):
            AgentOptions(cluster_name_prefix=bad).validate_flags()
    AgentOptions(cluster_name="ok", cluster_name_prefix="Ignored_When_A_Name_Is_Given").validate_flags()


def test_cluster_namespace_is_a_dns_label_the_hub_accepts() -> None:
    check_cluster_namespace("team-a")
    check_cluster_namespace("n" * 63)
    for bad, message in (("Team-A", "not a valid namespace name"), ("team.a", "not a valid namespace name"),
                         ("n" * 64, "at most 63"), ("kube-system", "reserved"), ("default", "reserved"),
                         (known.SYSTEM_NAMESPACE, "reserved")):
        with pytest.raises(OptionsError, match=message):
            AgentOptions(cluster_namespace=bad).validate_flags()


@pytest.mark.parametrize("labels", ["env=dev", "example.com/env=dev", "a.b-c.io/Some_Name.x=V-1_2.3",
                                    "empty=", "k=" + "v" * 63, "p" * 253 + "/k=v"])
def test_valid_cluster_labels(labels: str) -> None:
    parsed = parse_labels(labels)
    AgentOptions(cluster_labels=parsed).validate_flags()


@pytest.mark.parametrize(("labels", "message"), [
    ("env", "not a key=value"),
    ("=dev", "key name"),
    ("Example.com/env=dev", "key prefix"),
    ("a..b/env=dev", "key prefix"),
    ("/env=dev", "key prefix"),
    ("p" * 254 + "/k=v", "key prefix"),
    ("k" * 64 + "=v", "key name"),
    ("-env=dev", "key name"),
    ("a/b/c=dev", "key prefix"),
    ("env=dev prod", "value"),
    ("env=-dev", "value"),
    ("env=" + "v" * 64, "value"),
])
def test_invalid_cluster_labels(labels: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        parse_labels(labels)


def test_labels_given_programmatically_are_checked_too() -> None:
    with pytest.raises(OptionsError, match="--cluster-labels"):
        AgentOptions(cluster_labels={"bad key": "v"}).validate_flags()
    with pytest.raises(OptionsError, match="value"):
        check_label("env", "dev/prod")


def test_a_ca_file_that_cannot_be_read_or_is_not_pem_is_one_line_naming_the_flag(tmp_path: Any) -> None:
    """A mistyped mount path or a DER file crashed the agent at every start with a traceback (audit s35)."""
    from clusternet_api.pki import make_ca

    opts = AgentOptions(parent_url=URL, reg_token=TOKEN, parent_ca_file=str(tmp_path / "missing.crt"))
    with pytest.raises(OptionsError, match=r"--parent-ca-file=.*missing.crt: cannot be read"):
        opts.check_ca_files()
    (tmp_path / "der.crt").write_bytes(b"\x30\x82\x01")
    opts = AgentOptions(parent_url=URL, reg_token=TOKEN, tunnel_ca_file=str(tmp_path / "der.crt"))
    with pytest.raises(OptionsError, match=r"--tunnel-ca-file=.*holds no PEM certificate"):
        opts.check_ca_files()
    (tmp_path / "ca.crt").write_bytes(make_ca("test-ca")[0].cert_pem)
    AgentOptions(parent_ca_file=str(tmp_path / "ca.crt"), tunnel_ca_file=str(tmp_path / "ca.crt")).check_ca_files()


@pytest.mark.parametrize(("addr", "direct", "error"), [
    ("predictor.svc:8080", False, "must be an http:// or https:// URL"),
    ("https://predictor.svc", False, "reaches an https:// predictor only directly"),
])
def test_a_predictor_address_the_hub_cannot_use_is_refused_at_start(addr: str, direct: bool, error: str) -> None:
    opts = AgentOptions(predictor_addr=addr, predictor_direct_access=direct)
    with pytest.raises(OptionsError, match=error):
        opts.validate_flags()
    AgentOptions(predictor_addr="http://predictor.svc:8080").validate_flags()
    AgentOptions(predictor_addr="https://predictor.svc", predictor_direct_access=True).validate_flags()
