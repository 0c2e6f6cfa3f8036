"""`kubectl clusternet --cluster-id`: command-line routing, the generated kubeconfig, the child's credentials, and
the whole plugin process against an in-process fake parent with a fake `kubectl` on PATH (which records its
arguments and kubeconfig, echoes stdin and exits with a chosen code). tests/integration/test_cluster_id.py runs
the real kubectl against real children."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from click.testing import CliRunner

from clusternet_api import known
from clusternet_kubectl import childcluster
from clusternet_kubectl.childcluster import (
    ParentAccess,
    child_credentials,
    impersonation_extras,
    parent_access,
    probe_headers,
    proxy_kubeconfig,
    proxy_server,
    run_inherited,
    run_kubectl,
)
from clusternet_kubectl.cli import main
from clusternet_kubectl.errors import PluginError
from clusternet_kubectl.routing import RoutingError, child_only_message, split_args, validate, wants_child
from clusternet_testing.helpers import PLUGIN

CID = "6c4e5a3b-9a52-4d2b-a3f0-0f1e2d3c4b5a"
CHILD_TOKEN = "child-t0ken"
PARENT_TOKEN = "parent-t0ken"


def write_kubeconfig(path: Path, server: str, user: Mapping[str, Any], *, cluster: Mapping[str, Any] | None = None,
                     namespace: str | None = None, context: str = "dev") -> Path:
    ctx: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": dict(user)}],
        "contexts": [{"name": context, "context": ctx}]}))
    return path


# --- routing -------------------------------------------------------------------------------------------------


def test_child_options_anywhere_before_the_double_dash_route_the_command() -> None:
    assert wants_child(["--cluster-id", "x", "get", "pods"])
    assert wants_child(["get", "pods", "--cluster-id=x"])
    assert wants_child(["--clusternet-as-group=g", "get", "pods"])
    assert not wants_child(["get", "pods", "-n", "kube-system"])
    assert not wants_child(["exec", "pod", "--", "sh", "-c", "echo --cluster-id x"])
    assert not wants_child(["exec", "pod", "--", "--cluster-id"])
    assert not wants_child(["get", "pods", "--cluster-idx=1"])


def test_split_keeps_kubectl_arguments_in_order() -> None:
    args = split_args(["--kubeconfig", "parent.kc", "--cluster-id", CID, "get", "pods", "-n", "kube-system",
                       "-o", "jsonpath={.items[*].metadata.name}", "--child-kubeconfig=child.kc", "--context=p",
                       "--clusternet-as", "alice", "--clusternet-as-group", "a", "--clusternet-as-group=b",
                       "--clusternet-as-uid", "42", "--debug", "-l", "app=x"])
    assert (args.cluster_id, args.child_kubeconfig, args.kubeconfig, args.context) == \
        (CID, "child.kc", "parent.kc", "p")
    assert (args.as_user, args.as_groups, args.as_uid, args.debug) == ("alice", ["a", "b"], "42", True)
    assert args.kubectl_args == ["get", "pods", "-n", "kube-system", "-o", "jsonpath={.items[*].metadata.name}",
                                 "-l", "app=x"]


def test_everything_after_the_double_dash_is_kubectl_s() -> None:
    args = split_args(["--cluster-id", CID, "exec", "-it", "web", "--", "env", "--kubeconfig", "x", "--as=y"])
    assert args.kubectl_args == ["exec", "-it", "web", "--", "env", "--kubeconfig", "x", "--as=y"]
    args.child_kubeconfig = "child.kc"
    validate(args)  # --as after -- belongs to the command in the container


def test_routing_errors() -> None:
    def error(*argv: str) -> str:
        with pytest.raises(RoutingError) as e:
            validate(split_args(list(argv)))
        return str(e.value)

    assert "needs --child-kubeconfig" in error("--cluster-id", CID, "get", "pods")
    assert "work only with --cluster-id" in error("--child-kubeconfig", "c", "get", "pods")
    assert "needs a kubectl command" in error("--cluster-id", CID, "--child-kubeconfig", "c")
    assert "need --clusternet-as USER" in error("--cluster-id", CID, "--child-kubeconfig", "c",
                                                "--clusternet-as-group", "g", "get", "pods")
    assert "use --clusternet-as to impersonate in the child" in error("--cluster-id", CID, "--child-kubeconfig", "c",
                                                                      "get", "pods", "--as=bob")
    for flag in ("--server=https://x", "-s", "--token=t", "--username=u", "--insecure-skip-tls-verify"):
        assert error("--cluster-id", CID, "--child-kubeconfig", "c", "get", "pods", flag) \
            .startswith(f"{flag.partition('=')[0]} cannot be used with --cluster-id")
    # a subcommand's own --user is kubectl's business
    validate(split_args(["--cluster-id", CID, "--child-kubeconfig", "c", "create", "rolebinding", "r",
                         "--clusterrole=view", "--user=alice"]))
    with pytest.raises(RoutingError, match="--cluster-id needs a value"):
        split_args(["get", "pods", "--cluster-id"])
    with pytest.raises(RoutingError, match="--cluster-id needs a value"):
        split_args(["--cluster-id=", "get"])


def test_kubectl_verbs_without_cluster_id_are_one_line_errors() -> None:
    runner = CliRunner()
    for verb, hint in (("scale", "apply -f FILE again"), ("create", "apply -f FILE stores templates"),
                       ("api-resources", "kubectl api-resources on the parent"), ("logs", None),
                       ("port-forward", None), ("exec", None), ("label", "apply -f"), ("annotate", "apply -f"),
                       ("edit", "apply -f")):
        result = runner.invoke(main, [verb, "x", "--replicas=1", "-o", "jsonpath={.a}"])
        assert result.exit_code == 1, (verb, result.output)
        line = result.output.strip()
        assert "\n" not in line and line == f"error: {child_only_message(verb)}"
        assert f"--cluster-id ID --child-kubeconfig FILE {verb}" in line
        assert (hint in line) if hint else "templates" not in line
    # our own verbs are still ours
    assert "kubectl-clusternet" in runner.invoke(main, ["version"]).output


def test_cli_routes_a_cluster_id_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    monkeypatch.setattr(childcluster, "main", fake_main)
    argv = ["get", "pods", "-o", "jsonpath={.items[*].metadata.name}", "--cluster-id", CID, "-w"]
    result = CliRunner().invoke(main, argv)
    assert (result.exit_code, seen) == (7, [argv])


# --- the generated kubeconfig ----------------------------------------------------------------------------------


def test_proxy_kubeconfig_impersonates_clusternet_with_the_child_token() -> None:
    parent = ParentAccess({"server": "https://parent:6443/", "certificate-authority-data": "Q0E=",
                           "tls-server-name": "kubernetes"},
                          {"token": PARENT_TOKEN, "as": "someone", "as-groups": ["g"], "as-uid": "1",
                           "as-user-extra": {"x": ["y"]}})
    extras = impersonation_extras(CHILD_TOKEN, "alice", ["a", "b"], "42")
    cfg = proxy_kubeconfig(parent, CID, extras, "team-a")
    cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    assert cluster == {"server": f"https://parent:6443/apis/proxies.clusternet.io/v1alpha1/sockets/{CID}/proxy/direct",
                       "certificate-authority-data": "Q0E=", "tls-server-name": "kubernetes"}
    assert user == {"token": PARENT_TOKEN, "as": "clusternet", "as-user-extra": {
        "clusternet-token": [CHILD_TOKEN], "clusternet-impersonate-user": ["alice"],
        "clusternet-impersonate-group": ["a", "b"], "clusternet-impersonate-uid": ["42"]}}
    ctx = cfg["contexts"][0]
    assert cfg["current-context"] == ctx["name"] and ctx["context"]["namespace"] == "team-a"
    assert impersonation_extras(CHILD_TOKEN) == {"clusternet-token": [CHILD_TOKEN]}
    assert dict(probe_headers(extras))["Impersonate-Extra-clusternet-token"] == CHILD_TOKEN
    assert proxy_server("https://rancher/k8s/clusters/c-1", "a/b") == \
        "https://rancher/k8s/clusters/c-1/apis/proxies.clusternet.io/v1alpha1/sockets/a%2Fb/proxy/direct"


def test_exec_users_stay_exec_with_absolute_paths(tmp_path: Path) -> None:
    """kubectl runs the parent's exec plugin itself: the stanza is kept, its relative command and the CA file
    made absolute (the generated kubeconfig lives elsewhere)."""
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    exec_cfg = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "./bin/login",
                "args": ["token", "--cluster", "prod"], "env": [{"name": "A", "value": "1"}],
                "provideClusterInfo": True, "interactiveMode": "Never"}
    kc = write_kubeconfig(tmp_path / "parent.kubeconfig", "https://parent:6443", {"exec": exec_cfg},
                          cluster={"certificate-authority": "ca.crt"})
    parent = parent_access(str(kc), None)
    assert parent.user["exec"] == {**exec_cfg, "command": str(tmp_path / "bin" / "login")}
    assert parent.cluster["certificate-authority"] == str(tmp_path / "ca.crt")
    user = proxy_kubeconfig(parent, CID, impersonation_extras(CHILD_TOKEN))["users"][0]["user"]
    assert user["exec"] == parent.user["exec"] and user["as"] == "clusternet"


def test_parent_context_is_chosen_with_context(tmp_path: Path) -> None:
    kc = tmp_path / "parent.kubeconfig"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "ca", "cluster": {"server": "https://a"}},
                     {"name": "cb", "cluster": {"server": "https://b"}}],
        "users": [{"name": "ua", "user": {"token": "ta"}}, {"name": "ub", "user": {"token": "tb"}}],
        "contexts": [{"name": "a", "context": {"cluster": "ca", "user": "ua"}},
                     {"name": "b", "context": {"cluster": "cb", "user": "ub"}}]}))
    assert parent_access(str(kc), None) == ParentAccess({"server": "https://a"}, {"token": "ta"})
    assert parent_access(str(kc), "b") == ParentAccess({"server": "https://b"}, {"token": "tb"})


# --- the child's credentials ------------------------------------------------------------------------------------


async def test_child_token_from_token_token_file_and_exec(tmp_path: Path) -> None:
    kc = write_kubeconfig(tmp_path / "a", "https://child-inner:6443", {"token": CHILD_TOKEN}, namespace="apps")
    creds = await child_credentials(str(kc))
    assert (creds.token, creds.namespace) == (CHILD_TOKEN, "apps")
    (tmp_path / "tok").write_text("from-file\n")
    assert (await child_credentials(str(write_kubeconfig(tmp_path / "b", "https://c", {"tokenFile": "tok"})))).token \
        == "from-file"
    script = tmp_path / "login"
    script.write_text(textwrap.dedent("""\
        #!/bin/sh
        echo '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
               "status": {"token": "from-exec"}}'
        """))
    script.chmod(0o755)
    kc = write_kubeconfig(tmp_path / "c", "https://c", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "./login", "interactiveMode": "Never"}})
    assert (await child_credentials(str(kc))).token == "from-exec"


async def test_child_client_certificates_are_refused_in_one_line(tmp_path: Path) -> None:
    pem = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    kc = write_kubeconfig(tmp_path / "a", "https://c", {"client-certificate-data": pem, "client-key-data": pem})
    with pytest.raises(PluginError) as e:
        await child_credentials(str(kc))
    message = str(e.value)
    assert "\n" not in message and "client certificate" in message and "kubectl create token" in message
    with pytest.raises(PluginError, match=f"--child-kubeconfig: kubeconfig {tmp_path / 'nope'} not found"):
        await child_credentials(str(tmp_path / "nope"))
    with pytest.raises(PluginError, match="holds no token"):
        await child_credentials(str(write_kubeconfig(tmp_path / "b", "https://c", {})))
    with pytest.raises(PluginError, match="username and password"):
        await child_credentials(str(write_kubeconfig(tmp_path / "d", "https://c", {"username": "a", "password": "b"})))


# --- running kubectl ----------------------------------------------------------------------------------------------

FAKE_KUBECTL = """#!{python}
import json, os, stat, sys
kubeconfig = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--kubeconfig="))
record = {{"argv": sys.argv[1:], "mode": stat.S_IMODE(os.stat(kubeconfig).st_mode),
          "config": json.load(open(kubeconfig)), "stdin": sys.stdin.read() if "-f" in sys.argv else ""}}
