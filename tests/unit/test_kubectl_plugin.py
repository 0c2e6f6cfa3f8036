"""kubectl clusternet: the parts that need no cluster (documents, cleaning, tables, alias resolution, options)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clusternet_api import known
from clusternet_api.kube import Credentials, Kube, kubeconfig_namespace, kubeconfig_path
from clusternet_core.overrides import AppliedOverride, OverrideError
from clusternet_core.rendering import RenderedObject
from clusternet_kubectl import session
from clusternet_kubectl.cli import main
from clusternet_kubectl.commands.apply import apply_batches
from clusternet_kubectl.commands.get import dump, template_table
from clusternet_kubectl.commands.render import render_header
from clusternet_kubectl.documents import clean_object, document_files, load_documents, object_ref, parse_documents
from clusternet_kubectl.errors import PluginError
from clusternet_kubectl.resources import Resource, match_resource, type_name
from clusternet_kubectl.tables import age, format_table, human_duration, server_table
from clusternet_kubectl.targets import skip_validating
from clusternet_kubectl.templates import Kind

REPO = Path(__file__).resolve().parents[2]

# --- documents -------------------------------------------------------------------------------------------


def test_multi_document_yaml_skips_empty_documents() -> None:
    text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n# only a comment\n---\n" \
           "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
    docs = parse_documents(text, "x.yaml")
    assert [d.object["metadata"]["name"] for d in docs] == ["a", "b"]
    assert {d.source for d in docs} == {"x.yaml"}


def test_lists_are_expanded_recursively() -> None:
    inner = {"apiVersion": "v1", "kind": "ConfigMapList",
             "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}, inner]}
    names = [d.object["metadata"]["name"] for d in parse_documents(json.dumps(doc), "l.json")]
    assert names == ["a", "c"]


def test_json_document() -> None:
    docs = parse_documents('{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}', "s.json")
    assert docs[0].object["kind"] == "Service"


def test_bad_documents_name_the_source() -> None:
    with pytest.raises(PluginError, match=r"bad\.yaml: invalid YAML"):
        parse_documents("a: [1, 2\n", "bad.yaml")
    with pytest.raises(PluginError, match=r"bad\.yaml: expected an object, got list"):
        parse_documents("- 1\n- 2\n", "bad.yaml")


def test_directories_are_read_sorted_and_optionally_recursively(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    (tmp_path / "a.json").write_text('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}')
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert [p.name for p in document_files(tmp_path, recursive=False)] == ["a.json", "b.yaml"]
    assert [p.name for p in document_files(tmp_path, recursive=True)] == ["a.json", "b.yaml", "c.yml"]
    names = [d.object["metadata"]["name"] for d in load_documents([str(tmp_path)], recursive=True)]
    assert names == ["a", "b", "c"]
    with pytest.raises(PluginError, match="does not exist"):
        document_files(tmp_path / "missing", recursive=False)


def test_stdin_and_files_keep_argument_order(tmp_path: Path) -> None:
    f = tmp_path / "one.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: file}\n")
    stdin = io.StringIO("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stdin}\n")
    docs = load_documents(["-", str(f)], stdin=stdin)
    assert [(d.source, d.object["metadata"]["name"]) for d in docs] == [("<stdin>", "stdin"), (str(f), "file")]


def test_repo_examples_load() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "applications"
    kinds = [d.object["kind"] for d in load_documents([str(examples)])]
    assert sorted(kinds) == ["Deployment", "HelmChart", "Namespace", "Service", "Subscription"]


# --- objects ---------------------------------------------------------------------------------------------


def test_clean_object_strips_server_fields_without_touching_the_input() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n", "resourceVersion": "5", "uid": "u", "generation": 2,
                     "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [{}], "labels": {"a": "b"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "child-uid"}]},
        "spec": {"replicas": 1}, "status": {"readyReplicas": 1},
    }
    cleaned = clean_object(obj)
    assert cleaned == {"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "d", "namespace": "n", "labels": {"a": "b"}}, "spec": {"replicas": 1}}
    assert obj["status"] and obj["metadata"]["uid"] == "u"


def test_object_ref_requires_identity() -> None:
    assert object_ref({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}) == ("v1", "Namespace",
                                                                                                 "", "x")
    with pytest.raises(PluginError, match="apiVersion or kind"):
        object_ref({"kind": "Namespace", "metadata": {"name": "x"}})
    with pytest.raises(PluginError, match="generateName"):
        object_ref({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "x-"}})


def test_skip_validating_annotation() -> None:
    annotated = {"metadata": {"annotations": {known.ANNOTATION_SKIP_VALIDATING: "true"}}}
    assert skip_validating(annotated)
    assert not skip_validating({"metadata": {"annotations": {known.ANNOTATION_SKIP_VALIDATING: "false"}}})
    assert not skip_validating({"metadata": {}})


def test_type_names_match_kubectl() -> None:
    assert type_name("Deployment", "apps") == "deployment.apps"
    assert type_name("Service", "") == "service"
    assert Resource("apps.clusternet.io", "v1alpha1", "Subscription", "subscriptions", True).type_name == \
        "subscription.apps.clusternet.io"


# --- discovery -------------------------------------------------------------------------------------------

DISCOVERY: dict[str, Any] = {
    "/apis": {"groups": [
        {"name": "apps", "preferredVersion": {"groupVersion": "apps/v1"}},
        {"name": "apps.clusternet.io", "preferredVersion": {"groupVersion": "apps.clusternet.io/v1alpha1"}},
        {"name": "metrics.k8s.io", "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1"}},
    ]},
    "/api/v1": {"resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
         "shortNames": ["ns"]},
        {"name": "namespaces/status", "singularName": "", "namespaced": False, "kind": "Namespace"},
        {"name": "services", "singularName": "", "namespaced": True, "kind": "Service", "shortNames": ["svc"]},
    ]},
    "/apis/apps/v1": {"resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
         "shortNames": ["deploy"]},
    ]},
    "/apis/apps.clusternet.io/v1alpha1": {"resources": [
        {"name": "subscriptions", "singularName": "subscription", "namespaced": True, "kind": "Subscription",
         "shortNames": ["sub", "subs"]},
    ]},
}


class FakeKube(Kube):
    """Discovery answered from DISCOVERY (503 for anything else, like an unavailable aggregated API)."""

    def __init__(self) -> None:
        super().__init__(Credentials(server="http://parent.invalid"))
        self.asked: list[str] = []

    async def raw(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        self.asked.append(path)
        return (200, DISCOVERY[path]) if path in DISCOVERY else (503, "service unavailable")


async def all_resources() -> list[Resource]:
    return await session.Session(FakeKube(), "default").all_resources()


async def test_discovery_lists_preferred_versions_core_first_without_subresources() -> None:
    found = await all_resources()
    assert [(r.api_version, r.plural) for r in found] == [
        ("v1", "namespaces"), ("v1", "services"), ("apps/v1", "deployments"),
        ("apps.clusternet.io/v1alpha1", "subscriptions")]  # metrics.k8s.io is unavailable: skipped, as kubectl
    assert found[0] == Resource("", "v1", "Namespace", "namespaces", False, "namespace", ("ns",))


async def test_find_asks_discovery_once_per_group_version() -> None:
    kube = FakeKube()
    parent = session.Session(kube, "default")
    sub = await parent.find("apps.clusternet.io/v1alpha1", "Subscription")
    assert sub is not None and sub.path("ns", "s") == "/apis/apps.clusternet.io/v1alpha1/namespaces/ns/subscriptions/s"
    assert await parent.find("apps.clusternet.io/v1alpha1", "Subscription") == sub
    assert await parent.find("example.com/v1", "Widget") is None
    assert kube.asked.count("/apis/apps.clusternet.io/v1alpha1") == 1


@pytest.mark.parametrize(("name", "plural"), [
    ("ns", "namespaces"), ("namespace", "namespaces"), ("Namespace", "namespaces"), ("svc", "services"),
    ("service", "services"), ("deploy", "deployments"), ("deployments.apps", "deployments"),
    ("deployment.v1.apps", "deployments"), ("subs", "subscriptions"), ("Subscription", "subscriptions"),
])
async def test_alias_resolution(name: str, plural: str) -> None:
    found = match_resource(await all_resources(), name)
    assert found is not None and found.plural == plural


async def test_unknown_alias() -> None:
    assert match_resource(await all_resources(), "widgets") is None
    assert match_resource(await all_resources(), "deployments.batch") is None


async def test_paths() -> None:
    namespaces, _, deploy, _ = await all_resources()
    assert deploy.path("foo", "x") == "/apis/apps/v1/namespaces/foo/deployments/x"
    assert deploy.path() == "/apis/apps/v1/deployments"
    assert namespaces.path("ignored", "foo") == "/api/v1/namespaces/foo"


def test_literal_kinds_match_templates_by_kind_or_plural() -> None:
    manifest = {"metadata": {"name": "widgets.foo.w"},
                "template": {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}}
    for literal in ("widgets", "Widget", "widget"):
        assert Kind(None, literal).matches_template(manifest)
    assert not Kind(None, "gadgets").matches_template(manifest)
    deploy = Resource("apps", "v1", "Deployment", "deployments", True)
    assert not Kind(deploy, "deploy").matches_template(manifest)


# --- tables ----------------------------------------------------------------------------------------------


def test_format_table_looks_like_kubectl() -> None:
    out = format_table(["Namespace", "Name", "Ready"], [["default", "app-demo", True], ["x", "b", None]])
    assert out.splitlines() == [
        "NAMESPACE   NAME       READY",
        "default     app-demo   true",
        "x           b",
    ]


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (0, "0s"), (71, "71s"), (119, "119s"), (364, "6m4s"), (360, "6m"), (900, "15m"),
    (3 * 3600 + 5 * 60, "3h5m"), (10 * 3600, "10h"), (5 * 86400 + 22 * 3600, "5d22h"), (30 * 86400, "30d"),
    (3 * 365 * 86400 + 2 * 86400, "3y2d"), (10 * 365 * 86400, "10y"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_age() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert age((now - timedelta(seconds=71)).strftime("%Y-%m-%dT%H:%M:%SZ"), now) == "71s"
    assert age(None, now) == "<unknown>"
    assert age("garbage", now) == "<unknown>"


def test_server_table_namespace_and_wide_columns() -> None:
    table = {
        "columnDefinitions": [{"name": "Name", "priority": 0}, {"name": "Cluster ID", "priority": 0},
                              {"name": "Sync Mode", "priority": 1}, {"name": "Age", "priority": 0}],
        "rows": [{"cells": ["c1", "id-1", "Pull", "5d22h"],
                  "object": {"metadata": {"name": "c1", "namespace": "clusternet-abc"}}}],
    }
    assert server_table(table).splitlines() == ["NAME   CLUSTER ID   AGE", "c1     id-1         5d22h"]
    assert server_table(table, wide=True, with_namespace=True).splitlines() == [
        "NAMESPACE        NAME   CLUSTER ID   SYNC MODE   AGE",
        "clusternet-abc   c1     id-1         Pull        5d22h",
    ]


def test_template_table() -> None:
    """Clusternet's columns (the overview: `kubectl clusternet get ns` prints NAME, CREATED AT)."""
    manifests = [{"metadata": {"name": "deployments.foo.my-nginx", "creationTimestamp": "2024-01-01T11:54:00Z"},
                  "template": {"metadata": {"name": "my-nginx", "namespace": "foo"}}}]
    assert template_table(manifests, all_namespaces=False, wide=False).splitlines() == [
        "NAME       CREATED AT", "my-nginx   2024-01-01T11:54:00Z"]
    assert template_table(manifests, all_namespaces=True, wide=True).splitlines() == [
        "NAMESPACE   NAME       CREATED AT             MANIFEST",
        "foo         my-nginx   2024-01-01T11:54:00Z   deployments.foo.my-nginx"]


