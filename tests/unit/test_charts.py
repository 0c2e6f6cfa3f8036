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


def pod(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objs, "Deployment", name)["spec"]["template"]["spec"]
    return spec


# What Clusternet's values files (clusternet/charts 1.0.0) set that matters here, without their image block (the
# charts refuse Clusternet's Go images: test_clusternets_images_are_refused_with_the_way_out).
CLUSTERNET_AGENT_VALUES: dict[str, Any] = {
    "kubeVersion": "", "replicaCount": 3, "serviceAccount": {"name": "clusternet-agent"}, "leaderElect": True,
    "extraArgs": {"feature-gates": "SocketConnection=true,AppPusher=true,Recovery=true,Predictor=true",
                  "cluster-sync-mode": "Dual", "use-metrics-server": False, "predictor-direct-access": False,
                  "predictor-port": 8080},
    "resources": {"limits": {}, "requests": {}}, "podAffinityPreset": "", "podAntiAffinityPreset": "soft",
    "nodeAffinityPreset": {"type": "", "key": "", "values": []}, "affinity": {},
    "parentURL": "https://192.168.10.10:6443", "registrationToken": "07401b.f395accd246ae52d"}
CLUSTERNET_HUB_VALUES: dict[str, Any] = {
    "kubeVersion": "", "replicaCount": 3, "securePort": 443, "peerPort": 8123, "leaderElect": True,
    "reservedNamespace": "clusternet-reserved", "anonymousAuthSupported": True,
    "featureGates": "SocketConnection=true,ShadowAPI=true", "kubeAPI": {"burst": "100", "qps": "50.0"},
    "extraArgs": {}, "podAffinityPreset": "", "podAntiAffinityPreset": "soft",
    "nodeAffinityPreset": {"type": "", "key": "", "values": []}, "affinity": {}}


