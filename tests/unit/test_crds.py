"""The committed CRDs match the models, keep Clusternet's names and columns, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_api import crdgen, known
from clusternet_api.models import ALL_KINDS, KubeObject, Localization

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
BUNDLE = REPO / "deploy" / "hub" / "01-crds.yaml"
AGE = ("AGE", ".metadata.creationTimestamp", 0)
OVERRIDE = [("PRIORITY", ".spec.priority", 0), ("POLICY", ".spec.overridePolicy", 0), ("KIND", ".spec.feed.kind", 0),
            ("FEED", ".spec.feed.name", 0)]

# kind -> (group, version, plural, scope, shortNames, [(column, jsonPath, priority)], has status)
EXPECTED: dict[str, tuple[str, str, str, str, list[str], list[tuple[str, str, int]], bool]] = {
    "ClusterRegistrationRequest": (
        "clusters.clusternet.io", "v1beta1", "clusterregistrationrequests", "Cluster", ["clsrr"],
        [("CLUSTER ID", ".spec.clusterId", 0), ("STATUS", ".status.result", 0), AGE], True,
    ),
    "ManagedCluster": (
        "clusters.clusternet.io", "v1beta1", "managedclusters", "Namespaced", ["mcls"],
        [
            ("CLUSTER ID", ".spec.clusterId", 0),
            ("CLUSTER TYPE", ".spec.clusterType", 100),
            ("SYNC MODE", ".spec.syncMode", 0),
            ("KUBERNETES", ".status.k8sVersion", 0),
            ("READYZ", ".status.readyz", 0),
            ("STATUS", ".status.conditions[?(@.type=='Ready')].status", 0),
            AGE,
            ("AGENT VERSION", ".status.agentVersion", 100),
        ],
        True,
    ),
    "Subscription": (
        "apps.clusternet.io", "v1alpha1", "subscriptions", "Namespaced", ["sub", "subs"],
        [
            ("READY", ".status.conditions[?(@.type=='Ready')].status", 0),
            ("REASON", ".status.conditions[?(@.type=='Ready')].reason", 0),
            ("MESSAGE", ".status.conditions[?(@.type=='Ready')].message", 1),
            AGE,
        ],
        True,
    ),
    "Base": ("apps.clusternet.io", "v1alpha1", "bases", "Namespaced", [], [AGE], False),
    "Description": (
        "apps.clusternet.io", "v1alpha1", "descriptions", "Namespaced", ["desc"],
        [("DEPLOYER", ".spec.deployer", 0), ("STATUS", ".status.phase", 0), AGE], True,
    ),
    "Manifest": ("apps.clusternet.io", "v1alpha1", "manifests", "Namespaced", [], [AGE], False),
    "HelmChart": (
        "apps.clusternet.io", "v1alpha1", "helmcharts", "Namespaced", ["chart", "charts"],
        [("CHART", ".spec.chart", 0), ("VERSION", ".spec.version", 0), ("REPO", ".spec.repo", 0),
         ("STATUS", ".status.phase", 0), AGE],
        True,
    ),
    "HelmRelease": (
        "apps.clusternet.io", "v1alpha1", "helmreleases", "Namespaced", ["hr"],
        [("CHART", ".spec.chart", 0), ("VERSION", ".spec.version", 0), ("REPO", ".spec.repo", 0),
         ("STATUS", ".status.phase", 0), AGE],
        True,
    ),
    "Localization": ("apps.clusternet.io", "v1alpha1", "localizations", "Namespaced", ["loc", "local"],
                     [*OVERRIDE, AGE], False),
    "Globalization": ("apps.clusternet.io", "v1alpha1", "globalizations", "Cluster", ["glob", "global"],
                      [*OVERRIDE, ("CLUSTERS", ".spec.clusterAffinity", 1), AGE], False),
    "FeedInventory": ("apps.clusternet.io", "v1alpha1", "feedinventories", "Namespaced", ["finv"], [], False),
}  # fmt: skip


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((CRDS / name).read_text())
    assert isinstance(doc, dict)
    return doc


def test_committed_crds_match_the_models(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    generated = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in CRDS.iterdir())
    assert generated == committed, "run: make crds"
    for name in generated:
        assert (tmp_path / name).read_bytes() == (CRDS / name).read_bytes(), f"{name} drifted; run: make crds"


def test_deploy_hub_bundle_matches_the_models(tmp_path: Path) -> None:
    """deploy/hub/01-crds.yaml is the same CRDs as crds/, in one file, so `kubectl apply -f deploy/hub` installs
    them; the generator writes both, and this checks both."""
    assert crdgen.check_bundle(BUNDLE), "deploy/hub/01-crds.yaml drifted; run: make crds"
    # the hub chart installs the same file from its crds/ (Helm installs those before the templates)
    assert crdgen.check_bundle(REPO / "charts" / "clusternet-hub" / "crds" / "clusternet-crds.yaml"), \
        "charts/clusternet-hub/crds/clusternet-crds.yaml drifted; run: make crds"
    docs = [d for d in yaml.safe_load_all(BUNDLE.read_text()) if d]
    assert docs == crdgen.all_crds()
    assert sorted(docs, key=lambda d: d["metadata"]["name"]) == sorted(
        (_load(p.name) for p in CRDS.glob("*.yaml")), key=lambda d: d["metadata"]["name"])
    written = crdgen.write_bundle(tmp_path / "hub" / "01-crds.yaml")
    assert written.read_bytes() == BUNDLE.read_bytes()


def test_kustomizations_are_skipped_by_kubectl_apply_f() -> None:
    """`kubectl apply -f <dir>` reads every .json/.yaml/.yml file as objects, so a kustomization.yaml there fails
    (kustomize's Kustomization kind is no API object); `Kustomization`, a name kustomize also accepts, is skipped
    by -f and used by -k."""
    for directory in (CRDS, REPO / "deploy" / "hub", REPO / "deploy" / "agent"):
        assert (directory / "Kustomization").is_file(), directory
        for path in directory.iterdir():
            if path.suffix in (".json", ".yaml", ".yml"):
                kinds = {d.get("kind") for d in yaml.safe_load_all(path.read_text()) if d}
                assert "Kustomization" not in kinds, path
    hub = yaml.safe_load((REPO / "deploy" / "hub" / "Kustomization").read_text())
    assert hub["resources"] == sorted(p.name for p in (REPO / "deploy" / "hub").glob("*.yaml"))
    agent = yaml.safe_load((REPO / "deploy" / "agent" / "Kustomization").read_text())
    assert agent["resources"] == sorted(p.name for p in (REPO / "deploy" / "agent").glob("*.yaml"))


def test_generation_is_deterministic() -> None:
    assert [crdgen.render(m) for m in ALL_KINDS] == [crdgen.render(m) for m in ALL_KINDS]


def test_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--check", str(CRDS)]) == 0
    crdgen.write(tmp_path)
    (tmp_path / "apps.clusternet.io_bases.yaml").write_text("stale\n")
    (tmp_path / "apps.clusternet.io_gone.yaml").write_text("stale\n")
    (tmp_path / "clusters.clusternet.io_managedclusters.yaml").unlink()
    (tmp_path / "kustomization.yml").write_text("resources: []\n")  # would break `kubectl apply -f crds/`
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name in ("apps.clusternet.io_bases.yaml", "apps.clusternet.io_gone.yaml", "managedclusters",
                 "kustomization.yml"):
        assert name in err
    assert "subscriptions" not in err
    assert crdgen.main(["--check", str(CRDS), "--bundle", str(BUNDLE)]) == 0
    stale = tmp_path / "bundle.yaml"
    stale.write_text(BUNDLE.read_text().replace("Manifest", "Manifesto"))
    assert crdgen.main(["--check", str(CRDS), "--bundle", str(stale)]) == 1
    assert f"out of date: {stale}" in capsys.readouterr().err


def test_all_kinds_present() -> None:
    assert sorted(c["spec"]["names"]["kind"] for c in crdgen.all_crds()) == sorted(EXPECTED)
    assert len(list(CRDS.glob("*.yaml"))) == 11


@pytest.mark.parametrize("model", ALL_KINDS, ids=[m.crd.kind for m in ALL_KINDS])
def test_names_scope_and_columns(model: type[KubeObject]) -> None:
    group, version, plural, scope, short, columns, has_status = EXPECTED[model.crd.kind]
    crd = _load(f"{group}_{plural}.yaml")
    assert crd == crdgen.crd_for(model)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.{group}"
    spec = crd["spec"]
    assert spec["group"] == group
    assert spec["scope"] == scope
    names = spec["names"]
    assert names["kind"] == model.crd.kind
    assert names["listKind"] == f"{model.crd.kind}List"
    assert names["plural"] == plural
    assert names["singular"] == model.crd.kind.lower()
    assert names.get("shortNames", []) == short
    assert names["categories"] == [known.CATEGORY]
    (ver,) = spec["versions"]
    assert (ver["name"], ver["served"], ver["storage"]) == (version, True, True)
    got = [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in ver.get("additionalPrinterColumns", [])]
    assert got == columns
    assert ("subresources" in ver) == has_status
    if has_status:
        assert ver["subresources"] == {"status": {}}
        assert "status" in ver["schema"]["openAPIV3Schema"]["properties"]
    # apiVersion and kind Literals of the model agree with the CRD
    assert model.model_fields["api_version"].default == f"{group}/{version}"
    assert model.model_fields["kind"].default == model.crd.kind


def _walk(node: dict[str, Any], path: str, problems: list[str]) -> None:
    if "$ref" in node or "$defs" in node or "title" in node or "const" in node:
        problems.append(f"{path}: JSON-schema-only keyword")
    if "anyOf" in node and node.get("anyOf") != [{"type": "integer"}, {"type": "string"}]:
        problems.append(f"{path}: anyOf other than int-or-string")
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: anyOf without x-kubernetes-int-or-string")
    if "type" not in node and not (
        node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    ):
        problems.append(f"{path}: no type")
    if node.get("type") == "null" or node.get("default", 0) is None:
        problems.append(f"{path}: null")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    for name, sub in node.get("properties", {}).items():
        _walk(sub, f"{path}.{name}", problems)
    if "items" in node:
        _walk(node["items"], f"{path}[]", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", problems)


@pytest.mark.parametrize("model", ALL_KINDS, ids=[m.crd.kind for m in ALL_KINDS])
def test_schemas_are_structural(model: type[KubeObject]) -> None:
    schema = crdgen.crd_for(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems: list[str] = []
    _walk(schema, model.crd.kind, problems)
    assert problems == []
    assert schema["type"] == "object"
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["properties"]["apiVersion"]["type"] == "string"
    assert schema["properties"]["kind"]["type"] == "string"


def _prop(model: type[KubeObject], path: str) -> dict[str, Any]:
    node: dict[str, Any] = crdgen.openapi_schema(model)
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_validation_rules_reach_the_crds() -> None:
    from clusternet_api import models as m

    assert _prop(m.ClusterRegistrationRequest, "spec.syncMode") == {
        "default": "Pull",
        "description": "How resources are synced from the parent to the child cluster.",
        "enum": ["Push", "Pull", "Dual"],
        "type": "string",
    }
    assert _prop(m.ClusterRegistrationRequest, "spec.clusterId")["pattern"] == known.CLUSTER_ID_PATTERN
    assert _prop(m.ClusterRegistrationRequest, "spec.clusterName")["maxLength"] == 30
    assert _prop(m.ClusterRegistrationRequest, "spec.clusterNamespace")["maxLength"] == 63
    assert _prop(m.ClusterRegistrationRequest, "status.token")["format"] == "byte"
    assert _prop(m.ClusterRegistrationRequest, "status.caCertificate")["format"] == "byte"
    assert "syncMode" in crdgen.openapi_schema(m.ManagedCluster)["properties"]["spec"]["required"]
    assert _prop(m.ManagedCluster, "spec.clusterType")["enum"] == ["StandardCluster", "EdgeCluster"]
    capacity = _prop(m.ManagedCluster, "status.capacity")
    assert capacity["additionalProperties"]["x-kubernetes-int-or-string"] is True
    assert _prop(m.Subscription, "status.replicas") == {
        "additionalProperties": {"items": {"type": "integer"}, "type": "array"},
        "description": _prop(m.Subscription, "status.replicas")["description"],
        "type": "object",
    }
    assert _prop(m.Subscription, "spec.feeds")["minItems"] == 1
    assert _prop(m.Subscription, "spec.feeds.[]")["required"] == ["apiVersion", "kind", "name"]
    assert _prop(m.Subscription, "spec.subscribers.[].weight")["minimum"] == 0
    assert _prop(m.Subscription, "spec.schedulingStrategy")["default"] == "Replication"
    assert _prop(m.Subscription, "spec.dividingScheduling.type")["enum"] == ["Static", "Dynamic"]
    assert _prop(m.Description, "spec.deployer")["enum"] == ["Helm", "Generic"]
    assert _prop(m.Description, "spec.raw") == {
        "description": _prop(m.Description, "spec.raw")["description"],
        "items": {"format": "byte", "type": "string"},
        "type": "array",
    }
    assert _prop(m.Description, "status.phase")["enum"] == [
        "Pending", "Success", "Failure", "Installing", "Upgrading", "Uninstalling", "Superseded", "Unknown",
    ]  # fmt: skip
    assert _prop(m.Description, "status.manifestStatuses.[].observedStatus") == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert _prop(m.Manifest, "template")["x-kubernetes-preserve-unknown-fields"] is True
    assert crdgen.openapi_schema(m.Manifest)["required"] == ["template"]
    for helm in (m.HelmChart, m.HelmRelease):
        assert _prop(helm, "spec.createNamespace")["default"] is True
        assert _prop(helm, "spec.timeoutSeconds")["default"] == 300
        assert _prop(helm, "spec.repo")["pattern"].startswith("^(https?|oci)://")
    assert _prop(m.HelmRelease, "spec.overrides")["format"] == "byte"
    for override in (m.Localization, m.Globalization):
        prio = _prop(override, "spec.priority")
        assert (prio["minimum"], prio["maximum"], prio["default"]) == (0, 1000, 500)
        assert _prop(override, "spec.overridePolicy")["default"] == "ApplyLater"
        assert _prop(override, "spec.overrides.[].type")["enum"] == [
            "Helm", "JSONPatch", "MergePatch", "FieldJSONPatch", "FieldMergePatch",
        ]  # fmt: skip
        assert _prop(override, "spec.overrides.[].fieldFormat")["enum"] == ["YAML", "JSON"]
    assert "clusterAffinity" in _prop(m.Globalization, "spec")["properties"]
    assert "clusterAffinity" not in _prop(Localization, "spec")["properties"]
