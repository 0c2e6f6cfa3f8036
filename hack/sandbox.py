"""`make sandbox`: a parent and two child clusters on this machine, with the hub and two agents running.

The same real processes the integration tests use (etcd, kube-apiserver, kube-controller-manager per
cluster; `clusternet-hub`; `clusternet-agent`), left running until Ctrl-C so you can try the README's
commands against them. Everything lives under .sandbox/ and is removed on the next start.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

from clusternet_api.crdgen import all_crds
from clusternet_testing.controlplane import REPO_ROOT as REPO
from clusternet_testing.controlplane import start_many
from clusternet_testing.helpers import kubectl
from clusternet_testing.processes import agent_proc, hub_proc, hub_tls, install_bootstrap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=REPO / ".sandbox")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    planes = start_many(["parent", "child1", "child2"], args.dir,
                        service_cidrs=["127.1.0.0/16", "127.2.0.0/16", "127.3.0.0/16"])
    parent, child1, child2 = planes
    procs = []
    try:
        for crd in all_crds():
            parent.apply_manifest(crd)
        install_bootstrap(parent)
        kubectl(parent, "create", "namespace", "clusternet-reserved", check=False)
        kubectl(parent, "apply", "-f", str(REPO / "deploy" / "hub" / "socketsproxy_rbac.yaml"))
        ca, crt, key = hub_tls(args.dir / "hub-tls", ["127.0.0.1"], ["localhost"])
        hub = hub_proc(parent, args.dir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
                       "--resync-interval=5")
        procs.append(hub.start())
        port = next(a.split("=")[1] for a in hub.args if a.startswith("--secure-port"))
        tunnel = [f"--tunnel-url=https://127.0.0.1:{port}", f"--tunnel-ca-file={ca}"]
        procs.append(agent_proc(child1, parent, args.dir, "child1", "--cluster-sync-mode=Dual",
                                "--feature-gates=AppPusher=true,SocketConnection=true",
                                "--cluster-labels=env=dev", *tunnel).start())
        procs.append(agent_proc(child2, parent, args.dir, "child2", "--cluster-sync-mode=Pull",
                                "--feature-gates=SocketConnection=true", "--cluster-labels=env=dev",
                                *tunnel).start())
        print(f"""
Sandbox is up (logs in {args.dir}):
  parent:  export KUBECONFIG={parent.kubeconfig}
  child1:  {child1.kubeconfig}   (Dual, AppPusher: the hub pushes)
  child2:  {child2.kubeconfig}   (Pull: its agent applies)
  hub:     https://127.0.0.1:{port}  (CA {ca})

Try:
  kubectl --kubeconfig {parent.kubeconfig} get mcls -A
  kubectl-clusternet --kubeconfig {parent.kubeconfig} apply -f examples/applications/
Press Ctrl-C to stop.""", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.stop()
        for cp in planes:
            cp.stop()
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
