"""Fixtures shared by the integration modules that deploy applications."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl, mc_for, registered, wait_for
from clusternet_testing.processes import (
    Proc,
    agent_proc,
    hub_proc,
    hub_tls,
    install_bootstrap,
    register_aggregated_api,
    unregister_aggregated_api,
)


@pytest.fixture(scope="module")
def hub_and_agents(parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real hub and two agents for one test module: child1 in Dual mode with AppPusher (the hub pushes
    to it through its tunnel), child2 in Pull mode (its agent applies). Resyncs every 2 s.

    Yields `hub`, `pusher`, `puller` (Procs), `mc1`, `mc2` (the ManagedClusters), `ns1`, `ns2` (their
    namespaces) and `logdir`. Registrations survive from module to module; the processes do not.

    A module that sets `AGGREGATED_HUB_IP` (an address of the parent's loopback service range, 127.1.0.0/16)
    gets the hub on that address's port 443 behind the parent's aggregation layer (APIService
    v1alpha1.proxies.clusternet.io and the proxy's RBAC, as deploy/hub ships them), so the parent's
    `/apis/proxies.clusternet.io/...` reaches it; the APIService is removed afterwards. A module's `HUB_ARGS` are
    added to the hub's flags (a feature gate, say), its `AGENT_ARGS` to both agents' (feature gates given again are
    merged, as Kubernetes' components merge them).
    """
    logdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    install_bootstrap(parent)
    kubectl(parent, "create", "namespace", known.RESERVED_NAMESPACE, check=False)
    hub_ip: str | None = getattr(request.module, "AGGREGATED_HUB_IP", None)
    ca, crt, key = hub_tls(logdir / "tls", ["127.0.0.1", *([hub_ip] if hub_ip else [])],
                           ["localhost", "clusternet-hub.clusternet-system.svc"])
    extra = [f"--requestheader-client-ca-file={parent.front_proxy_ca_file}"] if hub_ip else []
    extra += getattr(request.module, "HUB_ARGS", [])
    hub = hub_proc(parent, logdir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
                   "--resync-interval=2", *extra, port=443 if hub_ip else None)
    if hub_ip:
        register_aggregated_api(parent, hub_ip, ca)
        hub.args = [a if not a.startswith("--bind-address") else f"--bind-address={hub_ip}" for a in hub.args]
    hub.start()
    port = next(a.split("=")[1] for a in hub.args if a.startswith("--secure-port"))
    tunnel = [f"--tunnel-url=https://{hub_ip or '127.0.0.1'}:{port}", f"--tunnel-ca-file={ca}"]
    tunnel += getattr(request.module, "AGENT_ARGS", [])
    pusher = agent_proc(child1, parent, logdir, "child1", "--cluster-sync-mode=Dual",
                        "--feature-gates=AppPusher=true,SocketConnection=true", "--description-resync-frequency=2s",
                        *tunnel)
    puller = agent_proc(child2, parent, logdir, "child2", "--cluster-sync-mode=Pull",
                        "--feature-gates=SocketConnection=true", "--description-resync-frequency=2s", *tunnel)
    procs: list[Proc] = [hub, pusher.start(), puller.start()]
    try:
        def ready() -> bool:
            if not all(registered(parent, c) for c in (child1, child2)):
                return False
            mcs = [mc_for(parent, c) for c in (child1, child2)]
            return all(any(c["type"] == "Ready" and c["status"] == "True"
                           for c in (m.get("status") or {}).get("conditions") or []) for m in mcs) and \
                mcs[0]["status"].get("appPusher") is True and mcs[1]["status"].get("appPusher") is False

        wait_for(ready, timeout=90, what="both clusters Ready with their sync modes")
        mc1, mc2 = mc_for(parent, child1), mc_for(parent, child2)
        yield {"hub": hub, "pusher": pusher, "puller": puller, "ns1": mc1["metadata"]["namespace"],
               "ns2": mc2["metadata"]["namespace"], "mc1": mc1, "mc2": mc2, "logdir": logdir}
    finally:
        for p in procs:
            p.stop()
        if hub_ip:
            unregister_aggregated_api(parent)
