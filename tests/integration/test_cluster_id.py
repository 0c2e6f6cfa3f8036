"""`kubectl clusternet --cluster-id ID --child-kubeconfig FILE <kubectl command>` against real children.

The hub listens on 127.1.0.11:443 behind the parent's aggregation layer (AGGREGATED_HUB_IP, see conftest), so
every command goes parent kube-apiserver → hub → agent tunnel → child kube-apiserver, as the parent's admin
impersonating `clusternet` with a child ServiceAccount token. The real kubectl runs each verb; the child's RBAC
decides. The control planes run no kubelet: `logs` and `exec` stream from a small fake kubelet the child's API
server dials (real bytes through hub and tunnel, websocket exec as kubectl 1.30+ speaks it); port-forward and a
pod on a node that does not exist are only shown to reach the child and fail with its own message.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import PLUGIN, kubectl, wait_for
from clusternet_testing.processes import service_account_token

pytestmark = pytest.mark.integration

AGGREGATED_HUB_IP = "127.1.0.11"  # read by the hub_and_agents fixture
SA_NAMESPACE = "cid-test"


def child_kubeconfig(path: Path, cp: ControlPlane, token: str, namespace: str | None = None) -> Path:
    context: dict[str, Any] = {"cluster": cp.name, "user": "sa"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": cp.name, "cluster": {"server": cp.url, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": context}]}))
    return path


class Env:
    def __init__(self, parent: ControlPlane, agents: dict[str, Any], tmp: Path, child1: ControlPlane,
                 child2: ControlPlane) -> None:
        self.parent, self.tmp = parent, tmp
        self.child1, self.child2 = child1, child2
        self.mc1, self.mc2 = agents["mc1"], agents["mc2"]
        self.id1, self.id2 = self.mc1["spec"]["clusterId"], self.mc2["spec"]["clusterId"]
        self.ns = f"cid-{uuid.uuid4().hex[:6]}"  # the test objects' namespace, in both children
        self.tmpdir = tmp / "plugin-tmp"  # TMPDIR of the plugin: its temporary kubeconfigs
        self.tmpdir.mkdir()
        for cp in (child1, child2):
            kubectl(cp, "create", "namespace", self.ns)
        admin1 = service_account_token(child1, SA_NAMESPACE, "admin", "cluster-admin")
        admin2 = service_account_token(child2, SA_NAMESPACE, "admin", "cluster-admin")
        kubectl(child1, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cid-test-configmap-get"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}))
        reader = service_account_token(child1, SA_NAMESPACE, "reader", "cid-test-configmap-get")
        self.kc1 = child_kubeconfig(tmp / "child1.kubeconfig", child1, admin1)
        self.kc1_ns = child_kubeconfig(tmp / "child1-ns.kubeconfig", child1, admin1, self.ns)
        self.kc2 = child_kubeconfig(tmp / "child2.kubeconfig", child2, admin2)
        self.reader1 = child_kubeconfig(tmp / "reader1.kubeconfig", child1, reader)

    def env(self) -> dict[str, str]:
        return dict(os.environ, TMPDIR=str(self.tmpdir), KUBECTL_COMMAND_HEADERS="false")

    def run(self, cluster: str, kc: Path, *args: str, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`kubectl clusternet --cluster-id CLUSTER --child-kubeconfig KC ARGS`, whatever its exit code."""
        return subprocess.run([*PLUGIN, f"--kubeconfig={self.parent.kubeconfig}", "--cluster-id", cluster,
                               "--child-kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                              timeout=timeout, check=False, env=self.env())

    def ok(self, cluster: str, kc: Path, *args: str, input: str | None = None) -> str:
        proc = self.run(cluster, kc, *args, input=input)
        assert proc.returncode == 0, f"{args} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def no_kubeconfig_left(self) -> bool:
        return list(self.tmpdir.iterdir()) == []


@pytest.fixture(scope="module")
def env(parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, hub_and_agents: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(parent, hub_and_agents, tmp_path_factory.mktemp("cluster-id"), child1, child2)
    # the aggregated API and both tunnels answer
    wait_for(lambda: e.run(e.id1, e.kc1, "get", "--raw", "/version").returncode == 0 and
             e.run(e.id2, e.kc2, "get", "--raw", "/version").returncode == 0, timeout=60, interval=1,
             what="both children reachable through the parent's proxies.clusternet.io")
    yield e
    for cp in (child1, child2):
        kubectl(cp, "delete", "namespace", e.ns, "--wait=false", check=False)


def test_get_ns_lists_the_child_s_namespaces(env: Env) -> None:
    only1, only2 = f"{env.ns}-only1", f"{env.ns}-only2"
    kubectl(env.child1, "create", "namespace", only1)
    kubectl(env.child2, "create", "namespace", only2)
    out1 = env.ok(env.id1, env.kc1, "get", "ns")
    assert only1 in out1 and only2 not in out1 and out1.startswith("NAME")
    # child2, named by its ManagedCluster's name and by namespace/name
    out2 = env.ok(env.mc2["metadata"]["name"], env.kc2, "get", "ns", "-o", "name")
    assert f"namespace/{only2}" in out2.split() and f"namespace/{only1}" not in out2.split()
    ref = f"{env.mc2['metadata']['namespace']}/{env.mc2['metadata']['name']}"
    assert env.ok(ref, env.kc2, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}") == \
        kubectl(env.child2, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
    assert env.no_kubeconfig_left()


def test_create_label_annotate_and_scale(env: Env) -> None:
    ns = env.ns
    env.ok(env.id1, env.kc1, "create", "configmap", "made-here", "-n", ns, "--from-literal=a=1")
    env.ok(env.id1, env.kc1, "label", "configmap", "made-here", "-n", ns, "tier=web")
    env.ok(env.id1, env.kc1, "annotate", "configmap", "made-here", "-n", ns, "note=through the hub")
    cm = json.loads(kubectl(env.child1, "get", "cm", "made-here", "-n", ns, "-o", "json").stdout)
    assert cm["data"] == {"a": "1"} and cm["metadata"]["labels"] == {"tier": "web"}
    assert cm["metadata"]["annotations"]["note"] == "through the hub"
    assert kubectl(env.child2, "get", "cm", "made-here", "-n", ns, check=False).returncode != 0  # child1 only

    env.ok(env.id1, env.kc1, "create", "deployment", "web", "-n", ns, "--image=registry.invalid/web:1",
           "--replicas=0")
    assert "scaled" in env.ok(env.id1, env.kc1, "scale", "deployment", "web", "-n", ns, "--replicas=1")
    assert kubectl(env.child1, "get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "1"


def test_stdin_apply_and_kustomize_in_child2(env: Env, tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-stdin", "namespace": env.ns},
          "data": {"k": "v"}}
    assert "configmap/from-stdin created" in env.ok(env.id2, env.kc2, "apply", "-f", "-", input=json.dumps(cm))
    kdir = tmp_path / "kustomize"
    kdir.mkdir()
    (kdir / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": env.ns, "generatorOptions": {"disableNameSuffixHash": True},
        "configMapGenerator": [{"name": "from-kustomize", "literals": ["x=y"]}]}))
    env.ok(env.id2, env.kc2, "apply", "-k", str(kdir))
    assert kubectl(env.child2, "get", "cm", "from-stdin", "-n", env.ns, "-o", "jsonpath={.data.k}").stdout == "v"
    assert kubectl(env.child2, "get", "cm", "from-kustomize", "-n", env.ns,
                   "-o", "jsonpath={.data.x}").stdout == "y"
    assert "configmap/from-stdin" in env.ok(env.id2, env.kc2, "get", "cm", "-n", env.ns, "-o", "name").split()


def test_output_equals_kubectl_against_the_child(env: Env) -> None:
    kubectl(env.child1, "create", "configmap", "compare-me", "-n", env.ns, "--from-literal=b=2")
    def without_age(table: str) -> list[list[str]]:  # AGE, the last column, moves on between the two runs
        return [line.split()[:-1] for line in table.splitlines()]

    for output in ("jsonpath={.metadata.uid} {.data.b} {.metadata.resourceVersion}", "yaml", "json", "name",
                   "wide", "custom-columns=NAME:.metadata.name,B:.data.b"):
        theirs = kubectl(env.child1, "get", "cm", "compare-me", "-n", env.ns, "-o", output).stdout
        ours = env.ok(env.id1, env.kc1, "get", "cm", "compare-me", "-n", env.ns, "-o", output)
        if output == "wide":
            assert without_age(ours) == without_age(theirs) and ours.startswith("NAME   "), ours
        else:
            assert ours == theirs, output
    # the namespace of the child kubeconfig's context applies
    assert env.ok(env.id1, env.kc1_ns, "get", "cm", "compare-me", "-o", "jsonpath={.data.b}") == "2"
    # -l selects as kubectl does
    assert env.ok(env.id1, env.kc1, "get", "cm", "-n", env.ns, "-l", "tier=nothing", "-o", "name") == ""


def test_api_resources(env: Env) -> None:
    out = env.ok(env.id1, env.kc1, "api-resources", "--api-group=", "-o", "name")
    assert out == kubectl(env.child1, "api-resources", "--api-group=", "-o", "name").stdout
    assert "configmaps" in out.split()


def test_child_rbac_decides(env: Env) -> None:
    kubectl(env.child1, "create", "configmap", "readable", "-n", env.ns, "--from-literal=r=1")
    assert env.ok(env.id1, env.reader1, "get", "cm", "readable", "-n", env.ns, "-o", "jsonpath={.data.r}") == "1"
    denied = env.run(env.id1, env.reader1, "delete", "cm", "readable", "-n", env.ns)
    assert denied.returncode == 1, denied
    line = denied.stderr.strip()
    assert "\n" not in line and line.startswith("Error from server (Forbidden):"), denied.stderr
    assert f"system:serviceaccount:{SA_NAMESPACE}:reader" in line  # the child judged the child token
    assert kubectl(env.child1, "get", "cm", "readable", "-n", env.ns, check=False).returncode == 0


def test_clusternet_as_impersonates_in_the_child(env: Env) -> None:
    kubectl(env.child1, "create", "configmap", "for-readers", "-n", env.ns)
    denied = env.run(env.id1, env.kc1, "--clusternet-as=alice", "get", "cm", "-n", env.ns)
    assert denied.returncode == 1 and 'User "alice" cannot list resource "configmaps"' in denied.stderr, denied
    kubectl(env.child1, "create", "rolebinding", "cid-readers", "-n", env.ns, "--clusterrole=view",
            "--group=cid-readers")
    # both groups reach the child (the second is the one with access)
    out = env.ok(env.id1, env.kc1, "--clusternet-as=alice", "--clusternet-as-group=someone-else",
                 "--clusternet-as-group=cid-readers", "get", "cm", "for-readers", "-n", env.ns, "-o", "name")
    assert out == "configmap/for-readers\n"


def test_unknown_cluster_and_bad_flags_are_one_line(env: Env) -> None:
    for cluster, args, expected in (
            ("no-such-cluster", ("get", "ns"), "error: no ManagedCluster with cluster id or name 'no-such-cluster'"),
            (env.id1, ("get", "ns", "--as=bob"), "error: --as cannot be used with --cluster-id"),
            (env.id1, (), "error: --cluster-id needs a kubectl command")):
        proc = env.run(cluster, env.kc1, *args)
        assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc
        assert proc.stderr.startswith(expected), proc.stderr
    bad_token = child_kubeconfig(env.tmp / "bad.kubeconfig", env.child1, "not-a-token")
    proc = env.run(env.id1, bad_token, "get", "ns")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc
    assert "rejected the token of --child-kubeconfig" in proc.stderr and "(401 Unauthorized)" in proc.stderr


def test_watch_sees_an_event(env: Env) -> None:
    cmd = [*PLUGIN, f"--kubeconfig={env.parent.kubeconfig}", "--cluster-id", env.id1, "--child-kubeconfig",
           str(env.kc1), "get", "cm", "-n", env.ns, "-w", "-o", "name", "--request-timeout=60s"]
    watcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.env())
    try:
        assert watcher.stdout is not None
        wait_for(lambda: list(env.tmpdir.iterdir()), timeout=30, what="kubectl started")
        time.sleep(2)  # the watch is open
        kubectl(env.child1, "create", "configmap", "late-arrival", "-n", env.ns)
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = watcher.stdout.readline()
            seen.append(line)
            if line.strip() == "configmap/late-arrival":
                break
        assert "configmap/late-arrival\n" in seen, seen
    finally:
        watcher.terminate()  # SIGTERM to the plugin, which passes it on to kubectl
        watcher.wait(timeout=15)
    assert env.no_kubeconfig_left()


def test_exec_logs_port_forward_reach_the_child(env: Env) -> None:
    """No kubelet here: the commands get as far as the child's API server, which answers in its own words. The
    pod is bound to a node that does not exist and marked Running, so kubectl's own checks pass and exec and
    port-forward make their upgrade request through the hub; the child then cannot reach the node."""
    logs = env.run(env.id1, env.kc1, "logs", "no-such-pod", "-n", env.ns)
    assert logs.returncode == 1 and 'pods "no-such-pod" not found' in logs.stderr, logs
    kubectl(env.child1, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nowhere", "namespace": env.ns},
        "spec": {"nodeName": "no-kubelet", "containers": [{"name": "c", "image": "registry.invalid/c:1"}]}}))
    kubectl(env.child1, "patch", "pod", "nowhere", "-n", env.ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"phase": "Running"}}))
    for args in (("exec", "nowhere", "-n", env.ns, "--", "true"),
                 ("exec", "-i", "nowhere", "-n", env.ns, "--", "cat"),
                 ("port-forward", "pod/nowhere", "-n", env.ns, "18080:80"),
                 ("logs", "nowhere", "-n", env.ns)):
        proc = env.run(env.id1, env.kc1, *args, input="", timeout=60)
        assert proc.returncode != 0, (args, proc)
        assert "no-kubelet" in proc.stderr, (args, proc.stderr)  # the child's own answer about its node
    assert env.no_kubeconfig_left()


