"""Kubeconfigs as kubectl users have them, against one real control plane of its own (so this module runs alone
without starting the three shared ones): an exec credential plugin that prints a real ServiceAccount token, read by
`kubectl clusternet`, by our client and by the hub; several $KUBECONFIG files; and the one-line errors for a
rejected token (401), a ServiceAccount without rights (403) and an unknown kind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_api import known
from clusternet_api.kube import Credentials, Kube
from clusternet_api.sealing import generate_private_key, public_key_of
from clusternet_testing.controlplane import ControlPlane, ControlPlaneError, find_binaries
from clusternet_testing.helpers import PLUGIN, kubectl, wait_for
from clusternet_testing.processes import hub_proc

pytestmark = pytest.mark.integration

MC_API = "clusters.clusternet.io/v1beta1"
EXEC_V1 = "client.authentication.k8s.io/v1"
TOKEN_SCRIPT = """\
#!{python}
import json, pathlib
here = pathlib.Path(__file__).parent
runs = here / "runs"
runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
print(json.dumps({{"apiVersion": "{api}", "kind": "ExecCredential",
                  "status": {{"token": (here / "sa.token").read_text().strip()}}}}))
"""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        bins = find_binaries()
    except ControlPlaneError as e:
        pytest.fail(str(e), pytrace=False)
    cp = ControlPlane("kubeconfigs", bins, tmp_path_factory.mktemp("kubeconfigs"), service_cidr="127.30.0.0/16")
    cp.start()
    try:
        cp.install_crds()
        yield cp
    finally:
        cp.stop()


def service_account_token(cp: ControlPlane, name: str, admin: bool) -> str:
    """A TokenRequest token of a new ServiceAccount default/`name`, cluster-admin when `admin`."""
    kubectl(cp, "create", "serviceaccount", name, "-n", "default")
    if admin:
        kubectl(cp, "create", "clusterrolebinding", f"{name}-admin", "--clusterrole=cluster-admin",
                f"--serviceaccount=default:{name}")
    body = cp.request_json("POST", f"/api/v1/namespaces/default/serviceaccounts/{name}/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    return str(body["status"]["token"])  # type: ignore[index]


@pytest.fixture(scope="module")
def exec_kubeconfig(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig like an EKS or GKE one: CA file beside it, the user an exec plugin (relative path)."""
    home = tmp_path_factory.mktemp("exec-user")
    (home / "bin").mkdir()
    (home / "bin" / "sa.token").write_text(service_account_token(plane, "exec-user", admin=True))
    script = home / "bin" / "get-token"
    script.write_text(TOKEN_SCRIPT.format(python=sys.executable, api=EXEC_V1))
    script.chmod(0o755)
    shutil.copy(plane.ca_file, home / "ca.crt")
    path = home / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "exec",
        "clusters": [{"name": "real", "cluster": {"server": plane.url, "certificate-authority": "ca.crt"}}],
        "users": [{"name": "sa", "user": {"exec": {"apiVersion": EXEC_V1, "command": "./bin/get-token",
                                                    "interactiveMode": "Never"}}}],
        "contexts": [{"name": "exec", "context": {"cluster": "real", "user": "sa"}}]}))
    return path


def plugin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PLUGIN, *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr.strip()


def test_plugin_with_an_exec_credential_plugin(plane: ControlPlane, exec_kubeconfig: Path) -> None:
    kubectl(plane, "create", "namespace", "kc-mc")
    kubectl(plane, "apply", "-f", "-", input=json.dumps({
        "apiVersion": MC_API, "kind": "ManagedCluster", "metadata": {"name": "via-exec", "namespace": "kc-mc"},
        "spec": {"clusterId": str(uuid.uuid4()), "clusterType": "StandardCluster", "syncMode": "Pull"}}))
    runs = exec_kubeconfig.parent / "bin" / "runs"
    runs.unlink(missing_ok=True)
    proc = plugin(f"--kubeconfig={exec_kubeconfig}", "get", "mcls", "-A")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == ["kc-mc", "via-exec"] for line in proc.stdout.splitlines())
    assert runs.read_text() == "1"  # once per command: cached for its later requests