def test_clusternets_agent_values_run_three_replicas_electing_a_leader() -> None:
    """README: Clusternet's values render here. Its agent file asks for 3 replicas: safe with leader election
    (one holder applies, the others are ready standbys), rolled one pod at a time; spread by its soft preset."""
    objs = render("clusternet-agent", CLUSTERNET_AGENT_VALUES)
    deployment = find(objs, "Deployment", "clusternet-agent")["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert pod(objs, "clusternet-agent")["affinity"] == {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "clusternet-agent"}}}}]}}
    assert args(objs, "clusternet-agent").count(
        "--feature-gates=SocketConnection=true,AppPusher=true,Recovery=true,Predictor=true") == 1
    # one replica by default, replaced with Recreate (never two agents at once)
    assert find(render("clusternet-agent"), "Deployment", "clusternet-agent")["spec"]["strategy"] == {
        "type": "Recreate"}
    # without the Lease every replica would register and apply: refused, also when extraArgs turns it off
    for values in ({"replicaCount": 2, "leaderElect": False},
                   {"replicaCount": 2, "extraArgs": {"leader-elect": "false"}}):
        with pytest.raises(helm_python.HelmError, match="replicaCount above 1 needs leaderElect: true"):
            render("clusternet-agent", values)
    hub = render("clusternet-hub", CLUSTERNET_HUB_VALUES)
    assert find(hub, "Deployment", "clusternet-hub")["spec"]["replicas"] == 3


def test_clusternets_images_are_refused_with_the_way_out() -> None:
    """Clusternet's values files name its Go images, which would crash on our flags: a one-line refusal."""
    for chart in ("clusternet-agent", "clusternet-hub"):
        image = {"registry": "ghcr.io", "repository": f"clusternet/{chart}", "tag": "v0.15.2"}
        with pytest.raises(helm_python.HelmError, match=f"clusternet/{chart} is Clusternet's Go .*Build the images"):
            render(chart, {"image": image})
        # the same path in one's own registry is one's own build
        render(chart, {"image": {**image, "registry": "registry.example"}})


def test_one_feature_gates_flag_featuregates_then_extraargs_gate_by_gate() -> None:
    """The sixth audit: featureGates AppPusher=false with Clusternet's agent values (extraArgs.feature-gates
    AppPusher=true) rendered two flags and the agent kept the last, so AppPusher stayed on without a word."""
    def gates(chart: str, values: dict[str, Any]) -> list[str]:
        return [a for a in args(render(chart, values), chart) if a.startswith("--feature-gates")]

    with pytest.raises(helm_python.HelmError, match=r"featureGates sets AppPusher=false but extraArgs\.feature-gates "
                                                    r"sets AppPusher=true"):
        render("clusternet-agent", {**CLUSTERNET_AGENT_VALUES, "featureGates": "SocketConnection=true,AppPusher=false"})
    # either place alone works, as the gates of one flag; extraArgs over the (default) value gate by gate
    assert gates("clusternet-agent", {"featureGates": "SocketConnection=true,AppPusher=false"}) == [
        "--feature-gates=SocketConnection=true,AppPusher=false"]
    assert gates("clusternet-agent", {"extraArgs": {"feature-gates": "AppPusher=false"}}) == [
        "--feature-gates=SocketConnection=true,AppPusher=false,Recovery=true,Predictor=true"]
    hub_extra = {"feature-gates": "ShadowAPI=false,Recovery=true"}
    assert gates("clusternet-hub", {**CLUSTERNET_HUB_VALUES, "extraArgs": hub_extra}) == [
        "--feature-gates=SocketConnection=true,ShadowAPI=false,Recovery=true"]
    # both given and agreeing: merged, no failure
    agreeing = {"featureGates": "ShadowAPI=true", "extraArgs": {"feature-gates": "ShadowAPI=true,Recovery=true"}}
    assert gates("clusternet-hub", agreeing) == [
        "--feature-gates=ShadowAPI=true,Recovery=true"]
    assert gates("clusternet-agent", {"featureGates": ""}) == []  # nothing given: no flag, the agent's defaults
    # the template's notion of "the default" is values.yaml's: an untouched featureGates never fails
    for chart in ("clusternet-agent", "clusternet-hub"):
        default = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())["featureGates"]
        flipped = ",".join(g.replace("true", "false") for g in default.split(","))
        assert gates(chart, {"extraArgs": {"feature-gates": flipped}}) == [f"--feature-gates={flipped}"]


def test_each_flag_is_rendered_once_and_extraargs_replaces_the_values_one() -> None:
    agent = args(render("clusternet-agent", {"extraArgs": {"kube-api-qps": 5, "leader-elect": "false",
                                                           "log-format": "text"}}), "clusternet-agent")
    names = [a.split("=", 1)[0] for a in agent]
    assert len(names) == len(set(names))
    assert {"--kube-api-qps=5", "--leader-elect=false", "--log-format=text", "--kube-api-burst=100"} <= set(agent)
    hub = args(render("clusternet-hub", {"extraArgs": {"reserved-namespace": "x", "v": 4}}), "clusternet-hub")
    names = [a.split("=", 1)[0] for a in hub]
    assert len(names) == len(set(names)) and "--reserved-namespace=x" in hub and "--v=4" in hub
    # flags the chart's ports, probes and RBAC follow: refused, saying which value to set
    for chart, flag, reason in (("clusternet-hub", "secure-port", "set containerPort"),
                                ("clusternet-hub", "peer-port", "set peerPort"),
                                ("clusternet-hub", "leader-elect-resource-namespace", "release namespace"),
                                ("clusternet-agent", "secure-port", "10650")):
        with pytest.raises(helm_python.HelmError, match=f"extraArgs.{flag} cannot be set here: .*{reason}"):
            render(chart, {"extraArgs": {flag: "1"}})