class FakeKubelet:
    """The two kubelet endpoints the child's API server calls for `logs` and `exec`, on 127.0.0.1 over TLS (the
    test API servers verify no kubelet certificate, as kube-apiserver without --kubelet-certificate-authority):
    so the bytes of a log and of an exec session really travel kubelet → child API server → agent → tunnel →
    hub → parent → kubectl."""

    LOG = "first line from the kubelet\nsecond line\n"
    OUTPUT = b"hello from the kubelet\n"
    STARTUP = 1.0  # seconds; far longer than kubectl needs to register its streams, even on a loaded CI machine

    def __init__(self) -> None:
        import asyncio
        import ssl
        import threading

        from clusternet_api.pki import issue_cert, make_ca
        from clusternet_api.tlsfiles import load_cert_chain_pem

        _, ca_key, ca_cert = make_ca("fake-kubelet-ca")
        pair = issue_cert(ca_key, ca_cert, "fake-kubelet", ips=["127.0.0.1"], server=True)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        load_cert_chain_pem(self.tls, pair.cert_pem, pair.key_pem)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self.seen: list[str] = []

    async def _start(self) -> None:
        import asyncio

        from aiohttp import WSMsgType, web

        async def logs(request: web.Request) -> web.StreamResponse:
            self.seen.append(request.path)
            return web.Response(text=self.LOG)

        async def exec_(request: web.Request) -> web.StreamResponse:
            self.seen.append(request.path_qs)
            ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
            await ws.prepare(request)
            # A real kubelet answers after the container's process started. kubectl (client-go) registers its
            # stream ids only after it starts reading the upgraded connection, and discards frames that come
            # before ("Unknown stream id 1, discarding message", then "closed all streams"): CI met that race
            # once in ~30 runs when these frames came at once. The pause stands in for the process start.
            await asyncio.sleep(self.STARTUP)
            await ws.send_bytes(b"\x01" + self.OUTPUT)
            await ws.send_bytes(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())
            await ws.close()
            async for msg in ws:  # drain until the client closes
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
            return ws

        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", logs)
        app.router.add_route("*", "/exec/{ns}/{pod}/{container}", exec_)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def __enter__(self) -> FakeKubelet:
        import asyncio

        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_logs_and_exec_stream_from_a_kubelet_through_the_hub(env: Env) -> None:
    with FakeKubelet() as kubelet:
        node = f"fake-kubelet-{env.ns}"
        kubectl(env.child1, "apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))
        kubectl(env.child1, "patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}}))
        kubectl(env.child1, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "streamed", "namespace": env.ns},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/c:1"}]}}))
        kubectl(env.child1, "patch", "pod", "streamed", "-n", env.ns, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"phase": "Running"}}))
        try:
            assert env.ok(env.id1, env.kc1, "logs", "streamed", "-n", env.ns) == FakeKubelet.LOG
            assert f"/containerLogs/{env.ns}/streamed/c" in kubelet.seen
            out = env.ok(env.id1, env.kc1, "exec", "streamed", "-n", env.ns, "--", "echo", "hi")
            assert out == FakeKubelet.OUTPUT.decode(), out
            assert any(p.startswith(f"/exec/{env.ns}/streamed/c?") and "command=echo" in p for p in kubelet.seen)
        finally:
            kubectl(env.child1, "delete", "node", node, "--wait=false", check=False)
    assert env.no_kubeconfig_left()
