"""The Helm charts, rendered offline with Helm's own engine (`helm template`): Clusternet's value names,
the arguments they become, and the same RBAC as deploy/ (one set of rules, checked here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHARTS = REPO / "charts"


def render(chart: str, values: dict[str, Any] | None = None,
           namespace: str = "clusternet-system") -> list[dict[str, Any]]:
    out = helm_python.Chart.load(CHARTS / chart).render(values or {}, name=chart, namespace=namespace)
    return [d for text in out.values() for d in yaml.safe_load_all(text) if d]


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def args(objs: list[dict[str, Any]], name: str) -> list[str]:
    container: dict[str, Any] = find(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    return list(container["args"])


def manifests(*paths: str) -> list[dict[str, Any]]:
    return [d for p in paths for d in yaml.safe_load_all((REPO / p).read_text()) if d]


def test_the_agent_chart_passes_clusternets_default_arguments() -> None:
    objs = render("clusternet-agent")
    assert args(objs, "clusternet-agent") == [
        "--cluster-reg-name-prefix=clusternet-cluster", "--log-format=json",
        "--feature-gates=SocketConnection=true,AppPusher=true,Recovery=true,Predictor=true", "--leader-elect=true",
        "--kube-api-qps=50.0", "--kube-api-burst=100", "--cluster-sync-mode=Dual", "--predictor-direct-access=false",
        "--predictor-port=8080", "--use-metrics-server=false"]
    # no registration Secret unless both parentURL and registrationToken are given (never placeholders)
    assert not [o for o in objs if o["kind"] == "Secret"]
    secret = find(render("clusternet-agent", {"parentURL": "https://parent:6443", "registrationToken": "t"}),
                  "Secret", "clusternet-agent-cluster-registration")
    assert secret["stringData"] == {"parentURL": "https://parent:6443", "regToken": "t"}


def test_the_hub_chart_passes_clusternets_arguments_and_extra_args() -> None:
    objs = render("clusternet-hub", {"extraArgs": {"cluster-label-prefixes": "site.example.com/"},
                                     "image": {"registry": "registry.example", "tag": "v9"}})
    hub_args = args(objs, "clusternet-hub")
    assert "--feature-gates=SocketConnection=true,ShadowAPI=true" in hub_args
    assert "--leader-elect-resource-namespace=clusternet-system" in hub_args
    assert hub_args[-1] == "--cluster-label-prefixes=site.example.com/"
    container = find(objs, "Deployment", "clusternet-hub")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/clusternet-py/clusternet-hub:v9"
    assert find(objs, "Service", "clusternet-hub")["spec"]["ports"][0]["port"] == 443
    assert find(objs, "APIService", "v1alpha1.proxies.clusternet.io")["spec"]["service"]["namespace"] == \
        "clusternet-system"
    shadow = find(objs, "APIService", "v1alpha1.shadow")["spec"]
    deployed = manifests("deploy/hub/08-apiservice-shadow.yaml")[0]["spec"]
    assert {k: v for k, v in shadow.items() if k != "service"} == {k: v for k, v in deployed.items() if k != "service"}
    assert shadow["groupPriorityMinimum"] == 1 and shadow["group"] == "shadow"
    assert not [o for o in render("clusternet-hub", {"apiService": {"create": False}}) if o["kind"] == "APIService"]


def test_the_agent_refuses_more_than_one_replica_with_the_reason() -> None:
    with pytest.raises(helm_python.HelmError, match="replicaCount must be 1"):
        render("clusternet-agent", {"replicaCount": 3})


def test_the_hub_runs_two_spread_replicas_with_a_disruption_budget() -> None:
    objs = render("clusternet-hub")
    deployment = find(objs, "Deployment", "clusternet-hub")["spec"]
    assert deployment["replicas"] == 2 and deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    pod = deployment["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    container = pod["containers"][0]
    assert "--peer-advertise-address=$(POD_IP)" in container["args"] and "--peer-port=8123" in container["args"]
    assert {"name": "peer", "containerPort": 8123, "protocol": "TCP"} in container["ports"]
    assert find(objs, "PodDisruptionBudget", "clusternet-hub")["spec"]["minAvailable"] == 1
    deployed = manifests("deploy/hub/06-deployment.yaml")[0]["spec"]
    assert deployed["replicas"] == 2 and deployed["template"]["spec"]["affinity"] == pod["affinity"]
    assert manifests("deploy/hub/09-poddisruptionbudget.yaml")[0]["spec"]["minAvailable"] == 1
    one = render("clusternet-hub", {"replicaCount": 1})
    assert not [o for o in one if o["kind"] == "PodDisruptionBudget"]  # a budget of 1 of 1 would block drains
    with pytest.raises(helm_python.HelmError, match="needs leaderElect: true"):
        render("clusternet-hub", {"replicaCount": 3, "leaderElect": False})


def rbac(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    """RBAC objects by (kind, namespace, name) -> their rules, roleRef and subjects."""
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]):
            (o.get("rules"), o.get("roleRef"), o.get("subjects")) for o in objs if o["kind"] in kinds}


def test_the_charts_grant_exactly_what_deploy_grants() -> None:
    hub = manifests("deploy/hub/02-rbac.yaml", "deploy/hub/03-bootstrap_rbac.yaml",
                    "deploy/hub/04-socketsproxy_rbac.yaml")
    assert rbac(render("clusternet-hub")) == rbac(hub)
    assert rbac(render("clusternet-agent")) == rbac(manifests("deploy/agent/01-rbac.yaml"))
