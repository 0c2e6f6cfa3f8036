"""Run the real `clusternet-hub` and `clusternet-agent` entry points as processes, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from clusternet_testing.controlplane import REPO_ROOT as REPO
from clusternet_testing.controlplane import ControlPlane, default_signal_mask, free_port

BOOTSTRAP_TOKEN = "07401b.f395accd246ae52d"


@dataclass
class Proc:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Proc:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.extra_env)
        # The console scripts import whatever checkout the venv was installed from: put this checkout first.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=default_signal_mask)
        out.close()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# Leader election is on by default, as in Clusternet; tests run one hub and one agent per child and restart
# them after kill -9, which would then wait a whole lease duration (15 s) for their own old Lease: the harness
# turns it off unless a test asks for it (`extra` comes last, so --leader-elect=true there wins).
NO_ELECTION = "--leader-elect=false"
# Clusternet's --peer-port default (8123) would make every hub of a test run fight for one port: the harness
# turns forwarding between replicas off unless a test gives ports (--peer-port=<n> in `extra` wins).
NO_PEERS = "--peer-port=0"


def hub_proc(parent: ControlPlane, logdir: Path, *extra: str, port: int | None = None) -> Proc:
    port = port or free_port()
    return Proc("hub", [_bin("clusternet-hub"), f"--kubeconfig={parent.kubeconfig}", "--bind-address=127.0.0.1",
                        f"--secure-port={port}", "--health-check-interval=0.5", "--log-format=text",
                        NO_ELECTION, NO_PEERS, *extra], logdir / "hub.log")


def agent_proc(child: ControlPlane, parent: ControlPlane, logdir: Path, name: str, *extra: str,
               token: str = BOOTSTRAP_TOKEN, parent_url: str | None = None) -> Proc:
    args = [_bin("clusternet-agent"), f"--kubeconfig={child.kubeconfig}",
            f"--cluster-reg-parent-url={parent_url or parent.url}", f"--cluster-reg-token={token}",
            f"--parent-ca-file={parent.ca_file}", f"--cluster-reg-name={name}",
            "--cluster-status-collect-frequency=1s", "--cluster-status-update-frequency=2s",
            "--log-format=text", "--bind-address=127.0.0.1", f"--secure-port={free_port()}", NO_ELECTION, *extra]
    return Proc(f"agent-{name}", args, logdir / f"agent-{name}.log")


def deployment_container(path: Path) -> dict[str, object]:
    """The first container of the Deployment in a manifest file (deploy/*/..-deployment.yaml): its args and env
    are what a process started in its place is given."""
    import yaml

    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "Deployment":
            container: dict[str, object] = doc["spec"]["template"]["spec"]["containers"][0]
            return container
    raise LookupError(f"no Deployment in {path}")


def flag_value(proc: Proc, name: str) -> str:
    """The last value a process was given for `--name=value` (the one that counts)."""
    return [a.split("=", 1)[1] for a in proc.args if a.startswith(f"--{name}=")][-1]


# The agent's namespace is not a flag (Clusternet's agent always uses clusternet-system), so extra agents on a
# child run the real agent code in a process of their own with AgentOptions, as bench/registration.py does.
AGENT_MAIN = """
import asyncio, json, signal, sys
from clusternet_agent.agent import run_agent
from clusternet_agent.options import AgentOptions
from clusternet_api.logs import setup_logging

setup_logging("clusternet-agent", "INFO", json_format=False)
opts = AgentOptions(**json.loads(sys.argv[1]))

async def main() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await run_agent(opts, stop)

asyncio.run(main())
"""


def namespaced_agent_proc(name: str, logdir: Path, **opts: object) -> Proc:
    """An agent with its own namespace in the child (AgentOptions `namespace`) and, usually, its own cluster ID."""
    return Proc(f"agent-{name}", [sys.executable, "-c", AGENT_MAIN, json.dumps(opts)], logdir / f"agent-{name}.log")


def register_aggregated_api(parent: ControlPlane, hub_ip: str, ca: Path, shadow: bool = False) -> None:
    """The Service and APIService deploy/hub ships, pointed at a hub process on hub_ip:443 (an address in
    the parent's loopback service range, so an ExternalName Service can name it), and the proxy's RBAC.
    With `shadow`, the shadow API's APIService v1alpha1.shadow too. unregister_aggregated_api removes them: an
    unavailable one left behind fails the parent's namespace controller's discovery, and every namespace deleted
    later stays Terminating (NamespaceDeletionDiscoveryFailure), a later module's cluster removal with it."""
    import base64

    from clusternet_testing.helpers import kubectl

    kubectl(parent, "create", "namespace", "clusternet-system", check=False)
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "clusternet-hub", "namespace": "clusternet-system"},
        "spec": {"type": "ExternalName", "externalName": hub_ip, "ports": [{"port": 443}]}}))
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1alpha1.proxies.clusternet.io"},
        "spec": {"group": "proxies.clusternet.io", "version": "v1alpha1", "groupPriorityMinimum": 1000,
                 "versionPriority": 100, "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                 "service": {"name": "clusternet-hub", "namespace": "clusternet-system", "port": 443}}}))
    kubectl(parent, "apply", "-f", str(REPO / "deploy" / "hub" / "04-socketsproxy_rbac.yaml"))
    if shadow:
        kubectl(parent, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1alpha1.shadow"},
            "spec": {"group": "shadow", "version": "v1alpha1", "groupPriorityMinimum": 1, "versionPriority": 1,
                     "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                     "service": {"name": "clusternet-hub", "namespace": "clusternet-system", "port": 443}}}))


def unregister_aggregated_api(parent: ControlPlane) -> None:
    """Remove what register_aggregated_api registered, once its hub is stopped."""
    from clusternet_testing.helpers import kubectl

    kubectl(parent, "delete", "apiservice", "v1alpha1.shadow", "v1alpha1.proxies.clusternet.io", "--ignore-not-found",
            check=False)


def install_bootstrap(parent: ControlPlane) -> None:
    """The bootstrap token (manifests/samples) and its RBAC (deploy/hub), as an admin would apply them."""
    import yaml

    for f in (REPO / "deploy" / "hub" / "03-bootstrap_rbac.yaml",
              REPO / "manifests" / "samples" / "cluster_bootstrap_token.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                parent.apply_manifest(doc)


def service_account_token(cp: ControlPlane, namespace: str, name: str, cluster_role: str | None = None) -> str:
    """A TokenRequest token for a (new) ServiceAccount, optionally bound to a ClusterRole."""
    import contextlib
    import urllib.error

    with contextlib.suppress(urllib.error.HTTPError):
        cp.request_json("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": namespace}})
    with contextlib.suppress(urllib.error.HTTPError):
        cp.request_json("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    if cluster_role:
        cp.apply_manifest({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                           "metadata": {"name": f"{namespace}-{name}-{cluster_role}"},
                           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                       "name": cluster_role},
                           "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    result = cp.request_json("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                             {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    return str(result["status"]["token"])  # type: ignore[index]


def hub_tls(dir: Path, ips: list[str], dns: list[str]) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for the hub: (ca.crt, tls.crt, tls.key)."""
    from clusternet_api.pki import issue_cert, make_ca

    ca, key, cert = make_ca("clusternet-hub-test-ca")
    pair = issue_cert(key, cert, "clusternet-hub", dns_names=dns, ips=ips, server=True)
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "ca.crt").write_bytes(ca.cert_pem)
    (dir / "tls.crt").write_bytes(pair.cert_pem)
    (dir / "tls.key").write_bytes(pair.key_pem)
    return dir / "ca.crt", dir / "tls.crt", dir / "tls.key"
