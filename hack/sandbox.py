"""`make sandbox`: a parent and two child clusters on this machine, with the product working on them.

The same real processes the integration tests use (etcd, kube-apiserver, kube-controller-manager per
cluster; `clusternet-hub`; two `clusternet-agent`s). The sandbox registers both children, registers the
hub's aggregated API, deploys the overview's walkthrough (Namespace, Service, Deployment and the `mysql`
HelmChart, served by a chart repository on loopback since the sandbox has no internet) to both children,
shows what users would look at, then stays up until Ctrl-C, SIGTERM or `make sandbox-down`, which stop every
process it started. Everything lives under .sandbox/ and is removed on the next start.

The children run no kubelet, so the walkthrough's Pods never start: the Deployment exists in both children
and the Subscription says honestly that it waits for replicas.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clusternet_api import known
from clusternet_api.crdgen import all_crds
from clusternet_hub.health import is_ready
from clusternet_testing.charts import ChartRepo, build_chart
from clusternet_testing.controlplane import REPO_ROOT as REPO
from clusternet_testing.controlplane import ControlPlane, start_many
from clusternet_testing.helpers import kubectl, mc_for, plugin, registered, wait_for
from clusternet_testing.processes import (
    Proc,
    agent_proc,
    hub_proc,
    hub_tls,
    install_bootstrap,
    register_aggregated_api,
)

HUB_IP = "127.1.0.20"
"""Where the hub listens for the parent's aggregation layer: inside the parent's loopback service range, so
an ExternalName Service can name it (and not the address the integration tests use)."""
WALKTHROUGH = ("namespace.yaml", "service.yaml", "deployment.yaml")
PID_FILE = "sandbox.pid"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
STARTED = time.monotonic()


def step(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def start_components(parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, workdir: Path,
                     procs: list[Proc]) -> Path:
    """The hub (direct port and aggregated API) and two agents; returns the hub's CA."""
    for crd in all_crds():
        parent.apply_manifest(crd)
    install_bootstrap(parent)
    kubectl(parent, "create", "namespace", known.RESERVED_NAMESPACE, check=False)
    ca, crt, key = hub_tls(workdir / "hub-tls", [HUB_IP, "127.0.0.1"],
                           ["localhost", "clusternet-hub.clusternet-system.svc"])
    register_aggregated_api(parent, HUB_IP, ca, shadow=True)  # README's shadow API examples work here too
    hub = hub_proc(parent, workdir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
                   f"--requestheader-client-ca-file={parent.front_proxy_ca_file}", "--resync-interval=5", port=443)
    hub.args = [a if not a.startswith("--bind-address") else f"--bind-address={HUB_IP}" for a in hub.args]
    procs.append(hub.start())
    tunnel = [f"--tunnel-url=https://{HUB_IP}:443", f"--tunnel-ca-file={ca}", "--cluster-labels=env=dev"]
    procs.append(agent_proc(child1, parent, workdir, "child1", "--cluster-sync-mode=Dual",
                            "--feature-gates=AppPusher=true,SocketConnection=true", *tunnel).start())
    procs.append(agent_proc(child2, parent, workdir, "child2", "--cluster-sync-mode=Pull",
                            "--feature-gates=SocketConnection=true", *tunnel).start())
    return ca


def deploy_walkthrough(parent: ControlPlane, workdir: Path, repo: ChartRepo) -> None:
    """The overview's walkthrough, to both children (labelled env=dev by their agents' --cluster-labels); its
    HelmChart from `repo`, which serves a chart named and versioned like the overview's (mysql 8.6.2)."""
    import yaml

    plugin(parent, "apply", *[a for f in WALKTHROUGH for a in ("-f", str(REPO / "examples" / "applications" / f))])
    built = workdir / "charts-built"
    built.mkdir(exist_ok=True)
    repo.add(build_chart(built, "mysql", "8.6.2", templates=2))
    chart = yaml.safe_load((REPO / "examples" / "applications" / "helm-chart.yaml").read_text())
    chart["spec"]["repo"] = repo.url
    (workdir / "helm-chart.yaml").write_text(yaml.safe_dump(chart))
    kubectl(parent, "apply", "-f", str(workdir / "helm-chart.yaml"))
    sub = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
           "metadata": {"name": "app-demo", "namespace": "default"},
           "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"env": "dev"}}}],
                    "feeds": [{"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "HelmChart", "name": "mysql",
                               "namespace": "default"},
                              {"apiVersion": "v1", "kind": "Namespace", "name": "foo"},
                              {"apiVersion": "v1", "kind": "Service", "name": "my-nginx-svc", "namespace": "foo"},
                              {"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-nginx",
                               "namespace": "foo"}]}}
    (workdir / "subscription.yaml").write_text(json.dumps(sub, indent=2))
    kubectl(parent, "apply", "-f", str(workdir / "subscription.yaml"))

    def deployed() -> bool:
        out = json.loads(kubectl(parent, "get", "desc", "-A", "-l", f"{known.LABEL_SUBS_NAME}=app-demo",
                                 "-o", "json").stdout)["items"]
        return len(out) == 4 and all((d.get("status") or {}).get("phase") == "Success" for d in out)

    wait_for(deployed, timeout=90, what="the walkthrough deployed to both children")


def show(title: str, run: Callable[[], str]) -> None:
    print(f"\n$ {title}\n{run().rstrip()}", flush=True)