with open(os.environ["FAKE_KUBECTL_RECORD"], "w") as f:
    json.dump(record, f)
sys.stdout.write("out:" + record["stdin"])
sys.stderr.write("kubectl says hello\\n")
sys.exit(int(os.environ.get("FAKE_KUBECTL_EXIT", "0")))
"""


def kubectl_record(path: Path) -> Any:
    """What the fake kubectl recorded, None when it did not run."""
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    record = tmp_path / "record.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_RECORD", str(record))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return record


def test_run_kubectl_uses_a_private_kubeconfig_and_removes_it(fake_kubectl: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    monkeypatch.setenv("FAKE_KUBECTL_EXIT", "3")
    os.umask(0o022)
    config = {"apiVersion": "v1", "kind": "Config", "users": [{"name": "x", "user": {"token": "secret"}}]}
    assert run_kubectl(config, ["get", "pods", "-o", "jsonpath={.items[0]}"]) == 3
    record = json.loads(fake_kubectl.read_text())
    assert record["mode"] == 0o600 and record["config"] == config
    assert record["argv"][0].startswith(f"--kubeconfig={tmp_path / 'tmp'}/kubectl-clusternet-")
    assert record["argv"][1:] == ["get", "pods", "-o", "jsonpath={.items[0]}"]
    assert list((tmp_path / "tmp").iterdir()) == []  # removed afterwards


def test_run_kubectl_removes_the_kubeconfig_when_kubectl_cannot_start(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(shutil, "which", lambda _: str(tmp_path / "not-executable"))
    with pytest.raises(OSError):
        run_kubectl({}, ["get", "pods"])
    assert list((tmp_path / "tmp").iterdir()) == []
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(PluginError, match="kubectl not found on PATH"):
        run_kubectl({}, ["get", "pods"])


def test_run_inherited_passes_the_exit_code_and_signals() -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    assert run_inherited([sys.executable, "-c", "import sys; sys.exit(5)"]) == 5
    assert run_inherited([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]) == 137
    # a SIGTERM sent to the plugin while kubectl runs reaches kubectl (which then decides how to end)
    code = run_inherited([sys.executable, "-c", textwrap.dedent(f"""\
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))
        os.kill({os.getpid()}, signal.SIGTERM)
        time.sleep(10)
        sys.exit(1)
        """)])
    assert code == 42
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # ours again afterwards


# --- the whole plugin process against a fake parent ---------------------------------------------------------------


@asynccontextmanager
async def fake_parent(version_status: int = 200, version_message: str = "") -> AsyncIterator[tuple[str, list[Any]]]:
    """A parent with one ManagedCluster (child1, cluster id CID) whose proxy answers /version."""
    seen: list[Any] = []
    mc = {"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ManagedCluster",
          "metadata": {"name": "child1", "namespace": "clusternet-abcde", "labels": {known.LABEL_CLUSTER_ID: CID}},
          "spec": {"clusterId": CID}}

    async def clusters(request: web.Request) -> web.Response:
        selector = request.query.get("labelSelector", "")
        items = [mc] if not selector or selector == f"{known.LABEL_CLUSTER_ID}={CID}" else []
        return web.json_response({"kind": "ManagedClusterList", "items": items})

    async def version(request: web.Request) -> web.Response:
        seen.append({k: v for k, v in request.headers.items()})
        if request.match_info["cid"] != CID:
            return web.json_response({"kind": "Status", "code": 404, "message": "no managed cluster with ID"},
                                     status=404)
        if version_status != 200:
            return web.json_response({"kind": "Status", "code": version_status, "message": version_message,
                                      "reason": "Failure"}, status=version_status)
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0"})

    app = web.Application()
    app.router.add_get("/apis/clusters.clusternet.io/v1beta1/managedclusters", clusters)
    app.router.add_get("/apis/proxies.clusternet.io/v1alpha1/sockets/{cid}/proxy/direct/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def run_plugin(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    proc = await asyncio.create_subprocess_exec(*PLUGIN, *args, env=env, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_plugin_process_runs_kubectl_through_the_proxy(fake_kubectl: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_EXIT", "4")
    child = write_kubeconfig(tmp_path / "child.kubeconfig", "https://10.0.0.1:6443", {"token": CHILD_TOKEN},
                             namespace="apps")
    async with fake_parent() as (url, seen):
        parent = write_kubeconfig(tmp_path / "parent.kubeconfig", url, {"token": PARENT_TOKEN})
        code, out, err = await run_plugin(f"--kubeconfig={parent}", "--cluster-id", "child1", "apply", "-f", "-",
                                          f"--child-kubeconfig={child}", "--clusternet-as=alice",
                                          stdin=b"kind: ConfigMap\n")
    assert (code, out, err) == (4, "out:kind: ConfigMap\n", "kubectl says hello\n")  # kubectl's, unchanged
    record = kubectl_record(fake_kubectl)
    assert record["argv"][1:] == ["apply", "-f", "-"] and record["mode"] == 0o600
    cfg = record["config"]
    assert cfg["clusters"][0]["cluster"]["server"] == \
        f"{url}/apis/proxies.clusternet.io/v1alpha1/sockets/{CID}/proxy/direct"  # the name became the id
    assert cfg["users"][0]["user"] == {"token": PARENT_TOKEN, "as": "clusternet", "as-user-extra": {
        "clusternet-token": [CHILD_TOKEN], "clusternet-impersonate-user": ["alice"]}}
    assert cfg["contexts"][0]["context"]["namespace"] == "apps"
    probe = seen[0]
    assert probe["Authorization"] == f"Bearer {PARENT_TOKEN}" and probe["Impersonate-User"] == "clusternet"
    assert probe["Impersonate-Extra-clusternet-token"] == CHILD_TOKEN
    assert probe["Impersonate-Extra-clusternet-impersonate-user"] == "alice"
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_plugin_process_errors_are_one_line(fake_kubectl: Path, tmp_path: Path) -> None:
    child = write_kubeconfig(tmp_path / "child.kubeconfig", "https://10.0.0.1:6443", {"token": CHILD_TOKEN})

    async def one_line(url: str, *args: str) -> str:
        parent = write_kubeconfig(tmp_path / "parent.kubeconfig", url, {"token": PARENT_TOKEN})
        code, out, err = await run_plugin(f"--kubeconfig={parent}", f"--child-kubeconfig={child}", *args)
        assert (code, out) == (1, "") and err.count("\n") == 1 and "Traceback" not in err, err
        assert kubectl_record(fake_kubectl) is None  # kubectl never ran
        return err.strip()

    async with fake_parent() as (url, _):
        assert await one_line(url, "--cluster-id", "nope", "get", "ns") == \
            "error: no ManagedCluster with cluster id or name 'nope'"
    async with fake_parent(401, "Unauthorized") as (url, _):
        assert await one_line(url, "--cluster-id", CID, "get", "ns") == \
            f"error: cluster clusternet-abcde/child1 ({CID}) rejected the token of --child-kubeconfig {child} " \
            "(401 Unauthorized)"
    async with fake_parent(503, f"the agent of cluster {CID} is disconnected; its tunnel is down") as (url, _):
        assert await one_line(url, "--cluster-id", CID, "get", "ns") == \
            f"error: cluster clusternet-abcde/child1 ({CID}) cannot be reached through the hub (503): " \
            f"the agent of cluster {CID} is disconnected; its tunnel is down"
    refused = 'users "clusternet" is forbidden: User "bob" cannot impersonate resource "users" in API group ""'
    async with fake_parent(403, refused) as (url, _):
        assert await one_line(url, "--cluster-id", CID, "get", "ns") == \
            f"error: the parent refused the proxy's impersonation (apply deploy/hub/04-socketsproxy_rbac.yaml " \
            f"there): {refused}"
    # a refused extra: kube-apiserver's message names its value, the child token, which is never printed
    extra = (f'userextras.authentication.k8s.io "{CHILD_TOKEN}" is forbidden: User "bob" cannot impersonate '
             'resource "userextras/clusternet-token" in API group "authentication.k8s.io" at the cluster scope')
    async with fake_parent(403, extra) as (url, _):
        assert await one_line(url, "--cluster-id", CID, "get", "ns") == \
            "error: the parent refused the proxy's impersonation (apply deploy/hub/04-socketsproxy_rbac.yaml " \
            f"there): {extra.replace(CHILD_TOKEN, '[REDACTED]')}"
    async with fake_parent() as (url, _):
        pem = base64.b64encode(b"x").decode()
        write_kubeconfig(child, "https://c", {"client-certificate-data": pem, "client-key-data": pem})
        assert "authenticates with a client certificate" in await one_line(url, "--cluster-id", CID, "get", "ns")


class EchoingParent:
    """A parent whose every answer to the probe quotes the child token it was sent, as kube-apiserver's 403 for a
    refused userextras impersonation does (the extra's value is the object's name in the message)."""

    def __init__(self, status: int) -> None:
        self.status = status

    async def raw(self, method: str, path: str, extra_headers: Any = ()) -> tuple[int, Any]:
        value = dict(extra_headers)["Impersonate-Extra-clusternet-token"]
        return self.status, {"kind": "Status", "code": self.status,
                             "message": f'userextras.authentication.k8s.io "{value}" is forbidden: User "alice" '
                                        'cannot impersonate resource "userextras/clusternet-token"'}


@pytest.mark.parametrize("status", [403, 404, 500, 418])
@pytest.mark.parametrize("token", [CHILD_TOKEN, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl"])
async def test_probe_errors_never_print_the_child_token(status: int, token: str) -> None:
    with pytest.raises(PluginError) as e:
        await childcluster.probe(EchoingParent(status), CID, impersonation_extras(token), "cluster x", "child.conf")
    assert token not in str(e.value)
    assert 'userextras.authentication.k8s.io "[REDACTED]" is forbidden' in str(e.value)


def test_kubeconfig_is_private_even_with_a_permissive_umask(fake_kubectl: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    old = os.umask(0)
    try:
        run_kubectl({"kind": "Config"}, ["version"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(json.loads(fake_kubectl.read_text())["mode"]) == 0o600