def test_kubeconfig_files_merged_with_context(plane: ControlPlane, exec_kubeconfig: Path, tmp_path: Path) -> None:
    """$KUBECONFIG with two files: a first one whose current context is elsewhere, then the exec kubeconfig;
    --context picks the exec one, whose CA and command paths stay relative to their own file."""
    first = tmp_path / "first"
    first.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
        "clusters": [{"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "elsewhere", "context": {"cluster": "elsewhere"}}]}))
    env = {"KUBECONFIG": f"{first}{os.pathsep}{exec_kubeconfig}"}
    proc = plugin("get", "mcls", "-A", "--context", "exec", env=env)
    assert proc.returncode == 0, proc.stderr
    assert one_line_error(plugin("get", "mcls", "-A", env=env)) == \
        "error: cannot reach https://127.0.0.1:1: connection refused"  # the first file's current-context


def test_client_and_hub_read_the_same_kubeconfig(plane: ControlPlane, exec_kubeconfig: Path,
                                                 tmp_path: Path) -> None:
    async def list_clusters() -> list[str]:
        async with Kube(Credentials.load(exec_kubeconfig)) as kube:
            return [mc["metadata"]["name"] for mc in await kube.list(MC_API, "ManagedCluster")]

    assert "via-exec" in asyncio.run(list_clusters())

    # the hub: kopf logs in with the exec plugin's token too, and approves a registration request
    kubectl(plane, "create", "namespace", known.RESERVED_NAMESPACE, check=False)
    runs = exec_kubeconfig.parent / "bin" / "runs"
    runs.unlink(missing_ok=True)
    hub = hub_proc(plane, tmp_path)
    assert hub.args[1].startswith("--kubeconfig=")
    hub.args[1] = f"--kubeconfig={exec_kubeconfig}"
    hub.start()
    try:
        cid = str(uuid.uuid4())
        kubectl(plane, "create", "-f", "-", input=json.dumps({
            "apiVersion": MC_API, "kind": "ClusterRegistrationRequest", "metadata": {
                "name": f"clusternet-{cid}",
                "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: public_key_of(generate_private_key())}},
            "spec": {"clusterId": cid, "clusterName": "exec-hub", "syncMode": "Pull"}}))

        def result() -> Any:
            crr = json.loads(kubectl(plane, "get", "clsrr", f"clusternet-{cid}", "-o", "json").stdout)
            return (crr.get("status") or {}).get("result")

        assert wait_for(result, timeout=60, what=f"the hub approving clusternet-{cid}\n{hub.output[-3000:]}") == \
            "Approved"
        assert hub.running() and "Unauthorized" not in hub.output
        assert runs.read_text() == "1"  # kopf's login and the hub's client share the plugin's credential
    finally:
        hub.stop()


def test_one_line_errors_from_a_real_server(plane: ControlPlane, tmp_path: Path) -> None:
    def config_with_token(name: str, token: str) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(Credentials(plane.url, plane.ca_pem, token).kubeconfig_dict("real")))
        return path

    bad = config_with_token("bad", "not-a-valid-token")
    assert one_line_error(plugin(f"--kubeconfig={bad}", "get", "mcls", "-A")) == \
        f"error: the server at {plane.url} rejected the credentials (401 Unauthorized)"
    nobody = config_with_token("nobody", service_account_token(plane, "nobody", admin=False))
    assert one_line_error(plugin(f"--kubeconfig={nobody}", "get", "mcls", "-A")) == (
        'Error from server (Forbidden): managedclusters.clusters.clusternet.io is forbidden: User '
        '"system:serviceaccount:default:nobody" cannot list resource "managedclusters" in API group '
        '"clusters.clusternet.io" at the cluster scope')
    # an unknown kind (no CRD, no skip-validating templates of it): kubectl's words for get and describe; applying
    # one unannotated is one line too
    admin = f"--kubeconfig={plane.kubeconfig}"
    unknown = 'error: the server doesn\'t have a resource type "widgets"'
    assert one_line_error(plugin(admin, "get", "widgets")) == unknown
    assert one_line_error(plugin(admin, "describe", "widgets", "w1")) == unknown
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n"
    applied = subprocess.run([*PLUGIN, admin, "apply", "-f", "-"], input=widget, capture_output=True, text=True,
                             timeout=120, check=False)
    assert one_line_error(applied).startswith("error: widget.example.com/w1 from <stdin>: the parent does not know "
                                              "kind Widget (apiVersion example.com/v1)")