def test_dump_single_and_list() -> None:
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    assert json.loads(dump([obj], "json", single=True)) == obj
    listed = json.loads(dump([obj], "json", single=False))
    assert listed["kind"] == "List" and listed["items"] == [obj]
    assert dump([obj], "yaml", single=True).startswith("apiVersion: v1\nkind: Namespace")


def test_render_header_names_overrides() -> None:
    item = RenderedObject(
        feed={"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "web"},
        object={"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "foo"}},
        applied=[AppliedOverride("Localization", "clusternet-abc", "scale", "#0", ("/spec/replicas",),
                                 "MergePatch")],
        errors=[OverrideError("Globalization", None, "g", "bad", "Globalization g override 'bad': boom", "boom")],
    )
    assert render_header(item) == [
        "# apps/v1 Deployment foo/web",
        "# override Localization clusternet-abc/scale [#0] MergePatch: /spec/replicas",
        "# FAILED override Globalization g [bad]: boom",
    ]


# --- configuration and CLI -------------------------------------------------------------------------------


def test_context_namespace(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text(
        "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, namespace: team}\n"
        "- name: b\n  context: {cluster: c}\n")
    assert kubeconfig_namespace(cfg, None) == "team"
    assert kubeconfig_namespace(cfg, "b") is None
    assert kubeconfig_namespace(cfg, "missing") is None


def test_kubeconfig_lookup_like_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'first'}:{tmp_path / 'second'}")
    assert kubeconfig_path("explicit") == Path("explicit")
    assert kubeconfig_path(None) == tmp_path / "first"
    monkeypatch.delenv("KUBECONFIG")
    assert kubeconfig_path(None) is None
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert kubeconfig_path(None) == tmp_path / ".kube" / "config"


def test_options_after_the_subcommand_win(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(session, "run", lambda command, *args, **options: seen.append(options))
    result = CliRunner().invoke(main, ["--kubeconfig", "a.kubeconfig", "-n", "ns1", "get", "deploy",
                                       "--context", "ctx", "-n", "ns2"])
    assert result.exit_code == 0, result.output
    assert seen == [{"kubeconfig": "a.kubeconfig", "context": "ctx", "namespace": "ns2", "debug": False,
                     "interrupted": 130}]


def test_console_script_runs_the_cli() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-clusternet"] == "clusternet_kubectl.cli:main"


def test_help_loads_neither_the_http_client_nor_the_pipeline() -> None:
    """Start-up stays fast: aiohttp, pydantic and the pipeline load only when a command needs them."""
    code = ("import sys\nfrom clusternet_kubectl.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('aiohttp', 'pydantic', 'clusternet_core') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "[]"


def test_cli_version_and_local_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["version"])
    assert result.exit_code == 0 and result.output.startswith("kubectl-clusternet ")
    result = runner.invoke(main, ["apply", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["apply", "-f", str(empty)])
    assert result.exit_code == 1 and "no objects" in result.output


def test_apply_batches_keep_real_objects_in_order_and_group_templates() -> None:
    docs = parse_documents(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: foo}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: foo}\n---\n"
        "apiVersion: apps.clusternet.io/v1alpha1\nkind: Localization\nmetadata: {name: l}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: foo}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: foo}\n---\n"
        "apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: s}\n", "f.yaml")
    batches = [[d.object["kind"] for d in batch] for batch in apply_batches(docs)]
    # templates (stored as Manifests) go together; Clusternet objects wait for everything before them
    assert batches == [["Namespace", "Deployment"], ["Localization"], ["Service", "ConfigMap"], ["Subscription"]]