def proxy_kubeconfig(parent: ControlPlane, child: ControlPlane, workdir: Path) -> Path:
    """A kubeconfig that reaches `child` through the parent's aggregated API, as Clusternet documents: the
    parent identity authenticates, `as: clusternet` with the child's own token as an extra, and the child's
    RBAC decides (kubectl's --as-user-extra flag is newer than some kubectl builds, the kubeconfig field
    is not)."""
    import yaml

    cluster_id = mc_for(parent, child)["spec"]["clusterId"]
    config = yaml.safe_load(parent.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = (
        f"{parent.url}/apis/proxies.clusternet.io/v1alpha1/sockets/{cluster_id}/proxy/direct")
    config["users"][0]["user"].update({"as": "clusternet", "as-user-extra": {"clusternet-token": [child.admin_token]}})
    path = workdir / f"{child.name}-via-parent.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def show_product(parent: ControlPlane, child1: ControlPlane, workdir: Path) -> Path:
    show("kubectl get mcls -A", lambda: kubectl(parent, "get", "mcls", "-A").stdout)
    show("kubectl clusternet get subs -A", lambda: plugin(parent, "get", "subs", "-A"))
    show("kubectl get desc -A", lambda: kubectl(parent, "get", "desc", "-A").stdout)
    show("kubectl clusternet get chart -A", lambda: plugin(parent, "get", "chart", "-A"))
    show("kubectl get hr -A", lambda: kubectl(parent, "get", "hr", "-A").stdout)
    via = proxy_kubeconfig(parent, child1, workdir)
    show(f"kubectl --kubeconfig {via} get deploy -n foo   # child1, through the parent and the tunnel",
         lambda: kubectl(via, "get", "deploy", "-n", "foo").stdout)
    return via


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=REPO / ".sandbox")
    parser.add_argument("--no-wait", action="store_true", help="stop once everything is shown (tests)")
    args = parser.parse_args()
    # Signals wait until the end, where sigtimedwait takes them: a Ctrl-C or SIGTERM during start-up still
    # runs the clean-up below instead of killing this process and orphaning its children. Blocking is not
    # enough on its own: the Helm SDK's Go runtime starts threads with every signal unblocked, and a SIGTERM
    # the kernel hands to one of them took the default action (the process died with -15, children left
    # running; seen once in CI). The handler makes such a delivery a note that the wait below reads.
    received: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    (args.dir / PID_FILE).write_text(str(os.getpid()))
    procs: list[Proc] = []
    stack = contextlib.ExitStack()
    repo = stack.enter_context(ChartRepo(args.dir / "chart-repo"))
    step("starting three control planes (parent, child1, child2)")
    planes = start_many(["parent", "child1", "child2"], args.dir,
                        service_cidrs=["127.1.0.0/16", "127.2.0.0/16", "127.3.0.0/16"])
    parent, child1, child2 = planes
    try:
        step("installing the CRDs, the registration token and the aggregated API; starting the hub and agents")
        ca = start_components(parent, child1, child2, args.dir, procs)
        step("waiting for both children to register and report Ready")
        wait_for(lambda: all(registered(parent, c) and is_ready(mc_for(parent, c)) for c in (child1, child2)),
                 timeout=90, what="both clusters Ready")
        step("deploying the overview's walkthrough (Namespace, Service, Deployment, HelmChart) to both children")
        deploy_walkthrough(parent, args.dir, repo)
        step("waiting for the aggregated API")
        wait_for(lambda: kubectl(parent, "get", "apiservice", "v1alpha1.proxies.clusternet.io", "-o",
                                 "jsonpath={.status.conditions[0].status}").stdout == "True",
                 timeout=60, what="the aggregated API available")
        via = show_product(parent, child1, args.dir)
        step("the sandbox is up")
        print(f"""
  plugin:  export PATH={Path(sys.executable).parent}:$PATH   (kubectl finds `kubectl clusternet` on PATH)
  parent:  export KUBECONFIG={parent.kubeconfig}
  child1:  {child1.kubeconfig}   (Dual with AppPusher: the hub pushes to it)
  child2:  {child2.kubeconfig}   (Pull: its agent applies)
  hub:     https://{HUB_IP}:443 (CA {ca}), behind the parent's aggregated API; logs in {args.dir}
  charts:  {repo.url} (HelmChart default/mysql comes from it; examples/ name Bitnami's, offline here)
  app-demo: the overview's walkthrough, already deployed to both children (examples/applications/ unchanged
           would replace it with a placeholder cluster ID and Bitnami's repository)

Try:
  kubectl clusternet get subs -A                    # with KUBECONFIG above, or kubectl-clusternet
  kubectl clusternet render app-demo --cluster <cluster ID from kubectl get mcls -A>
  kubectl get desc -A; kubectl get hr -A              # the mysql chart: one HelmRelease per cluster
  kubectl --kubeconfig {child2.kubeconfig} get deploy -n foo
  kubectl --kubeconfig {child2.kubeconfig} get secret -n abc -l owner=helm   # Helm's own release storage
  kubectl --kubeconfig {via} get ns             # child1 through the parent's aggregated API
The children run no kubelet: Pods never start, so app-demo waits for its Deployment's replicas.
Stop with Ctrl-C, or `make sandbox-down` from another shell.""", flush=True)
        if not args.no_wait:
            while not received and signal.sigtimedwait(STOP_SIGNALS, 0.5) is None:
                pass  # a signal taken by another thread runs the handler between two waits
        step("stopping every process")
    finally:
        for p in reversed(procs):
            t = time.monotonic()
            p.stop()
            step(f"  {p.name} stopped ({time.monotonic() - t:.1f}s)")
        for cp in planes:
            t = time.monotonic()
            cp.stop()
            step(f"  control plane {cp.name} stopped ({time.monotonic() - t:.1f}s)")
        stack.close()
        (args.dir / PID_FILE).unlink(missing_ok=True)
    step("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
