"""kubectl clusternet get's -o forms (kubectl's JSONPath dialect, names, Lists, custom columns), -l on
templates, and apply -k: the parts that need no cluster. The JSONPath cases are kubectl 1.32's output for
the same objects; with a kubectl on PATH they are also compared live (`kubectl label --local -o jsonpath`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from clusternet_api import known
from clusternet_kubectl.cli import main
from clusternet_kubectl.commands.get import is_object_output, print_watched, render_objects
from clusternet_kubectl.documents import kubectl_error, kustomize
from clusternet_kubectl.errors import PluginError
from clusternet_kubectl.jsonpath import JSONPathError, execute, parse, relaxed
from clusternet_kubectl.resources import Resource, object_type_name
from clusternet_kubectl.templates import Kind, manifest_selector, template_filter

CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "jp", "namespace": "default", "labels": {"app": "web", "tier": "a&b"},
                 "annotations": {"note": "x<y>"}},
    "data": {"b": "2", "a": "one two"},
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "d1", "namespace": "default", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [
            {"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
            {"name": "b", "image": "busybox", "args": ["sleep", "10"]}]}}},
}
CONTAINERS = ".spec.template.spec.containers"

# (object, template, kubectl's output)
CASES: list[tuple[dict[str, Any], str, str]] = [
    (CONFIGMAP, "{.metadata.name}", "jp"),
    (CONFIGMAP, "{.data}", '{"a":"one two","b":"2"}'),
    (CONFIGMAP, "{.metadata.labels}", '{"app":"web","tier":"a\\u0026b"}'),
    (CONFIGMAP, "{.metadata.annotations.note}", "x<y>"),
    (CONFIGMAP, '{.data.a}{"\\n"}', "one two\n"),
    (CONFIGMAP, "x={.kind} y={.apiVersion}", "x=ConfigMap y=v1"),
    (CONFIGMAP, "{.metadata.missing}", ""),
    (CONFIGMAP, "{.metadata['name']}", "jp"),
    (CONFIGMAP, "{$.kind}", "ConfigMap"),
    (CONFIGMAP, '{.kind}{"\t"}{.metadata.name}', "ConfigMap\tjp"),  # a literal tab in a quoted string
    (DEPLOYMENT, "{.metadata.labels.app\\.kubernetes\\.io/name}", "web"),
    (DEPLOYMENT, f"{{{CONTAINERS}[*].name}}", "a b"),
    (DEPLOYMENT, f'{{range {CONTAINERS}[*]}}{{.name}}{{"\\t"}}{{.image}}{{"\\n"}}{{end}}', "a\tnginx:1\nb\tbusybox\n"),
    (DEPLOYMENT, "{.spec.replicas}", "3"),
    (DEPLOYMENT, "{..image}", "nginx:1 busybox"),
    (DEPLOYMENT, f"{{{CONTAINERS}[-1].name}}", "b"),
    (DEPLOYMENT, f"{{{CONTAINERS}[0:1].name}}", "a"),
    (DEPLOYMENT, f'{{{CONTAINERS}[?(@.name=="b")].args}}', '["sleep","10"]'),
    (DEPLOYMENT, f"{{{CONTAINERS}[?(@.ports)].name}}", "a"),
    (DEPLOYMENT, f"{{{CONTAINERS}[*].ports[?(@.containerPort>100)].containerPort}}", "443"),
    (DEPLOYMENT, f"{{{CONTAINERS}[0].ports}}", '[{"containerPort":80},{"containerPort":443}]'),
    (DEPLOYMENT, f"{{range {CONTAINERS}[*]}}[{{range .ports[*]}}{{.containerPort}},{{end}}]{{end}}", "[80,443,][]"),
]


@pytest.mark.parametrize(("obj", "template", "expected"), CASES)
def test_jsonpath_prints_what_kubectl_prints(obj: dict[str, Any], template: str, expected: str) -> None:
    assert execute(template, obj) == expected


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH")
def test_jsonpath_cases_match_the_installed_kubectl(tmp_path: Path) -> None:
    """`kubectl label --local` prints a local object through kubectl's own JSONPath printer, no server needed."""
    for i, obj in enumerate((CONFIGMAP, DEPLOYMENT)):
        (tmp_path / f"{i}.yaml").write_text(yaml.safe_dump(obj))
    for obj, template, _ in CASES:
        i = 0 if obj is CONFIGMAP else 1
        proc = subprocess.run(["kubectl", "label", "--local", "-f", str(tmp_path / f"{i}.yaml"), "zz=1",
                               "-o", f"jsonpath={template}"], capture_output=True, text=True, check=False)
        labelled = json.loads(json.dumps(obj))
        labelled["metadata"].setdefault("labels", {})["zz"] = "1"
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == execute(template, labelled), template


@pytest.mark.parametrize(("template", "error"), [
    ("{.metadata.name", "unclosed action"),
    ("{.metadata.name,.kind}", r"unrecognized character in action: U\+002C"),
    ("{range .items[*]}{.x}", "range not closed"),
    ("{end}", "not in range"),
    ('{.kind}{"\n"}', "unterminated quoted string"),  # a literal newline: kubectl refuses it too
    ("{metadata.name}", "unrecognized identifier"),
])
def test_jsonpath_errors(template: str, error: str) -> None:
    with pytest.raises(JSONPathError, match=error):
        parse(template)


