"""Two hub replicas behind one address: any replica proxies and pushes to a cluster whose tunnel the other holds,
and kill -9 of the tunnel holder, then of the leader mid-rollout, loses nothing.

A fresh parent of its own (the shared parent's module hubs would approve and push here too) and the session's
child1, where a second agent runs in namespace ha-agent with a cluster ID of its own. The agent reaches the hubs
through a TCP balancer (clusternet_testing.balancer) that prefers replica A, as a Service would hand it one.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.balancer import Balancer
from clusternet_testing.controlplane import ControlPlane, find_binaries, free_port
from clusternet_testing.helpers import descriptions, feed, kubectl, store_template, wait_for
from clusternet_testing.processes import (
    BOOTSTRAP_TOKEN,
    Proc,
    hub_proc,
    hub_tls,
    install_bootstrap,
    namespaced_agent_proc,
    service_account_token,
)

pytestmark = pytest.mark.integration

LEASE = ["--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s",
         "--leader-elect-retry-period=1s"]
LABEL = "ha-test"
NS = "ha-demo"
AGENT_NS = "ha-agent"


def objects(name: str, n: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-{i}", "namespace": NS},
             "data": {"i": str(i)}} for i in range(n)]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane("ha", find_binaries(), tmp_path_factory.mktemp("ha"), service_cidr="127.33.0.0/16") as cp:
        cp.install_crds()
        install_bootstrap(cp)
        kubectl(cp, "create", "namespace", known.RESERVED_NAMESPACE)
        yield cp


class Replica:
    """One hub replica: its own serving and peer ports, the shared certificate, short leases."""

    def __init__(self, name: str, plane: ControlPlane, logdir: Path, crt: Path, key: Path) -> None:
        self.port, self.peer_port = free_port(), free_port()
        self.proc = hub_proc(plane, logdir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
                             "--resync-interval=2", *LEASE, f"--peer-port={self.peer_port}",
                             "--peer-advertise-address=127.0.0.1", port=self.port)
        self.proc.name, self.name, self.logdir = name, name, logdir
        self.runs = 0

    def start(self) -> Replica:
        self.runs += 1
        self.proc.log = self.logdir / f"{self.name}-{self.runs}.log"
        self.proc.start()
        return self


def proxied(replica: Replica, ca: Path, cluster_id: str, path: str, token: str) -> tuple[int, str]:
    url = (f"https://127.0.0.1:{replica.port}/apis/proxies.clusternet.io/v1alpha1/sockets/{cluster_id}"
           f"/proxy/direct{path}")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(ca)), timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def holder(plane: ControlPlane) -> str:
    return kubectl(plane, "get", "lease", "-n", known.SYSTEM_NAMESPACE, "clusternet-hub", "-o",
                   "jsonpath={.spec.holderIdentity}", check=False).stdout


def socket_status(plane: ControlPlane, ns: str) -> str:
    return kubectl(plane, "get", "mcls", "-n", ns, "-o",
                   "jsonpath={.items[0].status.conditions[?(@.type==\"SocketConnected\")].status}").stdout


def uids(child: ControlPlane) -> dict[str, str]:
    out = json.loads(kubectl(child, "get", "cm", "-n", NS, "-o", "json").stdout)
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in out["items"]
            if o["metadata"]["name"] != "kube-root-ca.crt"}


def subscribe(plane: ControlPlane, name: str, objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        store_template(plane, obj)
    kubectl(plane, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}],
                 "feeds": [feed(o) for o in objs]}}))


def deployed(plane: ControlPlane, name: str) -> bool:
    found = descriptions(plane, name)
    return len(found) == 1 and all((d.get("status") or {}).get("phase") == "Success" for d in found.values())


def test_replicas_forward_to_each_others_tunnels_and_survive_kill_9(
        plane: ControlPlane, child1: ControlPlane, tmp_path: Path) -> None:
    ca, crt, key = hub_tls(tmp_path / "tls", ["127.0.0.1"], ["localhost"])
    a, b = (Replica(n, plane, tmp_path, crt, key) for n in ("hub-a", "hub-b"))
    kubectl(child1, "create", "namespace", AGENT_NS, check=False)
    token = service_account_token(child1, "ha-test", "reader", cluster_role="view")
    cluster_id = str(uuid.uuid4())
    procs: list[Proc] = []
    with Balancer([("127.0.0.1", a.port), ("127.0.0.1", b.port)]) as front:
        try:
            procs.append(b.start().proc)  # B first, so B leads and A (where the agent lands) only serves
            wait_for(lambda: "acquired Lease" in b.proc.output, timeout=30, what="hub-b leading")
            procs.append(a.start().proc)
            wait_for(lambda: "serves peers" in a.proc.output, timeout=30, what="hub-a serving peers")
            agent = namespaced_agent_proc(
                "ha", tmp_path, kubeconfig=str(child1.kubeconfig), parent_url=plane.url, reg_token=BOOTSTRAP_TOKEN,
                parent_ca_file=str(plane.ca_file), cluster_name="ha-child", cluster_id=cluster_id,
                namespace=AGENT_NS, cluster_labels={LABEL: "yes"}, sync_mode="Dual",
                feature_gates={"AppPusher": True, "SocketConnection": True}, tunnel_url=front.url,
                tunnel_ca_file=str(ca), collect_frequency=1.0, update_frequency=2.0, resync_frequency=2.0)
            procs.append(agent.start())
            ns = wait_for(lambda: kubectl(plane, "get", "mcls", "-A", "-l", f"{known.LABEL_CLUSTER_ID}={cluster_id}",
                                          "-o", "jsonpath={.items[0].metadata.namespace}", check=False).stdout,
                          timeout=60, what="the cluster registered")
            wait_for(lambda: socket_status(plane, ns) == "True", timeout=30, what="the tunnel up")
            assert f"cluster {cluster_id} connected its tunnel" in a.proc.output
            assert f"cluster {cluster_id} connected its tunnel" not in b.proc.output

            # B has no tunnel of the cluster: it forwards to A, for the proxy and for the leader's pushes
            status, body = proxied(b, ca, cluster_id, "/api/v1/namespaces/default", token)
            assert status == 200 and '"name":"default"' in body.replace(" ", ""), body
            status, body = proxied(b, ca, cluster_id, "/api/v1/secrets", token)
            assert status == 403 and "forbidden" in body.lower(), body  # the child's RBAC decides, also via a peer
            subscribe(plane, "ha-first", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                                          *objects("first", 5)])
            wait_for(lambda: deployed(plane, "ha-first"), timeout=60, what="pushed by the leader through hub-a")
            before = uids(child1)
            assert len(before) == 5

            # kill -9 the replica holding the tunnel: the agent comes back through the balancer to B
            a.proc.kill()
            wait_for(lambda: proxied(b, ca, cluster_id, "/api/v1/namespaces/default", token)[0] == 200,
                     timeout=30, what="proxying through hub-b after the agent reconnected")
            wait_for(lambda: socket_status(plane, ns) == "True", timeout=30, what="the tunnel up on hub-b")
            procs.append(a.start().proc)  # a new replica A, standby
            wait_for(lambda: "serves peers" in a.proc.output, timeout=30, what="hub-a back")
            wait_for(lambda: proxied(a, ca, cluster_id, "/api/v1/namespaces/default", token)[0] == 200,
                     timeout=30, what="the new hub-a forwarding to hub-b")

            # kill -9 the leader (which now also holds the tunnel) in the middle of a rollout
            first_holder = holder(plane)
            subscribe(plane, "ha-second", objects("second", 20))
            time.sleep(0.5)
            b.proc.kill()
            killed = time.monotonic()
            wait_for(lambda: "acquired Lease" in a.proc.output, timeout=20, what="hub-a takes the Lease")
            assert time.monotonic() - killed <= 4 + 2 * 1.2 + 2  # lease duration + a retry or two
            assert holder(plane) not in ("", first_holder)
            wait_for(lambda: deployed(plane, "ha-second") and deployed(plane, "ha-first"), timeout=90,
                     what="both Subscriptions Success after the takeover")
            after = uids(child1)
            assert {k: v for k, v in after.items() if k.startswith("first-")} == before  # nothing re-created
            assert sorted(k for k in after if k.startswith("second-")) == sorted(f"second-{i}" for i in range(20))
            assert socket_status(plane, ns) == "True"
            assert proxied(a, ca, cluster_id, "/api/v1/namespaces/default", token)[0] == 200
        finally:
            for p in reversed(procs):
                p.stop()
            kubectl(child1, "delete", "namespace", NS, AGENT_NS, "--wait=false", check=False)
    for p in procs:
        assert "Traceback" not in p.output, p.output[-3000:]
