"""Reaching child API servers through agent tunnels: kubectl, watches, load, failures and the aggregated API.

child1's agent dials the hub the default way, through the parent's kube-apiserver (aggregated API);
child2's agent dials the hub's own port. The hub listens on 127.1.0.10:443, named by an ExternalName
Service of the parent (endpoints cannot be loopback addresses), so the parent's aggregation layer reaches
it for real.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl, wait_for
from clusternet_testing.processes import (
    Proc,
    agent_proc,
    hub_proc,
    hub_tls,
    install_bootstrap,
    register_aggregated_api,
    service_account_token,
    unregister_aggregated_api,
)

pytestmark = pytest.mark.integration

HUB_IP = "127.1.0.10"
HUB = f"https://{HUB_IP}:443"
SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"


def cid(cp: ControlPlane) -> str:
    return kubectl(cp, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout


@pytest.fixture(scope="module")
def env(parent: ControlPlane, child1: ControlPlane, child2: ControlPlane,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logdir = tmp_path_factory.mktemp("tunnel")
    install_bootstrap(parent)
    ca, crt, key = hub_tls(logdir / "tls", [HUB_IP, "127.0.0.1"], ["clusternet-hub.clusternet-system.svc"])
    register_aggregated_api(parent, HUB_IP, ca)
    hub = hub_proc(parent, logdir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
                   f"--requestheader-client-ca-file={parent.front_proxy_ca_file}", port=443)
    hub.args = [a if not a.startswith("--bind-address") else f"--bind-address={HUB_IP}" for a in hub.args]
    hub.start()
    gates = "--feature-gates=SocketConnection=true,AppPusher=true"
    # Registrations outlive modules and a ManagedCluster keeps the sync mode of its first registration: child1
    # registers in Dual mode and child2 in Pull mode in every module, so none depends on which ran first.
    a1 = agent_proc(child1, parent, logdir, "child1", "--cluster-sync-mode=Dual", gates)
    a2 = agent_proc(child2, parent, logdir, "child2", gates, f"--tunnel-url={HUB}", f"--tunnel-ca-file={ca}")
    a1.start()
    a2.start()
    try:
        yield from _ready_env(hub, a1, a2, ca, logdir, child1, child2)
    finally:
        for p in (a1, a2, hub):
            p.stop()
        unregister_aggregated_api(parent)


def _ready_env(hub: Proc, a1: Proc, a2: Proc, ca: Path, logdir: Path, child1: ControlPlane,
               child2: ControlPlane) -> Iterator[dict[str, Any]]:
    tokens = {"admin1": service_account_token(child1, "proxy-test", "admin", "cluster-admin"),
              "nobody1": service_account_token(child1, "proxy-test", "nobody"),
              "admin2": service_account_token(child2, "proxy-test", "admin", "cluster-admin")}
    e = {"hub": hub, "a1": a1, "a2": a2, "ca": ca, "tokens": tokens, "id1": cid(child1), "id2": cid(child2),
         "logdir": logdir}
    wait_for(lambda: proxied_status(e, e["id1"], "/version", tokens["admin1"]) == 200 and
             proxied_status(e, e["id2"], "/version", tokens["admin2"]) == 200, timeout=60, what="tunnels up")
    yield e


def ssl_ctx(env: dict[str, Any]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(env["ca"]))


def proxied_status(env: dict[str, Any], cluster: str, path: str, token: str | None) -> int:
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"{HUB}{SOCKETS}/{cluster}/proxy/direct{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, context=ssl_ctx(env), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def via_proxy(env: dict[str, Any], cluster: str, token: str, *args: str,
              input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["kubectl", f"--server={HUB}{SOCKETS}/{cluster}/proxy/direct", f"--token={token}",
           f"--certificate-authority={env['ca']}", "--kubeconfig=/dev/null", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {proc.stderr}")
    return proc


def test_kubectl_get_apply_delete_through_the_tunnel(env: dict[str, Any], child1: ControlPlane) -> None:
    out = via_proxy(env, env["id1"], env["tokens"]["admin1"], "get", "ns").stdout
    assert "kube-system" in out and "proxy-test" in out
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "via-tunnel", "namespace": "default"},
          "data": {"hello": "world"}}
    via_proxy(env, env["id1"], env["tokens"]["admin1"], "apply", "-f", "-", input=json.dumps(cm))
    assert kubectl(child1, "get", "cm", "via-tunnel", "-o", "jsonpath={.data.hello}").stdout == "world"
    via_proxy(env, env["id1"], env["tokens"]["admin1"], "delete", "cm", "via-tunnel")
    assert kubectl(child1, "get", "cm", "via-tunnel", check=False).returncode != 0
    # each child is reached through its own tunnel
    assert env["id2"] in via_proxy(env, env["id2"], env["tokens"]["admin2"], "get", "ns", "kube-system",
                                   "-o", "jsonpath={.metadata.uid}").stdout


def test_child_rbac_applies(env: dict[str, Any]) -> None:
    denied = via_proxy(env, env["id1"], env["tokens"]["nobody1"], "get", "secrets", "-n", "kube-system", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    assert "system:serviceaccount:proxy-test:nobody" in denied.stderr  # the child judged the caller, not the hub


def test_watch_receives_events_created_afterwards(env: dict[str, Any], child1: ControlPlane) -> None:
    kubectl(child1, "create", "namespace", "watched", check=False)
    cmd = ["kubectl", f"--server={HUB}{SOCKETS}/{env['id1']}/proxy/direct", f"--token={env['tokens']['admin1']}",
           f"--certificate-authority={env['ca']}", "--kubeconfig=/dev/null", "get", "cm", "-n", "watched",
           "-w", "-o", "name"]
    watcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        kubectl(child1, "create", "configmap", "late-arrival", "-n", "watched")
        deadline = time.monotonic() + 20
        seen = ""
        assert watcher.stdout is not None
        while time.monotonic() < deadline and "late-arrival" not in seen:
            seen += watcher.stdout.readline()
        assert seen.splitlines()[-1] == "configmap/late-arrival"  # arrived on the open watch
    finally:
        watcher.kill()
        watcher.wait()


def test_large_list_is_complete(env: dict[str, Any], child1: ControlPlane) -> None:
    kubectl(child1, "create", "namespace", "big", check=False)
    blob = "x" * (900 * 1024)
    for i in range(6):
        child1.request_json("POST", "/api/v1/namespaces/big/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{i}"}, "data": {"blob": blob}})
    direct = kubectl(child1, "get", "cm", "-n", "big", "-o", "json").stdout
    tunnelled = via_proxy(env, env["id1"], env["tokens"]["admin1"], "get", "cm", "-n", "big", "-o", "json").stdout
    assert len(tunnelled) > 5 * 1024 * 1024
    assert json.loads(tunnelled)["items"] == json.loads(direct)["items"]


async def _concurrent(env: dict[str, Any], n: int) -> tuple[list[int], list[str]]:
    headers = {"Authorization": f"Bearer {env['tokens']['admin1']}"}
    base = f"{HUB}{SOCKETS}/{env['id1']}/proxy/direct"
    events: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx(env), limit=0)) as s:
        async def watch() -> None:
            async with s.get(f"{base}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=30",
                             headers=headers) as r:
                async for line in r.content:
                    events.append(json.loads(line)["object"]["metadata"]["name"])
                    if "during-load" in events:
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)

        async def get(i: int) -> int:
            async with s.get(f"{base}/api/v1/namespaces/kube-system", headers=headers) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(get(i) for i in range(n)))
        async with s.post(f"{base}/api/v1/namespaces/default/configmaps", headers=headers,
                          json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "during-load"}}) as r:
            assert r.status == 201
        await asyncio.wait_for(watcher, 20)
    return list(statuses), events


def test_fifty_concurrent_requests_while_a_watch_stays_open(env: dict[str, Any]) -> None:
    statuses, events = asyncio.run(_concurrent(env, 50))
    assert statuses == [200] * 50
    assert "during-load" in events


def test_unauthorised_attempts_are_rejected(env: dict[str, Any]) -> None:
    assert proxied_status(env, env["id1"], "/api/v1/namespaces", None) == 401  # no credentials at all
    # another cluster's token means nothing to this child's apiserver
    assert proxied_status(env, env["id1"], "/api/v1/namespaces", env["tokens"]["admin2"]) == 401
    # kubectl says whose credentials failed: the child's, not the parent's (a Warning header from the hub)
    refused = via_proxy(env, env["id1"], env["tokens"]["admin2"], "get", "ns", check=False)
    assert refused.returncode == 1 and "rejected the child credentials" in refused.stderr, refused.stderr
    assert proxied_status(env, "00000000-0000-4000-8000-000000000000", "/version", "x") == 404

    # child1's agent identity trying to open child2's socket
    secret = json.loads(subprocess.run(
        ["kubectl", f"--kubeconfig={env['a1'].args[1].split('=', 1)[1]}", "get", "secret", "parent-cluster",
         "-n", "clusternet-system", "-o", "json"], capture_output=True, text=True, check=True).stdout)
    import base64

    agent1_token = base64.b64decode(secret["data"]["token"]).decode()

    async def hijack() -> int:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx(env))) as s:
            try:
                async with s.ws_connect(f"{HUB}{SOCKETS}/{env['id2']}",
                                        headers={"Authorization": f"Bearer {agent1_token}"}):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    assert asyncio.run(hijack()) == 403
    # child2's tunnel survived the attempt
    assert proxied_status(env, env["id2"], "/version", env["tokens"]["admin2"]) == 200


def test_tunnel_health_and_metrics(env: dict[str, Any], parent: ControlPlane) -> None:
    items = json.loads(kubectl(parent, "get", "mcls", "-A", "-o", "json").stdout)["items"]
    for mc in items:
        if mc["spec"]["clusterId"] in (env["id1"], env["id2"]):
            conds = {c["type"]: c["status"] for c in mc["status"]["conditions"]}
            assert conds.get(known.CONDITION_SOCKET) == "True", conds
            assert mc["status"]["useSocket"] is True
    import urllib.request

    with urllib.request.urlopen(f"{HUB}/metrics", context=ssl_ctx(env), timeout=10) as r:
        text = r.read().decode()
    assert "clusternet_socket_connections 2.0" in text
    assert "clusternet_socket_streams_total" in text


def test_aggregated_api_end_to_end(env: dict[str, Any], parent: ControlPlane) -> None:
    wait_for(lambda: kubectl(parent, "get", "apiservice", "v1alpha1.proxies.clusternet.io", "-o",
                             "jsonpath={.status.conditions[0].status}").stdout == "True", timeout=60,
             what="APIService available")
    assert "proxies.clusternet.io/v1alpha1" in kubectl(parent, "api-versions").stdout
    path = f"{SOCKETS}/{env['id1']}/proxy/direct/api/v1/namespaces/kube-system"
    # the caller's parent identity impersonates "clusternet" and carries the child token as a user extra
    import yaml

    cfg = yaml.safe_load(parent.kubeconfig.read_text())
    cfg["users"][0]["user"].update({"as": "clusternet",
                                    "as-user-extra": {"clusternet-token": [env["tokens"]["admin1"]]}})
    impersonating = env["logdir"] / "impersonating.kubeconfig"
    impersonating.write_text(yaml.safe_dump(cfg))
    out = kubectl(impersonating, "get", "--raw", path)
    assert json.loads(out.stdout)["metadata"]["uid"] == env["id1"]
    ns = kubectl(impersonating, "--server", f"{parent.url}{SOCKETS}/{env['id1']}/proxy/direct", "get", "ns")
    assert "proxy-test" in ns.stdout
    # without child credentials the hub refuses, with a message
    refused = kubectl(parent, "get", "--raw", path, check=False)
    assert refused.returncode != 0 and "child-cluster credentials" in refused.stderr


def test_agent_killed_mid_watch_then_reconnects(env: dict[str, Any], parent: ControlPlane) -> None:
    async def scenario() -> tuple[str, float]:
        headers = {"Authorization": f"Bearer {env['tokens']['admin2']}"}
        base = f"{HUB}{SOCKETS}/{env['id2']}/proxy/direct"
        async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx(env))) as s,
                    s.get(f"{base}/api/v1/namespaces?watch=1&timeoutSeconds=60", headers=headers) as r):
            assert r.status == 200
            await r.content.readline()  # the stream is live
            env["a2"].kill()
            started = time.monotonic()
            ending = "clean"
            try:
                async with asyncio.timeout(15):
                    while await r.content.readline():
                        pass
            except aiohttp.ClientPayloadError:
                ending = "payload-error"
            ended_after = time.monotonic() - started
        return ending, ended_after

    ending, ended_after = asyncio.run(scenario())
    assert ending == "payload-error" and ended_after < 10  # aborted: no terminating chunk
    assert proxied_status(env, env["id2"], "/version", env["tokens"]["admin2"]) == 503
    env["a2"].start()
    restarted = time.monotonic()
    wait_for(lambda: proxied_status(env, env["id2"], "/version", env["tokens"]["admin2"]) == 200, timeout=15,
             interval=0.1, what="request through the re-established tunnel")
    assert time.monotonic() - restarted < 5.0


def impersonating_kubeconfig(env: dict[str, Any], parent: ControlPlane, child_token: str) -> Path:
    """The parent's admin kubeconfig impersonating "clusternet", the child token as a user extra."""
    import yaml

    cfg = yaml.safe_load(parent.kubeconfig.read_text())
    cfg["users"][0]["user"].update({"as": "clusternet", "as-user-extra": {"clusternet-token": [child_token]}})
    path = env["logdir"] / "impersonating-watch.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


