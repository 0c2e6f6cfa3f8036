"""Helpers for integration tests: the real kubectl, and waiting for eventual consistency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from clusternet_api import known
from clusternet_core.rendering import manifest_labels, manifest_name
from clusternet_testing.controlplane import ControlPlane, binary_version

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.3, what: str = "condition") -> T:
    """Poll until `check()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:  # the last value seen says what was there instead
            raise AssertionError(f"{what} not met within {timeout}s (last: {str(result)[:300]})")
        time.sleep(interval)


class KubectlWatch:
    """Every version of the objects `kubectl get <args> -w -o json` prints, from the moment the watch is
    open: what a test asserts about each status written, not only about the one it polled last."""

    def __init__(self, cp: ControlPlane, *args: str) -> None:
        self.proc = subprocess.Popen(["kubectl", f"--kubeconfig={cp.kubeconfig}", "get", *args, "-w", "-o", "json",
                                      "-v=6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()
        # -v=6 logs each request: the watch is open once its GET (watch=true) got its 200
        wait_for(lambda: any("watch=true" in line and "200 OK" in line for line in list(self.err)), timeout=20,
                 interval=0.05, what="kubectl watch established")

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def versions(self) -> list[dict[str, Any]]:
        """The versions so far, oldest first, each once."""
        text, decoder, pos, found = "".join(self.out), json.JSONDecoder(), 0, []
        seen: set[tuple[str, str, str]] = set()
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                break  # the last object is still being printed
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace") or "", meta.get("name") or "", meta.get("resourceVersion") or "")
            if key not in seen:
                seen.add(key)
                found.append(obj)
        return found

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def kubectl(cp: ControlPlane | Path, *args: str, check: bool = True, input: str | None = None,
            token: str | None = None, server: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against a control plane (or a kubeconfig path)."""
    kubeconfig = cp.kubeconfig if isinstance(cp, ControlPlane) else cp
    cmd = ["kubectl", f"--kubeconfig={kubeconfig}"]
    if token:
        cmd.append(f"--token={token}")
    if server:
        cmd.append(f"--server={server}")
    env = dict(os.environ, KUBECTL_COMMAND_HEADERS="false")
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, input=input, env=env,
                          timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def api_request(cp: ControlPlane, method: str, path: str, body: Any, *, token: str,
                content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
    """A real HTTPS request to a control plane as `token`: (HTTP status, parsed answer), refusals included."""
    import ssl
    import urllib.error
    import urllib.request

    req = urllib.request.Request(cp.url + path, data=json.dumps(body).encode(), method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(cp.ca_file)),
                                    timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def parent_token(child: ControlPlane, namespace: str = known.SYSTEM_NAMESPACE) -> str:
    """The token the child's agent uses on the parent, from its Secret `parent-cluster`."""
    import base64

    secret = json.loads(kubectl(child, "get", "secret", known.PARENT_CREDENTIALS_SECRET, "-n", namespace,
                                "-o", "json").stdout)
    return base64.b64decode(secret["data"]["token"]).decode()


PLUGIN = (sys.executable, "-m", "clusternet_kubectl")
"""The `kubectl-clusternet` CLI as any checkout runs it: the console script is only as current as the last
install of the venv, and may point at another checkout's code."""


def run_plugin(parent: ControlPlane, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`kubectl clusternet ARGS` against the parent, whatever its exit code."""
    return subprocess.run([*PLUGIN, f"--kubeconfig={parent.kubeconfig}", *args], input=input,
                          capture_output=True, text=True, timeout=120, check=False)


def plugin(parent: ControlPlane, *args: str) -> str:
    """`kubectl clusternet ARGS` against the parent, which must succeed; its stdout."""
    proc = run_plugin(parent, *args)
    assert proc.returncode == 0, f"kubectl clusternet {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


# --- applications on a parent with real children (shared by the deployment test modules) ---------------------

PLURALS: dict[str, str] = {"Namespace": "namespaces", "Service": "services", "Deployment": "deployments"}
"""Resource names of the kinds stored as templates; modules add theirs (`kind.lower() + "s"` otherwise)."""


def store_template(parent: ControlPlane, obj: dict[str, Any]) -> None:
    """What `kubectl clusternet apply` stores: a Manifest in clusternet-reserved."""
    meta = obj["metadata"]
    plural = PLURALS.get(obj["kind"], obj["kind"].lower() + "s")
    kubectl(parent, "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps({
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest",
        "metadata": {"name": manifest_name(plural, meta.get("namespace"), meta["name"]),
                     "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(obj)},
        "template": obj}))


def feed(obj: dict[str, Any]) -> dict[str, str]:
    f = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"]}
    if obj["metadata"].get("namespace"):
        f["namespace"] = obj["metadata"]["namespace"]
    return f


def mc_for(parent: ControlPlane, child: ControlPlane) -> dict[str, Any]:
    """The ManagedCluster on the parent for a child (by the child's cluster ID)."""
    cid = kubectl(child, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
    items = json.loads(kubectl(parent, "get", "mcls", "-A", "-l", f"{known.LABEL_CLUSTER_ID}={cid}",
                               "-o", "json").stdout)["items"]
    assert len(items) == 1
    mc: dict[str, Any] = items[0]
    return mc


def registered(parent: ControlPlane, child: ControlPlane) -> bool:
    cid = kubectl(child, "get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
    return bool(kubectl(parent, "get", "mcls", "-A", "-l", f"{known.LABEL_CLUSTER_ID}={cid}", "-o", "name").stdout)


def descriptions(parent: ControlPlane, sub: str) -> dict[str, dict[str, Any]]:
    """A Subscription's Descriptions by cluster namespace."""
    items = json.loads(kubectl(parent, "get", "desc", "-A", "-l", f"{known.LABEL_SUBS_NAME}={sub}",
                               "-o", "json").stdout)["items"]
    return {i["metadata"]["namespace"]: i for i in items}


def applied_below_pdb(result: subprocess.CompletedProcess[str], cp: ControlPlane) -> str:
    """The output of `kubectl apply` of deploy/hub, which must succeed; below Kubernetes 1.21 (no policy/v1)
    everything but the hub's PodDisruptionBudget, which kubectl reports in one error line (README, "Install on
    real clusters")."""
    if result.returncode == 0 or binary_version(cp.bin_dir / "kube-apiserver") >= (1, 21):
        assert result.returncode == 0, f"{result.args} failed ({result.returncode}): {result.stderr}"
        return result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and 'kind "PodDisruptionBudget" in version "policy/v1"' in errors[0], result.stderr
    return result.stdout


def new_registration_request(cp: ControlPlane, name_prefix: str) -> str:
    """A ClusterRegistrationRequest for a new cluster ID, as an agent creates it (with a public key); the ID."""
    import uuid

    from clusternet_api.sealing import generate_private_key, public_key_of

    cid = str(uuid.uuid4())
    crr = {"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ClusterRegistrationRequest",
           "metadata": {"name": f"clusternet-{cid}",
                        "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: public_key_of(generate_private_key())}},
           "spec": {"clusterId": cid, "clusterName": f"{name_prefix}-{cid[:5]}", "syncMode": "Pull"}}
    kubectl(cp, "create", "-f", "-", input=json.dumps(crr))
    return cid
