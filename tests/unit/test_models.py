"""The models parse users' YAML and apiserver objects, round-trip them, and reject what Clusternet rejects."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from clusternet_api import known
from clusternet_api.models import (
    ALL_KINDS,
    ClusterRegistrationRequest,
    Description,
    Feed,
    HelmChart,
    HelmRelease,
    KubeObject,
    Localization,
    ManagedCluster,
    Subscription,
    decode_bytes,
    encode_bytes,
    model_for,
    parse_object,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SAMPLES = REPO / "manifests" / "samples"  # the registration tokens of the overview's install commands
CLUSTER_ID = "dc91021d-2361-4f6d-a404-7c33b9e01118"

# Defaults the models fill in when a field is absent (the apiserver applies the same ones from the CRD).
# A dump with defaults equals the input plus exactly these keys where the input lacked them.
DOCUMENTED_DEFAULTS: dict[str, dict[str, Any]] = {
    "ClusterRegistrationRequest": {"spec": {"syncMode": "Pull"}},
    "Subscription": {"spec": {"schedulerName": "default", "schedulingStrategy": "Replication"}},
    "HelmChart": {"spec": {"createNamespace": True, "timeoutSeconds": 300}},
    "HelmRelease": {"spec": {"createNamespace": True, "timeoutSeconds": 300}},
    "Localization": {"spec": {"overridePolicy": "ApplyLater", "priority": 500}},
    "Globalization": {"spec": {"overridePolicy": "ApplyLater", "priority": 500}},
}


def _with_defaults(obj: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    for key, value in defaults.items():
        if isinstance(value, dict):
            out[key] = _with_defaults(out.get(key, {}), value)
        else:
            out.setdefault(key, value)
    return out


def _example_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in [*sorted(EXAMPLES.rglob("*.yaml")), *sorted(SAMPLES.rglob("*.yaml"))]:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.relative_to(REPO)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


EXAMPLE_DOCS = _example_docs()
CLUSTERNET_EXAMPLES = [(n, d) for n, d in EXAMPLE_DOCS if d["apiVersion"].split("/")[0].endswith("clusternet.io")]
EXAMPLE_BY_KIND = {d["kind"]: d for _, d in reversed(CLUSTERNET_EXAMPLES)}  # the first of each kind

# Objects as the apiserver returns them, with server-set metadata, for kinds the examples do not cover.
SERVER_META = {
    "uid": "0b5a7f44-0d7e-4f55-9a8e-3c1b2a9e1f10",
    "resourceVersion": "12345",
    "generation": 2,
    "creationTimestamp": "2021-08-07T08:50:55Z",
    "finalizers": [known.FINALIZER_APPS],
    "managedFields": [{"manager": "clusternet-hub", "operation": "Update", "apiVersion": "v1"}],
    "selfLink": "/kept/because/extra/metadata/is/allowed",
}
SERVER_OBJECTS: list[dict[str, Any]] = [
    {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": f"clusternet-{CLUSTER_ID}", "labels": {known.LABEL_CLUSTER_ID: CLUSTER_ID}},
        "spec": {
            "clusterId": CLUSTER_ID,
            "clusterType": "EdgeCluster",
            "clusterName": "child1",
            "clusterLabels": {"env": "dev"},
            "syncMode": "Dual",
        },
        "status": {
            "result": "Approved",
            "dedicatedNamespace": "clusternet-5l82l",
            "managedClusterName": "child1",
            "token": encode_bytes(b"a-token"),
            "caCertificate": encode_bytes(b"-----BEGIN CERTIFICATE-----\n"),
        },
    },
    {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ManagedCluster",
        "metadata": {"name": "child1", "namespace": "clusternet-5l82l", **SERVER_META},
        "spec": {
            "clusterId": CLUSTER_ID,
            "clusterType": "StandardCluster",
            "syncMode": "Dual",
            "taints": [{"key": known.TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}],
        },
        "status": {
            "lastObservedTime": "2021-08-07T08:51:55Z",
            "k8sVersion": "v1.21.0",
            "agentVersion": "v0.1.0",
            "platform": "linux/amd64",
            "apiserverURL": "https://10.0.0.1:6443",
            "healthz": True,
            "livez": True,
            "readyz": True,
            "appPusher": True,
            "useSocket": True,
            "kubeQPS": 5.0,
            "kubeBurst": 10,
            "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": 110},
            "capacity": {"cpu": 4, "memory": "8Gi", "nvidia.com/gpu": "1"},
            "clusterCIDR": "10.244.0.0/16",
            "serviceCIDR": "10.96.0.0/12",
            "nodeStatistics": {"readyNodes": 3, "notReadyNodes": 0, "unknownNodes": 0, "lostNodes": 0},
            "podStatistics": {"runningPods": 20, "totalPods": 22},
            "resourceUsage": {"cpuUsage": "1200m", "memoryUsage": "3Gi"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "lastTransitionTime": "2021-08-07T08:50:55Z",
                    "reason": known.REASON_READY,
                    "message": "managed cluster is ready",
                    "observedGeneration": 2,
                }
            ],
            "heartbeatFrequencySeconds": 180,
            "predictorEnabled": True,
            "predictorAddress": "http://127.0.0.1:10650",
            "predictorDirectAccess": False,
        },
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": "dividing", "namespace": "default", **SERVER_META},
        "spec": {
            "schedulerName": "default",
            "schedulingBySubGroup": True,
            "schedulingStrategy": "Dividing",
            "dividingScheduling": {"type": "Dynamic", "dynamicDividing": {"strategy": "Spread", "minClusters": 1}},
            "priority": 10,
            "preemptionPolicy": "PreemptNever",
            "subscribers": [
                {
                    "clusterAffinity": {
                        "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev", "qa"]}]
                    },
                    "weight": 2,
                    "subGroupStrategy": {"minClusters": 1},
                }
            ],
            "clusterTolerations": [
                {"key": known.TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"},
                {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30},
            ],
            "feeds": [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "my-nginx"}],
        },
        "status": {
            "bindingClusters": ["clusternet-5l82l/child1"],
            "replicas": {"apps/v1/Deployment/foo/my-nginx": [3]},
            "specHash": 2868741284,
            "desiredReleases": 1,
            "aggregatedStatuses": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": "foo",
                    "name": "my-nginx",
                    "feedStatusSummary": {"available": True, "replicaStatus": {"replicas": 3, "readyReplicas": 3}},
                    "feedStatusDetails": [
                        {
                            "clusterId": CLUSTER_ID,
                            "clusterName": "child1",
                            "available": True,
                            "replicaStatus": {"observedGeneration": 4, "replicas": 3, "readyReplicas": 3},
                        }
                    ],
                }
            ],
        },
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Base",
        "metadata": {"name": "app-demo-x7k2p", "namespace": "clusternet-5l82l", **SERVER_META},
        "spec": {"feeds": [{"apiVersion": "v1", "kind": "Namespace", "name": "foo"}]},
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Description",
        "metadata": {"name": "app-demo-x7k2p-generic", "namespace": "clusternet-5l82l", **SERVER_META},
        "spec": {
            "deployer": "Generic",
            "raw": [encode_bytes(b'{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"foo"}}')],
        },
        "status": {
            "phase": "Success",
            "manifestStatuses": [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "name": "foo",
                    "observedStatus": {"phase": "Active", "conditions": [{"type": "X", "nested": {"a": 1}}]},
                }
            ],
        },
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Description",
        "metadata": {"name": "app-demo-x7k2p-helm", "namespace": "clusternet-5l82l"},
        "spec": {
            "deployer": "Helm",
            "charts": [{"namespace": "default", "name": "mysql"}],
            "raw": [encode_bytes(b"{}")],
            "chartRaw": [encode_bytes(b'{"kind":"HelmChart"}')],
        },
        "status": {"phase": "Failure", "reason": "timed out"},
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Manifest",
        "metadata": {
            "name": "deployments.foo.my-nginx",
            "namespace": known.RESERVED_NAMESPACE,
            "labels": {known.LABEL_CONFIG_KIND: "Deployment", known.LABEL_CONFIG_NAME: "my-nginx"},
        },
        "template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "my-nginx"}, "spec": {}},
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "HelmRelease",
        "metadata": {"name": "app-demo-x7k2p-helm-default-mysql", "namespace": "clusternet-5l82l"},
        "spec": {
            "repo": "oci://registry-1.docker.io/bitnamicharts",
            "chart": "mysql",
            "version": "9.4.1",
            "chartPullSecret": {"name": "pull", "namespace": "default"},
            "plainHTTP": False,
            "createNamespace": False,
            "timeoutSeconds": 600,
            "wait": True,
            "waitForJob": True,
            "atomic": True,
            "upgradeAtomic": True,
            "skipCRDs": True,
            "replaceCRDs": False,
            "disableHooks": False,
            "force": False,
            "replace": False,
            "releaseName": "mysql",
            "targetNamespace": "abc",
            "overrides": encode_bytes(b'{"primary":{"persistence":{"size":"1Gi"}}}'),
        },
        "status": {
            "firstDeployed": "2021-07-06T14:34:44+08:00",
            "lastDeployed": "2021-07-06T14:34:44+08:00",
            "description": "Install complete",
            "phase": "deployed",
            "notes": "hello",
            "version": 1,
        },
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Localization",
        "metadata": {"name": "field-patch", "namespace": "clusternet-5l82l"},
        "spec": {
            "feed": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "foo", "name": "conf"},
            "overrides": [
                {
                    "name": "tweak",
                    "type": "FieldMergePatch",
                    "fieldPath": "/data/config.yaml",
                    "fieldFormat": "YAML",
                    "value": "a: 1",
                },
                {"type": "Helm", "overrideChart": True, "value": "spec:\n  version: 1.2.3"},
            ],
        },
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "FeedInventory",
        "metadata": {"name": "dividing", "namespace": "default"},
        "spec": {
            "feeds": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": "foo",
                    "name": "my-nginx",
                    "desiredReplicas": 6,
                    "replicaJsonPath": "/spec/replicas",
                    "replicaRequirements": {
                        "nodeSelector": {"disk": "ssd"},
                        "tolerations": [{"operator": "Exists"}],
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1}},
                    },
                }
            ]
        },
    },
]


def _assert_roundtrip(obj: dict[str, Any]) -> KubeObject:
    parsed = parse_object(obj)
    assert type(parsed) is model_for(obj["apiVersion"], obj["kind"])
    # Exactly what was given comes back when defaults are left out ...
    assert parsed.to_dict(include_defaults=False) == obj
    # ... and with defaults, only the documented ones are added.
    assert parsed.to_dict() == _with_defaults(obj, DOCUMENTED_DEFAULTS.get(obj["kind"], {}))
    # Dumping and re-parsing is stable.
    assert type(parsed).model_validate(parsed.to_dict()).to_dict() == parsed.to_dict()
    return parsed


def test_examples_cover_every_overview_clusternet_kind() -> None:
    kinds = {d["kind"] for _, d in CLUSTERNET_EXAMPLES}
    assert kinds == {"HelmChart", "Subscription", "Localization", "Globalization"}


@pytest.mark.parametrize(("name", "doc"), CLUSTERNET_EXAMPLES, ids=[n for n, _ in CLUSTERNET_EXAMPLES])
def test_example_parses_and_round_trips(name: str, doc: dict[str, Any]) -> None:
    _assert_roundtrip(doc)


@pytest.mark.parametrize(("name", "doc"), EXAMPLE_DOCS, ids=[n for n, _ in EXAMPLE_DOCS])
def test_example_is_a_well_formed_object(name: str, doc: dict[str, Any]) -> None:
    assert set(doc) >= {"apiVersion", "kind", "metadata"}
    assert doc["metadata"].get("name")


@pytest.mark.parametrize("obj", SERVER_OBJECTS, ids=[f"{o['kind']}/{o['metadata']['name']}" for o in SERVER_OBJECTS])
def test_server_object_round_trips(obj: dict[str, Any]) -> None:
    _assert_roundtrip(obj)


def test_every_kind_has_a_round_trip_case() -> None:
    covered = {d["kind"] for _, d in CLUSTERNET_EXAMPLES} | {o["kind"] for o in SERVER_OBJECTS}
    assert covered == {m.crd.kind for m in ALL_KINDS}


def test_python_names_and_defaults() -> None:
    sub = Subscription.model_validate(EXAMPLE_BY_KIND["Subscription"])
    assert sub.spec.scheduler_name == "default"
    assert sub.spec.scheduling_strategy == "Replication"
    assert sub.spec.subscribers[0].cluster_affinity.match_labels == {known.LABEL_CLUSTER_ID: CLUSTER_ID}
    assert sub.spec.feeds[0].key() == "apps.clusternet.io/v1alpha1/HelmChart/default/mysql"
    assert Feed(api_version="v1", kind="Namespace", name="foo").key() == "v1/Namespace/foo"
    chart = HelmChart.model_validate(EXAMPLE_BY_KIND["HelmChart"])
    assert chart.spec.create_namespace is True
    assert chart.spec.timeout_seconds == 300
    mcls = ManagedCluster.model_validate(SERVER_OBJECTS[1])
    assert mcls.status is not None
    assert mcls.status.k8s_version == "v1.21.0"
    assert mcls.status.apiserver_url == "https://10.0.0.1:6443"
    assert mcls.metadata.uid == SERVER_META["uid"]


def test_construct_in_python_and_dump() -> None:
    loc = Localization.model_validate(
        {"metadata": {"name": "x", "namespace": "ns"}, "spec": {"feed": {"apiVersion": "v1", "kind": "K", "name": "n"}}}
    )
    assert loc.to_dict() == {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Localization",
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {
            "overridePolicy": "ApplyLater",
            "priority": known.DEFAULT_PRIORITY,
            "feed": {"apiVersion": "v1", "kind": "K", "name": "n"},
        },
    }


def test_bytes_fields_are_base64_text() -> None:
    desc = Description.model_validate(SERVER_OBJECTS[4])
    assert desc.spec.raw is not None
    assert decode_bytes(desc.spec.raw[0]).startswith(b'{"apiVersion":"v1"')
    crr = ClusterRegistrationRequest.model_validate(SERVER_OBJECTS[0])
    assert crr.status is not None and crr.status.token is not None
    assert decode_bytes(crr.status.token) == b"a-token"


def test_float_quantity_keeps_its_text() -> None:
    obj = copy.deepcopy(SERVER_OBJECTS[1])
    obj["status"]["capacity"] = {"cpu": 0.5}
    mcls = ManagedCluster.model_validate(obj)
    assert mcls.status is not None and mcls.status.capacity == {"cpu": "0.5"}


def test_model_for_and_parse_object_reject_other_kinds() -> None:
    assert model_for("v1", "Namespace") is None
    with pytest.raises(ValueError, match="not a Clusternet kind"):
        parse_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}})


MCLS = SERVER_OBJECTS[1]
CRR = SERVER_OBJECTS[0]
RELEASE = SERVER_OBJECTS[7]


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def _drop(obj: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    del node[last]
    return out


BAD_OBJECTS = {
    "priority-1001": _set(EXAMPLE_BY_KIND["Localization"], "spec.priority", 1001),
    "priority-negative": _set(EXAMPLE_BY_KIND["Globalization"], "spec.priority", -1),
    "override-policy": _set(EXAMPLE_BY_KIND["Localization"], "spec.overridePolicy", "ApplySometime"),
    "override-type": _set(EXAMPLE_BY_KIND["Localization"], "spec.overrides.0.type", "StrategicMergePatch"),
    "field-format": _set(EXAMPLE_BY_KIND["Localization"], "spec.overrides.0.fieldFormat", "TOML"),
    "sync-mode-crr": _set(CRR, "spec.syncMode", "Sideways"),
    "sync-mode-mcls": _set(MCLS, "spec.syncMode", "Sideways"),
    "sync-mode-missing-mcls": _drop(MCLS, "spec.syncMode"),
    "cluster-type": _set(CRR, "spec.clusterType", "BigCluster"),
    "cluster-id": _set(CRR, "spec.clusterId", "not-a-uuid"),
    "cluster-id-upper": _set(MCLS, "spec.clusterId", CLUSTER_ID.upper()),
    "cluster-id-missing": _drop(CRR, "spec.clusterId"),
    "cluster-name-31": _set(CRR, "spec.clusterName", "x" * 31),
    "cluster-namespace-64": _set(CRR, "spec.clusterNamespace", "x" * 64),
    "crr-result": _set(CRR, "status.result", "Maybe"),
    "token-not-base64": _set(CRR, "status.token", "not base64!"),
    "taint-effect": _set(MCLS, "spec.taints.0.effect", "Sometimes"),
    "condition-status": _set(MCLS, "status.conditions.0.status", "Yes"),
    "quantity": _set(MCLS, "status.capacity", {"cpu": "four"}),
    "time": _set(MCLS, "status.lastObservedTime", "yesterday"),
    "repo-ftp": _set(EXAMPLE_BY_KIND["HelmChart"], "spec.repo", "ftp://charts.example.com"),
    "repo-bare": _set(EXAMPLE_BY_KIND["HelmChart"], "spec.repo", "charts.bitnami.com/bitnami"),
    "repo-no-host": _set(RELEASE, "spec.repo", "https://"),
    "chart-target-namespace": _drop(EXAMPLE_BY_KIND["HelmChart"], "spec.targetNamespace"),
    "feeds-empty": _set(EXAMPLE_BY_KIND["Subscription"], "spec.feeds", []),
    "feeds-missing": _drop(EXAMPLE_BY_KIND["Subscription"], "spec.feeds"),
    "feed-no-kind": _set(EXAMPLE_BY_KIND["Subscription"], "spec.feeds", [{"apiVersion": "v1", "name": "foo"}]),
    "subscriber-weight": _set(EXAMPLE_BY_KIND["Subscription"], "spec.subscribers.0.weight", -1),
    "subscriber-affinity-missing": _set(EXAMPLE_BY_KIND["Subscription"], "spec.subscribers", [{"weight": 1}]),
    "scheduling-strategy": _set(EXAMPLE_BY_KIND["Subscription"], "spec.schedulingStrategy", "Random"),
    "dividing-type": _set(EXAMPLE_BY_KIND["Subscription"], "spec.dividingScheduling", {"type": "Fluid"}),
    "selector-operator": _set(
        EXAMPLE_BY_KIND["Globalization"], "spec.clusterAffinity", {"matchExpressions": [{"key": "a", "operator": "Gt"}]}
    ),
    "deployer": _set(SERVER_OBJECTS[4], "spec.deployer", "Kustomize"),
    "description-phase": _set(SERVER_OBJECTS[4], "status.phase", "Done"),
    "chart-phase": _set(EXAMPLE_BY_KIND["HelmChart"], "status", {"phase": "Lost"}),
    "wrong-kind": _set(EXAMPLE_BY_KIND["HelmChart"], "apiVersion", "apps.clusternet.io/v1beta1"),
    "manifest-template-missing": _drop(SERVER_OBJECTS[6], "template"),
}


@pytest.mark.parametrize("case", sorted(BAD_OBJECTS))
def test_bad_values_are_rejected(case: str) -> None:
    obj = BAD_OBJECTS[case]
    model = {m.crd.kind: m for m in ALL_KINDS}[obj["kind"]]
    with pytest.raises(ValidationError):
        model.model_validate(obj)


def test_helm_release_accepts_http_https_and_oci() -> None:
    for repo in ("http://localhost:8080/charts", "https://charts.bitnami.com/bitnami", "oci://ghcr.io/org/charts"):
        HelmRelease.model_validate(_set(RELEASE, "spec.repo", repo))


class _Body(Mapping[str, Any]):
    """A read-only Mapping like kopf's Body, nested Mappings included."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return _Body(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_mapping_bodies_and_datetimes_are_accepted() -> None:
    obj = copy.deepcopy(SERVER_OBJECTS[3])
    obj["metadata"]["creationTimestamp"] = datetime(2021, 8, 7, 8, 50, 55, tzinfo=UTC)
    parsed = parse_object(_Body(obj))
    dumped = parsed.to_dict()
    assert dumped["metadata"]["creationTimestamp"] == "2021-08-07T08:50:55Z"
    assert dumped["metadata"]["managedFields"] == SERVER_META["managedFields"]
    assert dumped["metadata"]["selfLink"] == SERVER_META["selfLink"]