class KubectlWatch:
    """A real kubectl left running, its output lines collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(["kubectl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        self.reader = threading.Thread(target=self.lines.extend, args=(iter(self.proc.stdout.readline, ""),),
                                       daemon=True)
        self.reader.start()

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def outcome(self, timeout: float) -> tuple[int, str]:
        """(exit code, stderr) once kubectl ended by itself."""
        self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read()


def test_kubectl_watch_fails_when_the_agent_is_killed(env: dict[str, Any], parent: ControlPlane,
                                                      child1: ControlPlane, child2: ControlPlane) -> None:
    """A cut tunnel must not end a watch as if the child had ended it (issue 10): the hub aborts the response,
    so kubectl reports the cut, on the hub's own port (HTTP/1.1: no terminating chunk) and through the
    parent's aggregation layer (which turns the abort into an HTTP/2 stream reset). Before, every watch
    here ended with exit code 0 and nothing on stderr.

    `kubectl get -w` itself exits 0 however its watch ends (get.go ignores the watch's outcome, and
    client-go ends a stream watch quietly on an unexpected EOF), so for it the proof is client-go's own
    note of the unexpected EOF; `kubectl get --raw` streams the watch and fails on it.
    """
    suffix = str(time.monotonic_ns())
    for cp in (child1, child2):
        kubectl(cp, "create", "namespace", "cut-watch", check=False)
        kubectl(cp, "create", "configmap", f"before-{suffix}", "-n", "cut-watch")
    hub2 = [f"--token={env['tokens']['admin2']}", f"--certificate-authority={env['ca']}", "--kubeconfig=/dev/null"]
    via_parent = [f"--kubeconfig={impersonating_kubeconfig(env, parent, env['tokens']['admin1'])}"]
    path1, path2 = (f"{SOCKETS}/{env[c]}/proxy/direct/api/v1/namespaces/cut-watch/configmaps" for c in ("id1", "id2"))
    raw = {"direct": KubectlWatch(*hub2, f"--server={HUB}", "get", "--raw", f"{path2}?watch=1"),
           "aggregated": KubectlWatch(*via_parent, "get", "--raw", f"{path1}?watch=1")}
    get_w = KubectlWatch(*hub2, f"--server={HUB}{SOCKETS}/{env['id2']}/proxy/direct", "get", "cm", "-n",
                         "cut-watch", "-w", "-o", "name", "-v=1")
    watches = [*raw.values(), get_w]
    try:
        wait_for(lambda: all(w.saw(f"before-{suffix}") for w in watches), timeout=60, what="watches started")
        for cp in (child1, child2):
            kubectl(cp, "create", "configmap", f"after-{suffix}", "-n", "cut-watch")
        wait_for(lambda: all(w.saw(f"after-{suffix}") for w in watches), timeout=30, what="events on open watches")
        env["a1"].kill()
        env["a2"].kill()
        killed = time.monotonic()
        for path, watch in raw.items():
            code, stderr = watch.outcome(timeout=15)
            assert code != 0 and "error" in stderr.lower(), f"{path}: the cut watch ended normally: {stderr!r}"
        assert "Unexpected EOF during watch stream event decoding" in get_w.outcome(timeout=15)[1]
        assert time.monotonic() - killed < 10
    finally:
        for watch in watches:
            watch.proc.kill()
            watch.proc.wait()
        env["a1"].start()
        env["a2"].start()
    wait_for(lambda: all(proxied_status(env, env[c], "/version", env["tokens"][t]) == 200
                         for c, t in (("id1", "admin1"), ("id2", "admin2"))), timeout=60, what="tunnels back up")


def test_logs_have_no_tokens(env: dict[str, Any]) -> None:
    logs = "".join(Path(p.log).read_text(errors="replace") for p in (env["hub"], env["a1"], env["a2"]))
    for token in env["tokens"].values():
        assert token not in logs


def test_upgrade_requests_are_relayed(env: dict[str, Any], child1: ControlPlane) -> None:
    """A websocket watch is a real HTTP upgrade a bare apiserver serves (exec needs a kubelet): the
    hub relays the upgraded connection as raw bytes, so SPDY exec/port-forward travel the same way."""
    kubectl(child1, "create", "namespace", "ws-watch", check=False)

    async def scenario() -> str:
        headers = {"Authorization": f"Bearer {env['tokens']['admin1']}"}
        url = (f"{HUB}{SOCKETS}/{env['id1']}/proxy/direct/api/v1/namespaces/ws-watch/configmaps"
               "?watch=1&timeoutSeconds=30")
        async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx(env))) as s,
                    s.ws_connect(url, headers=headers, origin=HUB) as ws):  # x/net/websocket wants an Origin
            await asyncio.sleep(0.5)
            await asyncio.to_thread(kubectl, child1, "create", "configmap", "over-websocket", "-n", "ws-watch")
            async with asyncio.timeout(20):
                async for msg in ws:
                    text = msg.data if isinstance(msg.data, str) else bytes(msg.data).decode()
                    if "over-websocket" in text:
                        return str(json.loads(text)["type"])
        return "closed"

    assert asyncio.run(scenario()) == "ADDED"
    # an upgrade the child refuses comes back as the child's own answer
    async def refused() -> int:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx(env))) as s:
            try:
                async with s.ws_connect(f"{HUB}{SOCKETS}/{env['id1']}/proxy/direct/api/v1/namespaces?watch=1",
                                        headers={"Authorization": "Bearer not-a-token"}):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    assert asyncio.run(refused()) == 401
