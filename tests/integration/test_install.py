"""Clusternet's install walkthrough, verbatim, on a fresh parent and a fresh child of this module's own.

The overview's commands run exactly as written (bash, the real kubectl, envsubst) from the repository root.
There is no kubelet, so the hub and the agent run as processes in place of their Deployments' pods, with the
Deployments' args and env read from deploy/hub/06-deployment.yaml and deploy/agent/02-deployment.yaml, plus only
what the environment forces:

- hub: --kubeconfig with a TokenRequest token of its ServiceAccount clusternet-system/clusternet-hub (a pod would
  get one mounted; this way the RBAC of deploy/hub is what the hub has), and --bind-address=HUB_IP
  --secure-port=443, where the parent's aggregator reaches it: deploy/hub's Service is replaced by an
  ExternalName Service of the same name and port naming HUB_IP, since without pods there are no endpoints and an
  Endpoints object may not hold a loopback address. The hub makes its certificate, caBundle and front-proxy
  trust itself: nothing is created by hand.
- agent: PARENT_URL and REG_TOKEN resolved from the Secret as the kubelet would (secretKeyRef); --kubeconfig with
  a token of its ServiceAccount clusternet-system/clusternet-agent in the child; --bind-address=127.0.0.1 and a
  free --secure-port for its probes (10650 on every address may be taken on a shared machine).

A fresh child is needed (registration state stays in a child), and a fresh parent keeps the CRDs, APIService
and registrations of the session's shared parent (conftest.py) out of the way.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_api.kube import Credentials
from clusternet_testing.controlplane import (
    ControlPlane,
    ControlPlaneError,
    find_binaries,
    free_port,
    start_many,
)
from clusternet_testing.helpers import applied_below_pdb, kubectl, wait_for
from clusternet_testing.processes import (
    REPO,
    Proc,
    _bin,
    deployment_container,
    service_account_token,
)

pytestmark = pytest.mark.integration

HUB_IP = "127.6.0.10"  # in the parent's service range below, apart from the shared planes' (127.1-3)
REGTOKEN = "07401b.f395accd246ae52d"
APISERVICE = "v1alpha1.proxies.clusternet.io"
SHADOW_APISERVICE = "v1alpha1.shadow"

# The overview's commands (clusternet-overview.txt, "Deploying clusternet-hub/-agent"), character for character.
HUB_INSTALL = "kubectl apply -f deploy/hub"
BOOTSTRAP_TOKEN = "kubectl apply -f manifests/samples/cluster_bootstrap_token.yaml"
SA_TOKEN = "kubectl apply -f manifests/samples/cluster_serviceaccount_token.yaml"
SA_TOKEN_READ = ("kubectl get secret -n clusternet-system -o=jsonpath='{.items[?(@.metadata.annotations.kubernetes"
                 "\\.io/service-account\\.name==\"cluster-bootstrap-use\")].data.token}' | base64 --decode; echo")
CHILD_NAMESPACE = "kubectl create ns clusternet-system"
AGENT_SECRET = ("PARENTURL={parent_url} REGTOKEN=07401b.f395accd246ae52d envsubst < "
                "./deploy/templates/clusternet_agent_secret.yaml | kubectl apply -f -")
AGENT_INSTALL = "kubectl apply -f deploy/agent"


def run(command: str, cp: ControlPlane, shims: Path) -> subprocess.CompletedProcess[str]:
    """One command line of the overview in bash, from the repository root, against `cp`."""
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args[-1]} failed ({result.returncode}): {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, ControlPlane]]:
    try:
        bins = find_binaries()
    except ControlPlaneError as e:
        pytest.fail(str(e), pytrace=False)
    parent, child = start_many(["parent", "child"], tmp_path_factory.mktemp("install-cp"), bins,
                               service_cidrs=["127.6.0.0/16", "127.7.0.0/16"])
    try:
        yield parent, child
    finally:
        parent.stop()
        child.stop()


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PATH entries for what the machine lacks: envsubst (gettext-base) as a few lines of string.Template."""
    directory = tmp_path_factory.mktemp("shims")
    if shutil.which("envsubst") is None:
        script = directory / "envsubst"
        script.write_text("#!/usr/bin/env python3\nimport os, string, sys\n"
                          "sys.stdout.write(string.Template(sys.stdin.read()).safe_substitute(os.environ))\n")
        script.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def parent_installed(clusters: tuple[ControlPlane, ControlPlane], shims: Path) -> dict[str, Any]:
    """The parent's commands: the hub's manifests, both registration tokens, and reading the ServiceAccount one."""
    parent, _ = clusters
    out = {"hub": applied_below_pdb(run(HUB_INSTALL, parent, shims), parent),
           "bootstrap": ok(run(BOOTSTRAP_TOKEN, parent, shims)),
           "sa": ok(run(SA_TOKEN, parent, shims))}

    def read() -> subprocess.CompletedProcess[str] | None:
        result = run(SA_TOKEN_READ, parent, shims)
        return result if result.stdout.strip() else None

    # the token controller fills the Secret a moment after it is created
    out["sa_read"] = wait_for(read, timeout=30, what="the ServiceAccount token to be printed")
    return out


