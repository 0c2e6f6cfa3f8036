"""The hub and agent Helm charts installed for real with the Helm library into a fresh API server.

Every object the charts render must be accepted (Helm v4 applies them server-side); pods cannot run here,
so what is checked is that the API server stores what the chart says. One exception, said out loud:
kube-apiserver 1.20 panics on a server-side apply of an APIService ("FieldManager must be installed to run
apply", fixed in later versions), so on 1.20 the hub chart is installed with `apiService.create=false` and
its APIService, rendered from the same template, is created with `kubectl apply` (client-side).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import helm_python
import pytest
import yaml

from clusternet_api.helm import ClusterAccess, FetchedChart, ReleaseOptions
from clusternet_api.helm.sdk import SdkHelmDriver
from clusternet_api.kube import Credentials
from clusternet_testing.controlplane import ControlPlane, binary_version, find_binaries
from clusternet_testing.helpers import kubectl

pytestmark = pytest.mark.integration

CHARTS = Path(__file__).resolve().parents[2] / "charts"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A fresh API server of its own: the shared ones hold objects of these names made by other means."""
    with ControlPlane("charts", find_binaries(), tmp_path_factory.mktemp("charts"),
                      service_cidr="127.31.0.0/16") as cp:
        yield cp


def install(cp: ControlPlane, chart: str, values: dict[str, object], tmp: Path) -> dict[str, object]:
    creds = Credentials.from_kubeconfig(cp.kubeconfig)
    access = ClusterAccess(server=creds.server, ca_pem=creds.ca_pem, token=creds.token, cert_pem=creds.cert_pem,
                           key_pem=creds.key_pem)
    tgz = Path(helm_python.package(CHARTS / chart, destination=tmp))
    loaded = helm_python.Chart.load(tgz)
    driver = SdkHelmDriver(cache_dir=tmp / "cache")
    try:
        state = asyncio.run(driver.install(access, FetchedChart(tgz, loaded.name, loaded.version), chart, values,
                                           ReleaseOptions(namespace="clusternet-system", create_namespace=True)))
    finally:
        driver.close()
    return {"status": state.status, "revision": state.revision}


def test_both_charts_install_and_every_object_is_accepted(plane: ControlPlane, tmp_path: Path) -> None:
    old_apiserver = binary_version(plane.bin_dir / "kube-apiserver") < (1, 21)
    hub = install(plane, "clusternet-hub", {"apiService": {"create": not old_apiserver}}, tmp_path)
    assert hub == {"status": "deployed", "revision": 1}
    if old_apiserver:
        rendered = helm_python.Chart.load(CHARTS / "clusternet-hub").render(
            {}, name="clusternet-hub", namespace="clusternet-system")
        apiservice = rendered["clusternet-hub/templates/apiservice.yaml"]
        kubectl(plane, "apply", "-f", "-", input=apiservice)
    agent = install(plane, "clusternet-agent", {"parentURL": "https://parent.example:6443",
                                                "registrationToken": "07401b.f395accd246ae52d"}, tmp_path)
    assert agent == {"status": "deployed", "revision": 1}
    # what the charts rendered is what the API server holds
    for kind, name in (("deploy", "clusternet-hub"), ("deploy", "clusternet-agent"), ("svc", "clusternet-hub"),
                       ("sa", "clusternet-hub"), ("sa", "clusternet-agent"), ("sa", "clusternet-app-deployer"),
                       ("role", "clusternet-hub-serving"), ("secret", "clusternet-agent-cluster-registration")):
        assert kubectl(plane, "get", kind, name, "-n", "clusternet-system").returncode == 0, (kind, name)
    for kind, name in (("clusterrole", "clusternet-hub"), ("clusterrole", "clusternet:system:bootstrapping"),
                       ("clusterrole", "clusternet:system:socketsproxy"), ("clusterrole", "clusternet-agent"),
                       ("apiservice", "v1alpha1.proxies.clusternet.io"), ("apiservice", "v1alpha1.shadow"),
                       ("crd", "helmcharts.apps.clusternet.io"), ("crd", "managedclusters.clusters.clusternet.io")):
        assert kubectl(plane, "get", kind, name).returncode == 0, (kind, name)
    assert kubectl(plane, "get", "role", "clusternet-hub:extension-apiserver-authentication-reader", "-n",
                   "kube-system").returncode == 0
    deploy = json.loads(kubectl(plane, "get", "deploy", "clusternet-agent", "-n", "clusternet-system", "-o",
                                "json").stdout)
    assert "--cluster-sync-mode=Dual" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    secret = yaml.safe_load(kubectl(plane, "get", "secret", "clusternet-agent-cluster-registration", "-n",
                                    "clusternet-system", "-o", "yaml").stdout)
    assert set(secret["data"]) == {"parentURL", "regToken"}
    # the hub may do what its chart grants (as its ServiceAccount), and not more
    sa = "--as=system:serviceaccount:clusternet-system:clusternet-hub"
    assert kubectl(plane, "auth", "can-i", "patch", "managedclusters.clusters.clusternet.io", sa,
                   check=False).stdout.strip() == "yes"
    assert kubectl(plane, "auth", "can-i", "get", "secrets", "-n", "kube-system", sa,
                   check=False).stdout.strip() == "no"
    # the shadow API acts as its users
    assert kubectl(plane, "auth", "can-i", "impersonate", "users", sa, check=False).stdout.strip() == "yes"
    # the agent's chart (Predictor gate on) lets its predictor list Nodes, Pods and workloads, and read none of them
    # one by one
    agent_sa = "--as=system:serviceaccount:clusternet-system:clusternet-agent"
    for verb, resource, allowed in (("list", "pods", "yes"), ("list", "nodes", "yes"), ("list", "deployments", "yes"),
                                    ("list", "replicasets.apps", "yes"), ("get", "pods", "no"),
                                    ("get", "deployments", "no"), ("list", "secrets", "no"), ("watch", "pods", "no")):
        assert kubectl(plane, "auth", "can-i", verb, resource, "-A", agent_sa,
                       check=False).stdout.strip() == allowed, (verb, resource)
