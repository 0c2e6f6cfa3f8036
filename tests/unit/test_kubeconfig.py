"""Kubeconfigs read as kubectl reads them: which files, merging, contexts, relative paths, TLS, auth methods."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_api.credentials import Credentials
from clusternet_api.execplugin import CredentialsError
from clusternet_api.kubeconfig import (
    KubeconfigError,
    files_for,
    jwt_expiry,
    kubeconfig_files,
    kubeconfig_namespace,
    merge,
    resolve,
)


def write(path: Path, cfg: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def config(*, current: str | None = None, clusters: dict[str, Any] | None = None,
           users: dict[str, Any] | None = None, contexts: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"apiVersion": "v1", "kind": "Config",
                           "clusters": [{"name": n, "cluster": c} for n, c in (clusters or {}).items()],
                           "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
                           "contexts": [{"name": n, "context": c} for n, c in (contexts or {}).items()]}
    if current:
        cfg["current-context"] = current
    return cfg


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return tmp_path / "home"


# --- which files ----------------------------------------------------------------------------------------


def test_files_like_kubectl(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert kubeconfig_files(None) == []
    default = write(home / ".kube" / "config", {})
    assert kubeconfig_files(None) == [default]
    a, b = write(tmp_path / "a", {}), write(tmp_path / "b", {})
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(a), str(tmp_path / "missing"), str(b), str(a)]))
    assert kubeconfig_files(None) == [a, b]  # missing ones skipped, each once, ~/.kube/config not used
    assert kubeconfig_files(b) == [b]  # an explicit file overrides $KUBECONFIG
    with pytest.raises(KubeconfigError, match=r"^kubeconfig .*nope not found$"):
        kubeconfig_files(tmp_path / "nope")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(KubeconfigError, match=r"no kubeconfig: none of the files in \$KUBECONFIG exists"):
        files_for(None)
    monkeypatch.delenv("KUBECONFIG")
    default.unlink()
    with pytest.raises(KubeconfigError, match="no kubeconfig: pass --kubeconfig, set \\$KUBECONFIG or create"):
        files_for(None)
    assert files_for(f"{a}{os.pathsep}{b}") == [a, b]  # the hub's --kubeconfig comes from $KUBECONFIG


def test_merging_first_file_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "one" / "config", config(
        clusters={"shared": {"server": "https://first:6443", "certificate-authority": "ca.crt"}},
        users={"alice": {"token": "first-token"}},
        contexts={"shared": {"cluster": "shared", "user": "alice", "namespace": "first-ns"}}))
    second = write(tmp_path / "two" / "config", config(
        current="only-second",
        clusters={"shared": {"server": "https://second:6443"},
                  "other": {"server": "https://other:6443", "certificate-authority": "pki/ca.crt"}},
        users={"alice": {"token": "second-token"}, "bob": {"tokenFile": "../bob.token"}},
        contexts={"shared": {"cluster": "other", "user": "bob"}, "only-second": {"cluster": "other", "user": "bob"}}))
    third = write(tmp_path / "three" / "config", config(current="shared"))
    merged = merge([first, second, third])
    assert merged["current-context"] == "only-second"  # the first file that sets it (the first one does not)
    assert merged["clusters"]["shared"]["server"] == "https://first:6443"
    assert merged["users"]["alice"] == {"token": "first-token"}
    assert merged["contexts"]["shared"]["namespace"] == "first-ns"
    # relative paths are relative to the file that holds them, whichever file wins
    assert merged["clusters"]["shared"]["certificate-authority"] == str(tmp_path / "one" / "ca.crt")
    assert merged["clusters"]["other"]["certificate-authority"] == str(tmp_path / "two" / "pki" / "ca.crt")
    assert merged["users"]["bob"]["tokenFile"] == str(tmp_path / "two" / ".." / "bob.token")
    assert kubeconfig_namespace([first, second], "shared") == "first-ns"
    assert kubeconfig_namespace([second, first], "shared") is None


def test_multiple_kubeconfig_files_resolve_across_files(tmp_path: Path, home: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "ca.crt").write_bytes(b"CA PEM")
    (tmp_path / "creds" / "token").write_text("file-token\n")
    clusters = write(tmp_path / "creds" / "clusters.yaml", config(
        clusters={"prod": {"server": "https://prod:6443", "certificate-authority": "ca.crt"}},
        users={"me": {"tokenFile": "token"}}))
    contexts = write(tmp_path / "contexts.yaml", config(current="prod", contexts={"prod": {"cluster": "prod",
                                                                                            "user": "me"}}))
    monkeypatch.setenv("KUBECONFIG", f"{contexts}{os.pathsep}{clusters}")
    creds = Credentials.from_kubeconfig(None)
    assert creds.server == "https://prod:6443" and creds.ca_pem == b"CA PEM"
    assert creds.token == "file-token" and creds.token_file == str(tmp_path / "creds" / "token")
    assert Credentials.load(None).server == "https://prod:6443"


# --- contexts -------------------------------------------------------------------------------------------


def test_context_selection_and_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config", config(
        current="a",
        clusters={"c1": {"server": "https://one:6443"}, "c2": {"server": "https://two:6443"}, "empty": {}},
        users={"u": {"token": "t"}},
        contexts={"a": {"cluster": "c1", "user": "u"}, "b": {"cluster": "c2", "namespace": "team"},
                  "no-cluster": {"cluster": "gone", "user": "u"}, "no-user": {"cluster": "c1", "user": "gone"},
                  "no-server": {"cluster": "empty"}}))
    assert resolve([cfg]).server == "https://one:6443"
    b = resolve([cfg], "b")
    assert (b.server, b.namespace, b.token) == ("https://two:6443", "team", None)  # no user: anonymous
    with pytest.raises(KubeconfigError, match=r'^context "x" not found in kubeconfig \(.*config\)$'):
        resolve([cfg], "x")
    with pytest.raises(KubeconfigError, match='cluster "gone" of context "no-cluster" not found'):
        resolve([cfg], "no-cluster")
    with pytest.raises(KubeconfigError, match='user "gone" of context "no-user" not found'):
        resolve([cfg], "no-user")
    with pytest.raises(KubeconfigError, match=r'cluster "empty" .* has no server'):
        resolve([cfg], "no-server")
    unset = write(tmp_path / "unset", config(clusters={"c": {"server": "https://x"}}))
    with pytest.raises(KubeconfigError, match="sets no current-context: pass --context"):
        resolve([unset])


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    with pytest.raises(KubeconfigError, match=r"kubeconfig .*bad is not valid YAML \(line \d+\)"):
        resolve([bad])
    (tmp_path / "list").write_text("- 1\n")
    with pytest.raises(KubeconfigError, match="is not a kubeconfig"):
        resolve([tmp_path / "list"])
    cfg = write(tmp_path / "config", config(
        current="a", clusters={"c": {"server": "https://x", "certificate-authority": "missing-ca.crt"}},
        contexts={"a": {"cluster": "c"}}))
    with pytest.raises(KubeconfigError, match=r"cannot read certificate-authority .*missing-ca\.crt of cluster "
                                              r'"c": No such file or directory'):
        resolve([cfg])
    empty = tmp_path / "empty"
    empty.write_text("")
    fine = write(tmp_path / "fine", config(current="a", clusters={"c": {"server": "https://x"}},
                                           contexts={"a": {"cluster": "c"}}))
    assert resolve([empty, fine]).server == "https://x"  # an empty file is an empty config, as for kubectl


# --- TLS and auth ---------------------------------------------------------------------------------------


def test_tls_settings_and_client_certificates(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "client.crt").write_bytes(b"CERT FROM FILE")
    (tmp_path / "pki" / "client.key").write_bytes(b"KEY FROM FILE")
    cfg = write(tmp_path / "config", config(
        current="files",
        clusters={"c": {"server": "https://10.0.0.1:6443", "certificate-authority-data": b64(b"CA DATA"),
                        "certificate-authority": "ignored-when-data-is-set",
                        "tls-server-name": "kubernetes.default", "proxy-url": "http://proxy:3128"},
                  "insecure": {"server": "https://x", "insecure-skip-tls-verify": True},
                  "socks": {"server": "https://x", "proxy-url": "socks5://proxy:1080"}},
        users={"files": {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"},
               "data": {"client-certificate-data": b64(b"CERT DATA"), "client-key-data": b64(b"KEY DATA")},
               "basic": {"username": "admin", "password": "secret"}},
        contexts={"files": {"cluster": "c", "user": "files"}, "data": {"cluster": "insecure", "user": "data"},
                  "basic": {"cluster": "c", "user": "basic"}, "socks": {"cluster": "socks"}}))
    files = Credentials.from_kubeconfig(cfg)
    assert (files.ca_pem, files.cert_pem, files.key_pem) == (b"CA DATA", b"CERT FROM FILE", b"KEY FROM FILE")
    assert (files.tls_server_name, files.proxy_url, files.insecure) == ("kubernetes.default", "http://proxy:3128",
                                                                        False)
    data = Credentials.from_kubeconfig(cfg, "data")
    assert (data.cert_pem, data.key_pem, data.insecure, data.ca_pem) == (b"CERT DATA", b"KEY DATA", True, None)
    basic = Credentials.from_kubeconfig(cfg, "basic")
    assert (basic.username, basic.password) == ("admin", "secret")
    assert "secret" not in repr(basic) and "secret" not in repr(resolve([cfg], "basic"))
    with pytest.raises(KubeconfigError, match="proxy-url socks5://proxy:1080 of cluster \"socks\" is not supported"):
        Credentials.from_kubeconfig(cfg, "socks")
    bad = write(tmp_path / "bad", config(current="a", clusters={"c": {"server": "https://x",
                                                                      "certificate-authority-data": "!!!"}},
                                         contexts={"a": {"cluster": "c"}}))
    with pytest.raises(KubeconfigError, match='certificate-authority-data of cluster "c" is not valid base64'):
        Credentials.from_kubeconfig(bad)


def test_proxy_password_not_in_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config", config(current="socks", clusters={
        "socks": {"server": "https://x", "proxy-url": "socks5://alice:s3cr3t@proxy:1080"}},
        contexts={"socks": {"cluster": "socks"}}))
    with pytest.raises(KubeconfigError) as e:
        Credentials.from_kubeconfig(cfg)
    assert str(e.value).startswith('proxy-url socks5://alice:xxxxx@proxy:1080 of cluster "socks" is not supported')
    assert "s3cr3t" not in repr(Credentials("https://alice:s3cr3t@x:6443", None, "tok"))


def test_round_trip_through_kubeconfig_dict(tmp_path: Path) -> None:
    creds = Credentials("https://x:6443", b"CA", "tok", insecure=True, tls_server_name="kube", proxy_url="http://p")
    path = write(tmp_path / "config", creds.kubeconfig_dict("x", namespace="ns"))
    assert Credentials.from_kubeconfig(path) == creds
    assert kubeconfig_namespace(path) == "ns"
    assert creds.with_token("other") == Credentials("https://x:6443", b"CA", "other", insecure=True,
                                                    tls_server_name="kube", proxy_url="http://p")


def test_auth_providers(tmp_path: Path) -> None:
    fresh, stale = jwt({"exp": time.time() + 3600}), jwt({"exp": 1_600_000_000})
    cfg = write(tmp_path / "config", config(
        clusters={"c": {"server": "https://x"}},
        users={"oidc": {"auth-provider": {"name": "oidc", "config": {"id-token": fresh, "refresh-token": "r"}}},
               "stale": {"auth-provider": {"name": "oidc", "config": {"id-token": stale}}},
               "no-token": {"auth-provider": {"name": "oidc", "config": {"client-id": "k"}}},
               "gcp": {"auth-provider": {"name": "gcp", "config": {"access-token": "ya29"}}},
               "azure": {"auth-provider": {"name": "azure", "config": {}}},
               "other": {"auth-provider": {"name": "openstack"}}},
        contexts={n: {"cluster": "c", "user": n} for n in ("oidc", "stale", "no-token", "gcp", "azure", "other")}))
    assert Credentials.from_kubeconfig(cfg, "oidc").token == fresh
    with pytest.raises(KubeconfigError, match=r'oidc id-token of user "stale" expired at 2020-09-13T12:26:40Z and '
                                              r"clusternet does not refresh it: run any kubectl command once"):
        Credentials.from_kubeconfig(cfg, "stale")
    with pytest.raises(KubeconfigError, match='oidc auth-provider of user "no-token" holds no id-token'):
        Credentials.from_kubeconfig(cfg, "no-token")
    with pytest.raises(KubeconfigError, match=r'auth-provider "gcp" of user "gcp" was removed in kubectl 1\.26: '
                                              r"install gke-gcloud-auth-plugin"):
        Credentials.from_kubeconfig(cfg, "gcp")
    with pytest.raises(KubeconfigError, match=r"removed in kubectl 1\.26: convert the kubeconfig to the kubelogin"):
        Credentials.from_kubeconfig(cfg, "azure")
    with pytest.raises(KubeconfigError, match='"openstack" of user "other" is not supported: switch the user to an '
                                              "exec credential plugin"):
        Credentials.from_kubeconfig(cfg, "other")
    assert jwt_expiry("not-a-jwt") is None and jwt_expiry(jwt({"sub": "x"})) is None


def test_exec_section_is_read_not_run(tmp_path: Path) -> None:
    cfg = write(tmp_path / "dir" / "config", config(
        current="a", clusters={"c": {"server": "https://x", "certificate-authority-data": b64(b"CA"),
                                     "extensions": [{"name": "client.authentication.k8s.io/exec",
                                                     "extension": {"audience": "kube"}}]}},
        users={"u": {"token": "ignored", "exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/plugin", "args": ["get-token"],
            "env": [{"name": "A", "value": "1"}], "provideClusterInfo": True, "installHint": "brew install it"}},
            "path": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws"}},
            "no-version": {"exec": {"command": "aws"}},
            "alpha": {"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "aws"}}},
        contexts={"a": {"cluster": "c", "user": "u"}, "path": {"cluster": "c", "user": "path"},
                  "no-version": {"cluster": "c", "user": "no-version"}, "alpha": {"cluster": "c", "user": "alpha"}}))
    creds = Credentials.from_kubeconfig(cfg)
    plugin = creds.exec_plugin
    assert plugin is not None and plugin.runs == 0 and creds.token is None  # exec wins over the token
    assert plugin.command == str(tmp_path / "dir" / "bin" / "plugin")  # relative to the kubeconfig
    assert (plugin.args, plugin.env, plugin.install_hint) == (["get-token"], {"A": "1"}, "brew install it")
    info = json.loads(plugin.exec_info())
    assert info == {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                    "spec": {"interactive": False, "cluster": {
                        "server": "https://x", "certificate-authority-data": b64(b"CA"),
                        "config": {"audience": "kube"}}}}
    path_plugin = Credentials.from_kubeconfig(cfg, "path").exec_plugin
    assert path_plugin is not None and path_plugin.command == "aws"  # looked up in PATH
    assert "cluster" not in json.loads(path_plugin.exec_info())["spec"]  # no provideClusterInfo
    with pytest.raises(CredentialsError, match='exec section of user "no-version" has no apiVersion'):
        Credentials.from_kubeconfig(cfg, "no-version")
    with pytest.raises(CredentialsError, match=r"uses apiVersion '.*/v1alpha1'; supported"):
        Credentials.from_kubeconfig(cfg, "alpha")


def test_an_entry_that_is_not_a_map_is_a_kubeconfig_error(tmp_path: Path) -> None:
    """`user: token-abc` raised a ValueError traceback (audit s35)."""
    cfg = config(current="c", clusters={"k": {"server": "https://k"}}, users={"u": "token-abc"},
                 contexts={"c": {"cluster": "k", "user": "u"}})
    with pytest.raises(KubeconfigError, match='the user of user "u" is not a map'):
        merge([write(tmp_path / "kc", cfg)])