def kubeconfig_for(cp: ControlPlane, token: str, path: Path) -> Path:
    path.write_text(yaml.safe_dump(Credentials(cp.url, cp.ca_pem, token).kubeconfig_dict(cp.name)))
    path.chmod(0o600)
    return path


def container_args(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The container's args with $(VAR) references expanded as the kubelet does."""
    args = []
    for arg in container.get("args") or []:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        args.append(arg)
    return args


class Hub:
    """The hub process, restartable with the same arguments."""

    def __init__(self, parent: ControlPlane, logdir: Path) -> None:
        container = deployment_container(REPO / "deploy" / "hub" / "06-deployment.yaml")
        token = service_account_token(parent, "clusternet-system", "clusternet-hub")
        kubeconfig = kubeconfig_for(parent, token, logdir / "hub.kubeconfig")
        self.args = [_bin("clusternet-hub"), *container_args(container, {"POD_IP": HUB_IP}),
                     f"--kubeconfig={kubeconfig}", f"--bind-address={HUB_IP}", "--secure-port=443"]
        self.logdir = logdir
        self.runs = 0
        self.proc: Proc | None = None

    def start(self) -> Proc:
        self.runs += 1
        self.proc = Proc("hub", self.args, self.logdir / f"hub-{self.runs}.log").start()
        return self.proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture(scope="module")
def hub(clusters: tuple[ControlPlane, ControlPlane], parent_installed: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    parent, _ = clusters
    # The environment's stand-in for pods behind the Service: same name and port, pointing at the hub process.
    kubectl(parent, "delete", "service", "clusternet-hub", "-n", "clusternet-system")
    kubectl(parent, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "clusternet-hub", "namespace": "clusternet-system"},
        "spec": {"type": "ExternalName", "externalName": HUB_IP, "ports": [{"name": "https", "port": 443}]}}))
    running = Hub(parent, tmp_path_factory.mktemp("install-hub"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def apiservice(parent: ControlPlane, name: str = APISERVICE) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kubectl(parent, "get", "apiservice", name, "-o", "json").stdout)
    return result


def available(parent: ControlPlane, name: str = APISERVICE) -> bool:
    conditions = (apiservice(parent, name).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def serving_secret(parent: ControlPlane) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kubectl(parent, "get", "secret", "clusternet-hub-serving", "-n",
                                                "clusternet-system", "-o", "json").stdout)
    return result


def discovery(parent: ControlPlane) -> dict[str, Any]:
    out = kubectl(parent, "get", "--raw", "/apis/proxies.clusternet.io/v1alpha1", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


# --- the parent ----------------------------------------------------------------------------------------------


def test_the_parent_commands_work_as_written(clusters: tuple[ControlPlane, ControlPlane],
                                             parent_installed: dict[str, Any]) -> None:
    parent, _ = clusters
    hub = parent_installed["hub"]
    for line in ("namespace/clusternet-system created",
                 "customresourcedefinition.apiextensions.k8s.io/managedclusters.clusters.clusternet.io created",
                 "deployment.apps/clusternet-hub created", f"apiservice.apiregistration.k8s.io/{APISERVICE} created",
                 f"apiservice.apiregistration.k8s.io/{SHADOW_APISERVICE} created",
                 "clusterrole.rbac.authorization.k8s.io/clusternet:system:socketsproxy created"):
        assert line in hub, hub
    assert "Kustomization" not in hub
    crds = kubectl(parent, "get", "crd", "-o", "name").stdout.split()
    assert len([c for c in crds if c.endswith("clusternet.io")]) == 11
    assert "secret/bootstrap-token-07401b created" in parent_installed["bootstrap"]
    assert "caBundle" not in apiservice(parent)["spec"]  # nothing set by hand: the hub does it (below)


def test_the_serviceaccount_token_command_prints_a_token(clusters: tuple[ControlPlane, ControlPlane],
                                                         parent_installed: dict[str, Any]) -> None:
    """Kubernetes < 1.24 (the 1.20 here) also makes a token Secret of its own for the ServiceAccount: the jsonpath
    then finds two and base64 prints the first, then "invalid input" on stderr. From 1.24 on there is only the
    sample's. Either way the printed token is the ServiceAccount's and may register, nothing more."""
    parent, _ = clusters
    read: subprocess.CompletedProcess[str] = parent_installed["sa_read"]
    token = read.stdout.strip()
    secrets = json.loads(kubectl(parent, "get", "secret", "-n", "clusternet-system", "-o", "json").stdout)["items"]
    tokens = [base64.b64decode(s["data"]["token"]).decode() for s in secrets
              if (s["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name")
              == "cluster-bootstrap-use" and (s.get("data") or {}).get("token")]
    assert token in tokens and token.count(".") == 2, read
    assert len(tokens) == 2 if "invalid input" in read.stderr else len(tokens) >= 1
    for verb, resource, allowed in (("create", "clusterregistrationrequests.clusters.clusternet.io", "yes"),
                                    ("get", "clusterregistrationrequests.clusters.clusternet.io", "yes"),
                                    ("list", "secrets", "no"),
                                    ("create", "managedclusters.clusters.clusternet.io", "no")):
        can = kubectl(parent, "auth", "can-i", verb, resource, token=token, check=False).stdout.strip()
        assert can == allowed, (verb, resource)


# --- the aggregated API without hand work --------------------------------------------------------------------


def test_the_aggregated_api_becomes_available_by_itself_and_survives_restarts(
        clusters: tuple[ControlPlane, ControlPlane], hub: Hub) -> None:
    parent, _ = clusters
    wait_for(lambda: available(parent), timeout=60, what=f"APIService {APISERVICE} Available")
    resources = discovery(parent)
    assert resources["groupVersion"] == "proxies.clusternet.io/v1alpha1", resources
    assert {r["name"] for r in resources["resources"]} == {"sockets", "sockets/proxy"}
    secret = serving_secret(parent)
    ca = base64.b64decode(secret["data"]["ca.crt"])
    assert base64.b64decode(apiservice(parent)["spec"]["caBundle"]) == ca
    assert not apiservice(parent)["spec"].get("insecureSkipTLSVerify")
    # the front-proxy CA came from kube-system, not from a file or a ConfigMap made for the hub
    assert "--requestheader-client-ca-file" not in " ".join(hub.args)
    assert hub.proc is not None
    assert "front-proxy CA of kube-system/extension-apiserver-authentication" in hub.proc.output
    # deploy/hub's RBAC is enough for peer forwarding: its token Secret and this replica's peer Lease
    wait_for(lambda: hub.proc is not None and f"serves peers on https://{HUB_IP}:8123" in hub.proc.output,
             timeout=30, what="the hub joined its peers")
    assert "cannot join the other hub replicas" not in hub.proc.output
    assert kubectl(parent, "get", "lease", "-n", "clusternet-system", "-l", "clusternet.io/hub-peer",
                   "-o", "name").stdout.count("lease") == 1
    assert kubectl(parent, "get", "secret", "-n", "clusternet-system", "clusternet-hub-peer", "-o", "name").stdout
    # the shadow API: same server, same caBundle kept by the hub, and deploy/hub's RBAC lets the hub act on
    # Manifests as the user (impersonation)
    wait_for(lambda: available(parent, SHADOW_APISERVICE), timeout=60, what=f"APIService {SHADOW_APISERVICE} Available")
    assert base64.b64decode(apiservice(parent, SHADOW_APISERVICE)["spec"]["caBundle"]) == ca
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "installed"}, "data": {"k": "v"}}
    path = "/apis/shadow/v1alpha1/namespaces/demo/configmaps"
    created = json.loads(kubectl(parent, "create", "--raw", path, "-f", "-", input=json.dumps(cm)).stdout)
    assert created["metadata"]["namespace"] == "demo" and created["metadata"]["resourceVersion"]
    assert json.loads(kubectl(parent, "get", "--raw", f"{path}/installed").stdout)["data"] == {"k": "v"}
    kubectl(parent, "delete", "--raw", f"{path}/installed")
    # a restart keeps the Secret and the caBundle as they are
    hub.stop()
    hub.start()
    wait_for(lambda: "hub serving on" in (hub.proc.output if hub.proc else ""), timeout=30, what="hub restarted")
    wait_for(lambda: available(parent) and discovery(parent), timeout=60, what="aggregated API back")
    again = serving_secret(parent)
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    assert base64.b64decode(apiservice(parent)["spec"]["caBundle"]) == ca
    # re-applying the manifest leaves the caBundle alone (it is not in the file), ...
    kubectl(parent, "apply", "-f", str(REPO / "deploy" / "hub" / "07-apiservice.yaml"))
    assert base64.b64decode(apiservice(parent)["spec"]["caBundle"]) == ca
    # ... and whoever resets it (an old manifest with caBundle: "") sees it put back
    kubectl(parent, "patch", "apiservice", APISERVICE, "--type=merge", "-p", '{"spec":{"caBundle":null}}')
    wait_for(lambda: base64.b64decode(apiservice(parent)["spec"].get("caBundle") or "") == ca, timeout=45,
             what="caBundle restored")


# --- the child -----------------------------------------------------------------------------------------------


def agent_process(child: ControlPlane, logdir: Path) -> Proc:
    container = deployment_container(REPO / "deploy" / "agent" / "02-deployment.yaml")
    secret = json.loads(kubectl(child, "get", "secret", "clusternet-agent-cluster-registration", "-n",
                                "clusternet-system", "-o", "json").stdout)
    env = {}
    for var in container.get("env") or []:  # the kubelet's part: secretKeyRef values
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "clusternet-agent-cluster-registration"
        env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    token = service_account_token(child, "clusternet-system", "clusternet-agent")
    kubeconfig = kubeconfig_for(child, token, logdir / "agent.kubeconfig")
    args = [_bin("clusternet-agent"), *container_args(container, env), f"--kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}"]
    return Proc("agent", args, logdir / "agent.log", extra_env=env)


def readyz(agent: Proc) -> int:
    port = next(a.split("=", 1)[1] for a in reversed(agent.args) if a.startswith("--secure-port="))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a kubelet probe does not verify either
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def test_the_child_commands_register_it_with_the_bootstrap_token_alone(
        clusters: tuple[ControlPlane, ControlPlane], hub: Hub, shims: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    parent, child = clusters
    ok(run(CHILD_NAMESPACE, child, shims))
    out = ok(run(AGENT_SECRET.format(parent_url=parent.url), child, shims))
    assert "secret/clusternet-agent-cluster-registration created" in out
    out = ok(run(AGENT_INSTALL, child, shims))
    assert "deployment.apps/clusternet-agent created" in out and "Kustomization" not in out
    secret = json.loads(kubectl(child, "get", "secret", "clusternet-agent-cluster-registration", "-n",
                                "clusternet-system", "-o", "json").stdout)
    assert set(secret["data"]) == {"parentURL", "regToken"}  # no parentCA: the agent discovers it
    agent = agent_process(child, tmp_path_factory.mktemp("install-agent")).start()
    try:
        def ready() -> dict[str, Any] | None:
            items = json.loads(kubectl(parent, "get", "mcls", "-A", "-o", "json").stdout)["items"]
            for mc in items:
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (mc.get("status") or {}).get("conditions") or []):
                    return dict(mc)
            return None

        mc = wait_for(ready, timeout=90, what="the ManagedCluster Ready")
        assert mc["metadata"]["name"].startswith("clusternet-cluster-")  # --cluster-reg-name-prefix
        assert mc["spec"]["syncMode"] == "Dual"
        assert "pinned the parent's CA from kube-public/cluster-info" in agent.output
        # registered, reporting, and its tunnel up: through the parent's aggregated API, to the hub
        wait_for(lambda: readyz(agent) == 200, timeout=60, what="the agent ready (tunnel up)")
        table = kubectl(parent, "get", "mcls", "-A").stdout
        assert mc["metadata"]["name"] in table and "True" in table
    finally:
        agent.stop()


def test_a_serviceaccount_token_without_a_ca_stops_the_agent_saying_what_to_do(
        clusters: tuple[ControlPlane, ControlPlane], parent_installed: dict[str, Any]) -> None:
    parent, child = clusters
    token = parent_installed["sa_read"].stdout.strip()
    result = subprocess.run(
        [_bin("clusternet-agent"), f"--kubeconfig={child.kubeconfig}", f"--cluster-reg-parent-url={parent.url}",
         f"--cluster-reg-token={token}", "--secure-port=0", "--log-format=text"],
        capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH"))
                                                         if p)))
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "ServiceAccount token cannot discover it" in line
    assert "--parent-ca-file" in line and "parentCA" in line and "bootstrap token" in line