def test_relaxed_expressions_of_custom_columns() -> None:
    assert relaxed(".metadata.name") == relaxed("metadata.name") == relaxed("{.metadata.name}") == "{.metadata.name}"


def test_object_outputs_are_kubectls_shapes() -> None:
    objects = [CONFIGMAP, DEPLOYMENT]
    assert render_objects(objects, "name", False, object_type_name) == "configmap/jp\ndeployment.apps/d1"
    listed = json.loads(render_objects(objects, "json", False, object_type_name))
    assert listed == {"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}}
    assert yaml.safe_load(render_objects([CONFIGMAP], "yaml", True, object_type_name)) == CONFIGMAP
    # jsonpath sees the List for several objects (or none named), the object itself for one named
    assert render_objects(objects, "jsonpath={.items[*].metadata.name}", False, object_type_name) == "jp d1"
    assert render_objects([CONFIGMAP], "jsonpath={.metadata.name}", True, object_type_name) == "jp"
    table = render_objects(objects, "custom-columns=NAME:.metadata.name,Kind:kind,LABEL:.metadata.labels.app",
                           False, object_type_name)
    assert table.splitlines() == ["NAME   Kind         LABEL", "jp     ConfigMap    web", "d1     Deployment   <none>"]


def test_jsonpath_file_and_its_errors(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("{.kind}")
    assert render_objects([CONFIGMAP], f"jsonpath-file={tmp_path / 't'}", True, object_type_name) == "ConfigMap"
    with pytest.raises(PluginError, match="error reading --template"):
        render_objects([CONFIGMAP], f"jsonpath-file={tmp_path / 'nope'}", True, object_type_name)
    with pytest.raises(PluginError, match=r"error parsing jsonpath \{\.x"):
        render_objects([CONFIGMAP], "jsonpath={.x", True, object_type_name)


def test_is_object_output() -> None:
    assert [is_object_output(o) for o in (None, "wide", "yaml", "name", "jsonpath={.a}", "custom-columns=A:.a")] \
        == [False, False, True, True, True, True]


DEPLOYMENTS = Resource("apps", "v1", "Deployment", "deployments", True)


def test_manifest_selector_passes_the_users_selector_on() -> None:
    """Templates' own labels are on their Manifests, so the user's selector is ANDed as it is."""
    kind = Kind(DEPLOYMENTS, "deploy")
    assert manifest_selector(kind, selector="app=web,env in (a,b)") == \
        f"{known.LABEL_CONFIG_KIND}=Deployment,app=web,env in (a,b)"
    assert manifest_selector(kind, "x") == f"{known.LABEL_CONFIG_KIND}=Deployment,{known.LABEL_CONFIG_NAME}=x"
    assert manifest_selector(Kind(None, "widgets")) == ""


def test_template_filter_by_kind_and_namespace() -> None:
    def manifest(kind: str, namespace: str) -> dict[str, Any]:
        return {"metadata": {"name": f"deployments.{namespace}.x", "labels": {known.LABEL_CONFIG_NAMESPACE: namespace}},
                "template": {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "x", "namespace": namespace}}}

    wanted = template_filter(Kind(DEPLOYMENTS, "deploy"), "a")
    assert [wanted(manifest("Deployment", "a")), wanted(manifest("Deployment", "b")),
            wanted(manifest("StatefulSet", "a"))] == [True, False, False]
    assert template_filter(Kind(DEPLOYMENTS, "deploy"), None)(manifest("Deployment", "b"))


@pytest.mark.parametrize(("args", "message"), [
    (["get", "deploy", "-o", "table"], 'unable to match a printer suitable for the output format "table"'),
    (["get", "deploy", "-o", "jsonpath="], "jsonpath format specified but no template given"),
    (["apply"], "must specify one of -f and -k"),
    (["apply", "-f", "x.yaml", "-k", "dir"], "only one of -f or -k can be specified"),
])
def test_local_usage_errors_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {message}" or message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_kustomize_without_kubectl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PluginError, match="kubectl not found on PATH"):
        kustomize(str(tmp_path))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH")
def test_kustomize_builds_with_kubectl(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(CONFIGMAP))
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\nnamePrefix: p-\n")
    [doc] = kustomize(str(tmp_path))
    assert doc.object["metadata"]["name"] == "p-jp" and doc.source.endswith("(kustomize)")
    with pytest.raises(PluginError, match=r"^kustomize .*nope failed: .*nope"):
        kustomize(str(tmp_path / "nope"))


def test_kubectl_error_lines() -> None:
    klog = 'E1203 12:05:02.389529    6940 run.go:72] "command failed" err="must build at directory: \\"x\\""\n'
    assert kubectl_error(klog) == 'must build at directory: "x"'
    assert kubectl_error("\nerror: no objects passed\n") == "no objects passed"


def test_watched_objects_print_one_by_one(capsys: pytest.CaptureFixture[str]) -> None:
    """kubectl get -w -o yaml: one document per object and change, separated by ---."""
    manifests = [{"template": CONFIGMAP}, {"template": DEPLOYMENT}]
    printed = 0
    for m in manifests:
        printed = print_watched(m, "yaml", printed)
    assert [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)] == ["ConfigMap", "Deployment"]
    for m in manifests:
        print_watched(m, "name", 0)
    assert capsys.readouterr().out == "configmap/jp\ndeployment.apps/d1\n"