@pytest.mark.parametrize("chart", ["clusternet-agent", "clusternet-hub"])
def test_clusternets_affinity_presets_are_honoured(chart: str) -> None:
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": chart}}}
    affinity = pod(render(chart, {"podAntiAffinityPreset": "hard", "podAffinityPreset": "soft", "nodeAffinityPreset": {
        "type": "hard", "key": "topology.kubernetes.io/zone", "values": ["a", "b"]}}), chart)["affinity"]
    assert affinity == {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]},
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]},
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}]}]}}}
    soft_node = pod(render(chart, {"podAntiAffinityPreset": "", "nodeAffinityPreset": {
        "type": "soft", "key": "disk", "values": ["ssd"]}}), chart)["affinity"]
    preference = {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
    assert soft_node == {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": preference}]}}
    assert "affinity" not in pod(render(chart, {"podAntiAffinityPreset": ""}), chart)
    # `affinity` replaces the presets, as in Clusternet's chart
    mine = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "k", "operator": "Exists"}]}]}}}
    assert pod(render(chart, {"affinity": mine, "podAntiAffinityPreset": "hard"}), chart)["affinity"] == mine
    with pytest.raises(helm_python.HelmError, match='podAntiAffinityPreset must be soft, hard or empty, not "Hard"'):
        render(chart, {"podAntiAffinityPreset": "Hard"})
    with pytest.raises(helm_python.HelmError, match=r"nodeAffinityPreset\.type hard needs nodeAffinityPreset\.key"):
        render(chart, {"nodeAffinityPreset": {"type": "hard"}})


def test_kubeversion_picks_the_hubs_disruption_budget_api() -> None:
    """Clusternet's kubeVersion (bitnami's "override Kubernetes version") is honoured where the hub chart depends
    on the version; the agent chart has no such object, so there it is accepted and inert."""
    def pdb(version: str) -> str:
        objs = render("clusternet-hub", {"kubeVersion": version})
        return str(find(objs, "PodDisruptionBudget", "clusternet-hub")["apiVersion"])

    assert pdb("1.20.2") == "policy/v1beta1" and pdb("v1.29.0") == "policy/v1"
    assert render("clusternet-agent", {"kubeVersion": "1.20.2"}) == render("clusternet-agent")


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
    for values in ({"replicaCount": 3, "leaderElect": False},
                   {"replicaCount": 3, "extraArgs": {"leader-elect": False}}):
        with pytest.raises(helm_python.HelmError, match="needs leaderElect: true"):
            render("clusternet-hub", values)


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


@pytest.mark.parametrize("chart", ["clusternet-agent", "clusternet-hub"])
def test_the_charts_install_into_clusternet_system_only(chart: str) -> None:
    """audit s36: both binaries keep their Secrets and Leases in clusternet-system, as Clusternet's do, while the
    charts put the RBAC granting them (and the hub's Service) in the release's namespace. Installed elsewhere, the
    hub served a temporary certificate for good and the agent's Lease was refused: the render refuses instead."""
    with pytest.raises(helm_python.HelmError, match="install into namespace clusternet-system, not other"):
        render(chart, namespace="other")
    assert render(chart)


@pytest.mark.parametrize("chart", ["clusternet-agent", "clusternet-hub"])
def test_global_image_registry_and_pull_secrets_are_honoured(chart: str) -> None:
    """audit s36: Clusternet's charts (bitnami common) honour global.imageRegistry and global.imagePullSecrets;
    ours ignored them without a word, so an air-gapped install set for all its charts still pulled from ghcr.io."""
    objs = render(chart, {"global": {"imageRegistry": "mirror.local", "imagePullSecrets": ["regcred", {"name": "b"}]},
                          "image": {"pullSecrets": ["own", {"name": "regcred"}]}})
    spec = pod(objs, chart)
    assert spec["containers"][0]["image"] == f"mirror.local/clusternet-py/{chart}:v0.1.0"
    # global's first, then the chart's, names or {name: x} maps as bitnami takes them, each once
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "b"}, {"name": "own"}]
    # nothing set: the chart's registry, no imagePullSecrets; a global without a registry keeps image.registry
    assert "imagePullSecrets" not in pod(render(chart), chart)
    plain = pod(render(chart, {"global": {"imageRegistry": ""}, "image": {"registry": "r.example"}}), chart)
    assert plain["containers"][0]["image"] == f"r.example/clusternet-py/{chart}:v0.1.0"
    # the values files declare both keys, empty
    assert yaml.safe_load((CHARTS / chart / "values.yaml").read_text())["global"] == {
        "imageRegistry": "", "imagePullSecrets": []}


def tmp_volume(spec: dict[str, Any]) -> dict[str, Any]:
    volume: dict[str, Any] = next(v for v in spec["volumes"] if v["name"] == "tmp")
    return volume


@pytest.mark.parametrize(("chart", "deployment"), [("clusternet-hub", "deploy/hub/06-deployment.yaml"),
                                                   ("clusternet-agent", "deploy/agent/02-deployment.yaml")])
def test_deploy_and_the_charts_give_the_same_resources_and_tmp_size(chart: str, deployment: str) -> None:
    """audit s37: deploy/ gave the agent 256Mi and /tmp 64Mi against the charts' 512Mi, with no reason. /tmp is
    HOME, where Helm keeps repository indexes and charts (over the sizeLimit the pod is evicted). The hub's
    limit is 1Gi: its RSS peaked at 385 MB with 1,000 clusters (README, Scale)."""
    deployed = manifests(deployment)[0]["spec"]["template"]["spec"]
    rendered = pod(render(chart), chart)
    assert rendered["containers"][0]["resources"] == deployed["containers"][0]["resources"]
    assert tmp_volume(rendered) == tmp_volume(deployed) == {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}
    limit = rendered["containers"][0]["resources"]["limits"]["memory"]
    assert limit == {"clusternet-hub": "1Gi", "clusternet-agent": "512Mi"}[chart]


CERT_VALUES: dict[str, Any] = {
    "extraArgs": {"tls-cert-file": "/etc/tls/tls.crt", "tls-private-key-file": "/etc/tls/tls.key"},
    "extraVolumes": [{"name": "serving-cert", "secret": {"secretName": "serving-tls"}},
                     {"name": "ca", "configMap": {"name": "parent-ca"}}],
    "extraVolumeMounts": [{"name": "serving-cert", "mountPath": "/etc/tls", "readOnly": True},
                          {"name": "ca", "mountPath": "/etc/ca", "readOnly": True}]}


@pytest.mark.parametrize("chart", ["clusternet-agent", "clusternet-hub"])
def test_extra_volumes_and_mounts_reach_the_pod(chart: str) -> None:
    """audit s37: neither chart could mount a file, so the flags that read one (hub --tls-cert-file,
    --requestheader-client-ca-file; agent --parent-ca-file, --tunnel-ca-file) were out of reach with Helm.
    Clusternet's charts lack these values too; ours append to the pod's volumes and the container's mounts."""
    spec = pod(render(chart, CERT_VALUES), chart)
    container = spec["containers"][0]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}, *CERT_VALUES["extraVolumes"]]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, *CERT_VALUES["extraVolumeMounts"]]
    assert {"--tls-cert-file=/etc/tls/tls.crt", "--tls-private-key-file=/etc/tls/tls.key"} <= set(container["args"])
    # by default only /tmp, and the values files declare both keys, empty
    plain = pod(render(chart), chart)
    assert [v["name"] for v in plain["volumes"]] == ["tmp"]
    assert plain["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
    assert values["extraVolumes"] == [] and values["extraVolumeMounts"] == []


def test_the_hubs_apiservices_take_annotations_for_a_ca_injector() -> None:
    """With --tls-cert-file the hub leaves the APIServices' caBundle alone; cert-manager's CA injector fills it
    when they carry its annotation, which apiService.annotations puts on both."""
    inject = {"cert-manager.io/inject-ca-from": "clusternet-system/clusternet-hub"}
    objs = render("clusternet-hub", {"apiService": {"annotations": inject}})
    for name in ("v1alpha1.proxies.clusternet.io", "v1alpha1.shadow"):
        assert find(objs, "APIService", name)["metadata"]["annotations"] == inject
        assert "annotations" not in find(render("clusternet-hub"), "APIService", name)["metadata"]
